/**
 * Optional native float32 matrix multiply for Node: OpenBLAS `cblas_sgemm` through a small N-API
 * addon (`native/sgemm.c`, built by `scripts/build-native.mjs` into `dist/native/sgemm.node`).
 *
 * The addon works directly on the memory of `Float32Array`s, including views of a
 * `WebAssembly.Memory` such as the tfjs wasm heap, so a product needs no copy. Every call checks
 * its arguments in C (types, dimensions, leading dimensions, and that every element read or
 * written lies inside its array) and throws a `TypeError` or `RangeError` instead of touching
 * memory it should not.
 *
 * The addon is optional: without a C compiler or OpenBLAS at build time it is not built, and
 * {@link loadNativeSgemm} returns `undefined` while {@link nativeSgemmUnavailableReason} says why.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * OpenBLAS single-precision matrix products, row-major (as tfjs stores tensors). Offsets, strides
 * and leading dimensions count elements, not bytes. `op(X)` is `X` or, when its flag is set, `Xᵀ`:
 * `op(A)` is `m x k` (so `A` is stored `m x k`, or `k x m` when `transA`), `op(B)` is `k x n`,
 * `C` is `m x n`. `C` must not overlap `A` or `B`.
 */
export interface NativeSgemm {
  /**
   * `C = alpha · op(A) · op(B) + beta · C` on the matrices starting at `aOffset`, `bOffset` and
   * `cOffset` of the given arrays. With `beta = 0`, `C` is not read (it may hold garbage or NaN).
   *
   * @throws {TypeError} an argument of the wrong type (`code: 'ERR_INVALID_ARG_TYPE'`)
   * @throws {RangeError} a dimension or offset out of range, a leading dimension below the stored
   *   columns, a matrix reaching past the end of its array, or `C` overlapping `A` or `B`
   *   (`code: 'ERR_OUT_OF_RANGE'`)
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    aOffset: number,
    lda: number,
    b: Float32Array,
    bOffset: number,
    ldb: number,
    beta: number,
    c: Float32Array,
    cOffset: number,
    ldc: number,
  ): void;
  /**
   * `batch` products in one call: for `i` in `[0, batch)`, `C_i = alpha · op(A_i) · op(B_i) +
   * beta · C_i`, where `X_i` starts at `xOffset + i · xStride`. A stride of 0 reuses one matrix for
   * every product (a broadcast operand). For `a` and `b` the stride may instead be an `Int32Array`
   * of at least `batch` offsets (`X_i` starts at `xOffset + xStride[i]`), for batch shapes that
   * broadcast in both operands (`[2, 1]` against `[1, 3]`). The batch elements of `C` must not
   * overlap (`cStride` at least one result's extent).
   *
   * @throws {TypeError} as {@link NativeSgemm.sgemm}
   * @throws {RangeError} as {@link NativeSgemm.sgemm}, checked for every batch element
   */
  sgemmBatched(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    aOffset: number,
    aStride: number | Int32Array,
    lda: number,
    b: Float32Array,
    bOffset: number,
    bStride: number | Int32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    cOffset: number,
    cStride: number,
    ldc: number,
    batch: number,
  ): void;
  /**
   * Sets the number of threads OpenBLAS uses for later calls, process-wide. OpenBLAS starts with
   * one per core (or `OPENBLAS_NUM_THREADS`).
   *
   * @param threads - an integer in `[1, 1024]` (OpenBLAS caps it at its build's maximum)
   * @throws {RangeError} for anything else
   */
  setNumThreads(threads: number): void;
  /**
   * The number of threads OpenBLAS uses now: between calls, the configured count (`setNumThreads`,
   * or OpenBLAS's start-up count), which products with enough work run on.
   */
  getNumThreads(): number;
  /**
   * Sets how much work a product needs per thread, process-wide: each product (each product of a
   * batch: OpenBLAS parallelises products, not batches) runs on `floor(m · n · k / work)` threads,
   * at least 1 and at most {@link NativeSgemm.getNumThreads}, which is set again after the call.
   * OpenBLAS alone splits every product above m·n·k ≈ 2.6e5 over all its threads, which then
   * spin for ~0.1 s: on models whose products are all small that costs more than it gains. `0`
   * leaves every product to OpenBLAS. Results depend on the thread count in the last bits
   * (summation order), as with `setNumThreads`.
   *
   * @param work - `m · n · k` per thread, an integer in `[0, 2^53]`; initially
   *   {@link DEFAULT_MIN_WORK_PER_THREAD}
   * @throws {TypeError} when it is not a number (`code: 'ERR_INVALID_ARG_TYPE'`)
   * @throws {RangeError} for a number that is not such an integer (`code: 'ERR_OUT_OF_RANGE'`)
   */
  setMinWorkPerThread(work: number): void;
  /** The work per thread in force ({@link NativeSgemm.setMinWorkPerThread}). */
  getMinWorkPerThread(): number;
  /**
   * SwiGLU's gate, `out[i] = gate[i] · up[i] / (1 + e^−gate[i])` (`silu(gate) · up`), in one pass
   * (C's `expf` is several times faster than JavaScript's `Math.exp`).
   *
   * @throws {TypeError} an argument that is not a Float32Array
   * @throws {RangeError} arrays of different lengths
   */
  swiglu(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  /**
   * In place, for each row `r` of the `rows × width` matrix at `y[offset]` (leading dimension `ld`):
   * `y_r = softmax(y_r · scale + bias[biasOffsets[r] ..]) · valid[r]`. A row with `valid[r] = 0`
   * becomes 0; the sum is accumulated in double precision. Attention's scale, additive mask,
   * softmax and empty-row zeroing in one pass.
   *
   * @throws {TypeError} an argument of the wrong type
   * @throws {RangeError} a matrix, a bias row or a per-row array reaching past its array, `ld < width`
   */
  softmaxRows(
    y: Float32Array,
    offset: number,
    rows: number,
    width: number,
    ld: number,
    scale: number,
    bias: Float32Array,
    biasOffsets: Int32Array,
    valid: Float32Array,
  ): void;
  /** OpenBLAS's build configuration and the CPU core type it dispatched to, e.g. `'OpenBLAS 0.3.21 ... (core Zen)'`. */
  readonly config: string;
  /** Absolute path of the loaded addon. */
  readonly path: string;
}

/**
 * The initial {@link NativeSgemm.setMinWorkPerThread}: with two threads, products below m·n·k = 6e6
 * run on one. It lies between the tiny BLT's largest products (4.3e6), which then run as fast as on
 * one thread, and the 10M's large ones (8.4e6 and up), which keep two; measured with `npm run bench
 * -- native-threads` (see the README). Must equal `DEFAULT_MIN_WORK_PER_THREAD` in `native/sgemm.c`.
 */
export const DEFAULT_MIN_WORK_PER_THREAD = 3_000_000;

/** The functions the C addon exports (see `native/sgemm.c`). */
interface Addon {
  sgemm: NativeSgemm['sgemm'];
  sgemmBatched: NativeSgemm['sgemmBatched'];
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  setMinWorkPerThread(work: number): void;
  getMinWorkPerThread(): number;
  config(): string;
  swiglu: NativeSgemm['swiglu'];
  softmaxRows: NativeSgemm['softmaxRows'];
}

/** Where the build script puts the addon, relative to this module (in `src/` or `dist/`). */
const ADDON_URL = new URL('../dist/native/sgemm.node', import.meta.url);
/** Written by the build script next to the addon when it could not build it: the reason. */
const REASON_URL = new URL('../dist/native/unavailable.txt', import.meta.url);

type LoadResult = { ok: true; sgemm: NativeSgemm } | { ok: false; reason: string };
let loaded: LoadResult | undefined;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isAddon(value: unknown): value is Addon {
  const v = value as Record<string, unknown> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    [
      'sgemm',
      'sgemmBatched',
      'setNumThreads',
      'getNumThreads',
      'setMinWorkPerThread',
      'getMinWorkPerThread',
      'config',
      'swiglu',
      'softmaxRows',
    ].every((name) => typeof v[name] === 'function')
  );
}

