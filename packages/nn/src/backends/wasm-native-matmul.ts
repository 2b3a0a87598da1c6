/**
 * `BatchMatMul` and `_FusedMatMul` for the tfjs `wasm` backend computed by OpenBLAS `sgemm` through
 * the optional `@bytelatent/native-sgemm` addon, in Node.
 *
 * The wasm backend runs single-threaded XNNPACK and threads are impossible in Node; OpenBLAS on
 * every core is several times faster (docs/performance.md §2), and a training step spends most of
 * its time in matmuls. The addon works on `Float32Array` views of the wasm heap, so
 * these kernels read the operands and write the result where tfjs keeps them: no copy, and the
 * transposes of backprop (`dy·bᵀ`, `aᵀ·dy`) are BLAS flags instead of materialised transposes.
 * Batched products run in one addon call (strided, or with per-batch offsets for broadcast batch
 * shapes); a batch-less `b` folds the batches of `a` into its rows.
 *
 * `_FusedMatMul` runs its product here, then its bias and activation with the same code as the
 * fixed kernels ({@link addBiasAndActivate}). Anything these kernels do not handle (non-float32
 * operands, shapes that do not match) goes to the fixed kernels of `./wasm-kernels.ts`, so
 * validation and error messages stay tfjs's.
 *
 * This module never imports the addon itself: `initBackend` loads `@bytelatent/native-sgemm` (Node
 * only, optional) and passes it to {@link enableNativeWasmMatMul}. Results differ from XNNPACK's by
 * float32 rounding only (summation order).
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { _FusedMatMul, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { type NativeSgemmLike, sgemmProduct } from './matmul-plan.js';
import type { KernelArgs } from './wasm-kernel-calls.js';
import { activeWasmMatMul, fixedMatMulConfigs, setNativeMatMulConfigs } from './wasm-kernels.js';
import { MATMUL_KERNELS, addBiasAndActivate, plannedProduct, type ProductPlan } from './wasm-matmul.js';

export type { NativeSgemmLike } from './matmul-plan.js';

/** A `Float32Array` over the whole wasm heap, remade only when the memory grew (a new buffer). */
let heapView: Float32Array | undefined;

function heapF32(backend: BackendWasm): Float32Array {
  // HEAPU8 is Emscripten's view of the module memory (typed in @types/emscripten, which this
  // package does not compile against); tfjs-backend-wasm's own typedArrayFromHeap reads it too.
  const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  if (heapView === undefined || heapView.buffer !== buffer) heapView = new Float32Array(buffer);
  return heapView;
}

/** The element offset of a float32 tensor in the wasm heap, or `undefined` if not 4-byte aligned. */
function elementOffset(backend: BackendWasm, x: TensorInfo): number | undefined {
  const bytes = backend.getMemoryOffset(x.dataId);
  return bytes % Float32Array.BYTES_PER_ELEMENT === 0 ? bytes / Float32Array.BYTES_PER_ELEMENT : undefined;
}

/**
 * `op(a) · op(b)` by OpenBLAS into a new wasm tensor `[...outBatch, rows, columns]` owned by the
 * caller, or `undefined` when an operand is not 4-byte aligned in the heap (never seen: tfjs
 * allocates with malloc), for the caller to fall back.
 */
function nativeProduct(
  sgemm: NativeSgemmLike,
  plan: ProductPlan,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  backend: BackendWasm,
): TensorInfo | undefined {
  const aOffset = elementOffset(backend, a);
  const bOffset = elementOffset(backend, b);
  if (aOffset === undefined || bOffset === undefined) return undefined;
  const out = backend.makeOutput([...plan.outBatch, plan.rows, plan.columns], 'float32');
  if (plan.batch * plan.rows * plan.columns === 0) return out;
  try {
    const cOffset = elementOffset(backend, out);
    if (cOffset === undefined) {
      backend.disposeData(out.dataId);
      return undefined;
    }
    // Taken after makeOutput, which may grow (and so replace) the heap's buffer.
    const heap = heapF32(backend);
    sgemmProduct(
      sgemm,
      plan,
      { data: heap, offset: aOffset, shape: a.shape },
      { data: heap, offset: bOffset, shape: b.shape },
      transposeA,
      transposeB,
      { data: heap, offset: cOffset },
    );
  } catch (error) {
    backend.disposeData(out.dataId);
    throw error;
  }
  return out;
}

/** The product of a matmul kernel call by OpenBLAS, or `undefined` to leave the call to `fallback`. */
function tryNative(sgemm: NativeSgemmLike, args: KernelArgs): TensorInfo | undefined {
  const product = plannedProduct(args);
  if (product === undefined) return undefined;
  const { a, b, transposeA, transposeB, plan } = product;
  return nativeProduct(sgemm, plan, a, b, transposeA, transposeB, args.backend);
}

/** The native config of one matmul kernel; `fallback` is the fixed kernel it replaces. */
function nativeConfig(sgemm: NativeSgemmLike, fallback: KernelConfig): KernelConfig {
  const fused = fallback.kernelName === _FusedMatMul;
  const kernelFunc = ((args: KernelArgs) => {
    const product = tryNative(sgemm, args);
    if (product === undefined) return fallback.kernelFunc(args as Parameters<KernelFunc>[0]);
    if (!fused) return product;
    const { bias, preluActivationWeights } = args.inputs;
    return addBiasAndActivate(product, bias, preluActivationWeights, args.attrs, args.backend);
  }) as KernelFunc;
  // The fallback (fixed, then original) kernels need the original's setupFunc to have bound their
  // wasm entry points; the engine runs the registered config's setupFunc at setBackend.
  const config: KernelConfig = { kernelName: fallback.kernelName, backendName: 'wasm', kernelFunc };
  if (fallback.setupFunc !== undefined) config.setupFunc = fallback.setupFunc;
  if (fallback.disposeFunc !== undefined) config.disposeFunc = fallback.disposeFunc;
  return config;
}

/**
 * Registers the OpenBLAS `BatchMatMul` and `_FusedMatMul` for the wasm backend (replacing the
 * fixed kernels of `./wasm-kernels.ts`, which remain their fallback). Calling it again with
 * another addon object replaces the kernels; {@link disableNativeWasmMatMul} undoes it.
 *
 * @param sgemm - the loaded addon (`loadNativeSgemm()` of `@bytelatent/native-sgemm`)
 */
export function enableNativeWasmMatMul(sgemm: NativeSgemmLike): void {
  const fixed = fixedMatMulConfigs();
  const configs = new Map<string, KernelConfig>();
  for (const name of MATMUL_KERNELS) {
    const fallback = fixed.get(name);
    if (fallback !== undefined) configs.set(name, nativeConfig(sgemm, fallback));
  }
  setNativeMatMulConfigs(configs);
}

/** Registers the fixed kernels again in place of the native ones (no-op when they are not enabled). */
export function disableNativeWasmMatMul(): void {
  if (activeWasmMatMul() === 'native') setNativeMatMulConfigs(undefined);
}
