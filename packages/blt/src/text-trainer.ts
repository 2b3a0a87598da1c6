/**
 * Trains a small entropy model or BLT on one text held in memory, anywhere tfjs trains: a page's
 * Web Worker (the serve app's training tab), Node, a notebook. The pieces are the trainer CLI's:
 * nn's `GradientAccumulator`, `AdamW` and warm-up + cosine schedule, the models' own losses, and the
 * same file formats, so that a model trained here loads wherever one from `bytelatent-train` does
 * (`bytelatent-serve --patcher FILE` / `--blt FILE`, `EntropyPatcher.fromSafetensors`,
 * `ByteLatentTransformer.fromSafetensors`). Gradients need `@bytelatent/nn/gradients` loaded first.
 *
 * The text is one document (`BOS bytes EOS`): its last tenth is held out (never trained on), and
 * each step trains on `batchSize` windows of `seqLen` bytes drawn from the rest at seeded random
 * offsets. The first four windows of the held-out part are scored before the first step, every
 * `evalEvery` steps and after the last.
 */
import * as tf from '@tensorflow/tfjs-core';
import { encode } from '@bytelatent/bytes';
import { EntropyModel, EntropyPatcher, PATCHER_METADATA_KEY, entropyModelArgsOfSize } from '@bytelatent/entropy-patcher';
import {
  AdamW,
  BltError,
  GradientAccumulator,
  learningRate,
  seededUniform,
  summedCrossEntropy,
  type ParameterRegistry,
} from '@bytelatent/nn';
import { bltArgsOfSize } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { bltPatchingFromSettings, patchRows, type BltPatching } from './patching.js';

/** What the page trains: the entropy model that patches, or a BLT. */
export type TrainedKind = 'entropy' | 'blt';

export interface TextTrainerOptions {
  readonly kind: TrainedKind;
  /** The training text: a string, or the bytes of a file (any bytes: the models read bytes). */
  readonly text: string | Uint8Array;
  /** Steps of the schedule (warm-up then cosine decay to a tenth); training may stop earlier. */
  readonly steps: number;
  /** Bytes per training window (default 128). */
  readonly seqLen?: number;
  /** Windows per step (default 8). */
  readonly batchSize?: number;
  /** Peak learning rate (default 3e-3). */
  readonly lr?: number;
  /** Initialisation and data order (default 0). */
  readonly seed?: number;
  /** Held-out evaluation every this many steps (default 10; always before the first step). */
  readonly evalEvery?: number;
  /** BLT only: how its training rows are patched (default `space`: no entropy model needed). */
  readonly bltPatching?: { readonly mode: 'space' } | { readonly mode: 'static'; readonly patchSize: number };
}

/** One step's figures (the page's loss curve). */
export interface TrainingRecord {
  readonly step: number;
  /** The step's training loss, bits per byte. */
  readonly bitsPerByte: number;
  /** Held-out bits per byte, on steps that evaluate. */
  readonly heldoutBitsPerByte?: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly bytesPerSecond: number;
}

/** A trained model as one safetensors file, with what a user interface shows about it. */
export interface TrainedModelFile {
  readonly kind: TrainedKind;
  /** A file name for a download (`entropy-model.safetensors`, `blt.safetensors`). */
  readonly fileName: string;
  readonly file: Uint8Array;
  readonly steps: number;
  readonly parameters: number;
  readonly heldoutBitsPerByte: number;
}

/** Smallest text {@link TextTrainer} trains on: enough for a few windows and a held-out part. */
export const MIN_TRAINING_BYTES = 256;

const ENTROPY_SIZE = { dim: 64, layers: 2 } as const;
const BLT_SIZE = { dimGlobal: 64, dimLocal: 32, layersGlobal: 2, hashVocab: 512 } as const;
const HELD_OUT_SHARE = 0.1;
const MAX_HELD_OUT_WINDOWS = 4;
/** Mean patch size the saved entropy model's threshold is calibrated for (the paper's, about a BPE token). */
const TARGET_MEAN_PATCH = 4.5;

