import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../kernel-names.js';
import { NnError, checkInt } from '../errors.js';
import { Linear, type WeightInit } from './linear.js';
import { type LocalAttentionSpec, type MaskTensors, causalMaskBlock, localAttentionBlockSize, maskArrays } from './masks.js';
import type { ParameterScope } from './parameters.js';
import { RMSNorm } from './rms-norm.js';
import { applyRotary } from './rotary.js';
import type { CachedStep, LayerKv } from './kv-cache.js';

/**
 * Receives a module's intermediate outputs under their reference-relative module paths (`wq`,
 * `attention.wq`, `feed_forward.w1`...), as PyTorch forward hooks would see them: the golden
 * checker and debugging read activations through it. Tensors are valid only during the call.
 */
export type ModuleTap = (path: string, value: tf.Tensor) => void;

/** A tap that prefixes every path with `prefix.`; undefined stays undefined. */
export function prefixTap(tap: ModuleTap | undefined, prefix: string): ModuleTap | undefined {
  return tap && ((path, value) => tap(`${prefix}.${path}`, value));
}

/** A mask as tensors, or a causal window to compute block by block. */
export type AttentionMask = MaskTensors | LocalAttentionSpec;

/**
 * Multi-head softmax attention with an additive mask; rows whose keys are all masked give 0
 * (golden Semantics 8: flex_attention and torch >= 2.5 SDPA do the same).
 *
 * @param q - `[B, H, Q, D]` (any leading axes: the blocked path passes `[B, H, blocks, Q, D]`)
 * @param k - `[B, H, K, D]`
 * @param v - `[B, H, K, D]`
 * @param mask - from {@link maskTensors}, a {@link LocalAttentionSpec} (self-attention, Q = K), or
 *   null when every query sees every key (a cached decoding step holds exactly the visible keys)
 * @returns `[B, H, Q, D]`
 */
export function scaledDotProductAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: AttentionMask | null): tf.Tensor {
  if (mask && 'kind' in mask) return blockedLocalAttention(q, k, v, mask);
  const scale = 1 / Math.sqrt(q.shape[q.rank - 1]!);
  if (hasFused(FUSED_KERNELS.attention)) {
    const fused = tf.tidy((): tf.Tensor | undefined => {
      // No mask (a cached step sees every key it holds): a zero bias over the keys.
      const ones = new Array<number>(q.rank).fill(1);
      const given: MaskTensors = mask ?? { bias: tf.zeros([...ones.slice(1), k.shape[k.rank - 2]!]), rowValid: null };
      if (!fusedAttentionFits(q, k, v, given)) return undefined;
      const rowValid = given.rowValid ?? tf.ones(ones);
      return tf.engine().runKernel(FUSED_KERNELS.attention, { q, k, v, bias: given.bias, rowValid }, { scale }) as tf.Tensor;
    });
    if (fused !== undefined) return fused;
  }
  return tf.tidy(() => tf.matMul(maskedSoftmax(tf.matMul(q, k, false, true), scale, mask), v));
}

/**
 * Whether the backend's fused attention kernel (cpu with OpenBLAS, `../backends/cpu-native-matmul.ts`)
 * takes these operands: float32, keys and values with the queries' leading axes, mask broadcasting.
 */
function fusedAttentionFits(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: MaskTensors): boolean {
  if (!hasFused(FUSED_KERNELS.attention) || q.size === 0 || k.size === 0) return false;
  const rank = q.rank;
  const lead = q.shape.slice(0, -2).join();
  if (k.rank !== rank || v.rank !== rank || k.shape.slice(0, -2).join() !== lead || v.shape.slice(0, -2).join() !== lead) return false;
  if (k.shape[rank - 2] !== v.shape[rank - 2] || k.shape[rank - 1] !== q.shape[rank - 1]) return false;
  if ([q, k, v].some((t) => t.dtype !== 'float32')) return false;
  return maskFits(mask, [...q.shape.slice(0, -1), k.shape[rank - 2]!]);
}

