import * as tf from '@tensorflow/tfjs-core';
import { BltStepper } from './blt-stepper.js';
import { BOE_ID } from '@bytelatent/bytes';
import { decoderPatchIdsFromLengths, patchIdsFromLengths } from '@bytelatent/entropy-patcher';
import { GlobalTransformer, patchTokens } from '@bytelatent/latent-transformer';
import { LocalDecoder } from '@bytelatent/local-decoder';
import { LocalEncoder } from '@bytelatent/local-encoder';
import {
  type ActivationTap,
  BltError,
  CheckpointInitializer,
  disposeMask,
  dtypeByteSize,
  HostEmbedding,
  localSelfAttentionMask,
  NnError,
  ParameterRegistry,
  type ParameterRegistryOptions,
  ParameterScope,
  referenceStateDict,
  type SafetensorsTensor,
  seededUniform,
  serializeSafetensors,
  sparseCrossEntropy,
  type TensorSource,
} from '@bytelatent/nn';
import { type BltArgs, type ResolvedBltArgs, resolveBltArgs } from './blt-args.js';

/** Metadata key under which {@link ByteLatentTransformer.toSafetensors} stores the arguments (JSON). */
export const BLT_ARGS_METADATA_KEY = 'blt_args';

/**
 * Receives intermediate outputs: every module output under its reference path (`local_encoder.layers.0`,
 * `global_transformer.layers.1.attention.wq`, `local_decoder.norm:input`, ...; see the component
 * packages) and the composed model's named values `encoder.input_embeds`, `encoder.h`,
 * `encoder.patch_embeds`, `global.tokens` (int32 `[B, P]`), `global.input`, `global.output`, `logits`.
 * Tensors are only valid during the call.
 */
export type BltActivationTap = ActivationTap;

/** Construction options of {@link ByteLatentTransformer}. */
export interface BltBuildOptions extends ParameterRegistryOptions {
  /**
   * The hash n-gram tables as host tables (`HostEmbedding`, one per table in the reference's order)
   * instead of trainable tensors: see `LocalEncoderOptions.hashTables`.
   */
  readonly hashTables?: readonly HostEmbedding[];
}

/** Options of {@link ByteLatentTransformer.fromSafetensors}. */
export interface FromSafetensorsOptions {
  /**
   * Where the hash n-gram tables live: `tensors` (default) makes them trainable float32 tensors;
   * `source` leaves them in the source, in its precision, and reads the rows each batch needs (they
   * cost no memory and cannot be trained; the model then keeps the source open and closes it when
   * disposed). `source` is what running a released model needs: its tables are two thirds of its
   * parameters (docs/architecture.md, "Weights at released size").
   */
  readonly hashTables?: 'tensors' | 'source';
}

/** A batch laid out for the model: padded ids, patch ids, global tokens. */
export interface PreparedBatch {
  readonly batch: number;
  /** Longest row N (positions per padded row). */
  readonly seqLen: number;
  /** Most patches P of a row (rows with fewer get empty patches). */
  readonly numPatches: number;
  /** Real length of each row. */
  readonly rowLengths: readonly number[];
  /** `[B·N]` ids, rows right-padded with BOE. */
  readonly ids: Int32Array;
  /** Per row, the patch of each position (−1 on padding). */
  readonly patchIds: readonly Int32Array[];
  /** Per row, the patch each position's decoder reads (−1 on padding). */
  readonly decoderPatchIds: readonly Int32Array[];
  /** Per row, BOE or EOS per patch (architecture §6). */
  readonly globalTokens: readonly Int32Array[];
}

/**
 * The Byte Latent Transformer (architecture §8.1): hash n-gram embeddings and the local encoder, the global
 * transformer over patches, the local decoder; next-byte logits, per-token cross-entropy and loss.
 * Built from `@bytelatent/local-encoder`, `latent-transformer` and `local-decoder`; every weight is
 * named as in the reference `ByteLatentTransformer.state_dict()` (`local_encoder.*`,
 * `encoder_hash_tok_embedding.{i}.*`, `global_transformer.*`, `local_decoder.*`).
 */
export class ByteLatentTransformer {
  readonly args: Readonly<ResolvedBltArgs>;
  /** The arguments as given, with the reference's names. */
  readonly referenceArgs: Readonly<BltArgs>;
  readonly registry: ParameterRegistry;
  readonly localEncoder: LocalEncoder;
  readonly globalTransformer: GlobalTransformer;
  readonly localDecoder: LocalDecoder;
  /** Released when the model is disposed (the source of host hash tables). */
  private readonly owned: { close?(): void }[] = [];

