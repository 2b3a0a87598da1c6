import * as tf from '@tensorflow/tfjs-core';
import {
  type ActivationTap,
  applyBlock,
  type AttentionMask,
  BltError,
  checkPositiveInts,
  createTransformerStack,
  CrossAttention,
  disposeMask,
  groupCrossMask,
  initStdDivisor,
  KvCache,
  type LayerKv,
  Linear,
  type MaskTensors,
  NnError,
  type ParameterScope,
  patchRowGroups,
  prefixTap,
  RMSNorm,
  type RotaryEmbedding,
  type TransformerBlock,
  type TransformerStackConfig,
} from '@bytelatent/nn';

/**
 * Sizes and flags of the local decoder, resolved from the reference's arguments
 * (`create_local_decoder`: `dim_local_decoder`, `n_layers_local_decoder`, `n_heads_local_decoder`,
 * `cross_attn_*`, `max_encoder_seq_length`, ...).
 *
 * The transformer fields ({@link TransformerStackConfig}) are: `dim` = `dim_local_decoder` (d_D),
 * which must equal the encoder width (the decoder reads the encoder's byte states); `nLayers` =
 * `n_layers_local_decoder`; `nHeads` = `n_heads_local_decoder`; `nKvHeads` = `n_kv_heads`;
 * `headDim` = `head_dim`; and `maxSeqLen` = `max_encoder_seq_length` (the RoPE table length, the
 * longest row accepted).
 */
export interface LocalDecoderConfig extends TransformerStackConfig {
  /** `vocab_size + pm_size`: outputs of the head. */
  readonly vocabSize: number;
  /** Width of the global transformer's output (`dim_global`, the reference's decoder `dim_patch_emb`). */
  readonly dimPatchEmb: number;
  /** `cross_attn_k`: patch rows per patch. */
  readonly crossAttnK: number;
  /** `cross_attn_nheads`. */
  readonly crossAttnNHeads: number;
  /** `cross_attn_all_layers_decoder`: cross-attention before every layer instead of the first only. */
  readonly crossAttnAllLayers: boolean;
  /** `cross_attn_window_decoder`: a byte sees the rows of its last `window` patches; undefined = one patch. */
  readonly crossAttnWindow?: number;
}

function configError(message: string): BltError {
  return new BltError('CONFIG_MISMATCH', `local decoder: ${message}`);
}

/**
 * The BLT local decoder (architecture §7, golden Semantics 7): `patch_embedding_projection` of the global
 * output (d_G → d_D·k, reshaped to k rows per patch), then per layer cross-attention from every
 * byte to the rows of patch `decoder_patch_ids[t]` (the patch *before* the one holding the byte it
 * predicts) with the doubled residual, then the block; final `norm` and `output` head.
 * Weight names: `layers.{i}...`, `cross_attn_layers.{i}...`, `patch_embedding_projection.weight`,
 * `norm.weight`, `output.weight`.
 */
export class LocalDecoder {
  readonly config: Readonly<LocalDecoderConfig>;
  readonly layers: readonly TransformerBlock[];
  readonly crossAttnLayers: readonly CrossAttention[];
  /** Present when `dimPatchEmb != dim` (the reference's `_should_create_patch_projection`). */
  readonly patchEmbeddingProjection: Linear | null;
  readonly norm: RMSNorm;
  readonly output: Linear;
  readonly rope: RotaryEmbedding;
  private readonly path: string;

