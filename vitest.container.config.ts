import { defineConfig } from 'vitest/config';

// The Docker image proven without a Docker engine (its build steps replayed in a temp dir, its
// command started), and the dashboard's and alert rules' metric names checked: `npm run test:container`.
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
