/**
 * Kernel fixes for the TensorFlow.js `wasm` backend (4.22). Importing this module registers them:
 *
 * - `UnsortedSegmentSum`, which the wasm backend lacks. `tf.gather`'s gradient is an unsorted
 *   segment sum, so without it every embedding lookup fails to train on wasm.
 * - `GatherV2` as contiguous row copies (see {@link fastGatherV2}): the original computed every
 *   element's coordinates.
 * - `Equal` as a JavaScript loop (see {@link fastEqual}): the original is slow when one side
 *   broadcasts, as in `tf.max`'s gradient.
 * - `Identity` sharing memory instead of copying it (see {@link sharingIdentity}).
 * - The fused RMSNorm kernels of `./fused-kernels.ts`.
 * - `BatchMatMul` and `_FusedMatMul` replacements that, when `transposeA` or `transposeB` is set,
 *   transpose the operand explicitly (with the wasm `Transpose` kernel) and run the original kernel
 *   without the flag (except for small batched products, see below). The original's transposed
 *   path is far slower than a transpose followed by a plain matmul, and backprop through a
 *   matmul uses exactly those flags (the gradient of `a @ b` is `dy @ bᵀ` and `aᵀ @ dy`;
 *   `npm run bench -- wasm-matmul`, docs/performance.md §2). The `_FusedMatMul` replacement also corrects the original's bias on
 *   batched inputs and for broadcast (`[1]`) biases (see `fixedFusedMatMul`).
 * - Batched products (batch > 1 after broadcasting) run as batch-1 products: the original kernel
 *   is fast (XNNPACK) only for one batch and transpose flags off, and falls back to a naive loop
 *   otherwise. When `b` has no batch, the batches are folded into the rows (one
 *   product); otherwise, when each product is large enough, one product per batch element runs on
 *   zero-copy views of the operands (see {@link planProduct} for the rule and its measurements).
 *   Smaller batched
 *   products stay on the original's loop, with their transpose flags (faster there than explicit
 *   transposes).
 *
 * Registration is idempotent and shared through the global kernel registry, so importing this
 * module twice (or two copies of it) changes nothing, and it works whether or not the wasm backend
 * has been initialised yet.
 *
 * In Node, `./wasm-native-matmul.ts` can put OpenBLAS matmul kernels in place of these fixes
 * ({@link setNativeMatMulConfigs}); they keep the fixes as their fallback and share
 * {@link addBiasAndActivate} and {@link plannedProduct} with them (and `./matmul-plan.ts`).
 * {@link withWasmMatMul} runs code with any of the three sets (`original`, `fixed`, `native`).
 *
 * Files: the matmul replacements are in `./wasm-matmul.ts`, the calls into the wasm backend's own
 * kernels in `./wasm-kernel-calls.ts`; this one holds the other fixes and the registration.
 */
// Registers the wasm backend and its kernels; the originals must be registered before they can be
// wrapped, and ES module evaluation order guarantees that this import runs first.
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { CPU_ONLY_FUSED_KERNELS, FUSED_KERNELS, fusedKernelConfigs } from './fused-kernels.js';
import { checkSegmentSum, segmentSum } from './segment-sum.js';
import { broadcastStrides, sizeOf } from './matmul-plan.js';
import { WASM, WasmKernelError, type KernelArgs } from './wasm-kernel-calls.js';
import { MATMUL_KERNELS, fixedMatMulConfig } from './wasm-matmul.js';
import {
  Equal,
  GatherV2,
  Identity,
  backend_util,
  _FusedMatMul,
  Transpose,
  UnsortedSegmentSum,
  engine,
  getKernel,
  registerKernel,
  unregisterKernel,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
} from '@tensorflow/tfjs-core';

/**
 * Which `BatchMatMul` and `_FusedMatMul` the wasm backend runs: tfjs's own (`original`), this
 * module's replacements (`fixed`), or OpenBLAS through `@bytelatent/native-sgemm` (`native`, see
 * `./wasm-native-matmul.ts`; only once enabled there).
 */
