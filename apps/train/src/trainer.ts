/**
 * The training loop: deterministic data, AdamW with warm-up + cosine, gradient clipping and
 * accumulation, held-out bits-per-byte every N steps, JSON-lines metrics, atomic checkpoints, and a
 * clean stop on request (Ctrl-C) that saves first. A run resumed from a checkpoint computes exactly
 * what the uninterrupted run computes: the data order is a pure function of (seed, step), and the
 * weights and optimizer moments are restored bit for bit.
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
// Gradient functions (tf.variableGrads): the tfjs umbrella, loaded only where models train.
import '@bytelatent/nn/gradients';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { ByteDataset, evaluationRows, type TrainingRow } from './dataset.js';
import { AdamW, GradientAccumulator, NnError, learningRate } from '@bytelatent/nn';
import { readCheckpoint, restoreCheckpoint, saveCheckpoint, CHECKPOINT_FORMAT, CHECKPOINT_VERSION } from './checkpoint.js';
import type { TrainableModel } from './models.js';
import { TrainError } from './errors.js';
import type { MetricsRecord } from './metrics.js';
import { renderCurveSvg } from './plot.js';

/** The hyper-parameters of a run, shared by presets, config files and {@link TrainerOptions}. */
export interface TrainingHyperparameters {
  readonly seqLen: number;
  readonly batchSize: number;
  readonly gradAccumulation: number;
  readonly steps: number;
  readonly lr: number;
  readonly warmupSteps: number;
  readonly minLrRatio: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly clipNorm: number;
  readonly seed: number;
  /** Held-out BPB every this many steps (0: only at the end). */
  readonly evalEvery: number;
  /** Bytes scored per held-out file at each evaluation. */
  readonly evalBytesPerFile: number;
  /** Checkpoint every this many steps (0: only at the end and on stop). */
  readonly checkpointEvery: number;
}

/** Hyper-parameters and bookkeeping of one run (everything but the model's own arguments). */
export interface TrainerOptions extends TrainingHyperparameters {
  readonly outDir: string;
  readonly trainFiles: readonly string[];
  readonly heldoutFiles: readonly string[];
  /** Stop after this many steps of this invocation (for tests and smoke runs); the schedule still spans `steps`. */
  readonly stopAfter?: number;
}

/** Receives progress (the CLI draws a bar with it). */
export interface TrainerEvents {
  onStep?(record: Extract<MetricsRecord, { type: 'train' }>, totalSteps: number): void;
  onEval?(record: Extract<MetricsRecord, { type: 'eval' }>): void;
  onCheckpoint?(step: number, path: string, bytes: number): void;
  onLog?(message: string): void;
}

/** What {@link Trainer.run} returns. */
export interface TrainSummary {
  readonly startStep: number;
  readonly endStep: number;
  readonly stoppedEarly: boolean;
  readonly lastLoss: number | undefined;
  readonly lastEvalBpb: number | undefined;
  readonly trainBytesPerSec: number;
  readonly checkpoint: string;
}

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const METRICS_FILE = 'metrics.jsonl';
export const CURVE_FILE = 'curve.svg';

/** Fields of the configuration that must be equal for a resume to be exact. */
const RESUME_INVARIANT = [
  'seqLen',
  'batchSize',
  'gradAccumulation',
  'seed',
  'lr',
  'warmupSteps',
  'minLrRatio',
  'weightDecay',
  'beta1',
  'beta2',
  'clipNorm',
] as const;

/** `<file>.tmp-<pid>-<hex>`: the temporary file of an atomic write (`writeFileAtomic`) in progress or abandoned. */
const TEMPORARY_FILE = /^.+\.tmp-(\d+)-[0-9a-f]+$/;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files that a process killed mid-write (kill -9, power loss) left in the run
 * folder: the files they were written for are intact (atomic rename), so these are garbage, as large
 * as a checkpoint each. Files of a live process (another writer) are kept.
 *
 * @returns the names removed
 */
export async function removeStaleTemporaryFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    const match = TEMPORARY_FILE.exec(name);
    if (!match) continue;
    // A live process (this one included: another trainer of the same folder) may be writing it.
    if (isAlive(Number(match[1]))) continue;
    await unlink(join(dir, name)).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

export class Trainer {
  private stopRequested = false;
  readonly dataset: ByteDataset;
  readonly optimizer: AdamW;
  private readonly accumulator: GradientAccumulator;
  private readonly evalSet: { rows: TrainingRow[]; byteTargets: number } | undefined;