/**
 * Whether a mask is what the fused kernels read: float32, of the scores' rank, the bias `[..., K]`
 * and rowValid `[..., 1]` broadcasting over the leading axes (each axis equal or 1).
 */
function maskFits(mask: MaskTensors, scores: readonly number[]): boolean {
  const rank = scores.length;
  const fits = (t: tf.Tensor, last: number) =>
    t.dtype === 'float32' && t.rank === rank && t.shape.every((d, i) => (i === rank - 1 ? d === last : d === 1 || d === scores[i]));
  return fits(mask.bias, scores[rank - 1]!) && (mask.rowValid == null || fits(mask.rowValid, 1));
}

// The fused attention's gradient, recomputing the probabilities with the composite in each thunk
// (tfjs disposes what a thunk creates when it returns): dv = pᵀ·dy, ds = scale·p·(dp − Σ dp·p) with
// dp = dy·vᵀ, dq = ds·k, dk = dsᵀ·q. The mask's inputs are constants (zeros, as RoPE's tables').
tf.registerGradient({
  kernelName: FUSED_KERNELS.attention,
  inputsToSave: ['q', 'k', 'v', 'bias', 'rowValid'],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, bias, rowValid] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const scale = (attrs as { scale: number }).scale;
    const probabilities = () => maskedSoftmax(tf.matMul(q, k, false, true), scale, { bias, rowValid });
    const scoreGradient = () => {
      const p = probabilities();
      const dp = tf.matMul(dy as tf.Tensor, v, false, true);
      return tf.mul(tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))), scale);
    };
    return {
      q: () => tf.matMul(scoreGradient(), k),
      k: () => tf.matMul(scoreGradient(), q, true, false),
      v: () => tf.matMul(probabilities(), dy as tf.Tensor, true, false),
      bias: () => tf.zerosLike(bias),
      rowValid: () => tf.zerosLike(rowValid),
    };
  },
});

