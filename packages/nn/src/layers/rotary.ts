import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../kernel-names.js';
import { NnError, checkInt } from '../errors.js';

/**
 * Rotary position embedding tables in the reference's layout: adjacent pairs (2i, 2i+1) of each
 * head rotate by `pos · theta^(-2i/headDim)` (golden Semantics 9, architecture §5.1). Frequencies and
 * angles are rounded to float32 at each step, as torch computes them in fp32.
 *
 * Rows are computed on first use, growing by doubling up to `maxSeqLen`: a model whose arguments
 * claim a huge context (an untrusted checkpoint's metadata) allocates only the positions it runs on.
 */
export class RotaryEmbedding {
  readonly half: number;
  private readonly freqs: Float32Array;
  private cosRows = new Float32Array(0);
  private sinRows = new Float32Array(0);
  /** Positions computed so far. */
  private rows = 0;

  constructor(
    readonly headDim: number,
    readonly theta: number,
    readonly maxSeqLen: number,
  ) {
    checkInt('headDim', headDim, 2);
    checkInt('maxSeqLen', maxSeqLen, 1);
    if (headDim % 2 !== 0) throw new NnError('INVALID_ARGUMENT', `headDim must be even for RoPE, got ${headDim}`);
    if (!(theta > 0)) throw new NnError('INVALID_ARGUMENT', `theta must be > 0, got ${theta}`);
    const half = headDim / 2;
    this.half = half;
    const f = Math.fround;
    this.freqs = Float32Array.from({ length: half }, (_, i) => f(1 / f(theta ** f((2 * i) / headDim))));
  }

  /** `cos[pos * half + i]` for every position up to `maxSeqLen` (computes the whole table). */
  get cos(): Float32Array {
    this.ensure(this.maxSeqLen);
    return this.cosRows.subarray(0, this.maxSeqLen * this.half);
  }

  /** `sin[pos * half + i]` for every position up to `maxSeqLen` (computes the whole table). */
  get sin(): Float32Array {
    this.ensure(this.maxSeqLen);
    return this.sinRows.subarray(0, this.maxSeqLen * this.half);
  }

  /**
   * cos and sin for positions `start .. start + length - 1`, each `[length, headDim]`: the angle of
   * pair i at `2i` and `2i + 1` (the layout {@link applyRotary} multiplies by, built here on the
   * host rather than by a tile on every call: 20 tile kernels were 11 % of a tiny BLT training
   * step on wasm).
   *
   * @throws {NnError} when the positions exceed `maxSeqLen`
   */
  tables(start: number, length: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    if (start < 0 || start + length > this.maxSeqLen) {
      throw new NnError('INVALID_ARGUMENT', `positions ${start}..${start + length - 1} exceed the RoPE table of ${this.maxSeqLen}`);
    }
    this.ensure(start + length);
    const half = this.half;
    const cos = new Float32Array(length * 2 * half);
    const sin = new Float32Array(length * 2 * half);
    for (let p = 0; p < length; p++) {
      const from = (start + p) * half;
      const to = p * 2 * half;
      for (let i = 0; i < half; i++) {
        cos[to + 2 * i] = cos[to + 2 * i + 1] = this.cosRows[from + i]!;
        sin[to + 2 * i] = sin[to + 2 * i + 1] = this.sinRows[from + i]!;
      }
    }
    return { cos: tf.tensor2d(cos, [length, 2 * half]), sin: tf.tensor2d(sin, [length, 2 * half]) };
  }

  /** Computes rows up to `positions` (at least doubling, at most `maxSeqLen`). */
  private ensure(positions: number): void {
    if (positions <= this.rows) return;
    const rows = Math.min(this.maxSeqLen, Math.max(positions, 2 * this.rows, 64));
    const half = this.half;
    const cos = new Float32Array(rows * half);
    const sin = new Float32Array(rows * half);
    cos.set(this.cosRows);
    sin.set(this.sinRows);
    const f = Math.fround;
    for (let pos = this.rows; pos < rows; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = f(pos * this.freqs[i]!);
        cos[pos * half + i] = Math.cos(angle);
        sin[pos * half + i] = Math.sin(angle);
      }
    }
    this.cosRows = cos;
    this.sinRows = sin;
    this.rows = rows;
  }
}

/** `[d, d]` signed permutation taking each pair (x0, x1) to (−x1, x0). */
const swapMatrices = new Map<number, Float32Array>();
function pairSwap(d: number): Float32Array {
  let m = swapMatrices.get(d);
  if (!m) {
    m = new Float32Array(d * d);
    for (let i = 0; i < d; i += 2) {
      m[(i + 1) * d + i] = -1; // out[i] = -x[i+1]
      m[i * d + i + 1] = 1; // out[i+1] = x[i]
    }
    swapMatrices.set(d, m);
  }
  return m;
}

/**
 * Rotates adjacent pairs: `out0 = x0 cos − x1 sin`, `out1 = x0 sin + x1 cos`.
 *
 * Written as `x · cos + swap(x) · sin` with `swap(x) = (−x1, x0)` a matMul by a fixed signed
 * permutation, not a split of the pair axis: splitting the last axis of a 5-D tensor falls into a
 * per-element JavaScript path on the wasm backend (1.4 s of a 4 s patch call, measured). Each
 * output is still the same two products and one sum, so results are unchanged.
 *
 * @param x - `[B, S, H, headDim]`
 * @param cos - `[S, headDim]`, from {@link RotaryEmbedding.tables} (each pair's angle twice)
 * @param sin - `[S, headDim]`, likewise
 * One fused kernel (and one for the gradient) where the backend has it (wasm and cpu, see
 * `../backends/fused-kernels.ts`), the composite above elsewhere (webgpu).
 *
 * @returns same shape as `x`
 * @throws {NnError} `SHAPE_MISMATCH` when the tables are not `[S, headDim]`
 */
export function applyRotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const [b, s, h, d] = x.shape as [number, number, number, number];
  for (const [name, t] of [
    ['cos', cos],
    ['sin', sin],
  ] as const) {
    if (t.rank !== 2 || t.shape[0] !== s || t.shape[1] !== d) {
      throw new NnError(
        'SHAPE_MISMATCH',
        `RoPE ${name} table must be [${s}, ${d}] (positions, headDim) for x of shape [${x.shape.join(', ')}], got [${t.shape.join(', ')}]`,
      );
    }
  }
  const fusable = x.dtype === 'float32' && cos.dtype === 'float32' && sin.dtype === 'float32' && x.size > 0;
  if (fusable && tf.getKernel(FUSED_KERNELS.rotary, tf.getBackend()) !== undefined) {
    return tf.engine().runKernel(FUSED_KERNELS.rotary, { x, cos, sin }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const swapped = tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), tf.tensor2d(pairSwap(d), [d, d])), [b, s, h, d]);
    return tf.add(tf.mul(x, tf.reshape(cos, [1, s, 1, d])), tf.mul(swapped, tf.reshape(sin, [1, s, 1, d])));
  });
}

// The fused kernel's gradient: the inverse rotation of dy (the tables are constants).
tf.registerGradient({
  kernelName: FUSED_KERNELS.rotary,
  inputsToSave: ['cos', 'sin'],
  gradFunc: (dy, saved) => {
    const [cos, sin] = saved as [tf.Tensor, tf.Tensor];
    return {
      x: () => tf.engine().runKernel(FUSED_KERNELS.rotaryGrad, { dy: dy as tf.Tensor, cos, sin }) as tf.Tensor,
      cos: () => tf.zerosLike(cos),
      sin: () => tf.zerosLike(sin),
    };
  },
});