  constructor(
    readonly model: TrainableModel,
    readonly options: TrainerOptions,
    /** Extra configuration stored in checkpoints (model args, patching…). */
    readonly runConfig: Readonly<Record<string, unknown>>,
    private readonly events: TrainerEvents = {},
  ) {
    for (const k of ['seqLen', 'batchSize', 'gradAccumulation', 'steps'] as const) {
      const v = options[k];
      if (!Number.isInteger(v) || v < 1) throw new TrainError('INVALID_ARGUMENT', `${k} must be an integer >= 1, got ${v}`);
    }
    if (!(options.lr > 0)) throw new TrainError('INVALID_ARGUMENT', `lr must be > 0, got ${options.lr}`);
    this.dataset = new ByteDataset({ files: options.trainFiles, seqLen: options.seqLen, seed: options.seed });
    this.optimizer = new AdamW(
      model.registry.list().map((p) => ({ name: p.name, variable: p.variable })),
      { beta1: options.beta1, beta2: options.beta2, weightDecay: options.weightDecay, clipNorm: options.clipNorm },
    );
    this.accumulator = new GradientAccumulator(this.optimizer.params.map((p) => p.variable));
    this.evalSet =
      options.heldoutFiles.length > 0 ? evaluationRows(options.heldoutFiles, options.seqLen, options.evalBytesPerFile) : undefined;
  }

  /** Asks the loop to stop after the current step; it saves a checkpoint first. */
  requestStop(): void {
    this.stopRequested = true;
  }

  get checkpointPath(): string {
    return join(this.options.outDir, CHECKPOINT_FILE);
  }

  private config(): Record<string, unknown> {
    const { outDir: _o, trainFiles: _t, heldoutFiles: _h, stopAfter: _s, ...rest } = this.options;
    return { ...rest, ...this.runConfig };
  }