  /**
   * A randomly initialised model (reference init, architecture §11).
   *
   * @param args - reference arguments (`ByteLatentTransformerArgs` names)
   * @param seed - initialisation seed
   * @param options - `maxParameters`: refuse to build a model with more trainable scalars (checked
   *   weight by weight before allocating it; {@link fromSafetensors} derives it from the checkpoint's size);
   *   `initialValues`: values replacing the initialisation (a checkpoint's, see `CheckpointInitializer`)
   * @throws {BltError} `CONFIG_MISMATCH` for invalid or unsupported arguments; `INVALID_CHECKPOINT` when
   *   the arguments describe more than `maxParameters` parameters
   */
  constructor(args: BltArgs, seed = 0, options: BltBuildOptions = {}) {
    this.args = resolveBltArgs(args);
    this.referenceArgs = { ...args };
    this.registry = new ParameterRegistry(options);
    const random = seededUniform(seed);
    const root = new ParameterScope(this.registry);
    try {
      this.localEncoder = new LocalEncoder(
        { encoder: root.child('local_encoder'), hashEmbeddings: root.child('encoder_hash_tok_embedding') },
        this.args.encoder,
        random,
        options.hashTables === undefined ? {} : { hashTables: options.hashTables },
      );
      this.globalTransformer = new GlobalTransformer(root.child('global_transformer'), this.args.global, random);
      this.localDecoder = new LocalDecoder(root.child('local_decoder'), this.args.decoder, random);
    } catch (e) {
      this.registry.dispose();
      if (e instanceof NnError && e.code === 'TOO_LARGE') {
        throw new BltError('INVALID_CHECKPOINT', `the BLT args describe a model far larger than its weights: ${e.message}`);
      }
      throw e;
    }
  }

  /**
   * Builds the model and loads reference weights (safetensors with `state_dict` names). Every
   * missing, unexpected or mis-shaped key is reported at once.
   *
   * @param file - the weights with reference names: a parsed safetensors file, or any `TensorSource`
   *   (a `.pth`, shards, a renamed view; read tensor by tensor, so a loader never holds two copies)
   * @param args - the model's arguments
   * @throws {BltError} `INVALID_CHECKPOINT` listing every problem (missing, unexpected, mis-shaped,
   *   non-float or non-finite weights), or when `args` describe far more parameters than the file holds
   *   (over twice as many plus 2^20: refused before allocating them); `CONFIG_MISMATCH` for invalid arguments
   */
  static fromSafetensors(file: TensorSource, args: BltArgs, options: FromSafetensorsOptions = {}): ByteLatentTransformer {
    const where = options.hashTables ?? 'tensors';
    if (where !== 'tensors' && where !== 'source')
      throw new BltError('INVALID_ARGUMENT', `hashTables must be 'tensors' or 'source', got ${JSON.stringify(where)}`);
    // Arguments claiming a huge model (an untrusted file's metadata) fail weight by weight instead of
    // allocating it; a model somewhat larger than the file still builds, so that every missing or
    // mis-shaped weight can be listed.
    const scalars = file.names().reduce((sum, name) => sum + file.info(name).byteLength / dtypeByteSize(file.info(name).dtype), 0);
    // Each weight is created from the file (no random initialisation, no second copy of the model).
    const init = new CheckpointInitializer(file);
    let hashTables: HostEmbedding[] | undefined;
    const resolved = where === 'source' ? resolveBltArgs(args) : undefined;
    const hash = resolved?.encoder.hash;
    if (resolved !== undefined && hash) {
      const shape = [hash.vocabSize, resolved.encoder.dim] as const;
      // A table that does not fit is reported with every other problem by init.finish; its
      // placeholder is never read (the model is not returned).
      hashTables = Array.from({ length: hash.numFunctions * hash.groupSizes.length }, (_, t) => {
        const name = `encoder_hash_tok_embedding.${t}.weight`;
        return init.check(name, shape)
          ? HostEmbedding.fromSource(file, name, shape)
          : HostEmbedding.unreadable(name, shape, `${file.description}: "${name}" does not fit the model`);
      });
    }
    const model = new ByteLatentTransformer(args, 0, {
      maxParameters: 2 * scalars + 2 ** 20,
      initialValues: init.initialValues,
      ...(hashTables ? { hashTables } : {}),
    });
    try {
      init.finish(model.registry);
    } catch (e) {
      model.dispose();
      if (e instanceof NnError) throw new BltError('INVALID_CHECKPOINT', e.message);
      throw e;
    }
    // Only a model that is returned owns (and closes) the source its host tables read.
    if (hashTables !== undefined) model.owned.push(file);
    return model;
  }

