/** The study's plan: its settings, arms, the models and hyperparameters each arm trains with. */
import { createHash } from 'node:crypto';
import { bltArgsOfSize, type BltArgs } from '@bytelatent/blt';
import { transformerFlops, transformerShape, type BpeJson, type TokenTransformerArgs } from '@bytelatent/evals';
import { PRESETS, entropyArgs, type RunConfig } from './presets.js';
import type { EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { type TrainingHyperparameters } from './trainer.js';

/** The settings of a study; {@link DEFAULT_STUDY} is the committed report's. */
export interface StudySettings {
  /** Training FLOPs every arm may spend (forward + backward, the paper's formulas). */
  readonly budgetFlops: number;
  readonly seqLen: number;
  readonly batchSize: number;
  readonly lr: number;
  /** Every arm is trained once per seed (initialisation and data order); the report gives mean ± spread. */
  readonly seeds: readonly number[];
  /** Held-out evaluations during training (points of the BPB-vs-FLOPs curves). */
  readonly evalPoints: number;
  /** Bytes of each held-out book scored by the in-training evaluations. */
  readonly curveBytesPerBook: number;
  /** Width of every arm's main transformer (BLT global, token models) and of the BLT local models. */
  readonly dim: number;
  readonly layers: number;
  readonly localDim: number;
  /** BPE merges of the token baseline, and bytes of training text they are learned from. */
  readonly bpeMerges: number;
  readonly bpeTrainBytes: number;
  /** Final evaluation: bytes per held-out book, UDHR codes and bytes per translation. */
  readonly heldoutBytesPerBook: number;
  readonly udhrCodes: readonly string[];
  readonly udhrBytes: number;
  readonly cutePerTask: number;
  /** Bytes of held-out English the noise transforms are applied to. */
  readonly noiseBytes: number;
  /**
   * Entropy arms: the threshold is calibrated on this many bytes of *training* text (never on the
   * held-out books the study scores), cut into rows of `seqLen`, for this mean patch size in bytes.
   */
  readonly calibrationBytes: number;
  readonly entropyPatchBytes: number;
  /**
   * The arm whose entropy model is trained inside the budget: the share of the budget spent training
   * it, and its width and depth (a byte-level transformer of the entropy-model family).
   */
  readonly ownEntropyShare: number;
  readonly ownEntropyDim: number;
  readonly ownEntropyLayers: number;
}

export const DEFAULT_STUDY: StudySettings = {
  budgetFlops: 8e11,
  seqLen: 256,
  batchSize: 8,
  lr: 3e-3,
  seeds: [0, 1, 2],
  evalPoints: 4,
  curveBytesPerBook: 8192,
  dim: 128,
  layers: 2,
  localDim: 64,
  bpeMerges: 1024,
  bpeTrainBytes: 4_000_000,
  heldoutBytesPerBook: 16_384,
  udhrCodes: ['eng', 'fra', 'deu_1996', 'rus', 'ell_monotonic', 'arb', 'hin', 'cmn_hans'],
  udhrBytes: 4096,
  cutePerTask: 25,
  noiseBytes: 4096,
  calibrationBytes: 131_072,
  entropyPatchBytes: 4.5,
  ownEntropyShare: 0.25,
  ownEntropyDim: 64,
  ownEntropyLayers: 2,
};

/** A tiny study for smoke tests (seconds, not minutes). */
export const QUICK_STUDY: StudySettings = {
  ...DEFAULT_STUDY,
  budgetFlops: 2e9,
  seqLen: 64,
  batchSize: 2,
  evalPoints: 2,
  curveBytesPerBook: 512,
  dim: 32,
  layers: 1,
  localDim: 16,
  bpeMerges: 64,
  bpeTrainBytes: 100_000,
  heldoutBytesPerBook: 512,
  udhrCodes: ['eng', 'rus'],
  udhrBytes: 256,
  cutePerTask: 2,
  noiseBytes: 256,
  seeds: [0, 1],
  calibrationBytes: 4096,
  ownEntropyDim: 16,
  ownEntropyLayers: 1,
};

/** The six arms. */
export const STUDY_ARMS = ['blt-entropy', 'blt-entropy-own', 'blt-static', 'blt-space', 'bpe', 'byte'] as const;
export type StudyArmId = (typeof STUDY_ARMS)[number];

export const LABELS: Record<StudyArmId, string> = {
  'blt-entropy': 'BLT, entropy patching (shipped entropy model)',
  'blt-entropy-own': 'BLT, entropy patching (own entropy model, in budget)',
  'blt-static': 'BLT, static 4-byte patches',
  'blt-space': 'BLT, space patching',
  bpe: 'BPE token transformer',
  byte: 'byte-level transformer',
};

/** Every BLT arm caps patches at this many bytes (as the presets do), so long runs of spaces stay bounded. */
export const MAX_PATCH = 16;

/** An arm's run configuration: a BLT `RunConfig`, or a token model with its tokenizer. */
export type ArmConfig =
  | (RunConfig & { readonly kind: 'blt'; readonly tokenizer?: undefined })
  | (TrainingHyperparameters & {
      readonly kind: 'token';
      readonly model: TokenTransformerArgs;
      readonly patching?: undefined;
      readonly tokenizer: BpeJson;
    });

export interface ArmPlan {
  readonly id: StudyArmId;
  readonly label: string;
  readonly config: ArmConfig;
  /** Bytes per patch (BLT) or per token (token models) on a sample of the training rows. */
  readonly unit: number;
  readonly inferenceFlopsPerByte: number;
  readonly steps: number;
  readonly parameters: number;
  /** `blt-entropy-own`: what its entropy model costs out of the budget. */
  readonly ownEntropy?: OwnEntropyPlan;
}

/** The entropy model that `blt-entropy-own` trains first, inside its budget. */
export interface OwnEntropyPlan {
  readonly steps: number;
  readonly parameters: number;
  /** Forward FLOPs per byte of the entropy model (its context: the study's rows). */
  readonly flopsPerByte: number;
  /** Its training: 3 x forward FLOPs per byte x its training bytes. */
  readonly trainingFlops: number;
  /** Patching the BLT's training rows: one forward per BLT training byte. */
  readonly patchingFlops: number;
}

/**
 * Steps a budget buys: each step trains on `bytesPerStep` bytes at `flopsPerByte` training FLOPs per
 * byte (3 x the forward FLOPs, plus whatever else each byte costs inside the budget); at least 2.
 */
export function stepsForBudget(budgetFlops: number, flopsPerByte: number, bytesPerStep: number): number {
  if (!(budgetFlops > 0) || !(flopsPerByte > 0) || !(bytesPerStep > 0))
    throw new RangeError(`stepsForBudget needs positive figures, got ${budgetFlops}, ${flopsPerByte}, ${bytesPerStep}`);
  return Math.max(2, Math.round(budgetFlops / (flopsPerByte * bytesPerStep)));
}

/**
 * Seconds of training of a run that may have been interrupted and resumed: each invocation's
 * metrics restart their `elapsedSec` from zero, so the run's time is the sum of the last
 * `elapsedSec` of every invocation (the records before each drop, and the final one).
 */
export function trainingSeconds(records: ReadonlyArray<{ readonly elapsedSec: number }>): number {
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const next = records[i + 1];
    if (!next || next.elapsedSec < records[i]!.elapsedSec) total += records[i]!.elapsedSec;
  }
  return total;
}

