import { defineConfig } from 'vitest/config';

// pvdns beside Unbound and dnsmasq under a misbehaving upstream, with the table of figures:
// `npm run test:chaos` (CHAOS_SCALE, CHAOS_SILENT_S, CHAOS_REPORT; PVDNS_CLI to run another build).
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
