import * as tf from '@tensorflow/tfjs-core';
import { type HashNgramConfig, hashNgramTables, validateHashNgramConfig } from '@bytelatent/ngram-hash';
import {
  type ActivationTap,
  type AttentionMask,
  BltError,
  CrossAttention,
  Embedding,
  type HostEmbedding,
  KvCache,
  Linear,
  NnError,
  type ParameterScope,
  type RotaryEmbedding,
  type TransformerBlock,
  type TransformerStackConfig,
  applyBlock,
  applyCrossAttention,
  checkPositiveInts,
  createTransformerStack,
  disposeMask,
  groupCrossMask,
  initStdDivisor,
  patchRowGroups,
} from '@bytelatent/nn';

/**
 * Sizes and flags of the local encoder, resolved from the reference's `ByteLatentTransformerArgs`
 * (`dim_local_encoder`, `n_layers_local_encoder`, `n_heads_local_encoder`, `cross_attn_*`,
 * `encoder_hash_byte_group_*`, `max_encoder_seq_length`, ...; see `create_local_encoder`).
 *
 * The transformer fields ({@link TransformerStackConfig}) are: `dim` = `dim_local_encoder` (d_E),
 * `nLayers` = `n_layers_local_encoder` (>= 1), `nHeads` = `n_heads_local_encoder`, `nKvHeads` =
 * `n_kv_heads`, `headDim` = `head_dim`, and `maxSeqLen` = `max_encoder_seq_length` (the RoPE table
 * length, the longest row accepted).
 */
export interface LocalEncoderConfig extends TransformerStackConfig {
  /** `vocab_size + pm_size`: rows of `tok_embeddings`. */
  readonly vocabSize: number;
  /** `cross_attn_k`: patch rows per patch (d_E·k is the global input width). */
  readonly crossAttnK: number;
  /** `cross_attn_nheads`. */
  readonly crossAttnNHeads: number;
  /** `cross_attn_all_layers_encoder`: cross-attention after every layer instead of the last only. */
  readonly crossAttnAllLayers: boolean;
  /** `cross_attn_window_encoder`: a patch row sees the bytes of its last `window` patches; undefined = its own. */
  readonly crossAttnWindow?: number;
  /** The hash n-gram tables (`encoder_hash_byte_group_*`), or null for none. */
  readonly hash: HashNgramConfig | null;
}

/** Where the encoder's weights live: its own module and the model-level hash tables. */
export interface LocalEncoderScopes {
  /** Scope of the encoder module, e.g. `local_encoder`. */
  readonly encoder: ParameterScope;
  /**
   * Scope of the hash embedding tables. The reference keeps them on the composed model
   * (`encoder_hash_tok_embedding.{i}`, not under `local_encoder.`), so this is normally
   * `root.child('encoder_hash_tok_embedding')`.
   */
  readonly hashEmbeddings: ParameterScope;
}

/** Construction options of {@link LocalEncoder}. */
export interface LocalEncoderOptions {
  /**
   * The hash n-gram tables as host tables read from their checkpoint (`HostEmbedding`, one per
   * table in the reference's order: function-major, then n-gram size) instead of trainable tensors:
   * no weight is created for them, they cost no tensor memory, and they cannot be trained. For
   * inference with released models, whose tables are two thirds of the parameters.
   */
  readonly hashTables?: readonly HostEmbedding[];
}

/** Which patch each byte belongs to, for pooling and the cross-attention mask. */
export interface EncoderPatches {
  /** Per row, the patch of each of the `seqLen` positions; −1 marks a padding position. */
  readonly patchIds: readonly Int32Array[];
  /** Patches per row (rows with fewer are padded with empty patches). */
  readonly numPatches: number;
}

/** What {@link LocalEncoder.forward} returns. */
export interface LocalEncoderOutput {
  /** Byte states after the last layer, `[B, S, dim]` (no final norm): the decoder's input. */
  readonly h: tf.Tensor3D;
  /** Patch states after cross-attention, `[B, P·k, dim]` (the reference's `h_cross`). */
  readonly patchEmbeds: tf.Tensor3D;
}

function configError(message: string): BltError {
  return new BltError('CONFIG_MISMATCH', `local encoder: ${message}`);
}

