/**
 * Fused kernels for the CPU-side backends (wasm and cpu): RMSNorm and RoPE, forward and gradient,
 * each one kernel call instead of the ~6-8 (forward) and ~10-20 (gradient) small tfjs kernels, and
 * their tape entries, of the composite ops. A tiny BLT training step ran ~2,600 kernels, and the engine's cost per
 * kernel, not arithmetic, set its speed (docs/performance.md, section 6).
 *
 * The arithmetic is plain JavaScript over the backend's memory (the wasm heap, the cpu backend's
 * arrays), accumulated in double precision and rounded to float32 once per output, so it is at
 * least as exact as the composite op. Kernels with an exponential (the masked softmax, the SwiGLU
 * gate, the softmax entropy) and the head swap are registered on cpu only ({@link CPU_ONLY_FUSED_KERNELS}): V8's
 * `Math.exp` is slower than the wasm backend's vectorised kernels, while the cpu backend's own walk
 * indices; with the native addon, cpu runs the exponential ones in C (`./cpu-native-matmul.ts`).
 * The layers (`../layers/rms-norm.ts`, `rotary.ts`, `attention.ts`, `feed-forward.ts`) define the
 * ops' gradients and the composite fallback used on every other backend (webgpu) and for inputs
 * these do not take.
 */
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { broadcastIndices } from './matmul-plan.js';
import { CPU_ONLY_FUSED_KERNELS, FUSED_KERNELS } from '../kernel-names.js';

export { CPU_ONLY_FUSED_KERNELS, FUSED_KERNELS };

/** What a kernel needs from a backend that keeps float32 tensors in host-visible memory. */
export interface HostMemory<B> {
  /** A new float32 output tensor. */
  allocate(backend: B, shape: number[]): TensorInfo;
  /** The float32 values of a tensor, as a view where possible. Valid until the next `allocate`. */
  values(backend: B, tensor: TensorInfo): Float32Array;
}

type Args<B> = { inputs: NamedTensorInfoMap; backend: B; attrs?: NamedAttrMap };

function input(args: { inputs: NamedTensorInfoMap }, name: string): TensorInfo {
  const t = args.inputs[name];
  if (t === undefined) throw new Error(`fused kernel: missing input ${name}`);
  return t;
}

/** y = x · rsqrt(mean(x²) + eps) · w per row of `d`. */
function rmsNormRows(x: Float32Array, w: Float32Array, y: Float32Array, d: number, eps: number): void {
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    let sum = 0;
    for (let j = 0; j < d; j++) sum += x[base + j]! * x[base + j]!;
    const scale = 1 / Math.sqrt(sum / d + eps);
    for (let j = 0; j < d; j++) y[base + j] = x[base + j]! * scale * w[j]!;
  }
}

/**
 * Gradients of {@link rmsNormRows}: with s = rsqrt(mean(x²) + eps),
 * dx_j = s·w_j·dy_j − x_j·s³/d · Σ_k dy_k·w_k·x_k, and dw_j = Σ_rows dy_j·x_j·s.
 */
function rmsNormGradRows(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  dx: Float32Array,
  dw: Float32Array,
  d: number,
  eps: number,
): void {
  const rows = x.length / d;
  const dwAcc = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    let sum = 0;
    let dot = 0;
    for (let j = 0; j < d; j++) {
      const xj = x[base + j]!;
      sum += xj * xj;
      dot += dy[base + j]! * w[j]! * xj;
    }
    const s = 1 / Math.sqrt(sum / d + eps);
    const c = (dot * s * s * s) / d;
    for (let j = 0; j < d; j++) {
      const xj = x[base + j]!;
      dx[base + j] = s * w[j]! * dy[base + j]! - xj * c;
      dwAcc[j]! += dy[base + j]! * xj * s;
    }
  }
  dw.set(dwAcc);
}

/**
 * RoPE on `[rows, S, H, D]` with `[S, D]` tables (each pair's angle twice): for each pair
 * `(x0, x1)`, `(x0·cos − x1·sin, x1·cos + x0·sin)`; `sign = −1` applies the inverse rotation, the
 * gradient.
 */
function rotaryRows(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  y: Float32Array,
  s: number,
  h: number,
  d: number,
  sign: number,
): void {
  const rows = x.length / (s * h * d);
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < s; p++) {
      const table = p * d;
      for (let head = 0; head < h; head++) {
        const base = ((r * s + p) * h + head) * d;
        for (let j = 0; j < d; j += 2) {
          const c = cos[table + j]!;
          const n = sign * sin[table + j]!;
          const x0 = x[base + j]!;
          const x1 = x[base + j + 1]!;
          y[base + j] = x0 * c - x1 * n;
          y[base + j + 1] = x1 * c + x0 * n;
        }
      }
    }
  }
}

