import * as tf from '@tensorflow/tfjs-core';
import { prefixTap } from './attention.js';
import type { KvCache } from './kv-cache.js';
import { Embedding, Linear } from './linear.js';
import { type ActivationTap, disposeMask, localSelfAttentionMask } from './model-parts.js';
import type { ParameterScope } from './parameters.js';
import { RMSNorm } from './rms-norm.js';
import type { RotaryEmbedding } from './rotary.js';
import type { TransformerBlock } from './transformer-block.js';
import { type TransformerStackConfig, createTransformerStack } from './transformer-stack.js';

/** Sizes of an {@link LMTransformer}: the stack's, plus the vocabulary and the attention mask. */
export interface LMTransformerConfig extends TransformerStackConfig {
  /** Rows of the embedding and outputs of the head. */
  readonly vocabSize: number;
  /** Query i sees key j only if `i − window < j ≤ i` (`local_block_causal`); undefined: unlimited. */
  readonly window?: number;
  /** Split documents after each EOS (`block_causal`, `local_block_causal`); false: plain causal. */
  readonly splitDocuments: boolean;
  /** The EOS id documents end at. */
  readonly eosId: number;
}

/**
 * The reference's decoder-only language model, `LMTransformer` (bytelatent/transformer.py;
 * architecture §4.1): token embedding `tok_embeddings`, pre-norm blocks `layers.N` with RoPE, final
 * RMSNorm `norm`, output head `output` (no weight tying). The entropy model (`@bytelatent/entropy-patcher`)
 * and the token baselines (`@bytelatent/evals`) are this model with their own arguments and checks.
 */
export class LMTransformer {
  readonly tokEmbeddings: Embedding;
  readonly layers: readonly TransformerBlock[];
  readonly norm: RMSNorm;
  readonly output: Linear;
  readonly rope: RotaryEmbedding;

  /**
   * Creates the weights in the reference's order (embedding, blocks, norm, head), embedding and head
   * initialised at std `dim^−½` (architecture §11).
   *
   * @param scope - where the weights go (their names are the reference's under it)
   * @param config - sizes and mask
   * @param random - uniform generator in [0, 1) for the initial weights
   * @throws {NnError} for invalid sizes, or past the registry's `maxParameters`
   */
  constructor(
    scope: ParameterScope,
    readonly config: LMTransformerConfig,
    random: () => number,
  ) {
    const std = config.dim ** -0.5;
    this.tokEmbeddings = new Embedding(scope.child('tok_embeddings'), config.vocabSize, config.dim, { std, random });
    ({ layers: this.layers, rope: this.rope } = createTransformerStack(scope, config, random));
    this.norm = new RMSNorm(scope.child('norm'), config.dim, config.normEps);
    this.output = new Linear(scope.child('output'), config.dim, config.vocabSize, { std, random });
  }

  /**
   * Next-token logits of right-padded rows, each with its own causal mask (documents and window as
   * configured), so rows never see each other and padding never reaches a real position.
   *
   * @param ids - `[batch · seqLen]` ids, rows right-padded (checked by the caller)
   * @param rows - the rows' own ids (their lengths and EOS positions make the mask)
   * @param seqLen - padded length
   * @param tap - optional receiver of every module's output (`tok_embeddings`, `layers.i…`, `norm`, `output`)
   * @returns `[batch, seqLen, vocab]` logits
   */
  logits(ids: Int32Array, rows: readonly ArrayLike<number>[], seqLen: number, tap?: ActivationTap): tf.Tensor3D {
    const c = this.config;
    const batch = rows.length;
    // Long windowed rows run block by block (memory N·window, not N²).
    const mask = localSelfAttentionMask(rows, seqLen, {
      ...(c.window !== undefined ? { window: c.window } : {}),
      eosId: c.eosId,
      splitDocuments: c.splitDocuments,
    });
    const rope = this.rope.tables(0, seqLen);
    try {
      return tf.tidy(() => {
        let h = this.tokEmbeddings.apply(tf.tensor2d(ids, [batch, seqLen], 'int32'));
        tap?.('tok_embeddings', h);
        this.layers.forEach((layer, i) => {
          h = layer.apply(h, mask, rope, prefixTap(tap, `layers.${i}`));
          tap?.(`layers.${i}`, h);
        });
        const n = this.norm.apply(h);
        tap?.('norm', n);
        const out = this.output.apply(n) as tf.Tensor3D;
        tap?.('output', out);
        return out;
      });
    } finally {
      disposeMask(mask);
      tf.dispose([rope.cos, rope.sin]);
    }
  }

  /**
   * Logits of new positions of one row whose earlier positions are in `cache` (the model is causal,
   * so earlier positions never change; architecture §9.2). The cache advances by the new positions.
   *
   * @param ids - the new ids (checked by the caller, within the model's positions)
   * @param cache - a cache made for this model's layers, window and documents
   * @returns `[1, ids.length, vocab]` logits
   */
  logitsCached(ids: Int32Array, cache: KvCache): tf.Tensor3D {
    return tf.tidy(() => {
      const step = cache.plan(ids, this.rope);
      let h = this.tokEmbeddings.apply(tf.tensor2d(ids, [1, ids.length], 'int32'));
      const kvs = this.layers.map((layer, i) => {
        const r = layer.applyCached(h, step, cache.layer(i));
        h = r.out;
        return r.kv;
      });
      cache.commit(ids, kvs);
      return this.output.apply(this.norm.apply(h)) as tf.Tensor3D;
    });
  }
}
