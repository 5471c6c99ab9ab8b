import { defineConfig } from 'vitest/config'

// One config, one project per package. `source` resolves workspace packages to their
// TypeScript sources, so tests never run against a stale build.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'core', root: 'packages/core', include: ['test/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'recover', root: 'packages/recover', include: ['test/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'cli', root: 'packages/cli', include: ['test/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'harness', root: 'test', include: ['properties/**/*.test.ts', 'unit/**/*.test.ts'] },
      },
    ],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