/**
 * For each row of `shape` (all axes but the last), the row of an operand of `operandShape` (same
 * rank, each axis equal or 1: broadcast) it reads: the batch broadcasting of `./matmul-plan.ts`
 * over the leading axes.
 */
export function broadcastRows(shape: readonly number[], operandShape: readonly number[]): Int32Array {
  return broadcastIndices(shape.slice(0, -1), operandShape.slice(0, -1));
}

/**
 * `y = softmax(x·scale + bias) · rowValid` over the last axis of `[..., K]`: attention's scale,
 * additive mask, softmax and empty-row zeroing in one pass (four kernels of the composite, two of
 * them broadcasting, which the cpu backend runs index by index). `bias` (`[..., K]`) and `rowValid`
 * (`[..., 1]`) broadcast over the leading axes; the sum is accumulated in double precision.
 */
function maskedSoftmaxRows(
  x: Float32Array,
  y: Float32Array,
  k: number,
  scale: number,
  bias: Float32Array | undefined,
  biasRows: Int32Array | undefined,
  rowValid: Float32Array | undefined,
  validRows: Int32Array | undefined,
): void {
  const rows = x.length / k;
  if (x !== y) y.set(x);
  for (let r = 0; r < rows; r++) {
    softmaxRow(
      y,
      r * k,
      k,
      scale,
      bias,
      bias === undefined ? 0 : biasRows![r]! * k,
      rowValid === undefined ? 1 : rowValid[validRows![r]!]!,
    );
  }
}

/**
 * `y[base ..] = softmax(y·scale + bias) · valid` over one row of `width` scores, in place (the sum in
 * double precision); `bias` (or none) is read from `biasBase`.
 */
export function softmaxRow(
  y: Float32Array,
  base: number,
  width: number,
  scale: number,
  bias: Float32Array | undefined,
  biasBase: number,
  valid: number,
): void {
  if (valid === 0) {
    y.fill(0, base, base + width);
    return;
  }
  let max = -Infinity;
  for (let j = 0; j < width; j++) {
    const v = y[base + j]! * scale + (bias === undefined ? 0 : bias[biasBase + j]!);
    y[base + j] = v;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let j = 0; j < width; j++) {
    const d = y[base + j]! - max;
    // Below this float32's exp is 0: masked keys (and far-off scores) skip Math.exp.
    const e = d < EXP_UNDERFLOW ? 0 : Math.exp(d);
    y[base + j] = e;
    sum += e;
  }
  const f = valid / sum;
  for (let j = 0; j < width; j++) y[base + j]! *= f;
}

/** Where float32's `exp` underflows to 0 (the smallest subnormal is e^-103.28). */
const EXP_UNDERFLOW = -104;

/** SwiGLU's gate `silu(g) · u = g · u / (1 + e^−g)`, one pass. */
function swigluRows(g: Float32Array, u: Float32Array, y: Float32Array): void {
  for (let i = 0; i < y.length; i++) {
    const x = g[i]!;
    y[i] = (x * u[i]!) / (1 + Math.exp(-x));
  }
}

/** `[A, B, C, D]` → `[A, C, B, D]` (attention's split and merge of heads), as row copies of D. */
function swapMiddleAxesRows(x: Float32Array, y: Float32Array, a: number, b: number, c: number, d: number): void {
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) {
      for (let l = 0; l < c; l++) {
        const src = ((i * b + j) * c + l) * d;
        const dst = ((i * c + l) * b + j) * d;
        if (d >= 16) y.set(x.subarray(src, src + d), dst);
        else for (let m = 0; m < d; m++) y[dst + m] = x[src + m]!;
      }
    }
  }
}

/**
 * `H = log Σ exp(x − m) − Σ exp(x − m)·(x − m) / Σ exp(x − m)` per row of `k` (the softmax's entropy in
 * nats, `m` the row maximum), accumulated in double precision: one pass for the maximum, one for the
 * exponentials, where the composite runs about ten kernels over the whole `[rows, k]` array.
 */