/**
 * The BLT local encoder (architecture §5.2): byte embedding plus hash n-gram embeddings (architecture §2.3), local
 * transformer layers (windowed, document-split causal self-attention, RoPE over positions 0..S−1),
 * per-patch max pooling of the byte states, `patch_embedding_projection` (d_E → d_E·k) reshaped to
 * k rows per patch, and cross-attention from those rows to exactly the bytes of their patch.
 *
 * Weight names are the reference `state_dict` keys: `tok_embeddings.weight`, `layers.{i}...`,
 * `patch_embedding_projection.weight`, `cross_attn_layers.{i}...` under the encoder scope and
 * `{t}.weight` under the hash scope.
 */
export class LocalEncoder {
  readonly config: Readonly<LocalEncoderConfig>;
  readonly tokEmbeddings: Embedding;
  /** The hash n-gram tables as trainable tensors (empty when they are host tables). */
  readonly hashEmbeddings: readonly Embedding[];
  /** The hash n-gram tables read on the host ({@link LocalEncoderOptions.hashTables}), if so built. */
  readonly hostHashTables: readonly HostEmbedding[] | undefined;
  readonly layers: readonly TransformerBlock[];
  readonly patchEmbeddingProjection: Linear;
  readonly crossAttnLayers: readonly CrossAttention[];
  readonly rope: RotaryEmbedding;
  private readonly path: string;
  private readonly hashPath: string;

  /**
   * Creates the weights (reference initialisation, architecture §11) in the given scopes.
   *
   * @param scopes - the encoder's scope and the hash tables' scope
   * @param config - sizes and flags
   * @param random - uniform generator in [0, 1) for the initial weights
   * @param options - host hash tables in place of trainable ones
   * @throws {BltError} `CONFIG_MISMATCH` for invalid sizes or host tables that do not fit; {NnError}
   *   `TOO_LARGE` past the registry's `maxParameters`
   */
  constructor(scopes: LocalEncoderScopes, config: LocalEncoderConfig, random: () => number, options: LocalEncoderOptions = {}) {
    checkPositiveInts(
      'local encoder',
      config,
      ['dim', 'nLayers', 'nHeads', 'maxSeqLen', 'vocabSize', 'crossAttnK', 'crossAttnNHeads'],
      ['crossAttnWindow'],
    );
    if (config.dim % config.crossAttnNHeads !== 0)
      throw configError(`dim ${config.dim} is not a multiple of crossAttnNHeads ${config.crossAttnNHeads}`);
    if (config.hash) {
      try {
        validateHashNgramConfig(config.hash);
      } catch (e) {
        throw configError((e as Error).message);
      }
    }
    this.config = { ...config };
    this.path = scopes.encoder.prefix;
    this.hashPath = scopes.hashEmbeddings.prefix;
    const d = config.dim;
    const std = d ** -0.5;
    const factor = config.initStdFactor ?? 'disabled';
    try {
      this.tokEmbeddings = new Embedding(scopes.encoder.child('tok_embeddings'), config.vocabSize, d, { std, random });
      // The blocks come after tok_embeddings and before the projection (the reference's init order).
      const stack = createTransformerStack(scopes.encoder, config, random);
      this.layers = stack.layers;
      this.rope = stack.rope;
      // Input width dim_patch_emb = d_E (pooling init, `get_encoder_dim_patch_emb`); std = d_E^-0.5.
      this.patchEmbeddingProjection = new Linear(scopes.encoder.child('patch_embedding_projection'), d, d * config.crossAttnK, {
        std,
        random,
      });
      const nCross = config.crossAttnAllLayers ? config.nLayers : 1;
      this.crossAttnLayers = Array.from(
        { length: nCross },
        (_, i) =>
          new CrossAttention(
            scopes.encoder.child(`cross_attn_layers.${i}`),
            { dim: d, nHeads: config.crossAttnNHeads, normEps: config.normEps },
            { std: std / initStdDivisor(factor, i, config.nLayers, d), random },
          ),
      );
      const tables = config.hash ? config.hash.numFunctions * config.hash.groupSizes.length : 0;
      const host = options.hashTables;
      if (host !== undefined) {
        if (host.length !== tables) throw configError(`${host.length} host hash tables given, the configuration has ${tables}`);
        const bad = host.findIndex((t) => t.numEmbeddings !== config.hash!.vocabSize || t.dim !== d);
        if (bad >= 0) {
          throw configError(
            `host hash table ${bad} is [${host[bad]!.numEmbeddings}, ${host[bad]!.dim}], expected [${config.hash!.vocabSize}, ${d}]`,
          );
        }
      }
      this.hostHashTables = host === undefined ? undefined : [...host];
      this.hashEmbeddings =
        host !== undefined
          ? []
          : Array.from(
              { length: tables },
              (_, t) => new Embedding(scopes.hashEmbeddings.child(String(t)), config.hash!.vocabSize, d, { std, random }),
            );
    } catch (e) {
      // TOO_LARGE (the registry's maxParameters) is not a configuration error: the caller set a limit.
      if (e instanceof NnError && e.code !== 'TOO_LARGE') throw configError(e.message);
      throw e;
    }
  }

