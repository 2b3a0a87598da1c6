/**
 * The study's arms as they are built and trained: the BPE, the calibration of the entropy arms on
 * training text, the entropy model `blt-entropy-own` trains inside its budget, and the training runs
 * themselves (resumable, their time accounted over every invocation).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BltArgs } from '@bytelatent/blt';
import {
  BytePairTokenizer,
  bltFlopsPerByte,
  bltFlopsShape,
  byteTokenizer,
  tokenModelFlopsPerByte,
  transformerFlops,
  transformerShape,
} from '@bytelatent/evals';
import { EntropyPatcher, PATCHER_METADATA_KEY } from '@bytelatent/entropy-patcher';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset } from './dataset.js';
import { TrainError } from './errors.js';
import { formatDuration, formatRate } from './progress.js';
import { buildTrainable, loadEntropyRun, loadRowEntropyModel } from './run.js';
import { TokenTrainable } from './token-model.js';
import type { MetricsRecord } from './metrics.js';
import { CHECKPOINT_FILE, METRICS_FILE, Trainer, type TrainingHyperparameters } from './trainer.js';
import { EntropyTrainable, type TrainableModel } from './models.js';
import {
  MAX_PATCH,
  bltArgs,
  hyperparameters,
  ownEntropyArgs,
  stepsForBudget,
  tokenArgs,
  trainingSeconds,
  type ArmConfig,
  type OwnEntropyPlan,
  type StudyArmId,
  type StudySettings,
} from './study-plan.js';

export const DONE_FILE = 'done.json';
export const EVAL_FILE = 'eval.json';

/** The trained BPE of the study (cached in the run folder, deterministic anyway). */
export async function studyTokenizer(
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

/** Rows of training text the entropy arms calibrate their threshold on (never held-out text). */
export function calibrationRows(s: StudySettings, trainFiles: readonly string[]): Uint8Array[] {
  const rows: Uint8Array[] = [];
  let read = 0;
  for (const f of trainFiles) {
    const text = new Uint8Array(readFileSync(f));
    for (let at = 0; at + s.seqLen <= text.length && read < s.calibrationBytes; at += s.seqLen, read += s.seqLen)
      rows.push(text.subarray(at, at + s.seqLen));
    if (read >= s.calibrationBytes) break;
  }
  return rows;
}

interface Calibrated {
  readonly threshold: number;
  readonly meanPatchSize: number;
  readonly bytes: number;
}

/**
 * The entropy threshold that gives `entropyPatchBytes` bytes per patch on the calibration rows
 * (patches capped as in training), cached as JSON at `path`. The entropy patcher is opened (and
 * freed) only when the cache is missing; `withPatcher` then runs with it before the cache is written.
 */
async function calibrated(
  path: string,
  open: () => Promise<EntropyPatcher>,
  rows: readonly Uint8Array[],
  s: StudySettings,
  withPatcher?: (patcher: EntropyPatcher, calibration: Calibrated) => Promise<void>,
): Promise<Calibrated> {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as Calibrated;
  const patcher = await open();
  try {
    const c = await patcher.calibrate(rows, s.entropyPatchBytes, { maxPatchLength: MAX_PATCH });
    const result: Calibrated = { threshold: c.threshold, meanPatchSize: c.meanPatchSize, bytes: c.bytes };
    await withPatcher?.(patcher, result);
    await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(result) + '\n'));
    return result;
  } finally {
    patcher.dispose();
  }
}

/** What an arm needs before its steps are planned. */
export interface BuiltArm {
  readonly trainable: TrainableModel;
  readonly config: ArmConfig;
  readonly calibration?: Calibrated;
  /** `blt-entropy-own`: its entropy model, trained (inside the budget) and calibrated. */
  readonly ownEntropy?: Omit<OwnEntropyPlan, 'patchingFlops'> & { readonly trainSeconds: number };
}

export interface StudyContext {
  readonly s: StudySettings;
  readonly seed: number;
  readonly tokenizer: BytePairTokenizer;
  readonly cacheDir: string;
  readonly outDir: string;
  readonly calibration: readonly Uint8Array[];
  readonly trainFiles: readonly string[];
  readonly heldoutFiles: readonly string[];
  readonly log: (m: string) => void;
}

