/**
 * The two things this app trains — the entropy model and the BLT — behind one small interface, so
 * the trainer, checkpoints and evaluation are written once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer, type BltArgs } from '@bytelatent/blt';
import { EntropyModel, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { type ParameterRegistry, summedCrossEntropy } from '@bytelatent/nn';
import type { RowPatcher } from './row-patcher.js';
import type { TrainingRow } from './dataset.js';

/** Rows ready for a model call (patch lengths computed for a BLT). */
export interface PreparedRows {
  readonly tokens: Int32Array[];
  readonly targets: Int32Array[];
  readonly patchLengths?: Int32Array[];
}

/** A model the trainer can train. */
export interface TrainableModel {
  /** `token`: a token-level baseline (see token-model.ts). */
  readonly kind: 'entropy' | 'blt' | 'token';
  readonly registry: ParameterRegistry;
  /** The model's arguments, reference names. */
  readonly args: Readonly<Record<string, unknown>>;
  /** Adds what the model needs besides tokens (patch lengths). */
  prepare(rows: readonly TrainingRow[]): Promise<PreparedRows>;
  /** Next-byte cross-entropy summed over every target position (nats), as a scalar tensor. */
  sumLoss(batch: PreparedRows): tf.Scalar;
  /** Weights with reference names, arguments in the metadata. */
  toSafetensors(metadata?: Readonly<Record<string, string>>): Promise<Uint8Array>;
  dispose(): void;
}

/** The entropy model (the reference's byte-level `LMTransformer`). */
export class EntropyTrainable implements TrainableModel {
  readonly kind = 'entropy' as const;
  /** @param model - the model to train (owned: disposed with this) */
  constructor(readonly model: EntropyModel) {}

  /** A randomly initialised model. */
  static create(args: EntropyModelArgs, seed: number): EntropyTrainable {
    return new EntropyTrainable(new EntropyModel(args, seed));
  }

  get registry(): ParameterRegistry {
    return this.model.registry;
  }

  get args(): Readonly<Record<string, unknown>> {
    return this.model.referenceArgs as unknown as Record<string, unknown>;
  }

  async prepare(rows: readonly TrainingRow[]): Promise<PreparedRows> {
    return { tokens: rows.map((r) => r.tokens), targets: rows.map((r) => r.targets) };
  }

  sumLoss(batch: PreparedRows): tf.Scalar {
    return tf.tidy(() => summedCrossEntropy(this.model.logits(batch.tokens), batch.targets));
  }

  toSafetensors(metadata?: Readonly<Record<string, string>>): Promise<Uint8Array> {
    return this.model.toSafetensors(metadata);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** A BLT; its patch lengths come from a {@link RowPatcher}. */
export class BltTrainable implements TrainableModel {
  readonly kind = 'blt' as const;
  readonly model: ByteLatentTransformer;

  /**
   * @param model - the arguments of a new, randomly initialised BLT, or a BLT already built (e.g. a
   *   released checkpoint read with `loadPretrained`, to fine-tune; owned: disposed with this)
   * @param seed - initialisation seed (new models only)
   * @param patcher - the patch lengths of training rows
   */
  constructor(
    model: BltArgs | ByteLatentTransformer,
    seed: number,
    readonly patcher: RowPatcher,
  ) {
    this.model = model instanceof ByteLatentTransformer ? model : new ByteLatentTransformer(model, seed);
  }

  get registry(): ParameterRegistry {
    return this.model.registry;
  }

  get args(): Readonly<Record<string, unknown>> {
    return this.model.referenceArgs as unknown as Record<string, unknown>;
  }

  async prepare(rows: readonly TrainingRow[]): Promise<PreparedRows> {
    const tokens = rows.map((r) => r.tokens);
    return { tokens, targets: rows.map((r) => r.targets), patchLengths: await this.patcher.lengths(tokens) };
  }

  sumLoss(batch: PreparedRows): tf.Scalar {
    return tf.tidy(() => tf.sum(this.model.tokenLosses(batch.tokens, batch.patchLengths!, batch.targets)) as tf.Scalar);
  }

  toSafetensors(metadata?: Readonly<Record<string, string>>): Promise<Uint8Array> {
    return this.model.toSafetensors(metadata);
  }

  dispose(): void {
    this.model.dispose();
  }
}