function load(): LoadResult {
  const setting = process.env['BYTELATENT_NATIVE_SGEMM'] ?? '';
  if (/^(0|off|false|no)$/i.test(setting)) return { ok: false, reason: `disabled by BYTELATENT_NATIVE_SGEMM=${setting}` };
  const path = fileURLToPath(ADDON_URL);
  if (!existsSync(path)) {
    const why = existsSync(REASON_URL) ? readFileSync(REASON_URL, 'utf8').trim() : `${path} does not exist`;
    return {
      ok: false,
      reason: `the addon is not built (${why}); build it with \`npm rebuild @bytelatent/native-sgemm\` (needs a C compiler and OpenBLAS: apt-get install gcc libopenblas-dev)`,
    };
  }
  let addon: unknown;
  try {
    // `.node` files load only through require(); createRequire gives one to this ES module.
    addon = createRequire(import.meta.url)(path);
  } catch (e) {
    return { ok: false, reason: `the addon at ${path} failed to load: ${errorMessage(e)}` };
  }
  if (!isAddon(addon))
    return {
      ok: false,
      reason: `the addon at ${path} lacks the expected functions (a stale build? run \`npm rebuild @bytelatent/native-sgemm\`)`,
    };
  const sgemm: NativeSgemm = Object.freeze({
    // The addon's functions themselves, not wrappers: tfjs kernels call them for every product.
    sgemm: addon.sgemm,
    sgemmBatched: addon.sgemmBatched,
    setNumThreads: addon.setNumThreads,
    getNumThreads: addon.getNumThreads,
    setMinWorkPerThread: addon.setMinWorkPerThread,
    getMinWorkPerThread: addon.getMinWorkPerThread,
    swiglu: addon.swiglu,
    softmaxRows: addon.softmaxRows,
    config: addon.config(),
    path,
  });
  return { ok: true, sgemm };
}

/**
 * Loads the native addon (once per process; later calls return the same object or `undefined`).
 * Setting the environment variable `BYTELATENT_NATIVE_SGEMM=off` (or `0`, `false`, `no`) before
 * the first call disables it.
 *
 * @returns the OpenBLAS products, or `undefined` when the addon is not built, fails to load or is
 *   disabled; {@link nativeSgemmUnavailableReason} then says why
 */
export function loadNativeSgemm(): NativeSgemm | undefined {
  loaded ??= load();
  return loaded.ok ? loaded.sgemm : undefined;
}

/**
 * Why {@link loadNativeSgemm} returns `undefined`, e.g. `'the addon is not built (no C compiler
 * ...)'`. Loads the addon if no call has yet.
 *
 * @returns the reason, or `undefined` when the addon is available
 */
export function nativeSgemmUnavailableReason(): string | undefined {
  loaded ??= load();
  return loaded.ok ? undefined : loaded.reason;
}