  /**
   * Restores the checkpoint in `outDir` (when `resume`) and trains up to `steps`.
   *
   * @param resume - continue from `outDir/checkpoint.safetensors`
   * @throws {TrainError} `CHECKPOINT_MISMATCH` when the checkpoint's configuration differs in a way
   *   that would change the results; `CHECKPOINT_INVALID` for a corrupt checkpoint; `NON_FINITE_LOSS`
   */
  async run(resume: boolean): Promise<TrainSummary> {
    const o = this.options;
    await mkdir(o.outDir, { recursive: true });
    const stale = await removeStaleTemporaryFiles(o.outDir);
    if (stale.length > 0) this.events.onLog?.(`removed ${stale.length} temporary file(s) of an interrupted write: ${stale.join(', ')}`);
    let startStep = 0;
    const metricsPath = join(o.outDir, METRICS_FILE);
    if (resume) {
      const { state, file } = await readCheckpoint(this.checkpointPath);
      this.checkCompatible(state.config, state.kind);
      restoreCheckpoint(file, state, this.model, this.optimizer);
      startStep = state.step;
      // Metrics written after the checkpoint belong to the lost part of the interrupted run.
      await this.truncateMetrics(metricsPath, startStep);
      this.events.onLog?.(`resumed from ${this.checkpointPath} at step ${startStep}`);
    } else {
      await writeFile(metricsPath, '');
    }
    await writeFileAtomic(join(o.outDir, 'config.json'), new TextEncoder().encode(JSON.stringify(this.config(), null, 2) + '\n'));

    const targetsPerStep = o.batchSize * o.gradAccumulation * o.seqLen;
    const endStep = Math.min(o.steps, o.stopAfter !== undefined ? startStep + o.stopAfter : o.steps);
    const t0 = performance.now();
    let bytesThisRun = 0;
    let lastLoss: number | undefined;
    let lastEvalBpb: number | undefined;
    let step = startStep;
    let lastSaved = startStep;
    while (step < endStep && !this.stopRequested) {
      const lr = learningRate(step, { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: o.steps, minLrRatio: o.minLrRatio });
      for (let m = 0; m < o.gradAccumulation; m++) {
        const first = (step * o.gradAccumulation + m) * o.batchSize;
        const batch = await this.model.prepare(this.dataset.rows(first, o.batchSize));
        await this.accumulator.add(() => tf.div(this.model.sumLoss(batch), targetsPerStep) as tf.Scalar);
      }
      let stats;
      try {
        stats = await this.accumulator.apply(this.optimizer, lr);
      } catch (e) {
        if (e instanceof NnError && e.code === 'NON_FINITE')
          throw new TrainError('NON_FINITE_LOSS', `${e.message} at step ${step}; the last good checkpoint is ${this.checkpointPath}`);
        throw e;
      }
      const lossSum = stats.loss;
      step += 1;
      bytesThisRun += targetsPerStep;
      lastLoss = lossSum;
      const elapsedSec = (performance.now() - t0) / 1000;
      const record = {
        type: 'train' as const,
        step,
        loss: lossSum,
        bpb: lossSum / Math.LN2,
        lr,
        gradNorm: stats.gradNorm,
        clipped: stats.clipped,
        bytes: step * targetsPerStep,
        bytesPerSec: bytesThisRun / elapsedSec,
        elapsedSec,
      };
      await appendFile(metricsPath, JSON.stringify(record) + '\n');
      this.events.onStep?.(record, o.steps);
      const last = step === o.steps;
      if (this.evalSet && ((o.evalEvery > 0 && step % o.evalEvery === 0) || last)) {
        lastEvalBpb = await this.evaluate();
        const ev = {
          type: 'eval' as const,
          step,
          bpb: lastEvalBpb,
          bytes: this.evalSet.byteTargets,
          elapsedSec: (performance.now() - t0) / 1000,
        };
        await appendFile(metricsPath, JSON.stringify(ev) + '\n');
        this.events.onEval?.(ev);
      }
      if ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || last) {
        await this.save(step);
        lastSaved = step;
      }
    }
    if (lastSaved !== step) await this.save(step);
    await this.writeCurve(metricsPath);
    const elapsed = (performance.now() - t0) / 1000;
    return {
      startStep,
      endStep: step,
      stoppedEarly: step < o.steps,
      lastLoss,
      lastEvalBpb,
      trainBytesPerSec: elapsed > 0 ? bytesThisRun / elapsed : 0,
      checkpoint: this.checkpointPath,
    };
  }

  /**
   * Bits per byte of the model on the held-out rows (nats summed over every byte target, / ln 2 / bytes).
   *
   * @throws {TrainError} `DATA_UNAVAILABLE` when the run has no held-out files
   */
  async evaluate(): Promise<number> {
    if (!this.evalSet) throw new TrainError('DATA_UNAVAILABLE', 'no held-out files to evaluate on');
    const { rows, byteTargets } = this.evalSet;
    let nats = 0;
    for (let i = 0; i < rows.length; i += this.options.batchSize) {
      const batch = await this.model.prepare(rows.slice(i, i + this.options.batchSize));
      const s = this.model.sumLoss(batch);
      nats += (await s.data())[0]!;
      s.dispose();
    }
    return nats / Math.LN2 / byteTargets;
  }

  private async save(step: number): Promise<void> {
    const bytes = await saveCheckpoint(this.checkpointPath, this.model, this.optimizer, {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      step,
      kind: this.model.kind,
      config: this.config(),
    });
    this.events.onCheckpoint?.(step, this.checkpointPath, bytes);
  }

  private checkCompatible(saved: Readonly<Record<string, unknown>>, kind: string): void {
    const now = this.config();
    const problems: string[] = [];
    if (kind !== this.model.kind) problems.push(`the checkpoint trains a ${kind} model, this run a ${this.model.kind} model`);
    for (const k of [...RESUME_INVARIANT, 'model', 'patching'] as const) {
      const a = JSON.stringify(saved[k]);
      const b = JSON.stringify(now[k]);
      if (a !== b) problems.push(`${k}: checkpoint ${a}, now ${b}`);
    }
    if (problems.length > 0) {
      throw new TrainError(
        'CHECKPOINT_MISMATCH',
        `cannot resume ${this.checkpointPath} with a different configuration:\n  ${problems.join('\n  ')}`,
      );
    }
  }

  private async truncateMetrics(path: string, step: number): Promise<void> {
    if (!existsSync(path)) return;
    const kept = readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => {
        if (line.trim() === '') return false;
        try {
          return (JSON.parse(line) as MetricsRecord).step <= step;
        } catch {
          return false; // a line torn by a crash
        }
      });
    await writeFileAtomic(path, new TextEncoder().encode(kept.map((l) => l + '\n').join('')));
  }

  private async writeCurve(metricsPath: string): Promise<void> {
    const records = readFileSync(metricsPath, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as MetricsRecord);
    const svg = renderCurveSvg(records, { title: `${this.model.kind} model training` });
    await writeFileAtomic(join(this.options.outDir, CURVE_FILE), new TextEncoder().encode(svg));
  }

  /** Frees the optimizer's state (the model belongs to the caller). */
  dispose(): void {
    this.accumulator.dispose();
    this.optimizer.dispose();
  }
}