/** Whether the current backend has the fused kernel `name` (`../backends/fused-kernels.ts`; the attention ones are cpu only). */
function hasFused(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * `softmax(scores·scale + bias) · rowValid` over the last axis: one fused kernel where the backend
 * has it (cpu), else the composite (wasm, webgpu). Same values to float32 rounding, same gradients.
 */
function maskedSoftmax(scores: tf.Tensor, scale: number, mask: MaskTensors | null): tf.Tensor {
  const rank = scores.rank;
  if (mask && scores.dtype === 'float32' && scores.size > 0 && hasFused(FUSED_KERNELS.maskedSoftmax) && maskFits(mask, scores.shape)) {
    return tf.tidy(() => {
      const rowValid = mask.rowValid ?? tf.ones(new Array<number>(rank).fill(1));
      return tf.engine().runKernel(FUSED_KERNELS.maskedSoftmax, { x: scores, bias: mask.bias, rowValid }, { scale }) as tf.Tensor;
    });
  }
  return tf.tidy(() => {
    let x = tf.mul(scores, scale);
    if (mask) x = tf.add(x, mask.bias);
    const probs = tf.softmax(x);
    return mask?.rowValid ? tf.mul(probs, mask.rowValid) : probs;
  });
}

// The fused softmax's gradient from its output p: dx = scale · p · (dy − Σ dy·p). The mask's inputs
// are constants (their gradients are zeros, as RoPE's tables').
tf.registerGradient({
  kernelName: FUSED_KERNELS.maskedSoftmax,
  inputsToSave: ['bias', 'rowValid'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [bias, rowValid, p] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const scale = (attrs as { scale: number }).scale;
    const x = () => tf.tidy(() => tf.mul(tf.mul(p, tf.sub(dy as tf.Tensor, tf.sum(tf.mul(dy as tf.Tensor, p), -1, true))), scale));
    return { x, bias: () => tf.zerosLike(bias), rowValid: () => tf.zerosLike(rowValid) };
  },
});

/** `[A, B, C, D]` → `[A, C, B, D]`: one fused copy where the backend has it, else `tf.transpose`. */
function swapMiddleAxes(x: tf.Tensor): tf.Tensor {
  if (x.rank === 4 && x.dtype === 'float32' && hasFused(FUSED_KERNELS.swapMiddleAxes)) {
    return tf.engine().runKernel(FUSED_KERNELS.swapMiddleAxes, { x }) as tf.Tensor;
  }
  return tf.transpose(x, [0, 2, 1, 3]);
}

// Swapping the middle axes is its own inverse.
tf.registerGradient({
  kernelName: FUSED_KERNELS.swapMiddleAxes,
  gradFunc: (dy) => ({ x: () => swapMiddleAxes(dy as tf.Tensor) }),
});

/** The host arrays of a spec's blocked layout (see {@link blockLayout}). */
interface BlockLayout {
  readonly blocks: number;
  readonly blockSize: number;
  /** Keys per block: `blockSize + min(window, seqLen) − 1`, the last ending at the block's last query. */
  readonly keysPerBlock: number;
  /** `[blocks · keysPerBlock]`: the key position of each block's key slot (clamped into the row). */
  readonly keyIndex: Int32Array;
  /** `[batch, 1, blocks, blockSize, keysPerBlock]` additive mask. */
  readonly bias: Float32Array;
  /** `[batch, 1, blocks, blockSize, 1]`: 0 for query slots that see no key; null when every slot sees one. */
  readonly rowValid: Float32Array | null;
}

/** Per spec, its block layout: every layer of a forward shares the spec, so it is built once. */
const blockLayouts = new WeakMap<LocalAttentionSpec, BlockLayout>();

/**
 * Query block i holds queries `i·bs .. i·bs + bs − 1` (past the row: padding) and the `keysPerBlock`
 * key slots ending at its last query; slots before position 0 are masked, as is every key outside
 * the causal window or the query's document (mask from {@link causalMaskBlock}).
 */
function blockLayout(spec: LocalAttentionSpec, blockSize: number): BlockLayout {
  const cached = blockLayouts.get(spec);
  if (cached !== undefined && cached.blockSize === blockSize) return cached;
  const { batch, seqLen, window } = spec;
  const blocks = Math.ceil(seqLen / blockSize);
  const keysPerBlock = blockSize + Math.min(window, seqLen) - 1;
  const keyIndex = new Int32Array(blocks * keysPerBlock);
  const mask = new Uint8Array(batch * blocks * blockSize * keysPerBlock);
  for (let blk = 0; blk < blocks; blk++) {
    const qs = blk * blockSize;
    const firstKey = qs + blockSize - keysPerBlock;
    for (let j = 0; j < keysPerBlock; j++) keyIndex[blk * keysPerBlock + j] = Math.min(seqLen - 1, Math.max(0, firstKey + j));
    const queries = Math.min(blockSize, seqLen - qs);
    const from = Math.max(0, firstKey);
    const to = Math.min(seqLen, qs + blockSize);
    const part = causalMaskBlock(batch, { start: qs, length: queries }, { start: from, length: to - from }, spec);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < queries; i++) {
        const src = (b * queries + i) * (to - from);
        const dst = ((b * blocks + blk) * blockSize + i) * keysPerBlock + (from - firstKey);
        mask.set(part.subarray(src, src + to - from), dst);
      }
      // Padding query slots (past the row, sliced away after) see their last key slot: a row
      // seeing nothing would need the row-valid product, a broadcast multiply that is slow on
      // wasm (docs/performance.md §3b).
      for (let i = queries; i < blockSize; i++) mask[((b * blocks + blk) * blockSize + i + 1) * keysPerBlock - 1] = 1;
    }
  }
  const { bias, rowValid } = maskArrays(mask, batch, blocks * blockSize, keysPerBlock);
  const layout = { blocks, blockSize, keysPerBlock, keyIndex, bias, rowValid };
  blockLayouts.set(spec, layout);
  return layout;
}