  /**
   * Checks a batch and lays it out: rows right-padded with BOE to the longest, patch lengths padded
   * with zero-length patches to the most patches, patch ids (−1 on padding), decoder patch ids
   * (computed from `lengths[1:]`, architecture §7.1) and the global tokens.
   *
   * @param tokens - token ids per row (non-empty, each in `[0, vocab)`)
   * @param patchLengths - per row, patch lengths (non-negative integers, the first one 1 — the lone
   *   BOS patch — summing to the row length + 1, as `include_next_token` patching gives, or to the row length)
   * @returns the laid-out batch
   * @throws {BltError} `INVALID_ARGUMENT` naming the bad row and value
   */
  prepare(tokens: readonly ArrayLike<number>[], patchLengths: readonly ArrayLike<number>[]): PreparedBatch {
    const invalid = (m: string) => new BltError('INVALID_ARGUMENT', m);
    if (!Array.isArray(tokens) || tokens.length === 0) throw invalid('tokens must be a non-empty array of rows');
    if (!Array.isArray(patchLengths) || patchLengths.length !== tokens.length) {
      throw invalid(
        `patchLengths must have one row per token row (${tokens.length}), got ${Array.isArray(patchLengths) ? patchLengths.length : typeof patchLengths}`,
      );
    }
    const batch = tokens.length;
    const rowLengths = tokens.map((r) => r.length);
    const seqLen = Math.max(...rowLengths);
    const numPatches = Math.max(...patchLengths.map((l) => l.length));
    const ids = new Int32Array(batch * seqLen).fill(BOE_ID);
    const patchIds: Int32Array[] = [];
    const decoderPatchIds: Int32Array[] = [];
    const globalTokens: Int32Array[] = [];
    tokens.forEach((row, b) => {
      const n = row.length;
      if (n === 0) throw invalid(`tokens[${b}] is empty`);
      for (let t = 0; t < n; t++) {
        const id = row[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.args.vocabSize)
          throw invalid(`tokens[${b}][${t}] = ${id} is not a token id in [0, ${this.args.vocabSize})`);
        ids[b * seqLen + t] = id;
      }
      const lengths = patchLengths[b]!;
      let sum = 0;
      for (let p = 0; p < lengths.length; p++) {
        const l = lengths[p]!;
        if (!Number.isInteger(l) || l < 0) throw invalid(`patchLengths[${b}][${p}] = ${l} is not a non-negative integer`);
        sum += l;
      }
      // nb_boe = 0: the reference asserts a first patch of exactly one token (architecture §7.1).
      if (lengths[0] !== 1) throw invalid(`patchLengths[${b}][0] must be 1 (the lone first-token patch), got ${String(lengths[0])}`);
      if (sum !== n + 1 && sum !== n)
        throw invalid(`patchLengths[${b}] sums to ${sum}, expected the row length + 1 (${n + 1}) or the row length`);
      const pid = new Int32Array(seqLen).fill(-1);
      pid.set(patchIdsFromLengths(lengths, n));
      const did = new Int32Array(seqLen).fill(-1);
      did.set(decoderPatchIdsFromLengths(lengths, n));
      patchIds.push(pid);
      decoderPatchIds.push(did);
      globalTokens.push(patchTokens(row, pid.subarray(0, n), numPatches, this.args.eosId, BOE_ID));
    });
    if (numPatches > this.args.global.maxSeqLen) throw invalid(`${numPatches} patches exceed max_seqlen ${this.args.global.maxSeqLen}`);
    if (seqLen > this.args.encoder.maxSeqLen)
      throw invalid(`${seqLen} tokens exceed max_encoder_seq_length ${this.args.encoder.maxSeqLen}`);
    return { batch, seqLen, numPatches, rowLengths, ids, patchIds, decoderPatchIds, globalTokens };
  }

