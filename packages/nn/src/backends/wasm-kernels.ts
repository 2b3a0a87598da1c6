/**
 * Kernel fixes for the TensorFlow.js `wasm` backend (4.22). Importing this module registers them:
 *
 * - `UnsortedSegmentSum`, which the wasm backend lacks. `tf.gather`'s gradient is an unsorted
 *   segment sum, so without it every embedding lookup fails to train on wasm.
 * - `GatherV2` as contiguous row copies (see {@link fastGatherV2}): the original took ~1 ms per
 *   embedding lookup, now microseconds.
 * - `Equal` as a JavaScript loop (see {@link fastEqual}): 14 ms → well under 1 ms when one side
 *   broadcasts, as in `tf.max`'s gradient.
 * - `Identity` sharing memory instead of copying it (see {@link sharingIdentity}).
 * - The fused RMSNorm kernels of `./fused-kernels.ts`.
 * - `BatchMatMul` and `_FusedMatMul` replacements that, when `transposeA` or `transposeB` is set,
 *   transpose the operand explicitly (with the wasm `Transpose` kernel) and run the original kernel
 *   without the flag (except for small batched products, see below). The original's transposed
 *   path is about 10x slower than a transpose followed by a plain matmul, and backprop through a
 *   matmul uses exactly those flags (the gradient of `a @ b` is `dy @ bᵀ` and `aᵀ @ dy`): on
 *   [512, 512] the fixes measured 30x faster for `aᵀ @ b` and 11x for `a @ bᵀ` (tools/bench
 *   `wasm-matmul`), and a small MLP train step went from ~700 ms to ~120 ms. The `_FusedMatMul` replacement also corrects the original's bias on
 *   batched inputs and for broadcast (`[1]`) biases (see `fixedFusedMatMul`).
 * - Batched products (batch > 1 after broadcasting) run as batch-1 products: the original kernel
 *   is fast (XNNPACK) only for one batch and transpose flags off, and falls back to a naive loop
 *   otherwise (~1.5 GFLOP/s). When `b` has no batch, the batches are folded into the rows (one
 *   product); otherwise, when each product is large enough, one product per batch element runs on
 *   zero-copy views of the operands (see {@link planProduct} for the rule and its measurements).
 *   Attention's `[4, 256, 32] x [4, 767, 32]ᵀ` went from ~30 ms to ~3 ms. Smaller batched
 *   products stay on the original's loop, with their transpose flags (faster there than explicit
 *   transposes).
 *
 * Registration is idempotent and shared through the global kernel registry, so importing this
 * module twice (or two copies of it) changes nothing, and it works whether or not the wasm backend
 * has been initialised yet.
 *
 * In Node, `./wasm-native-matmul.ts` can put OpenBLAS matmul kernels in place of these fixes
 * ({@link setNativeMatMulConfigs}); they keep the fixes as their fallback and share
 * {@link addBiasAndActivate} and {@link planProduct} with them (and `./matmul-plan.ts`).
 * {@link withWasmMatMul} runs code with any of the three sets (`original`, `fixed`, `native`).
 */
// Registers the wasm backend and its kernels; the originals must be registered before they can be
// wrapped, and ES module evaluation order guarantees that this import runs first.
import { CodedError } from '@bytelatent/bytes';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { CPU_ONLY_FUSED_KERNELS, FUSED_KERNELS, fusedKernelConfigs } from './fused-kernels.js';
import { checkSegmentSum, segmentSum } from './segment-sum.js';
import { type ProductDims, broadcastIndices, broadcastStrides, productDims, sizeOf } from './matmul-plan.js';
import {
  BatchMatMul,
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
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';

const WASM = 'wasm';

/** The wasm kernels this module replaces. */
export const MATMUL_KERNELS = [BatchMatMul, _FusedMatMul] as const;

/**
 * Which `BatchMatMul` and `_FusedMatMul` the wasm backend runs: tfjs's own (`original`), this
 * module's replacements (`fixed`), or OpenBLAS through `@bytelatent/native-sgemm` (`native`, see
 * `./wasm-native-matmul.ts`; only once enabled there).
 */
export type WasmMatMulKind = 'original' | 'fixed' | 'native';

/** Machine-readable reason of a {@link WasmKernelError}. */
export type WasmKernelErrorCode = 'KERNEL_MISSING' | 'INVALID_ARGUMENT';

/**
 * Errors thrown by the wasm kernel fixes: `KERNEL_MISSING` when the installed
 * `@tensorflow/tfjs-backend-wasm` lacks a kernel these fixes wrap (a version other than 4.22),
 * `INVALID_ARGUMENT` for inputs a kernel cannot handle.
 */
export class WasmKernelError extends CodedError<WasmKernelErrorCode> {
  override readonly name = 'WasmKernelError';
}

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

/** The arguments tfjs passes to a wasm kernel function. */
export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: NamedAttrMap;
}