/** Trains one model on one text, step by step (the caller drives the loop: it can stop and go on at any step). */
export class TextTrainer {
  readonly kind: TrainedKind;
  readonly steps: number;
  readonly seqLen: number;
  readonly batchSize: number;
  /** Updates applied so far. */
  step = 0;
  /** The last held-out bits per byte. */
  heldoutBitsPerByte = Number.NaN;
  private readonly lr: number;
  private readonly evalEvery: number;
  private readonly ids: Int32Array;
  /** Ids `[0, trainEnd)` are trained on, the rest held out. */
  private readonly trainEnd: number;
  private readonly heldout: Int32Array[];
  private readonly random: () => number;
  private readonly entropyModel?: EntropyModel;
  private readonly blt?: ByteLatentTransformer;
  private readonly patching?: BltPatching;
  private readonly optimizer: AdamW;
  private readonly accumulator: GradientAccumulator;
  private readonly bytes: Uint8Array;

  /** @throws {BltError} `INVALID_ARGUMENT` for a text under {@link MIN_TRAINING_BYTES} or a bad setting */
  constructor(options: TextTrainerOptions) {
    this.kind = options.kind;
    this.steps = options.steps;
    this.seqLen = options.seqLen ?? 128;
    this.batchSize = options.batchSize ?? 8;
    this.lr = options.lr ?? 3e-3;
    this.evalEvery = options.evalEvery ?? 10;
    for (const [name, value] of Object.entries({
      steps: this.steps,
      seqLen: this.seqLen,
      batchSize: this.batchSize,
      evalEvery: this.evalEvery,
    }))
      if (!Number.isInteger(value) || value < 1) throw new BltError('INVALID_ARGUMENT', `${name} must be an integer >= 1, got ${value}`);
    if (!(this.lr > 0 && this.lr < 1)) throw new BltError('INVALID_ARGUMENT', `the learning rate must be in (0, 1), got ${this.lr}`);
    if (options.kind !== 'entropy' && options.kind !== 'blt')
      throw new BltError('INVALID_ARGUMENT', `kind must be "entropy" or "blt", got ${JSON.stringify(options.kind)}`);
    this.bytes = typeof options.text === 'string' ? new TextEncoder().encode(options.text) : options.text;
    if (this.bytes.length < MIN_TRAINING_BYTES)
      throw new BltError('INVALID_ARGUMENT', `the text has ${this.bytes.length} bytes; training needs at least ${MIN_TRAINING_BYTES}`);
    this.ids = encode(this.bytes, { bos: true, eos: true });
    // The held-out part: the last tenth, at least one short window, cut into windows of seqLen + 1 ids.
    const heldoutIds = Math.max(Math.floor(this.ids.length * HELD_OUT_SHARE), 33);
    this.trainEnd = this.ids.length - heldoutIds;
    this.heldout = [];
    for (let at = this.trainEnd; at + 1 < this.ids.length && this.heldout.length < MAX_HELD_OUT_WINDOWS; at += this.seqLen)
      this.heldout.push(this.ids.subarray(at, Math.min(at + this.seqLen + 1, this.ids.length)));
    const seed = options.seed ?? 0;
    this.random = seededUniform(seed + 1);
    let registry: ParameterRegistry;
    if (options.kind === 'entropy') {
      this.entropyModel = new EntropyModel(entropyModelArgsOfSize(ENTROPY_SIZE.dim, ENTROPY_SIZE.layers, this.seqLen), seed);
      registry = this.entropyModel.registry;
    } else {
      const rule = options.bltPatching ?? { mode: 'space' };
      if (rule.mode === 'static' && !(Number.isInteger(rule.patchSize) && rule.patchSize >= 1))
        throw new BltError('INVALID_ARGUMENT', `static patching needs a patch size >= 1, got ${rule.patchSize}`);
      this.patching = bltPatchingFromSettings(rule, undefined);
      this.blt = new ByteLatentTransformer(bltArgsOfSize({ ...BLT_SIZE, seqLen: this.seqLen, patchingMode: rule.mode }), seed);
      registry = this.blt.registry;
    }
    const params = registry.list().map((p) => ({ name: p.name, variable: p.variable }));
    this.optimizer = new AdamW(params, { weightDecay: 0.1, clipNorm: 1 });
    this.accumulator = new GradientAccumulator(params.map((p) => p.variable));
  }

  /** Trainable scalars of the model. */
  get parameters(): number {
    return this.entropyModel ? this.entropyModel.registry.count() : this.blt!.parameterCount();
  }

  /** Bytes of the text trained on (the part before the held-out tenth). */
  get trainBytes(): number {
    return this.trainEnd - 1;
  }

  /** Bytes of the text held out (never trained on). */
  get heldoutBytes(): number {
    return this.heldout.reduce((sum, row) => sum + row.length - 1, 0);
  }

  /** Whether the schedule is done. */
  get done(): boolean {
    return this.step >= this.steps;
  }