export type WasmMatMulKind = 'original' | 'fixed' | 'native';

interface FixState {
  /** The wasm backend's own kernels, by kernel name, captured before they were replaced. */
  readonly originals: Map<string, KernelConfig>;
  /** The replacements, by kernel name. */
  readonly patched: Map<string, KernelConfig>;
  /** Every config registered by this module, to recognise them in the registry. */
  readonly ours: WeakSet<KernelConfig>;
  /**
   * The native (OpenBLAS) replacements while they are enabled (`./wasm-native-matmul.ts`), by
   * kernel name; they then take the place of `patched` in the registry.
   */
  native: Map<string, KernelConfig> | undefined;
}

// tfjs-core keeps its kernel registry on the global object, so two copies of this module (the
// `src` and `dist` builds, or two bundles) see the same registry. The state that pairs each
// replacement with its original lives there too; a per-module variable would make the second copy
// capture the first copy's replacement as "the original" and wrap it again.
const STATE_KEY = Symbol.for('@bytelatent/nn/wasm-kernel-fixes');

function fixState(): FixState {
  const holder = globalThis as { [STATE_KEY]?: FixState };
  holder[STATE_KEY] ??= { originals: new Map(), patched: new Map(), ours: new WeakSet(), native: undefined };
  return holder[STATE_KEY];
}

/**
 * `UnsortedSegmentSum` on the wasm heap; the arithmetic and its exact semantics are
 * {@link segmentSum}'s (shared with the cpu backend's replacement in `./cpu-kernels.ts`).
 */
function unsortedSegmentSum(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, segmentIds } = inputs;
  const { numSegments, outShape } = checkSegmentSum(
    x,
    segmentIds,
    attrs?.['numSegments'],
    'wasm',
    (m) => new WasmKernelError('INVALID_ARGUMENT', m),
  );
  const out = backend.makeOutput(outShape, 'float32');
  // makeOutput may grow the wasm memory, which detaches earlier views of the heap: take every view
  // after the last allocation. Nothing below allocates on the wasm heap.
  segmentSum(
    backend.typedArrayFromHeap(out) as Float32Array,
    backend.typedArrayFromHeap(x!),
    backend.typedArrayFromHeap(segmentIds!),
    numSegments,
    x!.dtype !== 'float32',
  );
  return out;
}

const unsortedSegmentSumConfig: KernelConfig = {
  kernelName: UnsortedSegmentSum,
  backendName: WASM,
  kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
};

/**
 * `GatherV2` (batchDims 0) as row copies on the wasm heap. tfjs-backend-wasm's kernel computes
 * every output element's source coordinates one by one, a noticeable share of a small BLT's
 * training step (docs/performance.md §3b); copying contiguous rows is nearly free. Values are copied, never computed, so results are identical.
 * Anything else (batchDims > 0, an empty result) runs the original kernel.
 *
 * Unlike the original, which reads whatever lies outside the table, an index outside
 * `[0, x.shape[axis])` throws, as tfjs-backend-cpu's kernel does.
 */
function fastGatherV2(original: KernelConfig): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { x, indices } = inputs;
    if (x === undefined || indices === undefined) throw new WasmKernelError('INVALID_ARGUMENT', 'GatherV2 needs the inputs x and indices');
    const batchDims = (attrs?.['batchDims'] as number | undefined) ?? 0;
    const rank = x.shape.length;
    const rawAxis = (attrs?.['axis'] as number | undefined) ?? 0;
    const axis = rawAxis < 0 ? rawAxis + rank : rawAxis;
    const outShape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
    if (batchDims !== 0 || axis < 0 || axis >= rank || sizeOf(outShape) === 0) return original.kernelFunc(args);
    const outer = sizeOf(x.shape.slice(0, axis));
    const axisLength = x.shape[axis]!;
    const inner = sizeOf(x.shape.slice(axis + 1));
    const count = sizeOf(indices.shape);
    const ids = backend.typedArrayFromHeap(indices);
    for (let j = 0; j < count; j++) {
      const id = ids[j]!;
      if (!(id >= 0 && id < axisLength && Math.floor(id) === id)) {
        throw new WasmKernelError('INVALID_ARGUMENT', `GatherV2: the index value ${id} is not in [0, ${axisLength - 1}]`);
      }
    }
    const out = backend.makeOutput(outShape, x.dtype);
    // makeOutput may grow the wasm memory and detach earlier views: take them after it.
    const outVals = backend.typedArrayFromHeap(out);
    const xVals = backend.typedArrayFromHeap(x);
    const idVals = backend.typedArrayFromHeap(indices);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < count; j++) {
        const from = (o * axisLength + idVals[j]!) * inner;
        const to = (o * count + j) * inner;
        // A typed-array copy beats a loop on long rows; a loop avoids its per-call cost on short ones.
        if (inner >= 64) outVals.set(xVals.subarray(from, from + inner), to);
        else for (let k = 0; k < inner; k++) outVals[to + k] = xVals[from + k]!;
      }
    }
    return out;
  };
}

