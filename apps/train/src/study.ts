/**
 * Runs the micro-scale reproduction of the BLT paper's central comparison: five model families
 * trained on the same bytes under the same training-FLOP budget — BLT with entropy, static 4-byte and
 * space patching, a BPE token transformer, a plain byte transformer — then measured with
 * `@bytelatent/evals` (held-out bits per byte on English books and UDHR in several scripts,
 * inference FLOPs per byte, CUTE-style character tasks, bits per byte under noise). Each run is a
 * normal `Trainer` run in its own folder: finished runs are skipped, interrupted ones resume from
 * their checkpoint, evaluations are cached; the report (`docs/study.md`, an SVG, the figures as JSON)
 * is rewritten from whatever is there. The plan (settings, arms, models) is in study-plan.ts, the
 * report in study-report.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
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
} from '@bytelatent/evals';
import { EntropyPatcher, PATCHER_METADATA_KEY } from '@bytelatent/entropy-patcher';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset, resolveDataFiles } from './dataset.js';
import { TrainError } from './errors.js';
import { formatDuration, formatRate } from './progress.js';
import { buildTrainable, loadEntropyRun, loadRowEntropyModel } from './run.js';
import { TokenTrainable } from './token-model.js';
import type { MetricsRecord } from './metrics.js';
import { CHECKPOINT_FILE, METRICS_FILE, Trainer, type TrainingHyperparameters } from './trainer.js';
import { EntropyTrainable, type TrainableModel } from './models.js';
import {
  DEFAULT_STUDY,
  LABELS,
  MAX_PATCH,
  STUDY_ARMS,
  bltArgs,
  hash,
  hyperparameters,
  ownEntropyArgs,
  stepsForBudget,
  tokenArgs,
  trainingSeconds,
  type ArmConfig,
  type ArmPlan,
  type ArmResult,
  type OwnEntropyPlan,
  type StudyArmId,
  type StudyOptions,
  type StudySettings,
} from './study-plan.js';
import { type CompressionRow, writeReport } from './study-report.js';

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

/** Rows of training text the entropy arms calibrate their threshold on (never held-out text). */
function calibrationRows(s: StudySettings, trainFiles: readonly string[]): Uint8Array[] {
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
 * (patches capped as in training), cached as JSON at `path`.
 */
async function calibrated(path: string, patcher: EntropyPatcher, rows: readonly Uint8Array[], s: StudySettings): Promise<Calibrated> {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as Calibrated;
  const c = await patcher.calibrate(rows, s.entropyPatchBytes, { maxPatchLength: MAX_PATCH });
  const result: Calibrated = { threshold: c.threshold, meanPatchSize: c.meanPatchSize, bytes: c.bytes };
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(result) + '\n'));
  return result;
}

/** What an arm needs before its steps are planned. */
interface BuiltArm {
  readonly trainable: TrainableModel;
  readonly config: ArmConfig;
  readonly calibration?: Calibrated;
  /** `blt-entropy-own`: its entropy model, trained (inside the budget) and calibrated. */
  readonly ownEntropy?: Omit<OwnEntropyPlan, 'patchingFlops'> & { readonly trainSeconds: number };
}

interface StudyContext {
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

async function buildArm(id: StudyArmId, dir: string, ctx: StudyContext): Promise<BuiltArm> {
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
    const { patcher } = await loadRowEntropyModel('pretrained');
    let calibration: Calibrated;
    try {
      calibration = await calibrated(join(ctx.outDir, 'calibration-pretrained.json'), patcher, ctx.calibration, s);
    } finally {
      patcher.dispose();
    }
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
  const patcher = EntropyPatcher.fromModel(await loadEntropyRun(emDir), { mode: 'entropy' });
  let calibration: Calibrated;
  try {
    calibration = await calibrated(join(dir, 'calibration.json'), patcher, ctx.calibration, s);
    if (!existsSync(emFile))
      await writeFileAtomic(
        emFile,
        await patcher.model.toSafetensors({
          [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold: calibration.threshold }),
          trained_by: 'bytelatent apps/train study',
        }),
      );
  } finally {
    patcher.dispose();
  }
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
 * Runs (or resumes) the study and writes the report: every arm once per seed, each run in
 * `<outDir>/<study key>/seed-<n>/<arm>`.
 *
 * @returns the figures of every finished run (arm x seed)
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
  // The seeds are not in the key: adding one reuses the runs of the others.
  const { seeds, ...keyed } = s;
  const studyKey = hash({ s: keyed, trainFiles: trainFiles.map((f) => basename(f)) });
  const outDir = join(options.outDir, studyKey);
  await mkdir(outDir, { recursive: true });
  // What other studies in the same folder compare against (studiesAtOtherBudgets).
  await writeFileAtomic(join(outDir, SETTINGS_FILE), new TextEncoder().encode(JSON.stringify(keyed) + '\n'));
  log(
    `study ${studyKey}: budget ${s.budgetFlops.toExponential(2)} training FLOPs per arm, rows of ${s.seqLen} bytes x ${s.batchSize}, seeds ${seeds.join(', ')}; runs in ${outDir}`,
  );
  const tokenizer = await studyTokenizer(s, trainFiles, outDir, log);
  const calibration = calibrationRows(s, trainFiles);
  const cacheDir = join(options.corpusDir, '..', 'patch-cache');
  const bytesPerStep = s.seqLen * s.batchSize;