/** Figures of one trained arm (cached in its folder as `eval.json`). */
export interface ArmResult {
  readonly id: StudyArmId;
  readonly label: string;
  readonly seed: number;
  readonly parameters: number;
  readonly steps: number;
  readonly trainBytes: number;
  readonly trainingFlops: number;
  /** On the training sample, as used for the budget. */
  readonly trainUnit: number;
  readonly trainInferenceFlopsPerByte: number;
  /** Measured on the held-out books. */
  readonly unit: number;
  readonly inferenceFlopsPerByte: number;
  /** The inference FLOPs per byte by part: BLT `global`, `encoder`, `decoder`, cross-attentions; token models `layers`, `output`. */
  readonly flopsParts: Readonly<Record<string, number>>;
  readonly entropyModelFlopsPerByte?: number;
  /** Entropy arms: the threshold calibrated on training rows, and the mean patch it gave there. */
  readonly calibration?: { readonly threshold: number; readonly meanPatchSize: number; readonly bytes: number };
  readonly ownEntropy?: OwnEntropyPlan;
  readonly books: ReadonlyArray<{ readonly name: string; readonly bytes: number; readonly bitsPerByte: number }>;
  readonly booksBitsPerByte: number;
  readonly udhr: ReadonlyArray<{ readonly code: string; readonly bytes: number; readonly bitsPerByte: number }>;
  readonly cute: {
    readonly accuracy: number;
    readonly chance: number;
    readonly tasks: ReadonlyArray<{ task: string; accuracy: number; chance: number; items: number }>;
  };
  readonly noise: { readonly clean: number; readonly noised: ReadonlyArray<{ kind: string; bitsPerByte: number; ratio: number }> };
  readonly curve: ReadonlyArray<{ readonly step: number; readonly trainingFlops: number; readonly bitsPerByte: number }>;
  readonly trainSeconds: number;
}

