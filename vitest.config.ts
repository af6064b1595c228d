import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
    // Loads export anew: the tests of the export cache give it a folder of their own.
    env: { UAP_CACHE_DIR: 'off' },
  },
});