/**
 * Windowed causal self-attention in query blocks, all blocks at once: queries reshaped to
 * `[B, H, blocks, blockSize, D]`, each block's keys and values gathered into
 * `[B, H, blocks, keysPerBlock, D]`, one batched product for the scores and one for the context.
 * Memory grows with `N · (blockSize + window)`, and the kernel count does not grow with the
 * number of blocks (a loop over blocks was ~30 kernels per block, forward and backward: a third of
 * a tiny BLT training step). The spec is treated as immutable: its layout is cached with it.
 */
function blockedLocalAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, spec: LocalAttentionSpec): tf.Tensor {
  const [b, h, seqLen, d] = q.shape as [number, number, number, number];
  if (seqLen !== spec.seqLen || k.shape[2] !== seqLen) {
    throw new NnError(
      'SHAPE_MISMATCH',
      `local attention spec is for ${spec.seqLen} positions, got queries ${seqLen} and keys ${k.shape[2]}`,
    );
  }
  const blockSize = spec.blockSize ?? localAttentionBlockSize(spec.window);
  checkInt('blockSize', blockSize, 1);
  // A row not much longer than a block costs more in blocks (each block's keys reach back a whole
  // window, padding fills the last) than as one dense masked product: then go dense.
  const blocksNeeded = Math.ceil(seqLen / blockSize);
  if (spec.blockSize === undefined && blocksNeeded * blockSize * (blockSize + Math.min(spec.window, seqLen) - 1) >= seqLen * seqLen) {
    return denseLocalAttention(q, k, v, spec);
  }
  const layout = blockLayout(spec, blockSize);
  const { blocks, keysPerBlock } = layout;
  return tf.tidy(() => {
    const padded = blocks * blockSize;
    const qPadded =
      padded === seqLen
        ? q
        : tf.pad(q, [
            [0, 0],
            [0, 0],
            [0, padded - seqLen],
            [0, 0],
          ]);
    const index = tf.tensor1d(layout.keyIndex, 'int32');
    const gatherBlocks = (x: tf.Tensor) => tf.reshape(tf.gather(x, index, 2), [b, h, blocks, keysPerBlock, d]);
    const mask: MaskTensors = {
      bias: tf.tensor(layout.bias, [spec.batch, 1, blocks, blockSize, keysPerBlock]),
      rowValid: layout.rowValid ? tf.tensor(layout.rowValid, [spec.batch, 1, blocks, blockSize, 1]) : null,
    };
    const out = scaledDotProductAttention(tf.reshape(qPadded, [b, h, blocks, blockSize, d]), gatherBlocks(k), gatherBlocks(v), mask);
    const flat = tf.reshape(out, [b, h, padded, d]);
    return padded === seqLen ? flat : tf.slice(flat, [0, 0, 0, 0], [-1, -1, seqLen, -1]);
  });
}

/** The dense mask of a spec, as host arrays (cached with the spec, as its block layout). */
const denseMasks = new WeakMap<LocalAttentionSpec, { bias: Float32Array; rowValid: Float32Array | null }>();

/** {@link blockedLocalAttention}'s result from one dense masked product (the spec's full causal mask). */
function denseLocalAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, spec: LocalAttentionSpec): tf.Tensor {
  const { batch, seqLen } = spec;
  let arrays = denseMasks.get(spec);
  if (arrays === undefined) {
    const mask = causalMaskBlock(
      batch,
      { start: 0, length: seqLen },
      { start: 0, length: seqLen },
      { window: spec.window, ...(spec.documents ? { documents: spec.documents } : {}) },
    );
    arrays = maskArrays(mask, batch, seqLen, seqLen);
    denseMasks.set(spec, arrays);
  }
  const { bias, rowValid } = arrays;
  return tf.tidy(() =>
    scaledDotProductAttention(q, k, v, {
      bias: tf.tensor4d(bias, [batch, 1, seqLen, seqLen]),
      rowValid: rowValid ? tf.tensor4d(rowValid, [batch, 1, seqLen, 1]) : null,
    }),
  );
}