/**
 * `Equal` as a JavaScript loop over the wasm heap. The original is about twenty times slower per element
 * when one side broadcasts, which `tf.max`'s gradient does (`x == max(x)`) for the encoder's
 * max-pooling into patches (docs/performance.md §3b). Same results: IEEE
 * equality of the stored values (NaN equals nothing). String and complex inputs run the original.
 */
function fastEqual(original: KernelConfig): KernelFunc {
  return (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const { a, b } = inputs;
    if (a === undefined || b === undefined) throw new WasmKernelError('INVALID_ARGUMENT', 'Equal needs the inputs a and b');
    const numeric = (t: TensorInfo) => t.dtype === 'float32' || t.dtype === 'int32' || t.dtype === 'bool';
    if (!numeric(a) || !numeric(b)) return original.kernelFunc(args);
    const outShape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = backend.makeOutput(outShape, 'bool');
    const size = sizeOf(outShape);
    if (size === 0) return out;
    // Views after makeOutput, which may grow the heap.
    const result = backend.typedArrayFromHeap(out);
    const av = backend.typedArrayFromHeap(a);
    const bv = backend.typedArrayFromHeap(b);
    const rank = outShape.length;
    if (rank === 0 || (sizeOf(a.shape) === size && sizeOf(b.shape) === size)) {
      for (let i = 0; i < size; i++) result[i] = av[i] === bv[i] ? 1 : 0;
      return out;
    }
    // An odometer over the outer axes, a strided loop along the last.
    const as = broadcastStrides(outShape, a.shape);
    const bs = broadcastStrides(outShape, b.shape);
    const last = outShape[rank - 1]!;
    const aStep = as[rank - 1]!;
    const bStep = bs[rank - 1]!;
    const counter = new Array<number>(rank).fill(0);
    let ai = 0;
    let bi = 0;
    for (let o = 0; o < size; o += last) {
      for (let j = 0, x = ai, y = bi; j < last; j++, x += aStep, y += bStep) result[o + j] = av[x] === bv[y] ? 1 : 0;
      for (let axis = rank - 2; axis >= 0; axis--) {
        counter[axis]! += 1;
        ai += as[axis]!;
        bi += bs[axis]!;
        if (counter[axis]! < outShape[axis]!) break;
        ai -= as[axis]! * outShape[axis]!;
        bi -= bs[axis]! * outShape[axis]!;
        counter[axis] = 0;
      }
    }
    return out;
  };
}

/**
 * `Identity` (`tf.clone`, and the engine's copy of every tensor a gradient will need) sharing the
 * input's memory with a reference count, as tfjs-backend-cpu's does and wasm's own `Reshape` does,
 * instead of copying it. Tensors are immutable (a variable's `assign` swaps its data, it does not
 * write into it), so sharing is safe; the copies were hundreds of kernels per training step
 * (docs/performance.md §3b). Strings run the original.
 */
function sharingIdentity(original: KernelConfig): KernelFunc {
  return (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const x = inputs['x'];
    if (x === undefined || x.dtype === 'string') return original.kernelFunc(args);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  };
}