export interface StudyOptions {
  readonly settings?: StudySettings;
  /** Where the runs go (default `runs/study`). */
  readonly outDir: string;
  /** Where the report goes (`study.md`, `study-bpb-vs-flops.svg`, `study.json`). */
  readonly docsDir: string;
  /** The prepared corpus (`train/books`, `heldout/books`). */
  readonly corpusDir: string;
  /** Train only these arms (default all); the report shows every finished arm. */
  readonly arms?: readonly StudyArmId[];
  readonly onLog?: (message: string) => void;
}

export function hash(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);
}

export function bltArgs(s: StudySettings): BltArgs {
  return bltArgsOfSize({ dimGlobal: s.dim, dimLocal: s.localDim, layersGlobal: s.layers, seqLen: s.seqLen });
}

export function tokenArgs(s: StudySettings, vocab: number): TokenTransformerArgs {
  return {
    dim: s.dim,
    n_layers: s.layers,
    n_heads: Math.max(1, s.dim / 32),
    vocab_size: vocab,
    max_seqlen: s.seqLen + 1,
    multiple_of: 64,
    rope_theta: 10000,
    init_std_factor: 'current_depth',
    attn_bias_type: 'block_causal',
  };
}

export function hyperparameters(s: StudySettings, steps: number, seed: number): TrainingHyperparameters {
  const evalEvery = Math.max(1, Math.ceil(steps / s.evalPoints));
  return {
    seqLen: s.seqLen,
    batchSize: s.batchSize,
    gradAccumulation: 1,
    steps,
    lr: s.lr,
    warmupSteps: Math.max(1, Math.min(50, Math.round(steps / 10))),
    minLrRatio: 0.1,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    clipNorm: 1.0,
    seed,
    evalEvery,
    evalBytesPerFile: s.curveBytesPerBook,
    checkpointEvery: evalEvery,
  };
}

/** The entropy model `blt-entropy-own` trains: the entropy-model family at the study's row length. */
export function ownEntropyArgs(s: StudySettings): EntropyModelArgs {
  return entropyArgs(s.ownEntropyDim, s.ownEntropyLayers, s.seqLen);
}

/**
 * What training the shipped entropy model (`pretrained` = `pretrained:small`, which patches the
 * `blt-entropy` arm) cost: the `entropy-small` preset's model, run for 1,300 steps of 16 rows of 256
 * bytes (apps/train/README.md, "The shipped entropy models"). Outside every arm's budget by the
 * paper's convention; the report states it beside the budget.
 */
export function shippedEntropyTraining(): { readonly bytes: number; readonly flops: number; readonly flopsPerByte: number } {
  const preset = PRESETS['entropy-small']!;
  const args = preset.model as EntropyModelArgs;
  const bytes = 1300 * preset.batchSize * preset.seqLen;
  const flopsPerByte = transformerFlops(transformerShape(args), preset.seqLen, args.vocab_size ?? 260);
  return { bytes, flops: 3 * flopsPerByte * bytes, flopsPerByte };
}