  const results: ArmResult[] = [];
  for (const seed of seeds) {
    const dataset = new ByteDataset({ files: trainFiles, seqLen: s.seqLen, seed });
    const ctx: StudyContext = { s, seed, tokenizer, cacheDir, outDir, calibration, trainFiles, heldoutFiles, log };
    for (const id of STUDY_ARMS) {
      const dir = join(outDir, `seed-${seed}`, id);
      const wanted = !options.arms || options.arms.includes(id);
      if (!wanted && !existsSync(join(dir, DONE_FILE))) continue;
      const built = await buildArm(id, dir, ctx);
      try {
        const unit = await measureUnit(built.trainable, dataset, Math.max(8, Math.round(65_536 / s.seqLen)));
        const inferenceFlopsPerByte = flopsOf(built.config, s, unit);
        // The budget buys each arm its steps. The own entropy model's training comes out of the
        // budget first, and patching the BLT's rows costs one entropy-model forward per byte.
        const em = built.ownEntropy;
        const steps = stepsForBudget(
          s.budgetFlops - (em?.trainingFlops ?? 0),
          3 * inferenceFlopsPerByte + (em?.flopsPerByte ?? 0),
          bytesPerStep,
        );
        const plan: ArmPlan = {
          id,
          label: LABELS[id],
          config: { ...built.config, ...hyperparameters(s, steps, seed) } as ArmConfig,
          unit,
          inferenceFlopsPerByte,
          steps,
          parameters: built.trainable.registry.count(),
          ...(em
            ? {
                ownEntropy: {
                  steps: em.steps,
                  parameters: em.parameters,
                  flopsPerByte: em.flopsPerByte,
                  trainingFlops: em.trainingFlops,
                  patchingFlops: em.flopsPerByte * steps * bytesPerStep,
                },
              }
            : {}),
        };
        const { kind, model, patching: _p, tokenizer: _t, ...hp } = plan.config;
        const trainSeconds = await trainRun(
          {
            id,
            describe:
              `${plan.parameters.toLocaleString('en-US')} parameters, ${plan.inferenceFlopsPerByte.toExponential(3)} inference FLOPs/byte ` +
              `(${kind === 'blt' ? 'bytes/patch' : 'bytes/token'} ${plan.unit.toFixed(3)}): ${plan.steps} steps`,
            steps,
            kind,
            model,
            hp,
            ...(plan.config.patching ? { patching: plan.config.patching } : {}),
            ...(plan.config.tokenizer ? { tokenizer: plan.config.tokenizer } : {}),
          },
          built.trainable,
          dir,
          ctx,
        );
        results.push(await evaluateArm(plan, built, ctx, dir, bytesPerStep, trainSeconds + (built.ownEntropy?.trainSeconds ?? 0)));
      } finally {
        built.trainable.dispose();
      }
    }
  }
  const compression = await tokenizerCompression(tokenizer, s, heldoutFiles);
  const budgets = studiesAtOtherBudgets(options.outDir, keyed);
  await writeReport(results, s, options, outDir, studyKey, compression, budgets);
  return results;
}

const SETTINGS_FILE = 'settings.json';

/**
 * The finished runs of the studies beside this one (same folder) whose settings differ only in the
 * budget: what the report's "more compute" table compares. Evaluations made under other evaluation
 * settings are left out.
 */
