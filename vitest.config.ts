import { defineConfig } from 'vitest/config'

// One config, one project per package. `docket-source` resolves workspace packages to their
// TypeScript sources, so tests never run against a stale build.
export default defineConfig({
  resolve: { conditions: ['docket-source'] },
  ssr: { resolve: { conditions: ['docket-source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'core', root: 'packages/core', include: ['test/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'server', root: 'packages/server', include: ['test/**/*.test.ts'] },
      },
      // Needs Debian's redis-server: run by `pnpm test:redis` only (DOCKET_REDIS_TEST=1).
      ...(process.env.DOCKET_REDIS_TEST === '1'
        ? [{ extends: true as const, test: { name: 'redis', root: 'packages/server', include: ['redis/**/*.test.ts'] } }]
        : []),
      {
        extends: true,
        test: { name: 'board', root: 'packages/board', include: ['test/**/*.test.ts'] },
      },
      // Needs Debian's chromium: run by `pnpm test:browser` only (DOCKET_BROWSER_TEST=1).
      ...(process.env.DOCKET_BROWSER_TEST === '1'
        ? [{ extends: true as const, test: { name: 'browser', root: 'packages/board', include: ['browser/**/*.test.ts'] } }]
        : []),
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
        test: { name: 'harness', root: 'test', include: ['properties/**/*.test.ts'] },
      },
    ],
    // `pnpm test:extensive` runs the properties 20× longer: their time limit grows with them.
    testTimeout: process.env.DOCKET_EXTENSIVE === '1' ? 40 * 60_000 : 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
