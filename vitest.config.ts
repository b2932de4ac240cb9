import { defineConfig } from 'vitest/config'

// Each test file runs in its own process: native fds, pollers and fd-count checks stay per file.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    include: ['test/**/*.test.ts'],
  },
})
