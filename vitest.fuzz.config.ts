import { defineConfig } from 'vitest/config';

// The coverage-guided fuzzer of the wire parsers and the query path: `npm run test:fuzz`
// (FUZZ_SECONDS per target, default 10; FUZZ_SEED to replay a run).
export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
  },
});
