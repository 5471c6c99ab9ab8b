// Some packages read process.env.NODE_ENV as a bundler would have replaced it; the board has no bundler.
globalThis.process ??= { env: { NODE_ENV: 'production' } }
