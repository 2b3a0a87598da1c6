import * as tf from '@tensorflow/tfjs-core';
import {
  type ActivationTap,
  applyBlock,
  blockCausalMask,
  BltError,
  checkPositiveInts,
  createTransformerStack,
  disposeMask,
  KvCache,
  Linear,
  NnError,
  type ParameterScope,
  type RotaryEmbedding,
  type TransformerBlock,
  type TransformerStackConfig,
} from '@bytelatent/nn';

/**
 * Sizes and flags of the global transformer, resolved from the reference's arguments
 * (`create_global_transformer`: `dim_global`, `n_layers_global`, `n_heads_global`,
 * `n_kv_heads_global`, `max_seqlen`, `attn_bias_type`, ...).
 *
 * The transformer fields ({@link TransformerStackConfig}) are: `dim` = `dim_global` (d_G),
 * `nLayers` = `n_layers_global`, `nHeads` = `n_heads_global`, `nKvHeads` = `n_kv_heads_global`,
 * `headDim` = `head_dim`, and `maxSeqLen` = `max_seqlen` (the RoPE table length in patches, the
 * most patches a row may have).
 */
export interface GlobalTransformerConfig extends TransformerStackConfig {
  /**
   * Width of the incoming patch vectors (`get_global_dim_patch_emb`: d_E·k). When it differs from
   * `dim`, a `token_embedding_projection` (dimTokenEmb → dim) is created and applied (architecture §6).
   */
  readonly dimTokenEmb: number;
  /** `attn_bias_type` `block_causal` (true: documents split after EOS patches) or `causal` (false). */
  readonly splitDocuments: boolean;
  /** `eos_id` (default 2). */
  readonly eosId?: number;
}

function configError(message: string): BltError {
  return new BltError('CONFIG_MISMATCH', `global transformer: ${message}`);
}

/**
 * The latent (global) transformer of BLT (architecture §6): optional `token_embedding_projection`, then
 * pre-norm blocks over the patch vectors with RoPE over patch index 0..P−1 and a block-causal mask
 * split after every patch holding an EOS. **No final norm**: the raw residual stream goes to the
 * decoder. Weight names: `layers.{i}...`, `token_embedding_projection.weight` (when present).
 */
export class GlobalTransformer {
  readonly config: Readonly<GlobalTransformerConfig>;
  readonly layers: readonly TransformerBlock[];
  readonly tokenEmbeddingProjection: Linear | null;
  readonly rope: RotaryEmbedding;
  private readonly path: string;

  /**
   * Creates the weights (reference initialisation, architecture §11) in the scope.
   *
   * @param scope - normally `root.child('global_transformer')`
   * @param config - sizes and flags
   * @param random - uniform generator in [0, 1) for the initial weights
   * @throws {BltError} `CONFIG_MISMATCH` for invalid sizes; {NnError} `TOO_LARGE` past the registry's `maxParameters`
   */
  constructor(scope: ParameterScope, config: GlobalTransformerConfig, random: () => number) {
    checkPositiveInts('global transformer', config, ['dim', 'nLayers', 'nHeads', 'maxSeqLen', 'dimTokenEmb']);
    this.config = { ...config };
    this.path = scope.prefix;
    try {
      // The blocks come first, then the projection (the reference's init order).
      const stack = createTransformerStack(scope, config, random);
      this.layers = stack.layers;
      this.rope = stack.rope;
      this.tokenEmbeddingProjection =
        config.dimTokenEmb !== config.dim
          ? new Linear(scope.child('token_embedding_projection'), config.dimTokenEmb, config.dim, {
              std: config.dimTokenEmb ** -0.5,
              random,
            })
          : null;
    } catch (e) {
      // TOO_LARGE (the registry's maxParameters) is not a configuration error: the caller set a limit.
      if (e instanceof NnError && e.code !== 'TOO_LARGE') throw configError(e.message);
      throw e;
    }
  }

