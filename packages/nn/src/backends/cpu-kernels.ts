/**
 * Kernel replacements for the TensorFlow.js `cpu` backend (4.22). Importing this module registers
 * them (idempotently, through tfjs's global kernel registry):
 *
 * - `UnsortedSegmentSum` (`tf.gather`'s gradient, so every embedding's), linear in its input; the
 *   backend's own is O(segments × positions × inner) and took 23 of the 28 s of a tiny BLT
 *   training step (1000-row hash tables). Same results, see {@link segmentSum}.
 *
 * - The fused kernels of `./fused-kernels.ts` (RMSNorm, RoPE, and the cpu-only masked softmax and
 *   head swap of attention).
 * - `Add` and `Multiply` of two float32 tensors of the same shape as one plain loop: the backend's
 *   own takes a modulo per operand per element (residual adds and SwiGLU products are all of this
 *   kind). Other cases (broadcasting, other dtypes) stay with the backend's kernels.
 *
 * `initBackend` loads this module whenever it selects cpu (`backend: 'cpu'`, or `'auto'` falling
 * back to it), as it loads `./wasm-kernels.ts` for wasm.
 */
import '@tensorflow/tfjs-backend-cpu';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { Add, Multiply, UnsortedSegmentSum, getKernel, registerKernel, unregisterKernel, type KernelConfig, type KernelFunc, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { NnError } from '../layers/errors.js';
import { fusedKernelConfigs } from './fused-kernels.js';
import { checkSegmentSum, segmentSum } from './segment-sum.js';

const CPU = 'cpu';

function unsortedSegmentSum(args: { inputs: NamedTensorInfoMap; backend: MathBackendCPU; attrs?: NamedAttrMap }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, segmentIds } = inputs;
  const { numSegments, outShape } = checkSegmentSum(x, segmentIds, attrs?.['numSegments'], 'cpu', (m) => new NnError('INVALID_ARGUMENT', m));
  const out = new Float32Array(outShape.reduce((p, d) => p * d, 1));
  const values = (id: TensorInfo) => backend.data.get(id.dataId).values as Float32Array | Int32Array | Uint8Array;
  segmentSum(out, values(x!), values(segmentIds!), numSegments, x!.dtype !== 'float32');
  return backend.makeTensorInfo(outShape, 'float32', out);
}

const unsortedSegmentSumConfig: KernelConfig = {
  kernelName: UnsortedSegmentSum,
  backendName: CPU,
  kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
};

const fusedConfigs = fusedKernelConfigs<MathBackendCPU>(CPU, {
  allocate: (backend, shape) => backend.makeTensorInfo(shape, 'float32', new Float32Array(shape.reduce((p, d) => p * d, 1))),
  values: (backend, tensor) => backend.data.get(tensor.dataId).values as Float32Array,
});

/** The backend's own kernels that the same-shape fast paths fall back to (shared across module copies). */
const ORIGINALS_KEY = Symbol.for('@bytelatent/nn:cpu-elementwise-originals');

function sameShapeConfig(name: string, op: (a: Float32Array, b: Float32Array, out: Float32Array) => void): KernelConfig | undefined {
  const holder = globalThis as unknown as Record<symbol, Map<string, KernelConfig> | undefined>;
  const originals = (holder[ORIGINALS_KEY] ??= new Map());
  const current = getKernel(name, CPU);
  if (!originals.has(name)) {
    if (current === undefined) return undefined;
    originals.set(name, current);
  }
  const original = originals.get(name)!;
  const kernelFunc = ((args: { inputs: NamedTensorInfoMap; backend: MathBackendCPU; attrs?: NamedAttrMap }) => {
    const { a, b } = args.inputs;
    if (a !== undefined && b !== undefined && a.dtype === 'float32' && b.dtype === 'float32' && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i])) {
      const av = args.backend.data.get(a.dataId).values;
      const bv = args.backend.data.get(b.dataId).values;
      if (av instanceof Float32Array && bv instanceof Float32Array && av.length === bv.length) {
        const out = new Float32Array(av.length);
        op(av, bv, out);
        return args.backend.makeTensorInfo(a.shape, 'float32', out);
      }
    }
    return original.kernelFunc(args as unknown as Parameters<KernelFunc>[0]);
  }) as unknown as KernelFunc;
  return { ...original, kernelFunc };
}

function addArrays(a: Float32Array, b: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! + b[i]!;
}

function multiplyArrays(a: Float32Array, b: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! * b[i]!;
}

let elementwiseConfigs: KernelConfig[] | undefined;

/** Registers the cpu kernels; importing this module already did, calling again changes nothing. */
export function registerCpuKernels(): void {
  elementwiseConfigs ??= [sameShapeConfig(Add, addArrays), sameShapeConfig(Multiply, multiplyArrays)].filter((c): c is KernelConfig => c !== undefined);
  for (const config of [unsortedSegmentSumConfig, ...fusedConfigs, ...elementwiseConfigs]) {
    if (getKernel(config.kernelName, CPU) === config) continue;
    if (getKernel(config.kernelName, CPU) !== undefined) unregisterKernel(config.kernelName, CPU);
    registerKernel(config);
  }
}

registerCpuKernels();
