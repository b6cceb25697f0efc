import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The machine has 2 cores; end-to-end tests start brokers and servers of their own.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
