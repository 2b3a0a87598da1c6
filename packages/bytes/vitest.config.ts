// The fuzz tests (src/fuzz.test.ts) run 10,000 inputs, up to 1 MiB each, through every decoder: on a loaded
// 2-core CI machine (turbo runs every workspace's tests at once) that can take well over vitest's 5 s default.
export default { test: { testTimeout: 60_000, hookTimeout: 60_000 } };
