/**
 * Runs the micro-scale reproduction of the BLT paper's central comparison: six models trained on the
 * same bytes under the same training-FLOP budget, once per seed — BLT with entropy patching (the
 * shipped entropy model, and one trained inside the budget), static 4-byte and space patching, a BPE
 * token transformer, a plain byte transformer — then measured with
 * `@bytelatent/evals` (held-out bits per byte on English books and UDHR in several scripts,
 * inference FLOPs per byte, CUTE-style character tasks, bits per byte under noise). Each run is a
 * normal `Trainer` run in its own folder: finished runs are skipped, interrupted ones resume from
 * their checkpoint, evaluations are cached; the report (`docs/study.md`, an SVG, the figures as JSON)
 * is rewritten from whatever is there. The plan (settings, arms, models) is in study-plan.ts, the
 * building and training of arms in study-arms.ts, their measurements in study-evaluate.ts, the
 * report in study-report.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset, resolveDataFiles } from './dataset.js';
import { TrainError } from './errors.js';
import {
  DEFAULT_STUDY,
  LABELS,
  STUDY_ARMS,
  hash,
  hyperparameters,
  stepsForBudget,
  type ArmConfig,
  type ArmPlan,
  type ArmResult,
  type StudyOptions,
  type StudySettings,
} from './study-plan.js';
import { writeReport } from './study-report.js';
import {
  DONE_FILE,
  EVAL_FILE,
  buildArm,
  calibrationRows,
  flopsOf,
  measureUnit,
  studyTokenizer,
  trainRun,
  type StudyContext,
} from './study-arms.js';
import { evaluateArm, evaluationKey, tokenizerCompression } from './study-evaluate.js';

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
