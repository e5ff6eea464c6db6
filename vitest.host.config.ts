import { defineConfig } from 'vitest/config';

// Tests against the host's real daemons in network namespaces (systemd-resolved, dbus-daemon): `npm run test:host`.
export default defineConfig({
  test: {
    include: ['test/host/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