export async function buildArm(id: StudyArmId, dir: string, ctx: StudyContext): Promise<BuiltArm> {
  const { s, seed } = ctx;
  const hp = hyperparameters(s, 1, seed);
  if (id === 'bpe' || id === 'byte') {
    const tok = id === 'bpe' ? ctx.tokenizer : byteTokenizer();
    const args = tokenArgs(s, tok.vocabSize);
    return {
      trainable: new TokenTrainable(args, seed, tok),
      config: { kind: 'token', model: args, tokenizer: tok.toJSON(), ...hp },
    };
  }
  const blt = async (patching: ArmConfig['patching'], extra: Omit<BuiltArm, 'trainable' | 'config'> = {}): Promise<BuiltArm> => {
    const config: ArmConfig = { kind: 'blt', model: bltArgs(s), patching: patching!, ...hp };
    return { trainable: await buildTrainable(config, { cacheDir: ctx.cacheDir }), config, ...extra };
  };
  if (id === 'blt-static') return blt({ mode: 'static', patchSize: 4, maxPatchLength: MAX_PATCH });
  if (id === 'blt-space') return blt({ mode: 'space', maxPatchLength: MAX_PATCH });
  if (id === 'blt-entropy') {
    // The shipped entropy model, its threshold calibrated on training rows (the same for every seed).
    const calibration = await calibrated(
      join(ctx.outDir, 'calibration-pretrained.json'),
      async () => (await loadRowEntropyModel('pretrained')).patcher,
      ctx.calibration,
      s,
    );
    return blt(
      { mode: 'entropy', entropyModel: 'pretrained', threshold: calibration.threshold, maxPatchLength: MAX_PATCH },
      { calibration },
    );
  }
  // blt-entropy-own: first an entropy model trained on its share of the budget, then calibrated.
  const emDir = join(dir, 'entropy-model');
  const emFile = join(dir, 'entropy-model.safetensors');
  const args = ownEntropyArgs(s);
  const emTrainable = EntropyTrainable.create(args, seed);
  const emFlopsPerByte = transformerFlops(transformerShape(emTrainable.model.referenceArgs), s.seqLen, 260);
  const bytesPerStep = s.seqLen * s.batchSize;
  const emSteps = stepsForBudget(s.ownEntropyShare * s.budgetFlops, 3 * emFlopsPerByte, bytesPerStep);
  const parameters = emTrainable.registry.count();
  let emSeconds: number;
  try {
    emSeconds = await trainRun(
      {
        id: `${id}/entropy-model`,
        describe: `entropy model, ${parameters.toLocaleString('en-US')} parameters, ${emFlopsPerByte.toExponential(3)} FLOPs/byte: ${emSteps} steps`,
        steps: emSteps,
        kind: 'entropy',
        model: args,
        hp: hyperparameters(s, emSteps, seed),
      },
      emTrainable,
      emDir,
      ctx,
    );
  } finally {
    emTrainable.dispose();
  }
  // The model file carries the calibrated threshold: without it, calibrate (and write it) again.
  const calibrationPath = join(dir, 'calibration.json');
  if (!existsSync(emFile)) rmSync(calibrationPath, { force: true });
  const calibration = await calibrated(
    calibrationPath,
    async () => EntropyPatcher.fromModel(await loadEntropyRun(emDir), { mode: 'entropy' }),
    ctx.calibration,
    s,
    async (patcher, c) =>
      writeFileAtomic(
        emFile,
        await patcher.model.toSafetensors({
          [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold: c.threshold }),
          trained_by: 'bytelatent apps/train study',
        }),
      ),
  );
  return blt(
    { mode: 'entropy', entropyModel: emFile, threshold: calibration.threshold, maxPatchLength: MAX_PATCH },
    {
      calibration,
      ownEntropy: {
        steps: emSteps,
        parameters,
        flopsPerByte: emFlopsPerByte,
        trainingFlops: 3 * emFlopsPerByte * emSteps * bytesPerStep,
        trainSeconds: emSeconds,
      },
    },
  );
}