  /**
   * Creates the weights (reference initialisation, architecture §11) in the scope.
   *
   * @param scope - normally `root.child('local_decoder')`
   * @param config - sizes and flags
   * @param random - uniform generator in [0, 1) for the initial weights
   * @throws {BltError} `CONFIG_MISMATCH` for invalid sizes or an unsupported combination; {NnError} `TOO_LARGE` past the
   *   registry's `maxParameters`
   */
  constructor(scope: ParameterScope, config: LocalDecoderConfig, random: () => number) {
    checkPositiveInts(
      'local decoder',
      config,
      ['dim', 'nLayers', 'nHeads', 'maxSeqLen', 'vocabSize', 'dimPatchEmb', 'crossAttnK', 'crossAttnNHeads'],
      ['crossAttnWindow'],
    );
    if (config.dimPatchEmb === config.dim && config.crossAttnK !== 1) {
      // Without the projection the reference never reshapes to k rows, and its mask no longer fits.
      throw configError(
        `dim_global == dim_local_decoder (${config.dim}) leaves no patch projection, which needs cross_attn_k = 1, got ${config.crossAttnK}`,
      );
    }
    if (config.dim % config.crossAttnNHeads !== 0)
      throw configError(`dim ${config.dim} is not a multiple of crossAttnNHeads ${config.crossAttnNHeads}`);
    this.config = { ...config };
    this.path = scope.prefix;
    const d = config.dim;
    const std = d ** -0.5;
    const factor = config.initStdFactor ?? 'disabled';
    try {
      // The blocks come first, then the projection (the reference's init order).
      const stack = createTransformerStack(scope, config, random);
      this.layers = stack.layers;
      this.rope = stack.rope;
      this.patchEmbeddingProjection =
        config.dimPatchEmb !== d
          ? new Linear(scope.child('patch_embedding_projection'), config.dimPatchEmb, d * config.crossAttnK, {
              std: config.dimPatchEmb ** -0.5,
              random,
            })
          : null;
      const nCross = config.crossAttnAllLayers ? config.nLayers : 1;
      this.crossAttnLayers = Array.from(
        { length: nCross },
        (_, i) =>
          new CrossAttention(
            scope.child(`cross_attn_layers.${i}`),
            { dim: d, nHeads: config.crossAttnNHeads, normEps: config.normEps },
            { std: std / initStdDivisor(factor, i, config.nLayers, d), random },
          ),
      );
      this.norm = new RMSNorm(scope.child('norm'), d, config.normEps);
      this.output = new Linear(scope.child('output'), d, config.vocabSize, { std, random });
    } catch (e) {
      // TOO_LARGE (the registry's maxParameters) is not a configuration error: the caller set a limit.
      if (e instanceof NnError && e.code !== 'TOO_LARGE') throw configError(e.message);
      throw e;
    }
  }