  /**
   * The forward pass one step at a time, for incremental generation: the encoder, latent
   * transformer and decoder wired here once, with their caches (architecture §9.2). Free it with `dispose()`.
   */
  createStepper(): BltStepper {
    return new BltStepper(this);
  }

  /**
   * Next-byte logits (the reference's `ByteLatentTransformer.forward(tokens, patch_lengths)`, architecture §8.1).
   * Rows of different lengths are right-padded; a padded batch gives, on every real position, what
   * each row gives alone (padding bytes belong to no patch, padding patches are empty and come after
   * the real ones, and every attention is causal). Logits at padding positions are meaningless.
   *
   * @param tokens - token ids per row
   * @param patchLengths - patch lengths per row (see {@link prepare})
   * @param tap - optional receiver of intermediate activations
   * @returns `[B, N, vocab]` float32, N the longest row
   * @throws {BltError} `INVALID_ARGUMENT` for a bad batch
   */
  forward(tokens: readonly ArrayLike<number>[], patchLengths: readonly ArrayLike<number>[], tap?: BltActivationTap): tf.Tensor3D {
    return this.forwardPrepared(this.prepare(tokens, patchLengths), tap);
  }

  /**
   * {@link forward} on a batch already laid out by {@link prepare}.
   *
   * @param p - the batch
   * @param tap - optional receiver of intermediate activations
   * @returns `[B, N, vocab]` logits
   */
  forwardPrepared(p: PreparedBatch, tap?: BltActivationTap): tf.Tensor3D {
    const rows = p.rowLengths.map((n, b) => p.ids.subarray(b * p.seqLen, b * p.seqLen + n));
    const selfMask = localSelfAttentionMask(rows, p.seqLen, { window: this.args.localWindow, eosId: this.args.eosId });
    try {
      return tf.tidy(() => {
        const embeds = this.localEncoder.embed(p.ids, p.batch, p.seqLen, tap);
        tap?.('encoder.input_embeds', embeds);
        const { h, patchEmbeds } = this.localEncoder.forward(embeds, selfMask, { patchIds: p.patchIds, numPatches: p.numPatches }, tap);
        tap?.('encoder.h', h);
        tap?.('encoder.patch_embeds', patchEmbeds);
        // `h_cross.view(B, P, k·d_E)`: the k rows of each patch concatenated (architecture §6).
        const globalIn = tf.reshape(patchEmbeds, [p.batch, p.numPatches, -1]) as tf.Tensor3D;
        if (tap) tap('global.tokens', tf.tensor2d(concatRows(p.globalTokens), [p.batch, p.numPatches], 'int32'));
        tap?.('global.input', globalIn);
        const globalOut = this.globalTransformer.forward(globalIn, p.globalTokens, tap);
        tap?.('global.output', globalOut);
        const logits = this.localDecoder.forward(h, globalOut, selfMask, p.decoderPatchIds, tap);
        tap?.('logits', logits);
        return logits;
      });
    } finally {
      disposeMask(selfMask);
    }
  }

  /**
   * Per-token next-byte cross-entropy in nats, `−log softmax(logits)[target]` (architecture §8.2,
   * `F.cross_entropy(..., reduction="none")`). Padding positions give 0.
   *
   * @param tokens - token ids per row
   * @param patchLengths - patch lengths per row
   * @param targets - per row, the next token of each position (same lengths as `tokens`)
   * @returns `[B, N]`
   * @throws {BltError} `INVALID_ARGUMENT` for a bad batch or targets
   */
  tokenLosses(
    tokens: readonly ArrayLike<number>[],
    patchLengths: readonly ArrayLike<number>[],
    targets: readonly ArrayLike<number>[],
  ): tf.Tensor2D {
    const p = this.prepare(tokens, patchLengths);
    const { flat, valid } = this.layoutTargets(p, targets);
    return tf.tidy(() => {
      const losses = sparseCrossEntropy(this.forwardPrepared(p), flat);
      return tf.mul(losses, tf.tensor2d(valid, [p.batch, p.seqLen])) as tf.Tensor2D;
    });
  }

