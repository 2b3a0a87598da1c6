/**
 * `BatchMatMul` (and `_FusedMatMul` without bias or activation) for the tfjs `cpu` backend computed
 * by OpenBLAS `sgemm` through the optional `@bytelatent/native-sgemm` addon, in Node.
 *
 * The cpu backend keeps each tensor in a JavaScript `Float32Array`, so it holds models far past the
 * wasm backend's 4 GiB heap (a released BLT-1B's weights are 6 GB as float32), but its own matmul is
 * a JavaScript loop (under 1 GFLOP/s). These kernels hand the arrays the backend already holds to
 * OpenBLAS: no copy of a weight per product, transposes as BLAS flags, one call for a batch.
 * Anything else (non-float32 operands, shapes that do not match, a fused bias or activation) goes to
 * the backend's own kernel, so validation and error messages stay tfjs's.
 *
 * This module never imports the addon itself: `initBackend` loads `@bytelatent/native-sgemm` (Node
 * only, optional) and passes it to {@link enableNativeCpuMatMul}. Results differ from the cpu
 * backend's by float32 rounding only (summation order).
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { BatchMatMul, _FusedMatMul, getKernel, registerKernel, unregisterKernel, type KernelConfig, type KernelFunc, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { type NativeSgemmLike, productDims, sgemmProduct } from './matmul-plan.js';

const CPU = 'cpu';
const KERNELS = [BatchMatMul, _FusedMatMul] as const;

interface CpuKernelArgs {
  inputs: NamedTensorInfoMap;
  backend: MathBackendCPU;
  attrs?: NamedAttrMap;
}

/** The backend's own kernels, kept when the native ones replace them (shared across module copies). */
const STATE_KEY = Symbol.for('@bytelatent/nn:cpu-native-matmul');
interface NativeCpuState {
  originals: Map<string, KernelConfig>;
  active: boolean;
}
function state(): NativeCpuState {
  const holder = globalThis as unknown as Record<symbol, NativeCpuState | undefined>;
  holder[STATE_KEY] ??= { originals: new Map(), active: false };
  return holder[STATE_KEY];
}

function values(backend: MathBackendCPU, x: TensorInfo): Float32Array | undefined {
  const v = backend.data.get(x.dataId)?.values;
  return v instanceof Float32Array ? v : undefined;
}

/** The product by OpenBLAS as a new cpu tensor, or `undefined` to leave the call to the backend's kernel. */
function tryNative(sgemm: NativeSgemmLike, args: CpuKernelArgs): TensorInfo | undefined {
  const { a, b } = args.inputs;
  if (a === undefined || b === undefined || a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return undefined;
  const transposeA = args.attrs?.['transposeA'] === true;
  const transposeB = args.attrs?.['transposeB'] === true;
  const dims = productDims(a.shape, b.shape, transposeA, transposeB);
  if (dims === undefined) return undefined;
  const aData = values(args.backend, a);
  const bData = values(args.backend, b);
  if (aData === undefined || bData === undefined) return undefined;
  const out = new Float32Array(dims.batch * dims.rows * dims.columns);
  sgemmProduct(sgemm, dims, { data: aData, offset: 0, shape: a.shape }, { data: bData, offset: 0, shape: b.shape }, transposeA, transposeB, { data: out, offset: 0 });
  return args.backend.makeTensorInfo([...dims.outBatch, dims.rows, dims.columns], 'float32', out);
}

function nativeConfig(sgemm: NativeSgemmLike, original: KernelConfig): KernelConfig {
  const fused = original.kernelName === _FusedMatMul;
  const kernelFunc = ((args: CpuKernelArgs) => {
    // A fused bias or activation stays with the backend's kernel (the models here use neither).
    const plain = !fused || (args.inputs['bias'] === undefined && (args.attrs?.['activation'] ?? 'linear') === 'linear');
    const product = plain ? tryNative(sgemm, args) : undefined;
    return product ?? original.kernelFunc(args as unknown as Parameters<KernelFunc>[0]);
  }) as unknown as KernelFunc;
  return { ...original, kernelFunc };
}

/**
 * Registers the OpenBLAS `BatchMatMul` and `_FusedMatMul` for the cpu backend (the backend's own
 * remain their fallback). Calling it again replaces them; {@link disableNativeCpuMatMul} undoes it.
 *
 * @param sgemm - the loaded addon (`loadNativeSgemm()` of `@bytelatent/native-sgemm`)
 */
export function enableNativeCpuMatMul(sgemm: NativeSgemmLike): void {
  const s = state();
  for (const name of KERNELS) {
    const registered = getKernel(name, CPU);
    if (registered === undefined) continue;
    if (!s.originals.has(name)) s.originals.set(name, registered);
    unregisterKernel(name, CPU);
    registerKernel(nativeConfig(sgemm, s.originals.get(name)!));
  }
  s.active = true;
}

/** Registers the backend's own matmul kernels again (no-op when the native ones are not enabled). */
export function disableNativeCpuMatMul(): void {
  const s = state();
  if (!s.active) return;
  for (const [name, original] of s.originals) {
    if (getKernel(name, CPU) !== undefined) unregisterKernel(name, CPU);
    registerKernel(original);
  }
  s.active = false;
}

/** Whether the cpu backend's matmuls run on OpenBLAS now. */
export function nativeCpuMatMulActive(): boolean {
  return state().active;
}