  /**
   * Next-byte logits (architecture §7.2).
   *
   * @param h - `[B, S, dim]` the encoder's byte states
   * @param patchStates - `[B, P, dimPatchEmb]` the global transformer's output
   * @param selfMask - the local self-attention mask (same as the encoder's)
   * @param decoderPatchIds - per row, the patch each position reads (`decoder_patch_ids`); −1 = none (padding)
   * @param tap - receives `<scope>.patch_embedding_projection[:input]`, `<scope>.cross_attn_layers.{i}[...]`,
   *   `<scope>.layers.{i}[...]`, `<scope>.norm[:input]`, `<scope>.output[:input]`
   * @returns `[B, S, vocabSize]` float32 logits
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs
   */
  forward(
    h: tf.Tensor3D,
    patchStates: tf.Tensor3D,
    selfMask: AttentionMask,
    decoderPatchIds: readonly Int32Array[],
    tap?: ActivationTap,
  ): tf.Tensor3D {
    const [batch, seqLen, dim] = h.shape;
    const [pb, numPatches, width] = patchStates.shape;
    if (dim !== this.config.dim)
      throw new BltError('SHAPE_MISMATCH', `local decoder: byte states have width ${dim}, expected ${this.config.dim}`);
    if (pb !== batch || width !== this.config.dimPatchEmb) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local decoder: patch states must be [${batch}, P, ${this.config.dimPatchEmb}], got [${patchStates.shape.join(', ')}]`,
      );
    }
    if (seqLen > this.config.maxSeqLen) {
      throw new BltError('INVALID_ARGUMENT', `local decoder: ${seqLen} positions exceed max_encoder_seq_length ${this.config.maxSeqLen}`);
    }
    if (decoderPatchIds.length !== batch || decoderPatchIds.some((r) => r.length !== seqLen)) {
      throw new BltError('SHAPE_MISMATCH', `local decoder: decoderPatchIds must have ${batch} rows of ${seqLen} ids`);
    }
    if (decoderPatchIds.some((r) => r.some((p) => p >= numPatches))) {
      throw new BltError('INVALID_ARGUMENT', `local decoder: decoder patch ids must be < the number of patches (${numPatches})`);
    }
    const crossMask = this.crossMask(decoderPatchIds, 0, numPatches);
    const rope = this.rope.tables(0, seqLen);
    try {
      return tf.tidy(() => {
        const kv = this.patchKv(patchStates, tap);
        let x: tf.Tensor = h;
        this.layers.forEach((layer, i) => {
          if (i === 0 || this.config.crossAttnAllLayers) {
            const path = `${this.path}.cross_attn_layers.${i}`;
            const cross = this.crossAttnLayers[i]!.attend(x, kv[i]!, crossMask, prefixTap(tap, path));
            tap?.(path, cross);
            // Doubled residual: CrossAttention already returns x + wo(attn) (architecture §7.2 step 3, golden Semantics 7).
            x = tf.add(x, cross);
          }
          x = applyBlock(layer, x, selfMask, rope, `${this.path}.layers.${i}`, tap);
        });
        return this.head(x, tap);
      });
    } finally {
      disposeMask(crossMask);
      tf.dispose([rope.cos, rope.sin]);
    }
  }

  /**
   * The keys and values every cross-attention reads for these global outputs: the
   * `patch_embedding_projection` (d_G → d_D·k, k rows per patch) then each cross-attention's
   * `cross_attn_norm_kv`, `wk`, `wv`. They depend on the patch alone, so a generator computes them
   * once per completed patch (architecture §9.2).
   *
   * @param patchStates - `[B, Q, dimPatchEmb]` global outputs of Q patches
   * @param tap - receives `<scope>.patch_embedding_projection[:input]` and the cross-attentions'
   *   `cross_attn_norm_kv`, `wk`, `wv`
   * @returns per cross-attention layer, `{ k, v }` of `[B, crossAttnNHeads, Q·k, dim / crossAttnNHeads]`
   * @throws {BltError} `SHAPE_MISMATCH` for a bad width
   */
  patchKv(patchStates: tf.Tensor3D, tap?: ActivationTap): LayerKv[] {
    const [batch, numPatches, width] = patchStates.shape;
    if (width !== this.config.dimPatchEmb) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local decoder: patch states must have width ${this.config.dimPatchEmb}, got [${patchStates.shape.join(', ')}]`,
      );
    }
    const flat = tf.tidy(() => {
      let kv: tf.Tensor = patchStates;
      if (this.patchEmbeddingProjection) {
        tap?.(`${this.path}.patch_embedding_projection:input`, patchStates);
        const projected = this.patchEmbeddingProjection.apply(patchStates);
        tap?.(`${this.path}.patch_embedding_projection`, projected);
        kv = tf.reshape(projected, [batch, numPatches * this.rowsPerPatch, this.config.dim]);
      }
      return this.crossAttnLayers.flatMap((c, i) => {
        const { k, v } = c.projectKv(kv, prefixTap(tap, `${this.path}.cross_attn_layers.${i}`));
        return [k, v];
      });
    });
    return this.crossAttnLayers.map((_, i) => ({ k: flat[2 * i]!, v: flat[2 * i + 1]! }));
  }

  /** Key rows per patch in the cross-attention: `crossAttnK`, or 1 without a patch projection. */
  get rowsPerPatch(): number {
    return this.patchEmbeddingProjection ? this.config.crossAttnK : 1;
  }

  /**
   * The cross-attention mask of bytes against the key rows of patches `first .. first + count − 1`:
   * byte t sees the rows of patch `decoderPatchIds[t]` (or of its last `crossAttnWindow` patches,
   * architecture §7.2 step 4); a negative id (padding) sees nothing.
   *
   * @param decoderPatchIds - per row, the patch each byte reads (absolute)
   * @param first - the first patch whose rows are the keys
   * @param count - number of patches whose rows are the keys
   * @returns mask tensors `[B, S, count·k]`; free with `disposeMask`
   */
  crossMask(decoderPatchIds: readonly Int32Array[], first: number, count: number): MaskTensors {
    const keyGroups = patchRowGroups(count, this.rowsPerPatch).map((g) => g + first);
    return groupCrossMask(
      decoderPatchIds,
      decoderPatchIds.map(() => keyGroups),
      this.config.crossAttnWindow,
    );
  }

  /**
   * Patches whose rows byte positions reading patch `decoderPatchId` see: `[first, first + count)`
   * (the patch itself, or its last `crossAttnWindow` patches, never before patch 0).
   *
   * @param decoderPatchId - the patch a byte reads
   */
  visiblePatches(decoderPatchId: number): { first: number; count: number } {
    const first = Math.max(0, decoderPatchId - (this.config.crossAttnWindow ?? 1) + 1);
    return { first, count: decoderPatchId - first + 1 };
  }

  /**
   * A KV cache for {@link forwardCached}.
   *
   * @param options - the local self-attention window (`local_attention_window_len`) and the EOS id
   *   after which documents split
   */
  createCache(options: { window?: number; eosId?: number } = {}): KvCache {
    return new KvCache({ nLayers: this.layers.length, window: options.window, eosId: options.eosId ?? 2 });
  }

  /**
   * Next-byte logits of new positions of one row whose earlier positions are in `cache` (architecture §9.2):
   * the decoder's self-attention is windowed causal and each byte's cross-attention reads a completed
   * patch, so earlier decoder states never change. Equal to the same positions of {@link forward}.
   * The cache advances by S.
   *
   * @param h - `[1, S, dim]`, the encoder's byte states of the new positions
   * @param patchKv - from {@link patchKv}: the rows of the patches the new bytes may read
   * @param crossMask - the bytes against those rows ({@link crossMask}), or null when every byte may
   *   read every row (one byte given exactly its {@link visiblePatches})
   * @param tokens - the S token ids (for the document split)
   * @param cache - from {@link createCache}
   * @returns `[1, S, vocabSize]` logits
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs or positions past `maxSeqLen`
   */
  forwardCached(
    h: tf.Tensor3D,
    patchKv: readonly LayerKv[],
    crossMask: MaskTensors | null,
    tokens: ArrayLike<number>,
    cache: KvCache,
  ): tf.Tensor3D {
    const [batch, seqLen, dim] = h.shape;
    if (batch !== 1 || dim !== this.config.dim || tokens.length !== seqLen) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local decoder: cached byte states must be [1, ${tokens.length}, ${this.config.dim}], got [${h.shape.join(', ')}]`,
      );
    }
    if (patchKv.length !== this.crossAttnLayers.length) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local decoder: ${patchKv.length} patch keys/values for ${this.crossAttnLayers.length} cross-attention layers`,
      );
    }
    if (cache.nLayers !== this.layers.length)
      throw new BltError('SHAPE_MISMATCH', `local decoder: cache has ${cache.nLayers} layers, expected ${this.layers.length}`);
    if (cache.position + seqLen > this.config.maxSeqLen) {
      throw new BltError(
        'INVALID_ARGUMENT',
        `local decoder: positions up to ${cache.position + seqLen} exceed max_encoder_seq_length ${this.config.maxSeqLen}`,
      );
    }
    return tf.tidy(() => {
      const step = cache.plan(tokens, this.rope);
      let x: tf.Tensor = h;
      const kvs = this.layers.map((layer, i) => {
        if (i === 0 || this.config.crossAttnAllLayers) x = tf.add(x, this.crossAttnLayers[i]!.attend(x, patchKv[i]!, crossMask));
        const r = layer.applyCached(x, step, cache.layer(i));
        x = r.out;
        return r.kv;
      });
      cache.commit(tokens, kvs);
      return this.head(x);
    });
  }

  /** Final `norm` and `output` head (architecture §7.2 step 5). */
  private head(x: tf.Tensor, tap?: ActivationTap): tf.Tensor3D {
    tap?.(`${this.path}.norm:input`, x);
    const n = this.norm.apply(x);
    tap?.(`${this.path}.norm`, n);
    tap?.(`${this.path}.output:input`, n);
    const logits = this.output.apply(n);
    tap?.(`${this.path}.output`, logits);
    return logits as tf.Tensor3D;
  }
}
