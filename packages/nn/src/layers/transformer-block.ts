import * as tf from '@tensorflow/tfjs-core';
import { Attention, type AttentionConfig, type AttentionMask, type ModuleTap, prefixTap } from './attention.js';
import { FeedForward, ffnHiddenDim } from './feed-forward.js';
import { type InitStdFactor, initStdDivisor } from './init.js';
import type { CachedStep, LayerKv } from './kv-cache.js';
import type { ParameterScope } from './parameters.js';
import { RMSNorm } from './rms-norm.js';

/** Arguments of a pre-norm block, named as the reference's `BaseTransformerArgs`. */
export interface TransformerBlockConfig extends AttentionConfig {
  readonly multipleOf?: number;
  readonly ffnDimMultiplier?: number | null;
  readonly normEps?: number;
}

/**
 * The pre-norm Llama block used by every transformer of BLT (golden Semantics 11):
 * `h = x + attention(attention_norm(x))`, `out = h + feed_forward(ffn_norm(h))`.
 * Weight names: `attention.{wq,wk,wv,wo}.weight`, `feed_forward.{w1,w2,w3}.weight`,
 * `attention_norm.weight`, `ffn_norm.weight`.
 */
export class TransformerBlock {
  readonly attentionNorm: RMSNorm;
  readonly attention: Attention;
  readonly ffnNorm: RMSNorm;
  readonly feedForward: FeedForward;

  /**
   * @param scope - e.g. `layers.0`
   * @param config - sizes
   * @param init - generator, and the depth scaling of the reference init (architecture §11)
   */
  constructor(
    scope: ParameterScope,
    config: TransformerBlockConfig,
    init: { random: () => number; layerIndex: number; nLayers: number; factor: InitStdFactor },
  ) {
    const divisor = initStdDivisor(init.factor, init.layerIndex, init.nLayers, config.dim);
    const hidden = ffnHiddenDim(config.dim, config.multipleOf ?? 256, config.ffnDimMultiplier ?? null);
    const inStd = config.dim ** -0.5 / divisor;
    this.attentionNorm = new RMSNorm(scope.child('attention_norm'), config.dim, config.normEps);
    this.attention = new Attention(scope.child('attention'), config, { std: inStd, random: init.random });
    this.ffnNorm = new RMSNorm(scope.child('ffn_norm'), config.dim, config.normEps);
    this.feedForward = new FeedForward(scope.child('feed_forward'), config.dim, hidden, {
      in: { std: inStd, random: init.random },
      out: { std: hidden ** -0.5 / divisor, random: init.random },
    });
  }

  /**
   * @param x - `[B, S, dim]`
   * @param mask - self-attention mask `[B, S, S]` as tensors, or a local attention spec
   * @param rope - cos/sin for the positions of `x`, or null
   * @param tap - receives `attention_norm`, `attention`, `attention.{wq,wk,wv,wo}`, `ffn_norm`,
   *   `feed_forward`, `feed_forward.{w1,w3,w2}` (the block's own output is the return value)
   * @returns `[B, S, dim]`
   */
  apply(x: tf.Tensor, mask: AttentionMask, rope: { cos: tf.Tensor; sin: tf.Tensor } | null, tap?: ModuleTap): tf.Tensor {
    return tf.tidy(() => {
      const n = this.attentionNorm.apply(x);
      tap?.('attention_norm', n);
      const a = this.attention.apply(n, mask, rope, prefixTap(tap, 'attention'));
      tap?.('attention', a);
      const h = tf.add(x, a);
      const m = this.ffnNorm.apply(h);
      tap?.('ffn_norm', m);
      const f = this.feedForward.apply(m, prefixTap(tap, 'feed_forward'));
      tap?.('feed_forward', f);
      return tf.add(h, f);
    });
  }

  /**
   * The block over new positions of a row whose earlier positions are in a KV cache (architecture §9.2):
   * the same computation as {@link apply}, the attention reading the cached keys (see
   * {@link Attention.applyCached}; norms and feed-forward are per position).
   *
   * @param x - `[B, S, dim]`, the new positions
   * @param step - from {@link KvCache.plan}
   * @param cache - this layer's cached keys/values, or null
   * @returns `[B, S, dim]` and the keys/values to hand to {@link KvCache.commit}
   */
  applyCached(x: tf.Tensor, step: CachedStep, cache: LayerKv | null): { out: tf.Tensor; kv: LayerKv | null } {
    const [out, k, v] = tf.tidy(() => {
      const a = this.attention.applyCached(this.attentionNorm.apply(x), step, cache);
      const h = tf.add(x, a.out);
      const y = tf.add(h, this.feedForward.apply(this.ffnNorm.apply(h)));
      return a.kv ? [y, a.kv.k, a.kv.v] : [y];
    });
    return { out: out!, kv: k && v ? { k, v } : null };
  }
}
