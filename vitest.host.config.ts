import { defineConfig } from 'vitest/config';

// Tests that need the host's daemons or namespaces (a private dbus-daemon,
// systemd-resolved, network namespaces), run one file at a time: `npm run test:host`.
export default defineConfig({
  test: {
    include: ['test/host/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