function replaceKernel(config: KernelConfig): void {
  if (getKernel(config.kernelName, config.backendName) !== undefined) unregisterKernel(config.kernelName, config.backendName);
  registerKernel(config);
}

/**
 * Registers the wasm kernel fixes (see the module documentation). Importing this module already
 * calls it; calling it again, from this or another copy of the module, changes nothing.
 *
 * @throws {WasmKernelError} `KERNEL_MISSING` when the wasm backend lacks `BatchMatMul`,
 *   `_FusedMatMul` or `Transpose` (an `@tensorflow/tfjs-backend-wasm` other than 4.22)
 */
export function registerWasmKernelFixes(): void {
  const state = fixState();
  if (getKernel(Transpose, WASM) === undefined) {
    throw new WasmKernelError(
      'KERNEL_MISSING',
      "the wasm backend has no 'Transpose' kernel; is @tensorflow/tfjs-backend-wasm 4.22 installed?",
    );
  }
  const added: KernelConfig[] = [];
  for (const name of MATMUL_KERNELS) {
    const current = getKernel(name, WASM);
    if (current === undefined) {
      throw new WasmKernelError(
        'KERNEL_MISSING',
        `the wasm backend has no '${name}' kernel; is @tensorflow/tfjs-backend-wasm 4.22 installed?`,
      );
    }
    if (state.ours.has(current)) continue;
    // Captured before unregistering: the registry is the only other reference to the original.
    state.originals.set(name, current);
    const patched = fixedMatMulConfig(current);
    state.ours.add(patched);
    state.patched.set(name, patched);
    replaceKernel(patched);
    added.push(patched);
  }
  for (const [name, faster] of [
    [GatherV2, fastGatherV2],
    [Equal, fastEqual],
    [Identity, sharingIdentity],
  ] as const) {
    const current = getKernel(name, WASM);
    if (current === undefined || state.ours.has(current)) continue;
    // The original's setupFunc binds its wasm function, which the fallback paths call.
    const fast: KernelConfig = { ...current, kernelFunc: faster(current) };
    state.ours.add(fast);
    replaceKernel(fast);
    added.push(fast);
  }
  if (getKernel(FUSED_KERNELS.rmsNorm, WASM) === undefined) {
    for (const config of fusedKernelConfigs<BackendWasm>(WASM, {
      allocate: (backend, shape) => backend.makeOutput(shape, 'float32'),
      values: (backend, tensor) => backend.typedArrayFromHeap(tensor) as Float32Array,
    })) {
      if (CPU_ONLY_FUSED_KERNELS.includes(config.kernelName)) continue;
      state.ours.add(config);
      registerKernel(config);
    }
  }
  // A native UnsortedSegmentSum (a later tfjs-backend-wasm) is left alone.
  if (getKernel(UnsortedSegmentSum, WASM) === undefined) {
    state.ours.add(unsortedSegmentSumConfig);
    registerKernel(unsortedSegmentSumConfig);
  }
  // The engine runs setupFuncs at setBackend time; if the wasm backend is already initialised, run
  // them now so the replacements never depend on an earlier setup having happened. (Not
  // `tf.findBackend`: it would start initialising a backend that is not.)
  const backend = engine().registry[WASM];
  if (backend !== undefined) {
    for (const config of added) config.setupFunc?.(backend);
  }
}

/** The matmul configs of `kind`, by kernel name (the native ones only while enabled). */
function configsOf(state: FixState, kind: WasmMatMulKind): Map<string, KernelConfig> | undefined {
  return kind === 'original' ? state.originals : kind === 'fixed' ? state.patched : state.native;
}

/**
 * Which matmul kernels the wasm backend runs by default now: `native` while the OpenBLAS kernels
 * are enabled (see `initBackend`'s `nativeMatMul` option), else `fixed`.
 */
export function activeWasmMatMul(): Exclude<WasmMatMulKind, 'original'> {
  registerWasmKernelFixes();
  return fixState().native !== undefined ? 'native' : 'fixed';
}