  /** Patch rows per patch (`cross_attn_k`). */
  get k(): number {
    return this.config.crossAttnK;
  }

  /**
   * The encoder input (the reference's `compute_hash_embeddings`, architecture §2.3, golden Semantics 4):
   * `tok_embeddings[x] + Σ_t encoder_hash_tok_embedding[t][hash_t(x)]`, no normalisation.
   * Hash windows read zeros before the start of each row and run across documents.
   *
   * @param tokens - `[B·S]` token ids, row-major (padding included), each in `[0, vocabSize)`
   * @param batch - rows B
   * @param seqLen - positions per row S
   * @param tap - receives `<encoder>.tok_embeddings` and `<hash>.{t}`
   * @returns `[B, S, dim]`
   * @throws {BltError} `INVALID_ARGUMENT` for a size mismatch or a bad token id
   */
  embed(tokens: Int32Array, batch: number, seqLen: number, tap?: ActivationTap): tf.Tensor3D {
    if (tokens.length !== batch * seqLen || seqLen < 1) {
      throw new BltError('INVALID_ARGUMENT', `expected ${batch}×${seqLen} token ids, got ${tokens.length}`);
    }
    const bad = tokens.findIndex((t) => t < 0 || t >= this.config.vocabSize);
    if (bad >= 0)
      throw new BltError('INVALID_ARGUMENT', `token ${tokens[bad]} at flat index ${bad} is not in [0, ${this.config.vocabSize})`);
    const tables = this.config.hash ? hashNgramTables(tokens, this.config.hash, seqLen) : [];
    const host = this.hostHashTables;
    const dim = this.config.dim;
    return tf.tidy(() => {
      let e = this.tokEmbeddings.apply(tf.tensor2d(tokens, [batch, seqLen], 'int32'));
      tap?.(`${this.path}.tok_embeddings`, e);
      // Host tables: each table's rows read on the host and added as one tensor, in the tensor
      // path's order (the same float32 sums, so import ∘ export stays exact).
      for (const t of tables) {
        if (host !== undefined) {
          const v = tf.tensor3d(host[t.tableIndex]!.rows(t.ids), [batch, seqLen, dim]);
          tap?.(`${this.hashPath}.${t.tableIndex}`, v);
          e = tf.add(e, v);
          continue;
        }
        const v = this.hashEmbeddings[t.tableIndex]!.apply(tf.tensor2d(t.ids, [batch, seqLen], 'int32'));
        tap?.(`${this.hashPath}.${t.tableIndex}`, v);
        e = tf.add(e, v);
      }
      return e as tf.Tensor3D;
    });
  }

