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
import { existsSync, readFileSync } from 'node:fs';
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
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset, resolveDataFiles } from './dataset.js';
import { TrainError } from './errors.js';
import { formatDuration, formatRate } from './progress.js';
import { buildTrainable } from './run.js';
import { TokenTrainable } from './token-model.js';
import type { MetricsRecord } from './metrics.js';
import { CHECKPOINT_FILE, METRICS_FILE, Trainer } from './trainer.js';
import type { TrainableModel } from './models.js';
import {
  DEFAULT_STUDY,
  LABELS,
  MAX_PATCH,
  STUDY_ARMS,
  bltArgs,
  hash,
  hyperparameters,
  tokenArgs,
  type ArmConfig,
  type ArmPlan,
  type ArmResult,
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