/** Bytes per patch / per token of the arm on training rows, exactly as training computes them. */
export async function measureUnit(trainable: TrainableModel, dataset: ByteDataset, rows: number): Promise<number> {
  const sample = dataset.rows(0, rows);
  const prepared = await trainable.prepare(sample);
  const bytes = sample.reduce((n, r) => n + r.targets.length, 0);
  if (prepared.patchLengths) return bytes / prepared.patchLengths.reduce((n, l) => n + l.length, 0);
  return bytes / prepared.tokens.reduce((n, t) => n + t.length, 0);
}

export function flopsOf(config: ArmConfig, s: StudySettings, unit: number): number {
  if (config.kind === 'token') return tokenModelFlopsPerByte(transformerShape(config.model), unit, s.seqLen, config.model.vocab_size);
  return bltFlopsPerByte(bltFlopsShape(config.model as BltArgs), unit, s.seqLen).total;
}

export function readMetrics(dir: string): MetricsRecord[] {
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

/** One training run of the study (an arm, or the entropy model of `blt-entropy-own`). */
export interface RunSpec {
  readonly id: string;
  /** The first log line: size, cost, steps. */
  readonly describe: string;
  readonly steps: number;
  readonly kind: 'entropy' | 'blt' | 'token';
  readonly model: unknown;
  readonly hp: TrainingHyperparameters;
  readonly patching?: unknown;
  readonly tokenizer?: unknown;
}

/** Trains (or resumes) a run to its last step, marks it done; returns its training seconds over all invocations. */
export async function trainRun(spec: RunSpec, trainable: TrainableModel, dir: string, ctx: StudyContext): Promise<number> {
  const { log, seed } = ctx;
  const tag = `[seed ${seed} ${spec.id}]`;
  if (existsSync(join(dir, DONE_FILE))) {
    log(`${tag} trained already (${spec.steps} steps)`);
    return (JSON.parse(readFileSync(join(dir, DONE_FILE), 'utf8')) as { trainSeconds: number }).trainSeconds;
  }
  const resume = existsSync(join(dir, CHECKPOINT_FILE));
  log(`${tag} ${spec.describe}${resume ? ', resuming' : ''}`);
  let lastLog = 0;
  let firstStep = -1;
  const t0 = performance.now();
  const trainer = new Trainer(
    trainable,
    { ...spec.hp, outDir: dir, trainFiles: ctx.trainFiles, heldoutFiles: ctx.heldoutFiles },
    {
      kind: spec.kind,
      model: spec.model,
      patching: spec.patching ?? null,
      ...(spec.tokenizer ? { tokenizer: spec.tokenizer } : {}),
    },
    {
      onStep: (r, total) => {
        if (firstStep < 0) firstStep = r.step - 1;
        const now = performance.now();
        if (now - lastLog < 15_000 && r.step < total) return;
        lastLog = now;
        const eta = ((total - r.step) * (now - t0)) / 1000 / Math.max(1, r.step - firstStep);
        log(
          `${tag} step ${r.step}/${total} loss ${(r.loss / Math.LN2).toFixed(3)} bits/byte, ${formatRate(r.bytesPerSec)} bytes/s, ETA ${formatDuration(eta)}`,
        );
      },
      onEval: (r) => log(`${tag} step ${r.step}: held-out ${r.bpb.toFixed(3)} bits/byte`),
      onLog: (m) => log(`${tag} ${m}`),
    },
  );
  try {
    const summary = await trainer.run(resume);
    if (summary.stoppedEarly) throw new TrainError('INVALID_ARGUMENT', `${tag} stopped at step ${summary.endStep}`);
  } finally {
    trainer.dispose();
  }
  const records = readMetrics(dir).filter((r): r is Extract<MetricsRecord, { type: 'train' }> => r.type === 'train');
  const trainSeconds = trainingSeconds(records);
  await writeFileAtomic(join(dir, DONE_FILE), new TextEncoder().encode(JSON.stringify({ steps: spec.steps, trainSeconds }) + '\n'));
  return trainSeconds;
}