  /**
   * The encoder layers, pooling and cross-attention (architecture §5.2, golden Semantics 5).
   *
   * After layer i (the last one, or each with `crossAttnAllLayers`): the first time, the byte states
   * are max-pooled per patch (an empty patch gives 0), projected and reshaped to `[B, P·k, dim]`;
   * then `P ← P + CrossAttention(P, h)`. `CrossAttention` already returns `P + wo(attn)`, so the
   * update is `2·P + wo(attn)`: the reference's doubled residual, kept on purpose (architecture §5.2, §16).
   *
   * @param embeds - `[B, S, dim]` from {@link embed}
   * @param selfMask - the local self-attention mask (`localSelfAttentionMask` with `local_attention_window_len`)
   * @param patches - patch id of every position, number of patches
   * @param tap - receives `<encoder>.layers.{i}[...]`, `<encoder>.patch_embedding_projection[:input]`,
   *   `<encoder>.cross_attn_layers.{i}[...]`
   * @returns byte states and patch states
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs
   */
  forward(embeds: tf.Tensor3D, selfMask: AttentionMask, patches: EncoderPatches, tap?: ActivationTap): LocalEncoderOutput {
    const [batch, seqLen, dim] = embeds.shape;
    if (dim !== this.config.dim)
      throw new BltError('SHAPE_MISMATCH', `local encoder: embeds have width ${dim}, expected ${this.config.dim}`);
    if (seqLen > this.config.maxSeqLen) {
      throw new BltError('INVALID_ARGUMENT', `local encoder: ${seqLen} positions exceed max_encoder_seq_length ${this.config.maxSeqLen}`);
    }
    const { patchIds, numPatches } = patches;
    if (patchIds.length !== batch || patchIds.some((r) => r.length !== seqLen)) {
      throw new BltError('SHAPE_MISMATCH', `local encoder: patchIds must have ${batch} rows of ${seqLen} ids`);
    }
    if (!Number.isInteger(numPatches) || numPatches < 1 || patchIds.some((r) => r.some((p) => p >= numPatches))) {
      throw new BltError('INVALID_ARGUMENT', `local encoder: patch ids must be < numPatches (${numPatches})`);
    }
    const rope = this.rope.tables(0, seqLen);
    try {
      return tf.tidy(() => {
        let h: tf.Tensor = embeds;
        // The byte states never read the patch states (cross-attention updates only the patches,
        // architecture §5.2 step 4), so all layers run first and the patches are computed from the states
        // each cross-attention reads — the same values as interleaving, and the same code as a
        // generator uses when a patch completes (encodePatches).
        const states: tf.Tensor[] = [];
        this.layers.forEach((layer, i) => {
          h = applyBlock(layer, h, selfMask, rope, `${this.path}.layers.${i}`, tap);
          if (this.crossAttendsAfter(i)) states.push(h);
        });
        return { h: h as tf.Tensor3D, patchEmbeds: this.encodePatches(states, patchIds, 0, numPatches, tap) };
      });
    } finally {
      tf.dispose([rope.cos, rope.sin]);
    }
  }

  /**
   * Whether a cross-attention follows layer `i` (the last one, or each with `crossAttnAllLayers`).
   *
   * @param i - layer index
   */
  crossAttendsAfter(i: number): boolean {
    return i === this.layers.length - 1 || this.config.crossAttnAllLayers;
  }

