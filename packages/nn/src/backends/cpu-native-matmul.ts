/**
 * `BatchMatMul` (and `_FusedMatMul` without bias or activation) for the tfjs `cpu` backend computed
 * by OpenBLAS `sgemm` through the optional `@bytelatent/native-sgemm` addon, in Node.
 *
 * The cpu backend keeps each tensor in a JavaScript `Float32Array`, so it holds models far past the
 * wasm backend's 4 GiB heap (a released BLT-1B's weights are 6 GB as float32), but its own matmul is
 * a JavaScript loop (docs/performance.md §2). These kernels hand the arrays the backend already holds to
 * OpenBLAS: no copy of a weight per product, transposes as BLAS flags, one call for a batch.
 * Anything else (non-float32 operands, shapes that do not match, a fused bias or activation) goes to
 * the backend's own kernel, so validation and error messages stay tfjs's.
 *
 * It also registers `BytelatentAttention` (`../layers/attention.ts`): softmax attention with an
 * additive mask, one head (and one block of queries) at a time — scores by `sgemm` into a scratch
 * buffer reused across calls, mask and softmax in place, then the product with the values by `sgemm`
 * straight into the output. The `[.., Q, K]` scores of a whole layer are never allocated: on this
 * backend every large new array costs its first-touch page faults, which took most of a long
 * forward's time.
 *
 * This module never imports the addon itself: `initBackend` loads `@bytelatent/native-sgemm` (Node
 * only, optional) and passes it to {@link enableNativeCpuMatMul}. Results differ from the cpu
 * backend's by float32 rounding only (summation order).
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  BatchMatMul,
  _FusedMatMul,
  getKernel,
  registerKernel,
  unregisterKernel,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { poolFloat32 } from './cpu-buffer-pool.js';
import { FUSED_KERNELS, broadcastRows, softmaxRow } from './fused-kernels.js';
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

/** Products of at most this many rows are memory-bound (see {@link tryNative}). */
const MEMORY_BOUND_ROWS = 8;
/** Work per thread for them: a 256 × 256 matrix-vector product and larger run on two threads. */
const MEMORY_BOUND_WORK = 1 << 16;