  /** Σ −ln p(target) over the rows' targets (each row: ids, the last one only a target). */
  private async sumLoss(rows: readonly Int32Array[]): Promise<() => tf.Scalar> {
    const tokens = rows.map((r) => r.subarray(0, r.length - 1));
    const targets = rows.map((r) => r.subarray(1));
    if (this.entropyModel) {
      const model = this.entropyModel;
      return () => tf.tidy(() => summedCrossEntropy(model.logits(tokens), targets));
    }
    const blt = this.blt!;
    const patchLengths = await patchRows(this.patching!, tokens);
    return () => tf.tidy(() => tf.sum(blt.tokenLosses(tokens, patchLengths, targets)) as tf.Scalar);
  }

  /** Held-out bits per byte now (also kept in {@link heldoutBitsPerByte}). */
  async evaluate(): Promise<number> {
    const loss = (await this.sumLoss(this.heldout))();
    const nats = (await loss.data())[0]!;
    loss.dispose();
    this.heldoutBitsPerByte = nats / Math.LN2 / this.heldoutBytes;
    return this.heldoutBitsPerByte;
  }

  /**
   * Applies one update (the held-out part is evaluated first, before step 1, and after every
   * `evalEvery` steps and the last).
   *
   * @throws {NnError} `NON_FINITE` when the loss or the gradients blow up (nothing is updated)
   */
  async trainStep(): Promise<TrainingRecord> {
    if (this.step === 0 && Number.isNaN(this.heldoutBitsPerByte)) await this.evaluate();
    const started = performance.now();
    const window = this.seqLen + 1;
    const rows: Int32Array[] = [];
    for (let b = 0; b < this.batchSize; b++) {
      const start = this.trainEnd > window ? Math.floor(this.random() * (this.trainEnd - window + 1)) : 0;
      rows.push(this.ids.subarray(start, Math.min(start + window, this.trainEnd)));
    }
    const targets = rows.reduce((sum, r) => sum + r.length - 1, 0);
    const lr = learningRate(this.step, { lr: this.lr, warmupSteps: Math.min(10, Math.ceil(this.steps / 10)), totalSteps: this.steps });
    const loss = await this.sumLoss(rows);
    await this.accumulator.add(() => tf.tidy(() => tf.div(loss(), targets) as tf.Scalar));
    const stats = await this.accumulator.apply(this.optimizer, lr);
    this.step += 1;
    const seconds = (performance.now() - started) / 1000;
    const evaluates = this.step % this.evalEvery === 0 || this.step === this.steps;
    return {
      step: this.step,
      bitsPerByte: stats.loss / Math.LN2,
      ...(evaluates ? { heldoutBitsPerByte: await this.evaluate() } : {}),
      lr,
      gradNorm: stats.gradNorm,
      bytesPerSecond: targets / Math.max(seconds, 1e-6),
    };
  }

  /**
   * The model as a safetensors file the loaders accept: the entropy model with its arguments and a
   * threshold calibrated on the training text for a mean patch of 4.5 bytes (`--patcher FILE`); the
   * BLT with its arguments and patching rule (`--blt FILE`).
   */
  async save(): Promise<TrainedModelFile> {
    if (Number.isNaN(this.heldoutBitsPerByte)) await this.evaluate();
    const common = {
      trained_by: 'bytelatent TextTrainer',
      trained_steps: String(this.step),
      heldout_bits_per_byte: this.heldoutBitsPerByte.toFixed(4),
    };
    let file: Uint8Array;
    if (this.entropyModel) {
      const patcher = EntropyPatcher.fromModel(this.entropyModel, { mode: 'entropy' });
      const { threshold } = await patcher.calibrate([this.bytes.subarray(0, Math.min(this.bytes.length, 65_536))], TARGET_MEAN_PATCH);
      file = await this.entropyModel.toSafetensors({ ...common, [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold }) });
    } else {
      const { patcher: _none, ...rule } = this.patching!;
      file = await this.blt!.toSafetensors({ ...common, patching: JSON.stringify(rule) });
    }
    return {
      kind: this.kind,
      fileName: this.kind === 'entropy' ? 'entropy-model.safetensors' : 'blt.safetensors',
      file,
      steps: this.step,
      parameters: this.parameters,
      heldoutBitsPerByte: this.heldoutBitsPerByte,
    };
  }

  /** Frees the model and the optimizer state. */
  dispose(): void {
    this.accumulator.dispose();
    this.optimizer.dispose();
    this.entropyModel?.dispose();
    this.blt?.dispose();
  }
}
