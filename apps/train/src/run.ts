/**
 * Building the model of a run (new, or from a released or exported folder of a published layout),
 * and exporting a trained entropy model as a patcher and a trained BLT as one file or a folder.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  BLT_ARGS_METADATA_KEY,
  ByteLatentTransformer,
  bltArgsFromTransformersConfig,
  exportPretrained,
  loadPretrained,
  transformersLayoutProblems,
  type BltArgs,
} from '@bytelatent/blt';
import {
  EntropyModel,
  EntropyPatcher,
  PATCHER_METADATA_KEY,
  pretrainedModelNamed,
  type EntropyModelArgs,
  type PatcherDefaults,
  type PretrainedModelName,
} from '@bytelatent/entropy-patcher';
import { pretrainedFolderKind } from '@bytelatent/evals';
import {
  type CheckpointLayout,
  float32ToFloat16Bits,
  loadReferenceWeights,
  referenceStateDict,
  serializeSafetensors,
  type SafetensorsTensor,
} from '@bytelatent/nn';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { readCheckpoint } from './checkpoint.js';
import { CHECKPOINT_FILE } from './trainer.js';
import { BltTrainable, EntropyTrainable, type TrainableModel } from './models.js';
import type { RunConfig } from './presets.js';
import { RowPatcher, type RowPatchingOptions } from './row-patcher.js';
import { TrainError } from './errors.js';
import { evaluationRows } from './dataset.js';

const ENTROPY_MODES: readonly string[] = ['entropy', 'monotonic', 'combined'];

const isUrl = (location: string) => /^https?:\/\//i.test(location);

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** A hash of a model's weights (names, shapes, values): the patch cache's key for a model read from a folder. */
async function weightsKey(model: EntropyModel): Promise<string> {
  const hash = createHash('sha256');
  for (const p of [...model.registry.list()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const data = (await p.variable.data()) as Float32Array;
    hash.update(`${p.name}:${p.variable.shape.join('x')};`);
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return hash.digest('hex');
}

/**
 * The entropy model that patches a BLT's training rows: a shipped one (`pretrained:small`, or
 * `pretrained`, the same: the model the demo BLT and earlier runs were trained with;
 * `pretrained:fast`), a folder (path or URL) of any published layout, or a safetensors file; with
 * the key of its patch cache.
 */
export async function loadRowEntropyModel(source: string): Promise<{ patcher: EntropyPatcher; modelKey: string }> {
  try {
    if (isUrl(source) || (await isDirectory(source))) {
      const patcher = await EntropyPatcher.fromPretrained(source);
      return { patcher, modelKey: await weightsKey(patcher.model) };
    }
  } catch (e) {
    throw new TrainError('DATA_UNAVAILABLE', `cannot load the entropy model ${source}: ${(e as Error).message}`);
  }
  let shipped: PretrainedModelName | undefined;
  try {
    shipped = pretrainedModelNamed(source, 'small');
  } catch (e) {
    throw new TrainError('CONFIG_INVALID', (e as Error).message);
  }
  const bytes =
    shipped !== undefined
      ? await EntropyPatcher.pretrainedBytes(shipped)
      : await readFile(source).catch((e: Error) => {
          throw new TrainError('DATA_UNAVAILABLE', `cannot read the entropy model ${source}: ${e.message}`);
        });
  return { patcher: await EntropyPatcher.fromSafetensors(bytes), modelKey: createHash('sha256').update(bytes).digest('hex') };
}

/** A model read from a folder of a published layout, to continue training from (`--init-from`). */
export interface PretrainedStart {
  readonly kind: 'blt' | 'entropy';
  /** The folder (path or URL) and its layout. */
  readonly location: string;
  readonly layout: CheckpointLayout;
  /** The model's arguments, reference names (what the run's configuration and checkpoints store). */
  readonly args: BltArgs | EntropyModelArgs;
  /** BLT: the folder's patching settings, as a row patching rule, and where its entropy model is read from. */
  readonly patching?: RowPatchingOptions & { readonly entropyModel: string };
  /** The loaded model: the BLT, or the entropy model (owned by the trainable built from it). */
  readonly blt?: ByteLatentTransformer;
  readonly entropy?: EntropyModel;
  /** BLT: the entropy patcher of its rows. */
  readonly patcher?: EntropyPatcher;
}

/** Patching settings read from files (`PatcherDefaults`) as a row patching rule (entropy mode when unset). */
export function rowPatchingFromSettings(settings: PatcherDefaults): RowPatchingOptions {
  return {
    mode: settings.mode ?? 'entropy',
    ...(settings.threshold !== undefined ? { threshold: settings.threshold } : {}),
    ...(settings.thresholdAdd !== undefined ? { thresholdAdd: settings.thresholdAdd } : {}),
    ...(settings.patchSize !== undefined ? { patchSize: settings.patchSize } : {}),
    ...(settings.maxPatchLength !== undefined ? { maxPatchLength: settings.maxPatchLength } : {}),
  };
}

/**
 * Reads a released (or exported) model to fine-tune: a BLT with `loadPretrained` — its entropy model
 * where the reference keeps it, or `entropyModel` — and its patching settings; or an entropy model
 * with `EntropyPatcher.fromPretrained`. Every layout: consolidated, hub, transformers.
 *
 * @param location - folder path or `http(s):` URL
 * @param options - an explicit entropy model for a BLT (a folder, a safetensors file or `pretrained`);
 *   the BLT's own patching settings still apply, as in the reference
 * @throws {TrainError} `DATA_UNAVAILABLE` when the folder cannot be read as a model (the message names the file and field)
 */
export async function loadPretrainedStart(location: string, options: { entropyModel?: string } = {}): Promise<PretrainedStart> {
  try {
    if ((await pretrainedFolderKind(location)) === 'entropy') {
      const patcher = await EntropyPatcher.fromPretrained(location);
      return { kind: 'entropy', location, layout: patcher.layout!, args: patcher.model.referenceArgs, entropy: patcher.model };
    }
    const explicit = options.entropyModel;
    const explicitFolder =
      explicit !== undefined && !/^pretrained(:\w+)?$/.test(explicit) && (isUrl(explicit) || (await isDirectory(explicit)));
    // Fine-tuning trains the hash tables too: they must be tensors.
    const loaded = await loadPretrained(location, {
      hashTables: 'tensors',
      ...(explicit === undefined ? {} : { patcher: explicitFolder ? explicit : false }),
    });
    let patcher = loaded.patcher!;
    if (explicit !== undefined && !explicitFolder) {
      try {
        const own = await loadRowEntropyModel(explicit);
        // A single-file entropy model gets the BLT's patching settings over its own, as a folder does.
        patcher = EntropyPatcher.fromModel(own.patcher.model, { ...own.patcher.defaults, ...loaded.patching });
      } catch (e) {
        loaded.dispose();
        throw e;
      }
    }
    return {
      kind: 'blt',
      location,
      layout: loaded.layout,
      args: loaded.model.referenceArgs,
      patching: { ...rowPatchingFromSettings({ ...patcher.defaults, ...loaded.patching }), entropyModel: explicit ?? location },
      blt: loaded.model,
      patcher,
    };
  } catch (e) {
    if (e instanceof TrainError) throw e;
    throw new TrainError('DATA_UNAVAILABLE', `--init-from ${location}: ${(e as Error).message}`);
  }
}

/**
 * The model a configuration describes: randomly initialised with the run's seed, or the model of
 * `start` (`--init-from`); for a BLT, with its row patcher (loading the entropy model when the
 * patching needs one).
 *
 * @param config - the run configuration
 * @param options - where the patch-length cache lives; the model to start from
 */
export async function buildTrainable(config: RunConfig, options: { cacheDir: string; start?: PretrainedStart }): Promise<TrainableModel> {
  const { start } = options;
  if (start && start.kind !== config.kind)
    throw new TrainError('CONFIG_INVALID', `--init-from holds a ${start.kind} model, the configuration a ${config.kind} model`);
  if (config.kind === 'entropy') {
    if (start) return new EntropyTrainable(start.entropy!);
    return EntropyTrainable.create(config.model as EntropyModelArgs, config.seed);
  }
  if (config.kind !== 'blt') throw new TrainError('CONFIG_INVALID', `kind must be "entropy" or "blt", got ${String(config.kind)}`);
  const patching = config.patching ?? { mode: 'entropy' as const, entropyModel: 'pretrained' };
  let patcher: EntropyPatcher | undefined;
  let cache: { dir: string; modelKey: string } | undefined;
  if (ENTROPY_MODES.includes(patching.mode)) {
    // The folder's patcher when training continues from one, unless another entropy model was named.
    if (start?.patcher && patching.entropyModel === start.patching?.entropyModel) {
      patcher = start.patcher;
      cache = { dir: options.cacheDir, modelKey: await weightsKey(patcher.model) };
    } else {
      const loaded = await loadRowEntropyModel(patching.entropyModel ?? 'pretrained');
      patcher = loaded.patcher;
      cache = { dir: options.cacheDir, modelKey: loaded.modelKey };
    }
  }
  const rowPatcher = new RowPatcher(patching, patcher, cache);
  return new BltTrainable(start?.blt ?? (config.model as BltArgs), config.seed, rowPatcher);
}

/**
 * The entropy model of an entropy-model run's checkpoint (the caller owns it).
 *
 * @throws {TrainError} `CHECKPOINT_INVALID` when the run is not an entropy-model run
 */
export async function loadEntropyRun(runDir: string): Promise<EntropyModel> {
  const { state, file } = await readCheckpoint(join(runDir, CHECKPOINT_FILE));
  if (state.kind !== 'entropy') throw new TrainError('CHECKPOINT_INVALID', `${runDir} trains a ${state.kind} model, not an entropy model`);
  const model = new EntropyModel(state.config['model'] as EntropyModelArgs);
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
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
  const model = await loadEntropyRun(options.runDir);
  try {
    const patcher = EntropyPatcher.fromModel(model, { mode: 'entropy' });
    const texts = await Promise.all(options.calibrationFiles.map((f) => readFile(f)));
    options.onLog?.(`calibrating the threshold on ${texts.length} files (${texts.reduce((s, t) => s + t.length, 0)} bytes)`);
    const calibration = await patcher.calibrate(
      texts.map((t) => new Uint8Array(t)),
      options.targetMeanPatch,
    );
    const bitsPerByte = await entropyModelBitsPerByte(model, options.calibrationFiles);
    const perFile: Array<{ file: string; bitsPerByte: number; meanPatchSize: number; wordStartShare: number }> = [];
    for (const [i, f] of options.calibrationFiles.entries()) {
      const stats = patchStatistics((await patcher.patch(texts[i]!, { threshold: calibration.threshold })).segments(), texts[i]!);
      perFile.push({ file: basename(f), bitsPerByte: await entropyModelBitsPerByte(model, [f]), ...stats });
      options.onLog?.(
        `${basename(f)}: ${perFile.at(-1)!.bitsPerByte.toFixed(3)} bits/byte, mean patch ${stats.meanPatchSize.toFixed(2)} bytes, ${(100 * stats.wordStartShare).toFixed(1)}% of patch starts on a word's first byte`,
      );
    }
    const bytes = await model.toSafetensors({
      [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold: calibration.threshold }),
      trained_by: 'bytelatent apps/train',
      heldout_bits_per_byte: bitsPerByte.toFixed(4),
      calibrated_mean_patch_bytes: calibration.meanPatchSize.toFixed(3),
    });
    await writeFileAtomic(options.outFile, bytes);
    return {
      threshold: calibration.threshold,
      meanPatchSize: calibration.meanPatchSize,
      bitsPerByte,
      perFile,
      bytes: bytes.length,
      file: options.outFile,
    };
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
export function patchStatistics(
  segments: ReadonlyArray<{ start: number; end: number }>,
  bytes: Uint8Array,
): { meanPatchSize: number; wordStartShare: number } {
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
export async function exportBlt(
  runDir: string,
  outFile: string,
  metadata: Readonly<Record<string, string>> = {},
): Promise<{ parameters: number; bytes: number; file: string }> {
  const { state, file } = await readCheckpoint(join(runDir, CHECKPOINT_FILE));
  if (state.kind !== 'blt') throw new TrainError('CHECKPOINT_INVALID', `${runDir} trains a ${state.kind} model, not a BLT`);
  const model = new ByteLatentTransformer(state.config['model'] as BltArgs);
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
    const dict = await referenceStateDict(model.registry);
    const half = new Map<string, SafetensorsTensor>();
    for (const [name, t] of dict)
      half.set(name, { dtype: 'F16', shape: t.shape, data: Uint16Array.from(t.data as Float32Array, float32ToFloat16Bits) });
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

/** Options of {@link exportBltPretrained}. */
export interface ExportBltPretrainedOptions {
  /** `hub` (the reference's `save_pretrained` layout) or `transformers` (`model_type: "blt"`). */
  readonly layout: 'hub' | 'transformers';
  /** Element type of the weights (default F32: loading gives back exactly the trained weights). */
  readonly dtype?: 'F32' | 'BF16' | 'F16';
}

/**
 * Writes the BLT of a run's checkpoint as a folder of a published layout (`savePretrained`), with
 * the entropy model its rows were patched by and the run's patching settings, so that the reference's
 * trainer, Hugging Face transformers, or `loadPretrained` (this project's eval, serve and generate
 * CLIs) read it. A run patched without an entropy model (space, static, byte) carries the shipped
 * one, which the layouts require; its patching settings say the rule actually used.
 *
 * @returns the parameter count, layout and the files written
 * @throws {TrainError} `CHECKPOINT_INVALID` when the run is not a BLT run
 */
export async function exportBltPretrained(
  runDir: string,
  outDir: string,
  options: ExportBltPretrainedOptions,
): Promise<{
  parameters: number;
  layout: string;
  dtype: string;
  patching: PatcherDefaults;
  dir: string;
  files: string[];
  warnings: string[];
}> {
  const { state, file } = await readCheckpoint(join(runDir, CHECKPOINT_FILE));
  if (state.kind !== 'blt') throw new TrainError('CHECKPOINT_INVALID', `${runDir} trains a ${state.kind} model, not a BLT`);
  const runPatching = (state.config['patching'] ?? { mode: 'entropy', entropyModel: 'pretrained' }) as RowPatchingOptions & {
    entropyModel?: string;
  };
  const model = new ByteLatentTransformer(state.config['model'] as BltArgs);
  let patcher: EntropyPatcher | undefined;
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
    const source = ENTROPY_MODES.includes(runPatching.mode) ? (runPatching.entropyModel ?? 'pretrained') : 'pretrained';
    patcher = (await loadRowEntropyModel(source)).patcher;
    const threshold = runPatching.threshold ?? patcher.defaults.threshold;
    const patching: PatcherDefaults = {
      mode: runPatching.mode,
      ...(threshold !== undefined ? { threshold } : {}),
      ...(runPatching.thresholdAdd !== undefined ? { thresholdAdd: runPatching.thresholdAdd } : {}),
      ...(runPatching.patchSize !== undefined ? { patchSize: runPatching.patchSize } : {}),
      ...(runPatching.maxPatchLength !== undefined ? { maxPatchLength: runPatching.maxPatchLength } : {}),
    };
    const dtype = options.dtype ?? 'F32';
    const files = await exportPretrained(model, patcher, { layout: options.layout, dtype, patching });
    if (options.layout === 'transformers') checkTransformersConfig(files.get('config.json')!, model);
    // What Hugging Face's port would run differently (our loader reads the folder back exactly).
    const warnings = options.layout === 'transformers' ? transformersLayoutProblems(model, patcher) : [];
    // Weights first, configuration last (as savePretrained): a reader never finds a config.json whose weights are missing.
    const order = [...files.keys()].sort((x, y) => Number(x.endsWith('.json')) - Number(y.endsWith('.json')));
    for (const name of order) {
      const path = join(outDir, name);
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, files.get(name)!);
    }
    return {
      parameters: model.parameterCount(),
      layout: options.layout,
      dtype,
      patching,
      dir: outDir,
      files: [...files.keys()].sort(),
      warnings,
    };
  } finally {
    model.dispose();
    patcher?.dispose();
  }
}

/**
 * Refuses a transformers `config.json` that would not load back as this model. The layout stores
 * each component's `intermediate_size`, not the reference's one `multiple_of` / `ffn_dim_multiplier`,
 * which a loader infers: a model whose sizes no single rounding explains would be refused on load, so
 * it is refused here, before anything is written, with the layout that carries its arguments as they are.
 */
function checkTransformersConfig(configBytes: Uint8Array, model: ByteLatentTransformer): void {
  const config = JSON.parse(new TextDecoder().decode(configBytes)) as Record<string, unknown>;
  let back: BltArgs;
  try {
    back = bltArgsFromTransformersConfig(config, 'config.json');
  } catch (e) {
    throw new TrainError(
      'CONFIG_INVALID',
      `this BLT cannot be exported in the transformers layout: ${(e as Error).message}; export it with --layout hub`,
    );
  }
  const args = model.referenceArgs as Record<string, unknown>;
  const dims = [
    'dim_global',
    'dim_local_encoder',
    'dim_local_decoder',
    'n_layers_global',
    'n_layers_local_encoder',
    'n_layers_local_decoder',
  ];
  const differing = dims.filter((k) => back[k] !== args[k]);
  if (differing.length > 0)
    throw new TrainError(
      'CONFIG_INVALID',
      `the transformers config.json would not describe this BLT (${differing.join(', ')}); export it with --layout hub`,
    );
}
