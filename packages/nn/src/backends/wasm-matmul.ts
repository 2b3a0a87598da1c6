/**
 * The wasm backend's `BatchMatMul` and `_FusedMatMul` replacements (see `./wasm-kernels.ts` for why):
 * explicit transposes instead of the original's slow transposed path, batched products as batch-1
 * products on zero-copy views, the fused bias and activation corrected. Registered by
 * `./wasm-kernels.ts`; `./wasm-native-matmul.ts` keeps them as its fallback and shares
 * {@link plannedProduct} (its {@link planProduct}) and {@link addBiasAndActivate}.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  BatchMatMul,
  _FusedMatMul,
  Transpose,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { type ProductDims, broadcastIndices, productDims } from './matmul-plan.js';
import { WASM, WasmKernelError, runWasm, type KernelArgs } from './wasm-kernel-calls.js';

/** The wasm kernels this module replaces. */
export const MATMUL_KERNELS = [BatchMatMul, _FusedMatMul] as const;

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
function floatOperands(inputs: NamedTensorInfoMap): { a: TensorInfo; b: TensorInfo } | undefined {
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
 * Each batch-1 product pays a fixed cost plus XNNPACK's packing of its `[inner, columns]` operand,
 * against a per-multiply-add cost for the original's batched loop, so the loop pays off from some
 * size and with enough rows to amortise the packing; the thresholds come from measurements on
 * tfjs-backend-wasm 4.22 (docs/performance.md §2b).
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
 * without transpose flags (XNNPACK); for more batches it runs a naive loop, so:
 *
 * - `b` without batch (a `[batch, rows, inner]` input times a weight matrix): always `fold`, faster than
 *   the original in every measured shape (`npm run bench -- wasm-matmul`);
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
 * The float operands of a matmul kernel call, its transpose flags and the plan of its product, or
 * `undefined` when the call is not one to plan (other dtypes, operands of rank < 2, shapes that do
 * not multiply): then the original kernel runs it, and reports any error.
 */
export function plannedProduct(
  args: KernelArgs,
): { a: TensorInfo; b: TensorInfo; transposeA: boolean; transposeB: boolean; plan: ProductPlan } | undefined {
  const operands = floatOperands(args.inputs);
  if (operands === undefined) return undefined;
  const transposeA = args.attrs?.['transposeA'] === true;
  const transposeB = args.attrs?.['transposeB'] === true;
  const plan = planProduct(operands.a.shape, operands.b.shape, transposeA, transposeB);
  return plan === undefined ? undefined : { ...operands, transposeA, transposeB, plan };
}

/**
 * `true` if the plan leaves a batched product to the original's naive loop. That loop reads the
 * transpose flags itself, as fast as or faster than after explicit transposes (measured on
 * small batched products), so the operands go to it unchanged.
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
    const product = plannedProduct(args);
    if (product === undefined) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const { a, b, transposeA, transposeB, plan } = product;
    if (originalTakesFlags(plan) || (!transposeA && !transposeB && plan.strategy === 'original')) {
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
    const product = plannedProduct(args);
    if (product === undefined) return original.kernelFunc(args as Parameters<KernelFunc>[0]);
    const { a, b, transposeA, transposeB, plan } = product;
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
export function fixedMatMulConfig(original: KernelConfig): KernelConfig {
  const kernelFunc = original.kernelName === _FusedMatMul ? fixedFusedMatMul(original) : fixedBatchMatMul(original);
  // The original's setupFunc binds its wasm entry point (cwrap) into a module variable; the engine
  // calls the registered config's setupFunc on every setBackend('wasm'), so the replacement must
  // carry it or the original kernel would run unbound.
  const config: KernelConfig = { kernelName: original.kernelName, backendName: WASM, kernelFunc };
  if (original.setupFunc !== undefined) config.setupFunc = original.setupFunc;
  if (original.disposeFunc !== undefined) config.disposeFunc = original.disposeFunc;
  return config;
}
