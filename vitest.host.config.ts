import { defineConfig } from 'vitest/config';

// Tests against the machine's own kernel and daemons, each inside network
// namespaces and on private buses the test creates: `npm run test:host` (as root).
export default defineConfig({
  test: {
    include: ['test/host/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