  /**
   * Patch states of patches `first .. first + count − 1` (architecture §5.2 step 4, golden Semantics 5):
   * the byte states the first cross-attention reads are max-pooled per patch (an empty patch gives
   * 0), projected and reshaped to k rows per patch; then each cross-attention updates them,
   * `P ← P + CrossAttention(P, h)` = `2·P + wo(attn)` (the reference's doubled residual, kept on
   * purpose, architecture §16). A patch row sees the bytes of its own patch (or of its last
   * `crossAttnWindow` patches), so a patch's states are final as soon as its bytes are: a generator
   * computes each patch once, when it completes (architecture §9.2).
   *
   * @param states - per cross-attention, in order, the byte states it reads `[B, M, dim]` (the output of
   *   the layer it follows; {@link crossAttendsAfter})
   * @param patchIds - per row, the (absolute) patch of each of the M bytes; bytes of other patches
   *   (earlier ones within the window are keys only) and −1 (padding) are not pooled
   * @param first - first patch to compute
   * @param count - number of patches, >= 1
   * @param tap - receives `<encoder>.patch_embedding_projection[:input]`, `<encoder>.cross_attn_layers.{i}[...]`
   * @returns `[B, count·k, dim]`
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs
   */
  encodePatches(
    states: readonly tf.Tensor[],
    patchIds: readonly Int32Array[],
    first: number,
    count: number,
    tap?: ActivationTap,
  ): tf.Tensor3D {
    if (states.length !== this.crossAttnLayers.length) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local encoder: ${states.length} byte states for ${this.crossAttnLayers.length} cross-attention layers`,
      );
    }
    const [batch, bytes] = states[0]!.shape as [number, number];
    if (states.some((t) => t.shape.join() !== [batch, bytes, this.config.dim].join())) {
      throw new BltError('SHAPE_MISMATCH', `local encoder: every byte state must be [${batch}, ${bytes}, ${this.config.dim}]`);
    }
    if (patchIds.length !== batch || patchIds.some((r) => r.length !== bytes)) {
      throw new BltError('SHAPE_MISMATCH', `local encoder: patchIds must have ${batch} rows of ${bytes} ids`);
    }
    if (!Number.isInteger(first) || first < 0 || !Number.isInteger(count) || count < 1) {
      throw new BltError('INVALID_ARGUMENT', `local encoder: patches ${first}..+${count} must be integers, first >= 0 and count >= 1`);
    }
    const k = this.config.crossAttnK;
    const queryGroups = patchIds.map(() => patchRowGroups(count, k).map((g) => g + first));
    const crossMask = groupCrossMask(queryGroups, patchIds, this.config.crossAttnWindow);
    // Pooling reads only the bytes of the computed patches, numbered from 0.
    const local = patchIds.map((row) => row.map((p) => (p >= first && p < first + count ? p - first : -1)));
    try {
      return tf.tidy(() => {
        const pooled = maxPoolPatches(states[0]!, local, count);
        tap?.(`${this.path}.patch_embedding_projection:input`, pooled);
        const projected = this.patchEmbeddingProjection.apply(pooled);
        tap?.(`${this.path}.patch_embedding_projection`, projected);
        // Row p·k + j is slice j of patch p's vector (architecture §5.2).
        let pe: tf.Tensor = tf.reshape(projected, [batch, count * k, this.config.dim]);
        states.forEach((h, index) => {
          const cross = applyCrossAttention(this.crossAttnLayers[index]!, pe, h, crossMask, `${this.path}.cross_attn_layers.${index}`, tap);
          // Doubled residual, as the reference's `apply_cross_attention` (architecture §5.2, golden Semantics 5).
          pe = tf.add(pe, cross);
        });
        return pe as tf.Tensor3D;
      });
    } finally {
      disposeMask(crossMask);
    }
  }

  /**
   * The input embeddings of positions `from .. to − 1` of one row ({@link embed} on the row, but
   * reading only the ids the hash windows of those positions reach: the last `max(n) − 1` before
   * `from`). For incremental encoding (architecture §14.1: only the newest position's windows change).
   *
   * @param row - the row's token ids so far (at least `to`)
   * @param from - first position
   * @param to - end position (exclusive), > from
   * @returns `[1, to − from, dim]`
   * @throws {BltError} `INVALID_ARGUMENT` for a bad range or token id
   */
  embedRange(row: ArrayLike<number>, from: number, to: number): tf.Tensor3D {
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to <= from || to > row.length) {
      throw new BltError('INVALID_ARGUMENT', `local encoder: positions ${from}..${to} are not a non-empty range of a row of ${row.length}`);
    }
    const reach = this.config.hash ? Math.max(...this.config.hash.groupSizes) - 1 : 0;
    const start = Math.max(0, from - reach);
    const ids = Int32Array.from({ length: to - start }, (_, i) => row[start + i]!);
    return tf.tidy(() => tf.slice(this.embed(ids, 1, ids.length), [0, from - start, 0], [1, to - from, this.config.dim]) as tf.Tensor3D);
  }

  /**
   * A KV cache for {@link forwardCached}.
   *
   * @param options - the local self-attention window (`local_attention_window_len`) and the EOS id
   *   after which documents split (as `localSelfAttentionMask`)
   */
  createCache(options: { window?: number; eosId?: number } = {}): KvCache {
    return new KvCache({ nLayers: this.layers.length, window: options.window, eosId: options.eosId ?? 2 });
  }

  /**
   * The encoder layers over new positions of one row whose earlier positions are in `cache` (architecture
   * §9.2: the byte self-attention is windowed causal, so earlier byte states never change). Equal to
   * the same positions of {@link forward}'s layers. The cache advances by S.
   *
   * @param embeds - `[1, S, dim]` from {@link embedRange}
   * @param tokens - the S token ids (for the document split)
   * @param cache - from {@link createCache}
   * @returns the byte states after the last layer `h` and, per cross-attention, the states it reads
   *   (for {@link encodePatches}; the last one may be `h` itself)
   * @throws {BltError} `SHAPE_MISMATCH` / `INVALID_ARGUMENT` for inconsistent inputs or positions
   *   past `maxSeqLen`
   */
  forwardCached(embeds: tf.Tensor3D, tokens: ArrayLike<number>, cache: KvCache): { h: tf.Tensor3D; states: tf.Tensor3D[] } {
    const [batch, seqLen, dim] = embeds.shape;
    if (batch !== 1 || dim !== this.config.dim || tokens.length !== seqLen) {
      throw new BltError(
        'SHAPE_MISMATCH',
        `local encoder: cached embeds must be [1, ${tokens.length}, ${this.config.dim}], got [${embeds.shape.join(', ')}]`,
      );
    }
    if (cache.nLayers !== this.layers.length)
      throw new BltError('SHAPE_MISMATCH', `local encoder: cache has ${cache.nLayers} layers, expected ${this.layers.length}`);
    if (cache.position + seqLen > this.config.maxSeqLen) {
      throw new BltError(
        'INVALID_ARGUMENT',
        `local encoder: positions up to ${cache.position + seqLen} exceed max_encoder_seq_length ${this.config.maxSeqLen}`,
      );
    }
    const [h, ...states] = tf.tidy(() => {
      const step = cache.plan(tokens, this.rope);
      let x: tf.Tensor = embeds;
      const out: tf.Tensor[] = [];
      const kvs = this.layers.map((layer, i) => {
        const r = layer.applyCached(x, step, cache.layer(i));
        x = r.out;
        if (this.crossAttendsAfter(i)) out.push(x);
        return r.kv;
      });
      cache.commit(tokens, kvs);
      return [x, ...out];
    });
    return { h: h as tf.Tensor3D, states: states as tf.Tensor3D[] };
  }
}

/**
 * Per-patch elementwise max of the byte states (the reference's `downsample` with `max` pooling:
 * `scatter_reduce(amax, include_self=False)` into zeros). A patch with no byte gives 0 (golden
 * Semantics 5, 8); positions with patch id −1 (padding) belong to no patch.
 *
 * @param h - `[B, S, d]`
 * @param patchIds - per row, the patch of each position
 * @param numPatches - P
 * @returns `[B, P, d]`
 */
export function maxPoolPatches(h: tf.Tensor, patchIds: readonly Int32Array[], numPatches: number): tf.Tensor3D {
  const [batch, seqLen, d] = h.shape as [number, number, number];
  const members: number[][] = Array.from({ length: batch * numPatches }, () => []);
  patchIds.forEach((row, b) => {
    row.forEach((p, t) => {
      if (p >= 0) members[b * numPatches + p]!.push(b * seqLen + t);
    });
  });
  const width = Math.max(1, ...members.map((m) => m.length));
  const index = new Int32Array(batch * numPatches * width);
  // 0 for a real slot, a large negative number for an unused one: max ignores it as long as the
  // patch has a byte; an empty patch is then zeroed by `nonEmpty` (-1e30 · 0 = -0, where -inf would
  // give NaN; adding 0 turns -0 into the reference's +0).
  const bias = new Float32Array(batch * numPatches * width);
  const nonEmpty = new Float32Array(batch * numPatches);
  members.forEach((m, slot) => {
    nonEmpty[slot] = m.length > 0 ? 1 : 0;
    for (let j = 0; j < width; j++) {
      index[slot * width + j] = m[j] ?? 0;
      if (j >= m.length) bias[slot * width + j] = -1e30;
    }
  });
  return tf.tidy(() => {
    const gathered = tf.reshape(tf.gather(tf.reshape(h, [batch * seqLen, d]), tf.tensor1d(index, 'int32')), [batch, numPatches, width, d]);
    const pooled = tf.max(tf.add(gathered, tf.tensor4d(bias, [batch, numPatches, width, 1])), 2);
    return tf.add(tf.mul(pooled, tf.tensor3d(nonEmpty, [batch, numPatches, 1])), 0) as tf.Tensor3D;
  });
}
