import { defineConfig } from 'vitest/config';

// The install paths, each played in a temporary folder: the README's systemd recipe (copy, `npm ci`,
// prune, then the unit's commands) and `npm pack`'s tarball installed into an empty folder. Each
// runs npm and the addon's compiler, so they are not in the default suite: `npm run test:install`.
export default defineConfig({
  test: {
    include: ['test/install/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
