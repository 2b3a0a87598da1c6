/** The study's plan: its settings, arms, the models and hyperparameters each arm trains with. */
import { createHash } from 'node:crypto';
import type { BltArgs } from '@bytelatent/blt';
import { type BpeJson, type TokenTransformerArgs } from '@bytelatent/evals';
import type { RunConfig } from './presets.js';
import { type TrainingHyperparameters } from './trainer.js';

/** The settings of a study; {@link DEFAULT_STUDY} is the committed report's. */
export interface StudySettings {
  /** Training FLOPs every arm may spend (forward + backward, the paper's formulas). */
  readonly budgetFlops: number;
  readonly seqLen: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly seed: number;
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
}

export const DEFAULT_STUDY: StudySettings = {
  budgetFlops: 8e11,
  seqLen: 256,
  batchSize: 8,
  lr: 3e-3,
  seed: 0,
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
};

/** The five arms. */
export const STUDY_ARMS = ['blt-entropy', 'blt-static', 'blt-space', 'bpe', 'byte'] as const;
export type StudyArmId = (typeof STUDY_ARMS)[number];

export const LABELS: Record<StudyArmId, string> = {
  'blt-entropy': 'BLT, entropy patching',
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
}

/** Figures of one trained arm (cached in its folder as `eval.json`). */
export interface ArmResult {
  readonly id: StudyArmId;
  readonly label: string;
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
  return {
    vocab_size: 260,
    dim_global: s.dim,
    dim_local_encoder: s.localDim,
    dim_local_decoder: s.localDim,
    n_layers_global: s.layers,
    n_layers_local_encoder: 1,
    n_layers_local_decoder: 1,
    n_heads_global: Math.max(1, s.dim / 32),
    n_heads_local_encoder: Math.max(1, s.localDim / 32),
    n_heads_local_decoder: Math.max(1, s.localDim / 32),
    ffn_dim_multiplier: 1.0,
    multiple_of: 64,
    rope_theta: 10000,
    max_seqlen: s.seqLen,
    max_encoder_seq_length: s.seqLen,
    local_attention_window_len: s.seqLen,
    attn_bias_type: 'block_causal',
    init_std_factor: 'current_depth',
    use_local_encoder_transformer: true,
    cross_attn_encoder: true,
    cross_attn_decoder: true,
    cross_attn_init_by_pooling: true,
    cross_attn_k: 2,
    cross_attn_nheads: Math.max(1, s.localDim / 32),
    cross_attn_all_layers_encoder: false,
    cross_attn_all_layers_decoder: true,
    downsampling_by_pooling: 'max',
    encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
    encoder_hash_byte_group_vocab: 1024,
    encoder_hash_byte_group_nb_functions: 1,
    eos_id: 2,
  };
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

export function hyperparameters(s: StudySettings, steps: number): TrainingHyperparameters {
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
    seed: s.seed,
    evalEvery,
    evalBytesPerFile: s.curveBytesPerBook,
    checkpointEvery: evalEvery,
  };
}
