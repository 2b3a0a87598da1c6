// These tests run generation loops and full forwards: on a loaded 2-core CI machine (turbo runs every
// workspace's tests at once) a step can take seconds, so vitest's 5 s default would time out.
export default { test: { testTimeout: 60_000, hookTimeout: 60_000 } };