/** `[B, S, H·D]` → `[B, H, S, D]`. */
function splitHeads(x: tf.Tensor, heads: number, headDim: number): tf.Tensor {
  const [b, s] = x.shape as [number, number];
  return swapMiddleAxes(tf.reshape(x, [b, s, heads, headDim]));
}

/** `[B, H, S, D]` → `[B, S, H·D]`. */
function mergeHeads(x: tf.Tensor): tf.Tensor {
  const [b, h, s, d] = x.shape as [number, number, number, number];
  return tf.reshape(swapMiddleAxes(x), [b, s, h * d]);
}

/** Sizes of an attention layer, with the reference's argument names. */
export interface AttentionConfig {
  readonly dim: number;
  readonly nHeads: number;
  /** Grouped-query attention: fewer key/value heads. Default `nHeads`. */
  readonly nKvHeads?: number;
  /** Default `dim / nHeads`. */
  readonly headDim?: number;
}

function resolveHeads(config: AttentionConfig): { nHeads: number; nKvHeads: number; headDim: number } {
  checkInt('dim', config.dim, 1);
  checkInt('nHeads', config.nHeads, 1);
  const nKvHeads = config.nKvHeads ?? config.nHeads;
  checkInt('nKvHeads', nKvHeads, 1);
  if (config.nHeads % nKvHeads !== 0) {
    throw new NnError('INVALID_ARGUMENT', `nHeads (${config.nHeads}) must be a multiple of nKvHeads (${nKvHeads})`);
  }
  const headDim = config.headDim ?? config.dim / config.nHeads;
  checkInt('headDim', headDim, 1);
  return { nHeads: config.nHeads, nKvHeads, headDim };
}

/** Repeats each key/value head `r` times: kv head j serves query heads j·r .. j·r+r−1 (architecture §5.1). */
function repeatKv(x: tf.Tensor, r: number): tf.Tensor {
  if (r === 1) return x;
  const [b, h, s, d] = x.shape as [number, number, number, number];
  // A rank-4 tile: WebGPU has no tile kernel above rank 4 and falls back to a synchronous read of
  // the GPU tensor, which fails in Node ("OffscreenCanvas is not defined").
  return tf.reshape(tf.tile(tf.reshape(x, [b, h, 1, s * d]), [1, 1, r, 1]), [b, h * r, s, d]);
}

/** Self-attention (`wq`, `wk`, `wv`, `wo`, no biases) with RoPE on queries and keys. */
export class Attention {
  readonly wq: Linear;
  readonly wk: Linear;
  readonly wv: Linear;
  readonly wo: Linear;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;

  constructor(scope: ParameterScope, config: AttentionConfig, init: WeightInit) {
    ({ nHeads: this.nHeads, nKvHeads: this.nKvHeads, headDim: this.headDim } = resolveHeads(config));
    this.wq = new Linear(scope.child('wq'), config.dim, this.nHeads * this.headDim, init);
    this.wk = new Linear(scope.child('wk'), config.dim, this.nKvHeads * this.headDim, init);
    this.wv = new Linear(scope.child('wv'), config.dim, this.nKvHeads * this.headDim, init);
    this.wo = new Linear(scope.child('wo'), this.nHeads * this.headDim, config.dim, init);
  }

  /**
   * @param x - `[B, S, dim]`
   * @param mask - `[B, S, S]` as tensors, or a local attention spec
   * @param rope - cos/sin `[S, headDim/2]` for the positions of `x`, or null for no RoPE
   * @param tap - receives `wq`, `wk`, `wv`, `wo` outputs
   * @returns `[B, S, dim]` (after `wo`)
   */
  apply(x: tf.Tensor, mask: AttentionMask, rope: { cos: tf.Tensor; sin: tf.Tensor } | null, tap?: ModuleTap): tf.Tensor {
    return tf.tidy(() => {
      const { q, k, v } = this.project(x, rope, tap);
      const r = this.nHeads / this.nKvHeads;
      const out = this.wo.apply(mergeHeads(scaledDotProductAttention(q, repeatKv(k, r), repeatKv(v, r), mask)));
      tap?.('wo', out);
      return out;
    });
  }

