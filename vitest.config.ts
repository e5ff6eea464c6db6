import { defineConfig } from 'vitest/config';

// Two projects: everything with the UDP backend this machine has (the batched
// addon when it was built), and the integration tests again on node:dgram,
// the fallback, so both stay correct.
export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 20_000,
    projects: [
      {
        extends: true,
        test: { name: 'default', include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'dgram', include: ['test/integration/**/*.test.ts'], env: { PVDNS_UDP_BACKEND: 'dgram' } },
      },
    ],
  },
});
