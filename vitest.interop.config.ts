import { defineConfig } from 'vitest/config';

// Tests against real DNS software from Debian (dig, Unbound, dnsmasq, nsd): `npm run test:interop`.
export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