  /**
   * One step of incremental (KV-cached) self-attention: the S new positions of `x` attend to the
   * cached keys of earlier positions and to each other, exactly as {@link apply} over the whole row
   * would compute those S outputs (architecture §9.2: windowed causal attention only ever reads earlier
   * keys, which do not change). Batch rows share the step's mask.
   *
   * @param x - `[B, S, dim]`, the new positions
   * @param step - mask, RoPE tables (for the new positions, i.e. at the cache's offset) and how
   *   many keys to keep, from {@link KvCache.plan}
   * @param cache - this layer's keys/values of earlier positions, or null for none
   * @returns the output `[B, S, dim]` (after `wo`) and the layer's keys/values to keep (the last
   *   `step.keep` positions; null when none is kept). The input cache is not disposed.
   */
  applyCached(x: tf.Tensor, step: CachedStep, cache: LayerKv | null): { out: tf.Tensor; kv: LayerKv | null } {
    const [out, k, v] = tf.tidy(() => {
      const { q, k: newK, v: newV } = this.project(x, step.rope);
      const keys = cache ? tf.concat([cache.k, newK], 2) : newK;
      const values = cache ? tf.concat([cache.v, newV], 2) : newV;
      const r = this.nHeads / this.nKvHeads;
      const y = this.wo.apply(mergeHeads(scaledDotProductAttention(q, repeatKv(keys, r), repeatKv(values, r), step.mask)));
      const total = keys.shape[2]!;
      const keep = Math.min(step.keep, total);
      if (keep <= 0) return [y];
      if (keep === total) return [y, keys, values];
      // Only the last `keep` keys can be seen again (window / document, see KvCache.plan).
      const from = total - keep;
      return [y, tf.slice(keys, [0, 0, from, 0], [-1, -1, keep, -1]), tf.slice(values, [0, 0, from, 0], [-1, -1, keep, -1])];
    });
    return { out: out!, kv: k && v ? { k, v } : null };
  }

  /** Queries `[B, H, S, D]`, keys and values `[B, Hkv, S, D]`, RoPE applied to queries and keys. */
  private project(
    x: tf.Tensor,
    rope: { cos: tf.Tensor; sin: tf.Tensor } | null,
    tap?: ModuleTap,
  ): { q: tf.Tensor; k: tf.Tensor; v: tf.Tensor } {
    const [b, s] = x.shape as [number, number];
    const wq = this.wq.apply(x);
    const wk = this.wk.apply(x);
    const wv = this.wv.apply(x);
    tap?.('wq', wq);
    tap?.('wk', wk);
    tap?.('wv', wv);
    let q = tf.reshape(wq, [b, s, this.nHeads, this.headDim]);
    let k = tf.reshape(wk, [b, s, this.nKvHeads, this.headDim]);
    if (rope) {
      q = applyRotary(q, rope.cos, rope.sin);
      k = applyRotary(k, rope.cos, rope.sin);
    }
    return { q: swapMiddleAxes(q), k: swapMiddleAxes(k), v: splitHeads(wv, this.nKvHeads, this.headDim) };
  }
}

/**
 * Cross-attention block of BLT (architecture §5.3): `cross_attn_norm_q`, `cross_attn_norm_kv`, `wq..wo`, no
 * RoPE. Returns `x + wo(attn)` — the residual is inside, as in the reference; callers that add `x`
 * again reproduce the reference's doubled residual on purpose (architecture §5.2, §16).
 */