/** The fixed matmul configs by kernel name, registering the fixes first. For `./wasm-native-matmul.ts`. */
export function fixedMatMulConfigs(): ReadonlyMap<string, KernelConfig> {
  registerWasmKernelFixes();
  return fixState().patched;
}

/**
 * Makes `configs` (the native replacements, by kernel name) the registered wasm matmul kernels, or
 * the fixed ones again when `undefined`. For `./wasm-native-matmul.ts`.
 */
export function setNativeMatMulConfigs(configs: Map<string, KernelConfig> | undefined): void {
  registerWasmKernelFixes();
  const state = fixState();
  if (configs !== undefined) for (const config of configs.values()) state.ours.add(config);
  state.native = configs;
  for (const name of MATMUL_KERNELS) {
    const config = (configs ?? state.patched).get(name);
    if (config !== undefined) replaceKernel(config);
  }
}

/**
 * Runs `fn` with the given matmul kernels registered for wasm (see {@link WasmMatMulKind}), then
 * registers again the ones registered before, even if `fn` throws. For benchmarks and tests that
 * compare implementations in one process. `fn` must be synchronous: the swap ends when it returns.
 *
 * @param kind - `original` (tfjs's own), `fixed` (this module's), `native` (OpenBLAS, only while
 *   enabled)
 * @param fn - synchronous code to run with those kernels
 * @returns what `fn` returns
 * @throws {WasmKernelError} `INVALID_ARGUMENT` for `native` while it is not enabled, for an unknown
 *   kind, or if `fn` returns a promise (the kernels are restored before it settles, so it would not
 *   measure what it seems to)
 * @throws whatever `fn` throws
 */
export function withWasmMatMul<T>(kind: WasmMatMulKind, fn: () => T): T {
  registerWasmKernelFixes();
  const state = fixState();
  if (kind !== 'original' && kind !== 'fixed' && kind !== 'native') {
    throw new WasmKernelError(
      'INVALID_ARGUMENT',
      `withWasmMatMul: kind must be 'original', 'fixed' or 'native', got ${JSON.stringify(kind)}`,
    );
  }
  const wanted = configsOf(state, kind);
  if (wanted === undefined) {
    throw new WasmKernelError(
      'INVALID_ARGUMENT',
      "withWasmMatMul: the native matmul kernels are not enabled (initBackend({ backend: 'wasm' }) enables them when @bytelatent/native-sgemm loads)",
    );
  }
  // Restored as found, so that nested calls unwind correctly.
  const before = MATMUL_KERNELS.map((name) => getKernel(name, WASM));
  for (const name of MATMUL_KERNELS) {
    const config = wanted.get(name);
    if (config !== undefined) replaceKernel(config);
  }
  let result: T;
  try {
    result = fn();
  } finally {
    for (const config of before) if (config !== undefined) replaceKernel(config);
  }
  if (typeof (result as { then?: unknown } | null)?.then === 'function') {
    throw new WasmKernelError('INVALID_ARGUMENT', 'withWasmMatMul: fn must be synchronous, it returned a promise');
  }
  return result;
}

/**
 * Runs `fn` with the wasm backend's own `BatchMatMul` and `_FusedMatMul` registered instead of the
 * fixes (or the native kernels), then restores what was registered, even if `fn` throws. For
 * benchmarks and tests that compare the two. `fn` must be synchronous: the swap ends when it
 * returns. Same as `withWasmMatMul('original', fn)`.
 *
 * @param fn - synchronous code to run with the original kernels
 * @returns what `fn` returns
 * @throws {WasmKernelError} `INVALID_ARGUMENT` if `fn` returns a promise (the fixes are restored
 *   before it settles, so it would not measure what it seems to)
 * @throws whatever `fn` throws
 */
export function withOriginalWasmKernels<T>(fn: () => T): T {
  return withWasmMatMul('original', fn);
}

registerWasmKernelFixes();

export { WasmKernelError, type KernelArgs, type WasmKernelErrorCode } from './wasm-kernel-calls.js';