export function studiesAtOtherBudgets(
  runsDir: string,
  settings: Omit<StudySettings, 'seeds'>,
): Array<{ budgetFlops: number; results: ArmResult[] }> {
  const sameButBudget = (x: object) => JSON.stringify({ ...x, budgetFlops: 0 });
  const want = sameButBudget(settings);
  const out: Array<{ budgetFlops: number; results: ArmResult[] }> = [];
  for (const key of existsSync(runsDir) ? readdirSync(runsDir) : []) {
    const path = join(runsDir, key, SETTINGS_FILE);
    if (!existsSync(path)) continue;
    let other: StudySettings;
    try {
      other = JSON.parse(readFileSync(path, 'utf8')) as StudySettings;
    } catch {
      continue;
    }
    if (other.budgetFlops === settings.budgetFlops || sameButBudget(other) !== want) continue;
    const results: ArmResult[] = [];
    for (const seedDir of readdirSync(join(runsDir, key)).filter((d) => /^seed-\d+$/.test(d))) {
      const seed = Number(seedDir.slice(5));
      for (const id of STUDY_ARMS) {
        const evalPath = join(runsDir, key, seedDir, id, EVAL_FILE);
        if (!existsSync(evalPath)) continue;
        const r = JSON.parse(readFileSync(evalPath, 'utf8')) as ArmResult & { settingsKey: string };
        if (r.settingsKey === evaluationKey({ ...other, seeds: [seed] }, seed)) results.push(r);
      }
    }
    if (results.length > 0) out.push({ budgetFlops: other.budgetFlops, results });
  }
  return out.sort((a, b) => a.budgetFlops - b.budgetFlops);
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

/** One training run of the study (an arm, or the entropy model of `blt-entropy-own`). */
interface RunSpec {
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
async function trainRun(spec: RunSpec, trainable: TrainableModel, dir: string, ctx: StudyContext): Promise<number> {
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

/** The key of an arm's cached evaluation: whatever the figures depend on besides the checkpoint. */
export function evaluationKey(s: StudySettings, seed: number): string {
  return hash({ h: s.heldoutBytesPerBook, u: s.udhrCodes, ub: s.udhrBytes, c: s.cutePerTask, n: s.noiseBytes, w: s.seqLen, seed, v: 4 });
}

async function evaluateArm(
  plan: ArmPlan,
  built: BuiltArm,
  ctx: StudyContext,
  dir: string,
  bytesPerStep: number,
  trainSeconds: number,
): Promise<ArmResult> {
  const { s, seed, heldoutFiles, log } = ctx;
  const tag = `[seed ${seed} ${plan.id}]`;
  const settingsKey = evaluationKey(s, seed);
  // Training FLOPs after `step` steps: the arm's own, plus its entropy model's training and patching.
  const em = plan.ownEntropy;
  const flopsAt = (step: number) =>
    (3 * plan.inferenceFlopsPerByte + (em?.flopsPerByte ?? 0)) * step * bytesPerStep + (em?.trainingFlops ?? 0);
  const cachePath = join(dir, EVAL_FILE);
  const curve = readMetrics(dir)
    .filter((r): r is Extract<MetricsRecord, { type: 'eval' }> => r.type === 'eval')
    .map((r) => ({ step: r.step, trainingFlops: flopsAt(r.step), bitsPerByte: r.bpb }));
  if (existsSync(cachePath)) {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as ArmResult & { settingsKey: string };
    if (cached.settingsKey === settingsKey) return { ...cached, curve, trainSeconds };
  }
  log(`${tag} evaluating`);
  const t0 = performance.now();
  const loaded = await loadModelFile(join(dir, CHECKPOINT_FILE), { name: plan.id });
  try {
    const model = loaded.model;
    const books: Array<{ name: string; bytes: number; bitsPerByte: number; nats: number }> = [];
    const before = loaded.kind === 'blt' ? loaded.model.patchCounts() : undefined;
    let targets = 0;
    for (const f of heldoutFiles) {
      const bytes = new Uint8Array(readFileSync(f)).subarray(0, s.heldoutBytesPerBook);
      // Every arm is scored on the same windows of the training row length, each from BOS (see
      // evaluateBitsPerByte's windowBytes): token models see the bytes a BLT sees, at trained positions.
      const r = await evaluateBitsPerByte(model, bytes, { windowBytes: s.seqLen });
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
      const r = await evaluateBitsPerByte(model, bytes, { windowBytes: s.seqLen });
      udhr.push({ code, bytes: r.bytes, bitsPerByte: r.bitsPerByte });
    }
    const cuteResult = await evaluateCharacterTasks(model, generateCharacterTasks({ perTask: s.cutePerTask, seed }));
    const noiseText = new TextDecoder()
      .decode(new Uint8Array(readFileSync(heldoutFiles[0]!)).subarray(0, s.noiseBytes))
      .replace(/\uFFFD$/, '');
    const noise = await evaluateNoiseRobustness(model, noiseText, { seed, windowBytes: s.seqLen });
    const result: ArmResult & { settingsKey: string } = {
      settingsKey,
      id: plan.id,
      label: plan.label,
      seed,
      parameters: loaded.parameters,
      steps: plan.steps,
      trainBytes: plan.steps * bytesPerStep,
      trainingFlops: flopsAt(plan.steps),
      trainUnit: plan.unit,
      trainInferenceFlopsPerByte: plan.inferenceFlopsPerByte,
      unit,
      inferenceFlopsPerByte,
      flopsParts,
      ...(entropyModelFlopsPerByte !== undefined ? { entropyModelFlopsPerByte } : {}),
      ...(built.calibration ? { calibration: built.calibration } : {}),
      ...(em ? { ownEntropy: em } : {}),
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
    log(`${tag} evaluated in ${formatDuration((performance.now() - t0) / 1000)}: held-out books ${booksBitsPerByte.toFixed(3)} bits/byte`);
    return result;
  } finally {
    loaded.dispose();
  }
}