  /**
   * Mean next-byte cross-entropy over the real (and unmasked) positions: `Σ loss·mask / Σ mask`
   * (the reference's `compute_loss`; with no mask and batch 1 it is `token_losses.mean()`).
   *
   * @param tokens - token ids per row
   * @param patchLengths - patch lengths per row
   * @param targets - next token of each position
   * @param mask - optional per row, 1/true where a position counts (default all real positions)
   * @returns scalar loss in nats
   * @throws {BltError} `INVALID_ARGUMENT` for a bad batch, targets or mask, or when nothing is counted
   */
  loss(
    tokens: readonly ArrayLike<number>[],
    patchLengths: readonly ArrayLike<number>[],
    targets: readonly ArrayLike<number>[],
    mask?: readonly ArrayLike<number | boolean>[],
  ): tf.Scalar {
    const p = this.prepare(tokens, patchLengths);
    const weights = new Float32Array(p.batch * p.seqLen);
    p.rowLengths.forEach((n, b) => {
      const m = mask?.[b];
      if (mask && (!m || m.length !== n)) throw new BltError('INVALID_ARGUMENT', `mask[${b}] must have ${n} entries`);
      for (let t = 0; t < n; t++) weights[b * p.seqLen + t] = m ? (m[t] ? 1 : 0) : 1;
    });
    const count = weights.reduce((s, w) => s + w, 0);
    if (count === 0) throw new BltError('INVALID_ARGUMENT', 'the mask leaves no position to average over');
    const { flat } = this.layoutTargets(p, targets);
    return tf.tidy(() => {
      const losses = sparseCrossEntropy(this.forwardPrepared(p), flat);
      return tf.div(tf.sum(tf.mul(losses, tf.tensor2d(weights, [p.batch, p.seqLen]))), count) as tf.Scalar;
    });
  }

  /**
   * The weights as a safetensors file with the reference's names, the arguments in the metadata
   * (key {@link BLT_ARGS_METADATA_KEY}).
   *
   * @param metadata - extra metadata entries
   */
  async toSafetensors(metadata: Readonly<Record<string, string>> = {}): Promise<Uint8Array> {
    const tensors = await this.referenceWeights();
    return serializeSafetensors(tensors, { ...metadata, [BLT_ARGS_METADATA_KEY]: JSON.stringify(this.referenceArgs) });
  }

  /** Number of parameters: the trainable scalars, plus the rows of host hash tables (not trainable). */
  parameterCount(): number {
    return this.registry.count() + (this.localEncoder.hostHashTables ?? []).reduce((sum, t) => sum + t.numEmbeddings * t.dim, 0);
  }

  /**
   * Every weight under its reference name and in reference layout (`referenceStateDict`), for saving.
   *
   * @throws {BltError} `INVALID_ARGUMENT` when the hash tables are read from their checkpoint
   *   (`hashTables: 'source'`): they are not the model's to save; load with `hashTables: 'tensors'`
   */
  async referenceWeights(): Promise<Map<string, SafetensorsTensor>> {
    if (this.localEncoder.hostHashTables !== undefined) {
      throw new BltError(
        'INVALID_ARGUMENT',
        "this model reads its hash tables from its checkpoint (hashTables: 'source'): load it with hashTables: 'tensors' to save or export it",
      );
    }
    return referenceStateDict(this.registry);
  }

  /** Frees the weights (and closes the source of host hash tables). */
  dispose(): void {
    this.registry.dispose();
    for (const o of this.owned.splice(0)) o.close?.();
  }

  private layoutTargets(p: PreparedBatch, targets: readonly ArrayLike<number>[]): { flat: Int32Array; valid: Float32Array } {
    if (!Array.isArray(targets) || targets.length !== p.batch) throw new BltError('INVALID_ARGUMENT', `targets must have ${p.batch} rows`);
    const flat = new Int32Array(p.batch * p.seqLen);
    const valid = new Float32Array(p.batch * p.seqLen);
    targets.forEach((row, b) => {
      const n = p.rowLengths[b]!;
      if (row.length !== n) throw new BltError('INVALID_ARGUMENT', `targets[${b}] has ${row.length} ids, expected ${n} (one per token)`);
      for (let t = 0; t < n; t++) {
        const y = row[t]!;
        if (!Number.isInteger(y) || y < 0 || y >= this.args.vocabSize) {
          throw new BltError('INVALID_ARGUMENT', `targets[${b}][${t}] = ${y} is not a token id in [0, ${this.args.vocabSize})`);
        }
        flat[b * p.seqLen + t] = y;
        valid[b * p.seqLen + t] = 1;
      }
    });
    return { flat, valid };
  }
}

function concatRows(rows: readonly Int32Array[]): Int32Array {
  const out = new Int32Array(rows.reduce((s, r) => s + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
