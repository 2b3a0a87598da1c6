// The fuzz tests (src/fuzz.test.ts) patch 10,000 inputs, up to 1 MiB each, and run the shipped model on a
// subset: on a loaded 2-core CI machine (turbo runs every workspace's tests at once) that exceeds 5 s.
export default { test: { testTimeout: 60_000, hookTimeout: 60_000 } };