/** The product by OpenBLAS as a new cpu tensor, or `undefined` to leave the call to the backend's kernel. */
function tryNative(sgemm: NativeSgemmLike, args: CpuKernelArgs): TensorInfo | undefined {
  const { a, b } = args.inputs;
  if (a === undefined || b === undefined || a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2)
    return undefined;
  const transposeA = args.attrs?.['transposeA'] === true;
  const transposeB = args.attrs?.['transposeB'] === true;
  const dims = productDims(a.shape, b.shape, transposeA, transposeB);
  if (dims === undefined) return undefined;
  const aData = values(args.backend, a);
  const bData = values(args.backend, b);
  if (aData === undefined || bData === undefined) return undefined;
  // beta = 0 writes every element, except when there is nothing to sum (inner 0): then zeros.
  const out = poolFloat32(dims.batch * dims.rows * dims.columns, dims.inner === 0);
  const product = () =>
    sgemmProduct(
      sgemm,
      dims,
      { data: aData, offset: 0, shape: a.shape },
      { data: bData, offset: 0, shape: b.shape },
      transposeA,
      transposeB,
      { data: out, offset: 0 },
    );
  const work = sgemm.getMinWorkPerThread?.();
  if (work !== undefined && dims.batch * dims.rows <= MEMORY_BOUND_ROWS && work > MEMORY_BOUND_WORK) {
    // A product of a few rows (a decoding step's) streams its weight matrix once: it is bound by
    // memory bandwidth, which one core does not saturate, so it gets every thread.
    sgemm.setMinWorkPerThread!(MEMORY_BOUND_WORK);
    try {
      product();
    } finally {
      sgemm.setMinWorkPerThread!(work);
    }
  } else {
    product();
  }
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
 * A bias at or below this hides its key: the masks' value is −1e9 (`../layers/masks.ts`), whose
 * `exp(score + bias − max)` is exactly 0 in float32 for any score of a real model, so leaving such
 * keys out of the products changes nothing.
 */
const MASKED_BIAS = -1e8;
/** Queries per step of the attention kernel, so that each block's visible keys are a narrow range. */
const QUERY_BLOCK = 128;

/** The range `[lo, hi)` of keys that some row of a block does not mask. */
function visibleKeys(bias: Float32Array, biasRows: Int32Array, first: number, rows: number, keys: number): { lo: number; hi: number } {
  let lo = keys;
  let hi = 0;
  for (let r = 0; r < rows; r++) {
    const base = biasRows[first + r]! * keys;
    let j = 0;
    while (j < lo && bias[base + j]! <= MASKED_BIAS) j++;
    lo = Math.min(lo, j);
    let e = keys;
    while (e > hi && bias[base + e - 1]! <= MASKED_BIAS) e--;
    hi = Math.max(hi, e);
  }
  return { lo, hi };
}

/** Most scores one step of the attention kernel holds (queries per step = this / keys, at least 1). */
const SCORE_BLOCK = 1 << 20;
let scratch = new Float32Array(0);
/** Per row of a block: where its bias starts and its row-valid factor (for the addon's softmaxRows). */
const blockBias = new Int32Array(QUERY_BLOCK);
const blockValid = new Float32Array(QUERY_BLOCK);

/**
 * `softmax(q·kᵀ·scale + bias)·rowValid · v` for `q` `[..., Q, D]`, `k`/`v` `[..., K, D]` with the
 * same leading axes, `bias` `[..., Q, K]` and `rowValid` `[..., Q, 1]` broadcasting over them.
 */
function attentionKernel(sgemm: NativeSgemmLike, args: CpuKernelArgs): TensorInfo {
  const { q, k, v, bias, rowValid } = args.inputs as Record<string, TensorInfo>;
  const backend = args.backend;
  const rank = q!.shape.length;
  const queries = q!.shape[rank - 2]!;
  const depth = q!.shape[rank - 1]!;
  const keys = k!.shape[rank - 2]!;
  const valueDepth = v!.shape[rank - 1]!;
  const lead = q!.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const scoresShape = [...q!.shape.slice(0, -1), keys];
  const biasRows = broadcastRows(scoresShape, bias!.shape);
  const validRows = broadcastRows(scoresShape, rowValid!.shape);
  const [qv, kv, vv, bv, rv] = [q, k, v, bias, rowValid].map((t) => values(backend, t!)!) as Float32Array[];
  // Zeros: the rows of a block that sees no key are never written.
  const out = poolFloat32(lead * queries * valueDepth, true);
  const step = Math.max(1, Math.min(queries, QUERY_BLOCK, Math.floor(SCORE_BLOCK / Math.max(1, keys))));
  if (scratch.length < step * keys) scratch = new Float32Array(step * keys);
  const scale = args.attrs?.['scale'] as number;
  for (let i = 0; i < lead; i++) {
    for (let q0 = 0; q0 < queries; q0 += step) {
      const rows = Math.min(step, queries - q0);
      const first = i * queries + q0;
      // Only the keys some row of the block sees: a causal or windowed mask hides whole ranges,
      // whose softmax weights are exactly 0 (see MASKED_BIAS).
      const { lo, hi } = visibleKeys(bv!, biasRows, first, rows, keys);
      if (hi < lo) continue; // no row sees a key: its output stays 0 (maskArrays zeroes such rows)
      const width = hi - lo;
      const scores = scratch.subarray(0, rows * width);
      sgemm.sgemm(false, true, rows, width, depth, 1, qv!, first * depth, depth, kv!, (i * keys + lo) * depth, depth, 0, scores, 0, width);
      if (sgemm.softmaxRows !== undefined) {
        for (let r = 0; r < rows; r++) {
          blockBias[r] = biasRows[first + r]! * keys + lo;
          blockValid[r] = rv![validRows[first + r]!]!;
        }
        sgemm.softmaxRows(scores, 0, rows, width, width, scale, bv!, blockBias, blockValid);
      } else {
        for (let r = 0; r < rows; r++) {
          softmaxRow(scores, r * width, width, scale, bv!, biasRows[first + r]! * keys + lo, rv![validRows[first + r]!]!);
        }
      }
      sgemm.sgemm(
        false,
        false,
        rows,
        valueDepth,
        width,
        1,
        scores,
        0,
        width,
        vv!,
        (i * keys + lo) * valueDepth,
        valueDepth,
        0,
        out,
        first * valueDepth,
        valueDepth,
      );
    }
  }
  return backend.makeTensorInfo([...q!.shape.slice(0, -1), valueDepth], 'float32', out);
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
  if (getKernel(FUSED_KERNELS.attention, CPU) !== undefined) unregisterKernel(FUSED_KERNELS.attention, CPU);
  registerKernel({
    kernelName: FUSED_KERNELS.attention,
    backendName: CPU,
    kernelFunc: ((args: CpuKernelArgs) => attentionKernel(sgemm, args)) as unknown as KernelFunc,
  });
  const swiglu = sgemm.swiglu;
  const jsSwiglu = s.originals.get(FUSED_KERNELS.swiglu) ?? getKernel(FUSED_KERNELS.swiglu, CPU);
  if (swiglu !== undefined && jsSwiglu !== undefined) {
    s.originals.set(FUSED_KERNELS.swiglu, jsSwiglu);
    unregisterKernel(FUSED_KERNELS.swiglu, CPU);
    registerKernel({
      kernelName: FUSED_KERNELS.swiglu,
      backendName: CPU,
      kernelFunc: ((args: CpuKernelArgs) => {
        const gate = args.inputs['gate']!;
        const g = values(args.backend, gate);
        const u = values(args.backend, args.inputs['up']!);
        if (g === undefined || u === undefined || g.length !== u.length)
          return jsSwiglu.kernelFunc(args as unknown as Parameters<KernelFunc>[0]);
        const out = poolFloat32(g.length);
        swiglu.call(sgemm, g, u, out);
        return args.backend.makeTensorInfo(gate.shape, 'float32', out);
      }) as unknown as KernelFunc,
    });
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
  if (getKernel(FUSED_KERNELS.attention, CPU) !== undefined) unregisterKernel(FUSED_KERNELS.attention, CPU);
  s.active = false;
}

/** Whether the cpu backend's matmuls run on OpenBLAS now. */
export function nativeCpuMatMulActive(): boolean {
  return state().active;
}
