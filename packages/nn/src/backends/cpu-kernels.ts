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
 *   own takes a modulo per operand per element (residual adds are all of this kind); and `Slice`
 *   as row copies where the backend's walks every element. Other cases (broadcasting, other
 *   dtypes, contiguous slices) stay with the backend's kernels.
 *
 * `initBackend` loads this module whenever it selects cpu (`backend: 'cpu'`, or `'auto'` falling
 * back to it), as it loads `./wasm-kernels.ts` for wasm.
 */
import '@tensorflow/tfjs-backend-cpu';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  Add,
  Multiply,
  Slice,
  type Tensor,
  UnsortedSegmentSum,
  getKernel,
  slice_util,
  registerKernel,
  unregisterKernel,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { NnError } from '../errors.js';
import { poolFloat32 } from './cpu-buffer-pool.js';
import { fusedKernelConfigs } from './fused-kernels.js';
import { checkSegmentSum, segmentSum } from './segment-sum.js';

const CPU = 'cpu';

function unsortedSegmentSum(args: { inputs: NamedTensorInfoMap; backend: MathBackendCPU; attrs?: NamedAttrMap }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, segmentIds } = inputs;
  const { numSegments, outShape } = checkSegmentSum(
    x,
    segmentIds,
    attrs?.['numSegments'],
    'cpu',
    (m) => new NnError('INVALID_ARGUMENT', m),
  );
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
  // Every fused kernel writes all of its outputs: a reused array needs no zeroing.
  allocate: (backend, shape) => backend.makeTensorInfo(shape, 'float32', poolFloat32(shape.reduce((p, d) => p * d, 1))),
  values: (backend, tensor) => backend.data.get(tensor.dataId).values as Float32Array,
});

/** The backend's own kernels that the fast paths fall back to (shared across module copies). */
const ORIGINALS_KEY = Symbol.for('@bytelatent/nn:cpu-elementwise-originals');

type CpuArgs = { inputs: NamedTensorInfoMap; backend: MathBackendCPU; attrs?: NamedAttrMap };

/**
 * The backend's kernel `name` with a fast path in front: `fast` returns the result, or `undefined`
 * to leave the call to the backend's own kernel (kept once, across module copies, as the fallback).
 */
function withFastPath(name: string, fast: (args: CpuArgs) => TensorInfo | undefined): KernelConfig | undefined {
  const holder = globalThis as unknown as Record<symbol, Map<string, KernelConfig> | undefined>;
  const originals = (holder[ORIGINALS_KEY] ??= new Map());
  const current = getKernel(name, CPU);
  if (!originals.has(name)) {
    if (current === undefined) return undefined;
    originals.set(name, current);
  }
  const original = originals.get(name)!;
  const kernelFunc = ((args: CpuArgs) =>
    fast(args) ?? original.kernelFunc(args as unknown as Parameters<KernelFunc>[0])) as unknown as KernelFunc;
  return { ...original, kernelFunc };
}

/** Same-shape float32 `a op b` as one loop. */
function sameShapeConfig(name: string, op: (a: Float32Array, b: Float32Array, out: Float32Array) => void): KernelConfig | undefined {
  return withFastPath(name, (args) => {
    const { a, b } = args.inputs;
    if (
      a === undefined ||
      b === undefined ||
      a.dtype !== 'float32' ||
      b.dtype !== 'float32' ||
      a.shape.length !== b.shape.length ||
      !a.shape.every((d, i) => d === b.shape[i])
    )
      return undefined;
    const av = args.backend.data.get(a.dataId).values;
    const bv = args.backend.data.get(b.dataId).values;
    if (!(av instanceof Float32Array) || !(bv instanceof Float32Array) || av.length !== bv.length) return undefined;
    const out = poolFloat32(av.length);
    op(av, bv, out);
    return args.backend.makeTensorInfo(a.shape, 'float32', out);
  });
}

/**
 * `Slice` of a float32 or int32 tensor as copies of its innermost rows (the backend's own walks
 * every element through index arithmetic when the slice is not one contiguous range, as a KV
 * cache's window along the sequence axis is).
 */
function sliceConfig(): KernelConfig | undefined {
  return withFastPath(Slice, (args) => {
    const x = args.inputs['x'];
    if (x === undefined || (x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length < 2) return undefined;
    const values = args.backend.data.get(x.dataId).values;
    if (!(values instanceof Float32Array) && !(values instanceof Int32Array)) return undefined;
    const [begin, size] = slice_util.parseSliceParams(
      x as unknown as Tensor,
      args.attrs?.['begin'] as number[],
      args.attrs?.['size'] as number[],
    ) as [number[], number[]];
    slice_util.assertParamsValid(x as unknown as Tensor, begin, size);
    if (slice_util.isSliceContinous(x.shape, begin, size)) return undefined;
    const rank = x.shape.length;
    const strides = new Array<number>(rank).fill(1);
    for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1]! * x.shape[i + 1]!;
    const row = size[rank - 1]!;
    const total = size.reduce((p, d) => p * d, 1);
    const out = values instanceof Float32Array ? poolFloat32(total) : new Int32Array(total);
    const index = new Array<number>(rank - 1).fill(0);
    for (let dst = 0; dst < total; dst += row) {
      let src = begin[rank - 1]!;
      for (let i = 0; i < rank - 1; i++) src += (begin[i]! + index[i]!) * strides[i]!;
      out.set(values.subarray(src, src + row), dst);
      for (let i = rank - 2; i >= 0; i--) {
        if (++index[i]! < size[i]!) break;
        index[i] = 0;
      }
    }
    return args.backend.makeTensorInfo(size, x.dtype, out);
  });
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
  elementwiseConfigs ??= [sameShapeConfig(Add, addArrays), sameShapeConfig(Multiply, multiplyArrays), sliceConfig()].filter(
    (c): c is KernelConfig => c !== undefined,
  );
  for (const config of [unsortedSegmentSumConfig, ...fusedConfigs, ...elementwiseConfigs]) {
    if (getKernel(config.kernelName, CPU) === config) continue;
    if (getKernel(config.kernelName, CPU) !== undefined) unregisterKernel(config.kernelName, CPU);
    registerKernel(config);
  }
}

registerCpuKernels();
