// One test configuration for every workspace (each package's vitest.config.ts re-exports it).
// CI runs every workspace's tests at once on 2 cores (turbo), next to builds and type checks: a
// golden forward, a fuzz pass or a spawned CLI that takes 1 s alone can take 10-20 s there, so
// vitest's 5 s default timeout fails tests that are merely slow. Timings are never asserted in tests
// (they live in `npm run bench`); the timeout only catches hangs.
// In CI, the golden vectors must be there (vitest.golden-setup.ts): tests needing them never skip.
import { fileURLToPath } from 'node:url';

export default {
  test: { testTimeout: 60_000, hookTimeout: 60_000, globalSetup: [fileURLToPath(new URL('./vitest.golden-setup.ts', import.meta.url))] },
};