  /**
   * @param embeds - `[B, P, dimTokenEmb]` patch vectors (the encoder's patch rows reshaped, architecture §8.1 step 5)
   * @param tokens - per row, one token per patch (BOE, or EOS for a patch holding one: see
   *   {@link patchTokens}); rows shorter than P are padded and never reach real patches (causal)
   * @param tap - receives `<scope>.token_embedding_projection`, `<scope>.layers.{i}[...]`
   * @returns `[B, P, dim]`
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs
   */
  forward(embeds: tf.Tensor3D, tokens: readonly ArrayLike<number>[], tap?: ActivationTap): tf.Tensor3D {
    const [batch, numPatches, width] = embeds.shape;
    if (width !== this.config.dimTokenEmb) {
      throw new BltError('SHAPE_MISMATCH', `global transformer: input width ${width}, expected ${this.config.dimTokenEmb}`);
    }
    if (tokens.length !== batch)
      throw new BltError('SHAPE_MISMATCH', `global transformer: ${tokens.length} token rows for a batch of ${batch}`);
    if (numPatches > this.config.maxSeqLen) {
      throw new BltError('INVALID_ARGUMENT', `global transformer: ${numPatches} patches exceed max_seqlen ${this.config.maxSeqLen}`);
    }
    const mask = blockCausalMask(tokens, numPatches, this.config.splitDocuments, this.config.eosId ?? 2);
    const rope = this.rope.tables(0, numPatches);
    try {
      return tf.tidy(() => {
        let h: tf.Tensor = embeds;
        if (this.tokenEmbeddingProjection) {
          h = this.tokenEmbeddingProjection.apply(h);
          tap?.(`${this.path}.token_embedding_projection`, h);
        }
        this.layers.forEach((layer, i) => {
          h = applyBlock(layer, h, mask, rope, `${this.path}.layers.${i}`, tap);
        });
        return h as tf.Tensor3D;
      });
    } finally {
      disposeMask(mask);
      tf.dispose([rope.cos, rope.sin]);
    }
  }

  /**
   * A KV cache for {@link forwardCached}: causal over patches, documents split after EOS patches
   * when `splitDocuments` (as {@link forward}'s mask).
   */
  createCache(): KvCache {
    return new KvCache({ nLayers: this.layers.length, eosId: this.config.splitDocuments ? (this.config.eosId ?? 2) : undefined });
  }

  /**
   * The transformer over new patches of one row whose earlier patches are in `cache` — the latent
   * transformer runs once per completed patch during generation, not once per byte (architecture §9.2; the
   * paper's "global model invoked only at patch boundaries"). Equal to the same positions of
   * {@link forward}: the mask is causal over patches, so earlier outputs never change. The cache
   * advances by S.
   *
   * @param embeds - `[1, S, dimTokenEmb]`, the new patches' vectors
   * @param tokens - the S patches' tokens (BOE, or EOS for a patch holding one: {@link patchTokens})
   * @param cache - from {@link createCache}
   * @returns `[1, S, dim]`
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs or patches past `maxSeqLen`
   */
  forwardCached(embeds: tf.Tensor3D, tokens: ArrayLike<number>, cache: KvCache): tf.Tensor3D {
    const [batch, numPatches, width] = embeds.shape;
    if (batch !== 1 || width !== this.config.dimTokenEmb || tokens.length !== numPatches) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `global transformer: cached input must be [1, ${tokens.length}, ${this.config.dimTokenEmb}], got [${embeds.shape.join(', ')}]`,
      );
    }
    if (cache.nLayers !== this.layers.length)
      throw new BltError('SHAPE_MISMATCH', `global transformer: cache has ${cache.nLayers} layers, expected ${this.layers.length}`);
    if (cache.position + numPatches > this.config.maxSeqLen) {
      throw new BltError(
        'INVALID_ARGUMENT',
        `global transformer: ${cache.position + numPatches} patches exceed max_seqlen ${this.config.maxSeqLen}`,
      );
    }
    return tf.tidy(() => {
      const step = cache.plan(tokens, this.rope);
      let h: tf.Tensor = this.tokenEmbeddingProjection ? this.tokenEmbeddingProjection.apply(embeds) : embeds;
      const kvs = this.layers.map((layer, i) => {
        const r = layer.applyCached(h, step, cache.layer(i));
        h = r.out;
        return r.kv;
      });
      cache.commit(tokens, kvs);
      return h as tf.Tensor3D;
    });
  }
}

/**
 * The global transformer's token per patch (architecture §6, the reference's forward): BOE everywhere, EOS
 * for every patch that holds an EOS byte. Only the `patchIds.length` real positions are looked at.
 *
 * @param tokens - the row's token ids
 * @param patchIds - patch of each position (−1 = none)
 * @param numPatches - P
 * @param eosId - default 2
 * @param boeId - default 0
 * @returns `numPatches` ids
 */
export function patchTokens(tokens: ArrayLike<number>, patchIds: ArrayLike<number>, numPatches: number, eosId = 2, boeId = 0): Int32Array {
  const out = new Int32Array(numPatches).fill(boeId);
  for (let t = 0; t < Math.min(tokens.length, patchIds.length); t++) {
    const p = patchIds[t]!;
    if (tokens[t] === eosId && p >= 0 && p < numPatches) out[p] = eosId;
  }
  return out;
}