function softmaxEntropyRows(x: Float32Array, y: Float32Array, k: number): void {
  for (let r = 0; r < y.length; r++) {
    const base = r * k;
    let max = -Infinity;
    for (let j = 0; j < k; j++) if (x[base + j]! > max) max = x[base + j]!;
    let sum = 0;
    let weighted = 0;
    for (let j = 0; j < k; j++) {
      const d = x[base + j]! - max;
      if (d < EXP_UNDERFLOW) continue;
      const e = Math.exp(d);
      sum += e;
      weighted += e * d;
    }
    y[r] = Math.log(sum) - weighted / sum;
  }
}

/** The fused kernel configs for one backend. */
export function fusedKernelConfigs<B>(backendName: string, memory: HostMemory<B>): KernelConfig[] {
  const kernel = (kernelName: string, fn: (args: Args<B>) => TensorInfo | TensorInfo[]): KernelConfig => ({
    kernelName,
    backendName,
    kernelFunc: fn as unknown as KernelFunc,
  });
  return [
    kernel(FUSED_KERNELS.rmsNorm, (args) => {
      const x = input(args, 'x');
      const w = input(args, 'weight');
      const y = memory.allocate(args.backend, x.shape);
      const d = w.shape[0]!;
      rmsNormRows(
        memory.values(args.backend, x),
        memory.values(args.backend, w),
        memory.values(args.backend, y),
        d,
        args.attrs?.['eps'] as number,
      );
      return y;
    }),
    kernel(FUSED_KERNELS.rmsNormGrad, (args) => {
      const dy = input(args, 'dy');
      const x = input(args, 'x');
      const w = input(args, 'weight');
      const dx = memory.allocate(args.backend, x.shape);
      const dw = memory.allocate(args.backend, w.shape);
      const v = (t: TensorInfo) => memory.values(args.backend, t);
      rmsNormGradRows(v(dy), v(x), v(w), v(dx), v(dw), w.shape[0]!, args.attrs?.['eps'] as number);
      return [dx, dw];
    }),
    ...(
      [
        [FUSED_KERNELS.rotary, 'x', 1],
        [FUSED_KERNELS.rotaryGrad, 'dy', -1],
      ] as const
    ).map(([name, inputName, sign]) =>
      kernel(name, (args) => {
        const x = input(args, inputName);
        const cos = input(args, 'cos');
        const sin = input(args, 'sin');
        const y = memory.allocate(args.backend, x.shape);
        const [s, h, d] = x.shape.slice(-3) as [number, number, number];
        const v = (t: TensorInfo) => memory.values(args.backend, t);
        rotaryRows(v(x), v(cos), v(sin), v(y), s, h, d, sign);
        return y;
      }),
    ),
    kernel(FUSED_KERNELS.maskedSoftmax, (args) => {
      const x = input(args, 'x');
      const bias = args.inputs['bias'];
      const rowValid = args.inputs['rowValid'];
      const y = memory.allocate(args.backend, x.shape);
      const v = (t: TensorInfo) => memory.values(args.backend, t);
      const k = x.shape[x.shape.length - 1]!;
      maskedSoftmaxRows(
        v(x),
        v(y),
        k,
        args.attrs?.['scale'] as number,
        bias === undefined ? undefined : v(bias),
        bias === undefined ? undefined : broadcastRows(x.shape, bias.shape),
        rowValid === undefined ? undefined : v(rowValid),
        rowValid === undefined ? undefined : broadcastRows(x.shape, rowValid.shape),
      );
      return y;
    }),
    kernel(FUSED_KERNELS.swiglu, (args) => {
      const gate = input(args, 'gate');
      const up = input(args, 'up');
      const y = memory.allocate(args.backend, gate.shape);
      swigluRows(memory.values(args.backend, gate), memory.values(args.backend, up), memory.values(args.backend, y));
      return y;
    }),
    kernel(FUSED_KERNELS.softmaxEntropy, (args) => {
      const logits = input(args, 'logits');
      const y = memory.allocate(args.backend, logits.shape.slice(0, -1));
      softmaxEntropyRows(memory.values(args.backend, logits), memory.values(args.backend, y), logits.shape[logits.shape.length - 1]!);
      return y;
    }),
    kernel(FUSED_KERNELS.swapMiddleAxes, (args) => {
      const x = input(args, 'x');
      const [a, b, c, d] = x.shape as [number, number, number, number];
      const y = memory.allocate(args.backend, [a, c, b, d]);
      swapMiddleAxesRows(memory.values(args.backend, x), memory.values(args.backend, y), a, b, c, d);
      return y;
    }),
  ];
}
