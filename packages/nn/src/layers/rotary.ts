import * as tf from '@tensorflow/tfjs-core';
import { NnError, checkInt } from './errors.js';

/**
 * Rotary position embedding tables in the reference's layout: adjacent pairs (2i, 2i+1) of each
 * head rotate by `pos · theta^(-2i/headDim)` (golden Semantics 9, spec §5.1). Frequencies and
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
   * cos and sin for positions `start .. start + length - 1`, each `[length, headDim / 2]`.
   *
   * @throws {NnError} when the positions exceed `maxSeqLen`
   */
  tables(start: number, length: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    if (start < 0 || start + length > this.maxSeqLen) {
      throw new NnError('INVALID_ARGUMENT', `positions ${start}..${start + length - 1} exceed the RoPE table of ${this.maxSeqLen}`);
    }
    this.ensure(start + length);
    const from = start * this.half;
    const to = (start + length) * this.half;
    return {
      cos: tf.tensor2d(this.cosRows.subarray(from, to), [length, this.half]),
      sin: tf.tensor2d(this.sinRows.subarray(from, to), [length, this.half]),
    };
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
 * Written as `x · cos2 + swap(x) · sin2` with `swap(x) = (−x1, x0)` a matMul by a fixed signed
 * permutation, not a split of the pair axis: splitting the last axis of a 5-D tensor falls into a
 * per-element JavaScript path on the wasm backend (1.4 s of a 4 s patch call, measured). Each
 * output is still the same two products and one sum, so results are unchanged.
 *
 * @param x - `[B, S, H, headDim]`
 * @param cos - `[S, headDim / 2]`
 * @param sin - `[S, headDim / 2]`
 * @returns same shape as `x`
 */
export function applyRotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [b, s, h, d] = x.shape as [number, number, number, number];
    const half = d / 2;
    // [S, half] → [S, half, 2] → [1, S, 1, d]: each angle serves both members of its pair.
    const widen = (t: tf.Tensor) => tf.reshape(tf.tile(tf.reshape(t, [s, half, 1]), [1, 1, 2]), [1, s, 1, d]);
    const swapped = tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), tf.tensor2d(pairSwap(d), [d, d])), [b, s, h, d]);
    return tf.add(tf.mul(x, widen(cos)), tf.mul(swapped, widen(sin)));
  });
}