export class CrossAttention {
  readonly normQ: RMSNorm;
  readonly normKv: RMSNorm;
  readonly wq: Linear;
  readonly wk: Linear;
  readonly wv: Linear;
  readonly wo: Linear;
  readonly nHeads: number;
  readonly headDim: number;

  constructor(scope: ParameterScope, config: { dim: number; nHeads: number; normEps?: number }, init: WeightInit) {
    const { nHeads, headDim } = resolveHeads({ dim: config.dim, nHeads: config.nHeads });
    this.nHeads = nHeads;
    this.headDim = headDim;
    this.normQ = new RMSNorm(scope.child('cross_attn_norm_q'), config.dim, config.normEps);
    this.normKv = new RMSNorm(scope.child('cross_attn_norm_kv'), config.dim, config.normEps);
    this.wq = new Linear(scope.child('wq'), config.dim, config.dim, init);
    this.wk = new Linear(scope.child('wk'), config.dim, config.dim, init);
    this.wv = new Linear(scope.child('wv'), config.dim, config.dim, init);
    this.wo = new Linear(scope.child('wo'), config.dim, config.dim, init);
  }

  /**
   * @param x - queries `[B, Q, dim]`
   * @param kv - keys/values `[B, K, dim]`
   * @param mask - `[B, Q, K]` as tensors; rows with no key give `x` unchanged (attention 0)
   * @param tap - receives `cross_attn_norm_q`, `cross_attn_norm_kv`, `wq`, `wk`, `wv`, `wo` outputs
   * @returns `[B, Q, dim]` = `x + wo(attn)`
   */
  apply(x: tf.Tensor, kv: tf.Tensor, mask: MaskTensors, tap?: ModuleTap): tf.Tensor {
    return tf.tidy(() => this.attend(x, this.projectKv(kv, tap), mask, tap));
  }

  /**
   * The keys and values of `kv`, heads split: what {@link attend} reads. They depend on `kv` alone,
   * so a generator computes them once per patch and reuses them for every byte that reads the patch
   * (architecture §9.2: "decoder cross-attn keys/values for patch j are fixed once O[j] exists").
   *
   * @param kv - `[B, K, dim]`
   * @param tap - receives `cross_attn_norm_kv`, `wk`, `wv` outputs
   * @returns `{ k, v }`, each `[B, nHeads, K, headDim]`
   */
  projectKv(kv: tf.Tensor, tap?: ModuleTap): LayerKv {
    return tf.tidy(() => {
      const kvn = this.normKv.apply(kv);
      tap?.('cross_attn_norm_kv', kvn);
      const wk = this.wk.apply(kvn);
      const wv = this.wv.apply(kvn);
      tap?.('wk', wk);
      tap?.('wv', wv);
      return { k: splitHeads(wk, this.nHeads, this.headDim), v: splitHeads(wv, this.nHeads, this.headDim) };
    });
  }

  /**
   * The block on keys/values already projected by {@link projectKv}: `x + wo(attn)`.
   *
   * @param x - queries `[B, Q, dim]`
   * @param kv - from {@link projectKv}, `[B, nHeads, K, headDim]` each
   * @param mask - `[B, Q, K]` as tensors, or null when every query sees every key
   * @param tap - receives `cross_attn_norm_q`, `wq`, `wo` outputs
   * @returns `[B, Q, dim]`
   */
  attend(x: tf.Tensor, kv: LayerKv, mask: MaskTensors | null, tap?: ModuleTap): tf.Tensor {
    return tf.tidy(() => {
      const xn = this.normQ.apply(x);
      tap?.('cross_attn_norm_q', xn);
      const wq = this.wq.apply(xn);
      tap?.('wq', wq);
      const attn = scaledDotProductAttention(splitHeads(wq, this.nHeads, this.headDim), kv.k, kv.v, mask);
      const wo = this.wo.apply(mergeHeads(attn));
      tap?.('wo', wo);
      return tf.add(x, wo);
    });
  }
}
