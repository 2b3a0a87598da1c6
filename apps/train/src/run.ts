/** Building the model of a run, and exporting a trained entropy model as a patcher. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer, type BltArgs } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher, PATCHER_METADATA_KEY, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { float32ToFloat16Bits, loadReferenceWeights, referenceStateDict, serializeSafetensors, type SafetensorsTensor } from '@bytelatent/nn';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { readCheckpoint } from './checkpoint.js';
import { CHECKPOINT_FILE } from './trainer.js';
import { BltTrainable, EntropyTrainable, type TrainableModel } from './models.js';
import type { RunConfig } from './presets.js';
import { RowPatcher } from './row-patcher.js';
import { TrainError } from './errors.js';
import { evaluationRows } from './dataset.js';

/**
 * The model a configuration describes, randomly initialised with the run's seed; for a BLT, with its
 * row patcher (loading the entropy model when the patching needs one).
 *
 * @param config - the run configuration
 * @param options - where the patch-length cache lives
 */
export async function buildTrainable(config: RunConfig, options: { cacheDir: string }): Promise<TrainableModel> {
  if (config.kind === 'entropy') return EntropyTrainable.create(config.model as EntropyModelArgs, config.seed);
  if (config.kind !== 'blt') throw new TrainError('CONFIG_INVALID', `kind must be "entropy" or "blt", got ${String(config.kind)}`);
  const patching = config.patching ?? { mode: 'entropy' as const, entropyModel: 'pretrained' };
  let patcher: EntropyPatcher | undefined;
  let cache: { dir: string; modelKey: string } | undefined;
  if (patching.mode === 'entropy') {
    const source = patching.entropyModel ?? 'pretrained';
    const bytes = source === 'pretrained' ? await EntropyPatcher.pretrainedBytes() : await readFile(source).catch((e: Error) => {
      throw new TrainError('DATA_UNAVAILABLE', `cannot read the entropy model ${source}: ${e.message}`);
    });
    patcher = await EntropyPatcher.fromSafetensors(bytes);
    cache = { dir: options.cacheDir, modelKey: createHash('sha256').update(bytes).digest('hex') };
  }
  const rowPatcher = new RowPatcher(patching, patcher, cache);
  return new BltTrainable(config.model as BltArgs, config.seed, rowPatcher);
}

export interface ExportPatcherOptions {
  /** A run folder of an entropy-model run. */
  readonly runDir: string;
  readonly outFile: string;
  /** Texts the threshold is calibrated on (and the held-out BPB measured on). */
  readonly calibrationFiles: readonly string[];
  /** Mean patch size wanted, in bytes (default 4.5). */
  readonly targetMeanPatch: number;
  readonly onLog?: (message: string) => void;
}

/**
 * Loads the entropy model of a run's checkpoint, calibrates the entropy threshold so that the mean
 * patch on `calibrationFiles` is `targetMeanPatch` bytes, measures its bits-per-byte there, and writes
 * a safetensors file that `EntropyPatcher.fromSafetensors` loads with no other argument (model
 * arguments and patcher defaults in the metadata).
 *
 * @returns the threshold, mean patch size, bits per byte and file size
 * @throws {TrainError} `CHECKPOINT_INVALID` when the run is not an entropy-model run
 */
