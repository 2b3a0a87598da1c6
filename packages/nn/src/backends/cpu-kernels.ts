/**
 * Kernel replacements for the TensorFlow.js `cpu` backend (4.22). Importing this module registers
 * them (idempotently, through tfjs's global kernel registry):
 *
 * - `UnsortedSegmentSum` (`tf.gather`'s gradient, so every embedding's), linear in its input; the
 *   backend's own is O(segments × positions × inner) and took 23 of the 28 s of a tiny BLT
 *   training step (1000-row hash tables). Same results, see {@link segmentSum}.
 *
 * - The fused RMSNorm kernels of `./fused-kernels.ts`.
 *
 * `initBackend` loads this module whenever it selects cpu (`backend: 'cpu'`, or `'auto'` falling
 * back to it), as it loads `./wasm-kernels.ts` for wasm.
 */
import '@tensorflow/tfjs-backend-cpu';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { UnsortedSegmentSum, getKernel, registerKernel, unregisterKernel, type KernelConfig, type KernelFunc, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
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

/** Registers the cpu kernels; importing this module already did, calling again changes nothing. */
export function registerCpuKernels(): void {
  for (const config of [unsortedSegmentSumConfig, ...fusedConfigs]) {
    if (getKernel(config.kernelName, CPU) === config) continue;
    if (getKernel(config.kernelName, CPU) !== undefined) unregisterKernel(config.kernelName, CPU);
    registerKernel(config);
  }
}

registerCpuKernels();