/** Product of a shape's dimensions (1 for `[]`). */

/** The kernel of `name` registered for wasm now (looked up per call, so later replacements count). */
function wasmKernel(name: string): KernelConfig {
  const kernel = getKernel(name, WASM);
  if (kernel === undefined) throw new WasmKernelError('KERNEL_MISSING', `the wasm backend has no '${name}' kernel`);
  return kernel;
}

/** Runs a wasm kernel that has exactly one output. */
function runWasm(name: string, backend: BackendWasm, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
  const out = wasmKernel(name).kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new WasmKernelError('KERNEL_MISSING', `the wasm '${name}' kernel returned several tensors`);
  return out;
}

/**
 * A new wasm tensor holding `x` with its last two axes swapped, made by the wasm `Transpose` kernel.
 * The caller owns it and must release it with `backend.disposeData`.
 */
function transposeLastTwo(x: TensorInfo, backend: BackendWasm): TensorInfo {
  const rank = x.shape.length;
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return runWasm(Transpose, backend, { x }, { perm });
}

/** The same data under another shape (the wasm kernels take shapes from the TensorInfo they get). */
function withShape(x: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/**
 * The operands `a` and `b` if the replacements handle them: float32 and of rank >= 2. Anything
 * else goes to the original unchanged, so its validation and error messages stay exactly tfjs's.
 */
export function floatOperands(inputs: NamedTensorInfoMap): { a: TensorInfo; b: TensorInfo } | undefined {
  const { a, b } = inputs;
  if (a === undefined || b === undefined || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  return a.shape.length >= 2 && b.shape.length >= 2 ? { a, b } : undefined;
}

/**
 * Runs `body` with `a` and `b` transposed in their last two axes where the flags say so, then frees
 * the transposed copies (also when `body` throws).
 */
function withExplicitTransposes<T>(
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  backend: BackendWasm,
  body: (a: TensorInfo, b: TensorInfo) => T,
): T {
  const temporaries: TensorInfo[] = [];
  try {
    const a2 = transposeA ? transposeLastTwo(a, backend) : a;
    if (transposeA) temporaries.push(a2);
    const b2 = transposeB ? transposeLastTwo(b, backend) : b;
    if (transposeB) temporaries.push(b2);
    return body(a2, b2);
  } finally {
    for (const t of temporaries) backend.disposeData(t.dataId);
  }
}

/**
 * Smallest product per batch element that {@link planProduct} runs one product at a time: at
 * least `LOOP_MIN_ROWS` rows and `LOOP_MIN_MACS` multiply-adds (`rows · inner · columns`).
 *
 * Measured on tfjs-backend-wasm 4.22 (Node 20, SIMD, one thread): each batch-1 product costs a
 * fixed ~5 µs plus XNNPACK's packing of its `[inner, columns]` operand (~4 ns an element), against
 * ~1.25 ns a multiply-add for the original's batched loop, so the loop pays off from some size and
 * with enough rows to amortise the packing. Original time / loop time, batch 8 (best of two
 * medians), rows x inner x columns: with 4 rows 0.3 (4x4x8) to 1.1 (4x64x256), never better;
 * 8x8x32 0.85, 8x16x16 0.74, 8x32x32 1.2, 8x64x64 1.7, 8x64x256 2.1; 16x16x16 1.2, 16x8x32 1.4,
 * 16x32x32 2.1; 32x4x8 0.7, 32x8x32 2.3, 32x32x32 3.6; 256x4x8 3.1, 64x64x64 7.4, 256x32x767 11.
 * A first pass over batches 2 to 32 agreed (8x64x8 0.8-1.1, 64x64x1 0.7-1.0, 16x16x16 1.0-1.7,
 * 2x512x512 0.6-1.0, 1x64x256 0.3), hence the margin: below 8192 the gain is small or negative.
 */
const LOOP_MIN_ROWS = 8;
const LOOP_MIN_MACS = 8192;

/** How a product of plain (untransposed) operands runs; see {@link planProduct}. */
export interface ProductPlan extends ProductDims {
  /**
   * `original`: the original kernel on the whole operands; `fold`: `b` has no batch, so the
   * batches of `a` are folded into its rows, one batch-1 product; `loop`: one batch-1 product per
   * batch element (of the broadcast batch shape), on views of the operands.
   */
  readonly strategy: 'original' | 'fold' | 'loop';
}

/**
 * The plan for `a · b` with the transposes applied first, or `undefined` if the shapes do not match
 * (the original kernel then reports the error). The original kernel is fast only for one batch
 * without transpose flags (XNNPACK); for more batches it runs a naive loop (~1.5 GFLOP/s), so:
 *
 * - `b` without batch (a `[batch, rows, inner]` input times a weight matrix): always `fold`, it was
 *   1.8x to 29x faster than the original in every measured shape;
 * - otherwise `loop` when each product has at least {@link LOOP_MIN_ROWS} rows and
 *   {@link LOOP_MIN_MACS} multiply-adds, else the original;
 * - batch shapes the original gets wrong (it indexes batches modulo each operand's batch count,
 *   which is wrong for e.g. `[2, 1]` against `[1, 3]`) always `loop`.
 */
export function planProduct(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): ProductPlan | undefined {
  const plan = productDims(aShape, bShape, transposeA, transposeB);
  if (plan === undefined) return undefined;
  const { batch, rows, inner, columns, batchA, batchB } = plan;
  if (batch <= 1 || rows * inner * columns === 0) return { ...plan, strategy: 'original' };
  if (batchB === 1) return { ...plan, strategy: 'fold' };
  const originalHandles = batchA === 1 || (batchA === batch && batchB === batch);
  const large = rows >= LOOP_MIN_ROWS && rows * inner * columns >= LOOP_MIN_MACS;
  return { ...plan, strategy: !originalHandles || large ? 'loop' : 'original' };
}

/**
 * `true` if the plan leaves a batched product to the original's naive loop. That loop reads the
 * transpose flags itself, as fast as or faster than after explicit transposes (measured with
 * batches of 8 and 32 on products of 4x4x8 to 4x64x256: equal for `aᵀ·b`, up to 1.3x faster for
 * `a·bᵀ` and 1.8x for `aᵀ·bᵀ`), so the operands go to it unchanged.
 */
function originalTakesFlags(plan: ProductPlan): boolean {
  return plan.strategy === 'original' && plan.batch > 1;
}

/**
 * A wasm tensor of `shape` over the float32 elements of `parent` from `offset` on, sharing its
 * memory (no copy). Release it with {@link dropView}, never `backend.disposeData` (which would free
 * the parent's memory from the middle).
 */
function makeView(backend: BackendWasm, parent: TensorInfo, offset: number, shape: number[]): TensorInfo {
  return backend.makeOutput(shape, 'float32', backend.getMemoryOffset(parent.dataId) + offset * Float32Array.BYTES_PER_ELEMENT);
}

/** Unregisters a view made by {@link makeView} (the wasm side drops its cached XNNPACK operators too). */
function dropView(backend: BackendWasm, view: TensorInfo): void {
  const data = backend.dataIdMap.get(view.dataId);
  if (data === undefined) return;
  backend.wasm.tfjs.disposeData(data.id);
  backend.dataIdMap.delete(view.dataId);
}

/**
 * Runs a product planned by {@link planProduct} on plain operands `a` `[...batchA, rows, inner]` and
 * `b` `[...batchB, inner, columns]`; `run` computes one product with the original kernel (for
 * `original`, on the whole operands; otherwise on batch-1 operands of rank 3). Returns a new wasm
 * tensor `[...outBatch, rows, columns]` owned by the caller.
 */
function runProduct(
  plan: ProductPlan,
  a: TensorInfo,
  b: TensorInfo,
  backend: BackendWasm,
  run: (a: TensorInfo, b: TensorInfo) => TensorInfo,
): TensorInfo {
  const { outBatch, rows, inner, columns } = plan;
  const outShape = [...outBatch, rows, columns];
  if (plan.strategy === 'original') return run(a, b);
  if (plan.strategy === 'fold') {
    return withShape(run(withShape(a, [1, plan.batchA * rows, inner]), withShape(b, [1, inner, columns])), outShape);
  }
  const indicesA = broadcastIndices(outBatch, a.shape.slice(0, -2));
  const indicesB = broadcastIndices(outBatch, b.shape.slice(0, -2));
  const out = backend.makeOutput(outShape, 'float32');
  // One view per distinct operand batch: a broadcast `b` keeps its id, so XNNPACK's operator
  // (with the packed `b`) is built once and reused from its cache.
  const viewsA = new Map<number, TensorInfo>();
  const viewsB = new Map<number, TensorInfo>();
  const viewOf = (views: Map<number, TensorInfo>, parent: TensorInfo, index: number, r: number, c: number) => {
    let view = views.get(index);
    if (view === undefined) {
      view = makeView(backend, parent, index * r * c, [1, r, c]);
      views.set(index, view);
    }
    return view;
  };
  try {
    const size = rows * columns;
    for (let i = 0; i < indicesA.length; i++) {
      const part = run(viewOf(viewsA, a, indicesA[i]!, rows, inner), viewOf(viewsB, b, indicesB[i]!, inner, columns));
      try {
        // Views of the heap taken after the kernel ran: an allocation may have grown (detached) it.
        (backend.typedArrayFromHeap(out) as Float32Array).set(backend.typedArrayFromHeap(part) as Float32Array, i * size);
      } finally {
        backend.disposeData(part.dataId);
      }
    }
  } catch (error) {
    backend.disposeData(out.dataId);
    throw error;
  } finally {
    for (const view of [...viewsA.values(), ...viewsB.values()]) dropView(backend, view);
  }
  return out;
}

/**
 * `BatchMatMul` replacement: transposed operands are materialised, then the product runs as
 * planned by {@link planProduct} with the original kernel; small batched products go to the
 * original unchanged (see {@link originalTakesFlags}).
 */
function fixedBatchMatMul(original: KernelConfig): KernelFunc {
  return ((args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const operands = floatOperands(inputs);
    const transposeA = attrs?.['transposeA'] === true;
    const transposeB = attrs?.['transposeB'] === true;
    if (operands === undefined) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const { a, b } = operands;
    const plan = planProduct(a.shape, b.shape, transposeA, transposeB);
    if (plan === undefined || originalTakesFlags(plan) || (!transposeA && !transposeB && plan.strategy === 'original')) {
      return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    }
    const plainAttrs: NamedAttrMap = { ...attrs, transposeA: false, transposeB: false };
    return withExplicitTransposes(a, b, transposeA, transposeB, backend, (a2, b2) =>
      runProduct(
        plan,
        a2,
        b2,
        backend,
        (x, y) => original.kernelFunc({ inputs: { ...inputs, a: x, b: y }, backend, attrs: plainAttrs }) as TensorInfo,
      ),
    );
  }) as KernelFunc;
}

/** The wasm kernel computing each `_FusedMatMul` activation, with its extra input or attribute. */
function runActivation(
  activation: string,
  x: TensorInfo,
  backend: BackendWasm,
  prelu: TensorInfo | undefined,
  leakyreluAlpha: number,
): TensorInfo {
  switch (activation) {
    case 'relu':
      return runWasm('Relu', backend, { x });
    case 'relu6':
      return runWasm('Relu6', backend, { x });
    case 'elu':
      return runWasm('Elu', backend, { x });
    case 'sigmoid':
      return runWasm('Sigmoid', backend, { x });
    case 'leakyrelu':
      return runWasm('LeakyRelu', backend, { x }, { alpha: leakyreluAlpha });
    case 'prelu':
      if (prelu === undefined)
        throw new WasmKernelError('INVALID_ARGUMENT', '_FusedMatMul: prelu activation without preluActivationWeights');
      return runWasm('Prelu', backend, { x, alpha: prelu });
    default:
      throw new WasmKernelError('INVALID_ARGUMENT', `_FusedMatMul: activation '${activation}' is not supported on wasm`);
  }
}

/**
 * `_FusedMatMul` replacement. Besides the explicit transposes it works around two bias bugs of
 * the original (tfjs-backend-wasm 4.22), measured against cpu with errors of order 1:
 *
 * - with more than one batch, only the first row of each batch gets the right bias;
 * - a bias that must broadcast (shape `[1]`) is read as if it had one value per column.
 *
 * The original is right for a bias of shape `[columns]` on a single batch without transpose flags,
 * and for no bias. (With `transposeA` and a bias it is wrong even on one batch, errors of order 1;
 * the explicit transposes below never take that path.) So:
 *
 * - a `[columns]` bias or none on batches of `a` with a batch-less `b` (a `Linear` layer on
 *   `[batch, rows, in]` input, the common case): the batches are folded into the rows, one
 *   `[1, batch*rows, in]` product, which is correct and faster than a product per batch;
 * - any other bias with several batches, any bias of another shape (including the `[rows,
 *   columns]` bias that tfjs-core accepts and the original rejects), and no bias with batched
 *   operands large enough for {@link planProduct} to loop: the product runs without bias and
 *   activation (as planned by {@link planProduct}), then the bias (wasm `Add`, broadcasting) and the
 *   activation (its own wasm kernel) follow;
 * - no bias with small batched operands: the original, transpose flags included (see
 *   {@link originalTakesFlags}).
 */
function fixedFusedMatMul(original: KernelConfig): KernelFunc {
  return ((args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { bias, preluActivationWeights } = inputs;
    const operands = floatOperands(inputs);
    const transposeA = attrs?.['transposeA'] === true;
    const transposeB = attrs?.['transposeB'] === true;
    if (operands === undefined) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const { a, b } = operands;
    const plan = planProduct(a.shape, b.shape, transposeA, transposeB);
    if (plan === undefined) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const { columns } = plan;
    const columnBias = bias !== undefined && bias.shape.length === 1 && bias.shape[0] === columns;
    const fusable = bias === undefined || columnBias;
    const batched = plan.batch > 1;
    const mode: 'fused' | 'fold' | 'separate' = !batched
      ? fusable
        ? 'fused'
        : 'separate'
      : fusable && plan.batchB === 1
        ? 'fold'
        : bias === undefined && plan.strategy === 'original'
          ? 'fused'
          : 'separate';
    // A batched 'fused' is the original's naive loop, which takes the transpose flags itself.
    const takesFlags = originalTakesFlags(plan);
    if (mode === 'fused' && (takesFlags || (!transposeA && !transposeB))) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const plainAttrs: NamedAttrMap = takesFlags ? { ...attrs } : { ...attrs, transposeA: false, transposeB: false };

    return withExplicitTransposes(
      a,
      b,
      transposeA && !takesFlags,
      transposeB && !takesFlags,
      backend,
      (a2, b2): TensorInfo | TensorInfo[] => {
        if (mode === 'fused') return original.kernelFunc({ inputs: { ...inputs, a: a2, b: b2 }, backend, attrs: plainAttrs });
        if (mode === 'fold') {
          const { rows, inner, batchA, outBatch } = plan;
          const out = original.kernelFunc({
            inputs: { ...inputs, a: withShape(a2, [1, batchA * rows, inner]), b: withShape(b2, [1, inner, columns]) },
            backend,
            attrs: plainAttrs,
          }) as TensorInfo;
          return withShape(out, [...outBatch, rows, columns]);
        }
        const linearAttrs: NamedAttrMap = { ...plainAttrs, activation: 'linear' };
        const product = runProduct(
          plan,
          a2,
          b2,
          backend,
          (x, y) => original.kernelFunc({ inputs: { a: x, b: y }, backend, attrs: linearAttrs }) as TensorInfo,
        );
        return addBiasAndActivate(product, bias, preluActivationWeights, attrs, backend);
      },
    );
  }) as KernelFunc;
}

/**
 * The rest of a `_FusedMatMul` after its product: `product + bias` (wasm `Add`, so any bias shape
 * that broadcasts works) and then the `activation` attribute (its own wasm kernel, with
 * `preluActivationWeights` or the `leakyreluAlpha` attribute). Takes ownership of `product`: it is
 * returned as is when there is neither bias nor activation, else freed (also when a kernel throws).
 *
 * @param product - a wasm tensor owned by the caller until this call
 * @returns a new wasm tensor owned by the caller
 * @throws {WasmKernelError} `INVALID_ARGUMENT` for an unknown activation, or prelu without weights
 */
export function addBiasAndActivate(
  product: TensorInfo,
  bias: TensorInfo | undefined,
  preluActivationWeights: TensorInfo | undefined,
  attrs: NamedAttrMap | undefined,
  backend: BackendWasm,
): TensorInfo {
  let biased = product;
  if (bias !== undefined) {
    try {
      biased = runWasm('Add', backend, { a: product, b: bias });
    } finally {
      backend.disposeData(product.dataId);
    }
  }
  const activation = typeof attrs?.['activation'] === 'string' ? attrs['activation'] : 'linear';
  if (activation === 'linear') return biased;
  try {
    const leakyreluAlpha = typeof attrs?.['leakyreluAlpha'] === 'number' ? attrs['leakyreluAlpha'] : 0;
    return runActivation(activation, biased, backend, preluActivationWeights, leakyreluAlpha);
  } finally {
    backend.disposeData(biased.dataId);
  }
}

/** The replacement config of a wasm matmul kernel. */
function fixedMatMulConfig(original: KernelConfig): KernelConfig {
  const kernelFunc = original.kernelName === _FusedMatMul ? fixedFusedMatMul(original) : fixedBatchMatMul(original);
  // The original's setupFunc binds its wasm entry point (cwrap) into a module variable; the engine
  // calls the registered config's setupFunc on every setBackend('wasm'), so the replacement must
  // carry it or the original kernel would run unbound.
  const config: KernelConfig = { kernelName: original.kernelName, backendName: WASM, kernelFunc };
  if (original.setupFunc !== undefined) config.setupFunc = original.setupFunc;
  if (original.disposeFunc !== undefined) config.disposeFunc = original.disposeFunc;
  return config;
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
 * every output element's source coordinates one by one: gathering 513 rows of a [1000, 32]
 * embedding took 0.7-1 ms (7 % of a tiny BLT training step, 8.5 % of a 10M one); copying
 * contiguous rows takes microseconds. Values are copied, never computed, so results are identical.
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
 * `Equal` as a JavaScript loop over the wasm heap. The original takes ~8 ns per element on equal
 * shapes and ~170 when one side broadcasts, which `tf.max`'s gradient does (`x == max(x)`): 10 ms
 * of a 10M BLT training step, for the encoder's max-pooling into patches. Same results: IEEE
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
 * write into it), so sharing is safe; the copies were 829 kernels and ~20 ms of a 10M BLT training
 * step. Strings run the original.
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