export async function exportPatcher(options: ExportPatcherOptions): Promise<{
  threshold: number;
  meanPatchSize: number;
  bitsPerByte: number;
  perFile: Array<{ file: string; bitsPerByte: number; meanPatchSize: number; wordStartShare: number }>;
  bytes: number;
  file: string;
}> {
  const { state, file } = await readCheckpoint(join(options.runDir, CHECKPOINT_FILE));
  if (state.kind !== 'entropy') throw new TrainError('CHECKPOINT_INVALID', `${options.runDir} trains a ${state.kind} model, not an entropy model`);
  const args = state.config['model'] as EntropyModelArgs;
  const model = new EntropyModel(args);
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
    const patcher = EntropyPatcher.fromModel(model, { mode: 'entropy' });
    const texts = await Promise.all(options.calibrationFiles.map((f) => readFile(f)));
    options.onLog?.(`calibrating the threshold on ${texts.length} files (${texts.reduce((s, t) => s + t.length, 0)} bytes)`);
    const calibration = await patcher.calibrate(texts.map((t) => new Uint8Array(t)), options.targetMeanPatch);
    const bitsPerByte = await entropyModelBitsPerByte(model, options.calibrationFiles);
    const perFile: Array<{ file: string; bitsPerByte: number; meanPatchSize: number; wordStartShare: number }> = [];
    for (const [i, f] of options.calibrationFiles.entries()) {
      const stats = patchStatistics((await patcher.patch(texts[i]!, { threshold: calibration.threshold })).segments(), texts[i]!);
      perFile.push({ file: basename(f), bitsPerByte: await entropyModelBitsPerByte(model, [f]), ...stats });
      options.onLog?.(`${basename(f)}: ${perFile.at(-1)!.bitsPerByte.toFixed(3)} bits/byte, mean patch ${stats.meanPatchSize.toFixed(2)} bytes, ${(100 * stats.wordStartShare).toFixed(1)}% of patch starts on a word's first byte`);
    }
    const bytes = await model.toSafetensors({
      [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold: calibration.threshold }),
      trained_by: 'bytelatent apps/train',
      heldout_bits_per_byte: bitsPerByte.toFixed(4),
      calibrated_mean_patch_bytes: calibration.meanPatchSize.toFixed(3),
    });
    await writeFileAtomic(options.outFile, bytes);
    return { threshold: calibration.threshold, meanPatchSize: calibration.meanPatchSize, bitsPerByte, perFile, bytes: bytes.length, file: options.outFile };
  } finally {
    model.dispose();
  }
}

/** Bits per byte of an entropy model over whole files (contexts of `max_seqlen`). */
export async function entropyModelBitsPerByte(model: EntropyModel, files: readonly string[]): Promise<number> {
  const trainable = new EntropyTrainable(model);
  const { rows, byteTargets } = evaluationRows(files, model.maxSeqLen);
  let nats = 0;
  for (let i = 0; i < rows.length; i += 8) {
    const batch = rows.slice(i, i + 8);
    const s = trainable.sumLoss({ tokens: batch.map((r) => r.tokens), targets: batch.map((r) => r.targets) });
    nats += (await s.data())[0]!;
    s.dispose();
  }
  return nats / Math.LN2 / byteTargets;
}

const isWordByte = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b >= 0x80;

/**
 * Mean patch size, and the share of patches (after the first) that start on a word's first byte: a
 * letter, digit or non-ASCII byte preceded by a byte that is none of those.
 */
export function patchStatistics(segments: ReadonlyArray<{ start: number; end: number }>, bytes: Uint8Array): { meanPatchSize: number; wordStartShare: number } {
  const starts = segments.filter((s) => s.end > s.start && s.start > 0).map((s) => s.start);
  const onWordStart = starts.filter((p) => isWordByte(bytes[p]!) && !isWordByte(bytes[p - 1]!)).length;
  return { meanPatchSize: bytes.length / Math.max(1, segments.length), wordStartShare: starts.length ? onWordStart / starts.length : 0 };
}

/**
 * Writes the BLT of a run's checkpoint as a safetensors file with reference names and its
 * `blt_args` metadata (what `ByteLatentTransformer.fromSafetensors` and `apps/serve` load), in F16
 * to halve the size (loading widens it back to F32; the rounding is below the model's noise).
 *
 * @returns the parameter count and the file size
 * @throws {TrainError} `CHECKPOINT_INVALID` when the run is not a BLT run
 */
export async function exportBlt(runDir: string, outFile: string, metadata: Readonly<Record<string, string>> = {}): Promise<{ parameters: number; bytes: number; file: string }> {
  const { state, file } = await readCheckpoint(join(runDir, CHECKPOINT_FILE));
  if (state.kind !== 'blt') throw new TrainError('CHECKPOINT_INVALID', `${runDir} trains a ${state.kind} model, not a BLT`);
  const model = new ByteLatentTransformer(state.config['model'] as BltArgs);
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
    const dict = await referenceStateDict(model.registry);
    const half = new Map<string, SafetensorsTensor>();
    for (const [name, t] of dict) half.set(name, { dtype: 'F16', shape: t.shape, data: Uint16Array.from(t.data as Float32Array, float32ToFloat16Bits) });
    const bytes = serializeSafetensors(half, {
      ...metadata,
      [BLT_ARGS_METADATA_KEY]: JSON.stringify(state.config['model']),
      patching: JSON.stringify(state.config['patching'] ?? null),
      trained_steps: String(state.step),
    });
    await writeFileAtomic(outFile, bytes);
    return { parameters: model.parameterCount(), bytes: bytes.length, file: outFile };
  } finally {
    model.dispose();
  }
}
