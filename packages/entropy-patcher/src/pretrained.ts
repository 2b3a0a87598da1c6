import {
  type CheckpointLayout,
  type DetectedLayout,
  type ModelFolder,
  NnError,
  type TensorSource,
  detectCheckpointLayout,
  ffnArgsForHiddenSizes,
  openModelFolder,
  transformersNormEps,
  transformersRopeTheta,
  transformersComponentSource,
} from '@bytelatent/nn';
import type { EntropyModelArgs } from './entropy-model.js';
import { PatcherError } from './errors.js';
import type { PatcherDefaults } from './patcher.js';
import type { PatchingMode } from './patching.js';

/**
 * The window the reference's `load_entropy_model` forces on the released entropy model, whatever
 * its `params.json` says (`bytelatent/entropy_model.py`: `attn_bias_type="local_block_causal"`,
 * `sliding_window=512`).
 */
export const RELEASED_ENTROPY_WINDOW = 512;

/** The reference's `PatcherArgs` defaults (`bytelatent/data/patcher.py`). */
const REFERENCE_PATCHER_DEFAULTS = {
  patching_mode: 'entropy',
  threshold: 1.335442066192627,
  patch_size: 4.5,
  threshold_add: null,
  max_patch_length: null,
  monotonicity: false,
};

/** An entropy model found in a folder: its arguments, weights and patching settings, as the files say. */
export interface PretrainedEntropySource {
  readonly layout: CheckpointLayout;
  /** The folder the entropy model was read from. */
  readonly location: string;
  /** The model's arguments (reference names), with the reference loader's overrides applied. */
  readonly args: EntropyModelArgs;
  /** The weights under the reference's `LMTransformer` names (close it when done). */
  readonly weights: TensorSource;
  /** Patching settings stored with the model (mode, thresholds, max patch length, patch size). */
  readonly defaults: PatcherDefaults;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Wraps a folder-layer error in the patcher's error type, keeping the message (file and field). */
function asPatcherError(e: unknown): unknown {
  if (e instanceof NnError)
    return new PatcherError(e.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'INVALID_CHECKPOINT', e.message, { cause: e });
  return e;
}

/**
 * The patching settings of a reference `PatcherArgs` object (`data.patcher_args` of `params.json` /
 * `train_args.json`), or of a transformers config's top-level `patching_*` keys, in our terms:
 * `monotonicity` selects the relative rule, else a `threshold_add` the combined one (the precedence of
 * the reference's `find_entropy_patch_start_ids`).
 *
 * @param raw - the reference's fields: `patching_mode`, `threshold`, `threshold_add`, `monotonicity`,
 *   `max_patch_length`, `patch_size`
 * @param where - file and field, for messages
 * @throws {PatcherError} `CONFIG_MISMATCH` naming the field for a mode we do not have or a bad value
 */
export function patcherDefaultsFromReference(raw: Readonly<Record<string, unknown>>, where: string): PatcherDefaults {
  const bad = (field: string, why: string) => new PatcherError('CONFIG_MISMATCH', `${where}: ${field} ${why}`);
  const a: Record<string, unknown> = { ...REFERENCE_PATCHER_DEFAULTS, ...raw };
  const mode = a.patching_mode;
  const num = (field: string, value: unknown): number | undefined => {
    if (value === null || value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw bad(field, `must be a finite number or null, got ${JSON.stringify(value)}`);
    return value;
  };
  const threshold = num('threshold', a.threshold);
  const thresholdAdd = num('threshold_add', a.threshold_add);
  const maxPatchLength = num('max_patch_length', a.max_patch_length);
  if (maxPatchLength !== undefined && (!Number.isInteger(maxPatchLength) || maxPatchLength < 1))
    throw bad('max_patch_length', `must be an integer >= 1, got ${maxPatchLength}`);
  if (typeof a.monotonicity !== 'boolean') throw bad('monotonicity', `must be a boolean, got ${JSON.stringify(a.monotonicity)}`);
  let ourMode: PatchingMode;
  switch (mode) {
    case 'entropy':
      // find_entropy_patch_start_ids: without a threshold the patch count comes from patch_size (top-k);
      // else monotonicity first, then threshold_add.
      ourMode =
        threshold === undefined ? 'entropy-top-k' : a.monotonicity ? 'monotonic' : thresholdAdd !== undefined ? 'combined' : 'entropy';
      break;
    case 'space':
    case 'static':
    case 'byte':
    case 'bpe':
      ourMode = mode;
      break;
    case 'bpe_patcher':
      ourMode = 'bpe-patcher';
      break;
    default:
      throw bad('patching_mode', `${JSON.stringify(mode)} is not supported (entropy, space, static, byte, bpe or bpe_patcher)`);
  }
  const patchSize = num('patch_size', a['patch_size']);
  if ((ourMode === 'static' || ourMode === 'entropy-top-k') && !(patchSize !== undefined && patchSize > 0))
    throw bad(
      'patch_size',
      `must be a number > 0 for ${ourMode === 'static' ? 'static patching' : 'entropy patching without a threshold'}, got ${JSON.stringify(a['patch_size'])}`,
    );
  return {
    mode: ourMode,
    ...(threshold !== undefined ? { threshold } : {}),
    ...(ourMode === 'combined' ? { thresholdAdd } : {}),
    ...(maxPatchLength !== undefined ? { maxPatchLength } : {}),
    // patch_size is a float in the reference (4.5): the static rule reads it as an integer, top-k as
    // the mean patch size aimed at (the reference's floor division).
    ...(ourMode === 'static' ? { patchSize: Math.round(patchSize!) } : ourMode === 'entropy-top-k' ? { patchSize: patchSize! } : {}),
  };
}

/** A field of a config object, or undefined when absent or null. */
function field(obj: Readonly<Record<string, unknown>>, key: string): unknown {
  return obj[key] === null ? undefined : obj[key];
}

/** Entropy-model arguments from a transformers `patcher_config`, with the reference loader's window. */
function argsFromPatcherConfig(pc: Readonly<Record<string, unknown>>, where: string): EntropyModelArgs {
  const int = (key: string) => {
    const v = field(pc, key);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new PatcherError('CONFIG_MISMATCH', `${where}.${key} must be an integer >= 1, got ${JSON.stringify(pc[key])}`);
    return v;
  };
  const dim = int('hidden_size');
  const kv = field(pc, 'num_key_value_heads');
  const intermediate = field(pc, 'intermediate_size');
  const ffn =
    typeof intermediate === 'number'
      ? ffnArgsForHiddenSizes([{ dim, intermediate, path: 'patcher_config' }], where)
      : { multiple_of: 256, ffn_dim_multiplier: 1.0 };
  const theta = transformersRopeTheta(pc, where);
  const eps = transformersNormEps(pc);
  return {
    dim,
    n_layers: int('num_hidden_layers'),
    n_heads: int('num_attention_heads'),
    ...(typeof kv === 'number' ? { n_kv_heads: kv } : {}),
    max_seqlen: int('max_position_embeddings'),
    vocab_size: int('vocab_size'),
    ...ffn,
    ...(theta !== undefined ? { rope_theta: theta } : {}),
    ...(eps !== undefined ? { norm_eps: eps } : {}),
    // A window written by our exporter is honoured; otherwise the reference loader's choice.
    ...('sliding_window' in pc
      ? {
          attn_bias_type: typeof pc['attn_bias_type'] === 'string' ? pc['attn_bias_type'] : 'local_block_causal',
          sliding_window: pc['sliding_window'] as number | null,
        }
      : { attn_bias_type: 'local_block_causal', sliding_window: RELEASED_ENTROPY_WINDOW }),
  };
}

/**
 * Entropy-model arguments from a consolidated `params.json`, read exactly as the reference's
 * `load_entropy_model` reads them: only dim, n_layers, n_heads, max_seqlen, ffn_dim_multiplier and
 * vocab_size come from the file; everything else takes `LMTransformerArgs`' defaults, and the
 * attention is forced to `local_block_causal` with a 512-byte window.
 */
export function argsFromConsolidatedParams(params: Readonly<Record<string, unknown>>, where: string): EntropyModelArgs {
  const m = params['entropy_model'];
  if (!isObject(m)) {
    const hint = isObject(params['model']) ? ' (this params.json describes a BLT: its entropy model is in entropy_model/ beside it)' : '';
    throw new PatcherError('CONFIG_MISMATCH', `${where}: no "entropy_model" object${hint}`);
  }
  const pick = (key: string) => (m[key] === undefined ? {} : { [key]: m[key] });
  return {
    ...(pick('dim') as { dim: number }),
    ...(pick('n_layers') as { n_layers: number }),
    ...(pick('n_heads') as { n_heads: number }),
    ...(pick('max_seqlen') as { max_seqlen: number }),
    ...pick('ffn_dim_multiplier'),
    ...pick('vocab_size'),
    attn_bias_type: 'local_block_causal',
    sliding_window: RELEASED_ENTROPY_WINDOW,
  } as EntropyModelArgs;
}

/** The patching settings of a TrainArgs-shaped object (`data.patcher_args`), or the reference defaults. */
function defaultsFromTrainArgs(trainArgs: unknown, where: string): PatcherDefaults {
  const data = isObject(trainArgs) ? trainArgs['data'] : undefined;
  const patcherArgs = isObject(data) ? data['patcher_args'] : undefined;
  return patcherDefaultsFromReference(isObject(patcherArgs) ? patcherArgs : {}, `${where} data.patcher_args`);
}

/** The patching settings at the top of a transformers config (`patching_mode`, `patching_threshold`, ...). */
export function defaultsFromTransformersConfig(config: Readonly<Record<string, unknown>>, where: string): PatcherDefaults {
  const get = (k: string) => (config[k] === undefined ? {} : { [k.replace(/^patching_/, '')]: config[k] });
  return patcherDefaultsFromReference(
    {
      ...(config['patching_mode'] !== undefined ? { patching_mode: config['patching_mode'] } : {}),
      ...get('patching_threshold'),
      ...get('patching_threshold_add'),
      ...(config['monotonicity'] !== undefined ? { monotonicity: config['monotonicity'] } : {}),
      ...(config['max_patch_length'] !== undefined ? { max_patch_length: config['max_patch_length'] } : {}),
      ...(config['patch_size'] !== undefined ? { patch_size: config['patch_size'] } : {}),
    },
    where,
  );
}

/**
 * Reads an entropy model's arguments, weights and patching settings from a folder of any published
 * layout, the way the reference's loaders read it:
 * - consolidated (`entropy_model/`: `params.json` + `consolidated.pth`): `load_entropy_model`'s choices;
 * - hub (`facebook/blt-entropy`: `config.json` `{"args"}` + `model.safetensors`): the arguments as
 *   stored (`LMTransformer.from_pretrained`); patching settings from `train_args.json` when present;
 * - transformers (`model_type: "blt"`): `patcher_config` and the `model.patcher.*` weights.
 * A BLT folder is accepted too: its entropy model is looked for where the reference keeps it —
 * `entropy_model/` inside (hub), `../entropy_model/` beside (consolidated), `model.patcher.*` (transformers).
 *
 * @param location - folder path (Node), URL, or an opened folder
 * @returns the source; close `weights` when done
 * @throws {PatcherError} `INVALID_CHECKPOINT` naming the file (missing, corrupt, foreign folder),
 *   `CONFIG_MISMATCH` naming the field
 */
export async function readPretrainedEntropyModel(location: string | URL | ModelFolder): Promise<PretrainedEntropySource> {
  try {
    const folder = typeof location === 'object' && 'openTensors' in location ? location : await openModelFolder(location);
    const detected = await detectCheckpointLayout(folder);
    return await fromDetected(folder, detected);
  } catch (e) {
    throw asPatcherError(e);
  }
}

async function fromDetected(folder: ModelFolder, detected: DetectedLayout): Promise<PretrainedEntropySource> {
  const { layout, config, configFile, weightsFile } = detected;
  const where = folder.describe(configFile);
  if (layout === 'consolidated') {
    if (!isObject(config['entropy_model']) && isObject(config['model'])) {
      // A BLT's folder: its own patching settings win, as in the reference's demo.
      return { ...(await entropyModelOfBlt(folder, layout, where)), defaults: defaultsFromTrainArgs(config, where) };
    }
    const args = argsFromConsolidatedParams(config, where);
    const weights = await folder.openTensors(weightsFile);
    return { layout, location: folder.location, args, weights, defaults: defaultsFromTrainArgs(config, where) };
  }
  if (layout === 'hub') {
    const args = config['args'] as Record<string, unknown>;
    const trainArgs = (await folder.exists('train_args.json')) ? await folder.readJson('train_args.json') : undefined;
    if ('dim_global' in args || 'dim_local_encoder' in args) {
      // A BLT's folder: its own patching settings (when it has them) win, as in the reference's demo.
      const found = await entropyModelOfBlt(folder, layout, where);
      return trainArgs === undefined ? found : { ...found, defaults: defaultsFromTrainArgs(trainArgs, folder.describe('train_args.json')) };
    }
    const weights = await folder.openTensors(weightsFile);
    return {
      layout,
      location: folder.location,
      args: args as unknown as EntropyModelArgs,
      weights,
      defaults: defaultsFromTrainArgs(trainArgs, folder.describe('train_args.json')),
    };
  }
  return transformersEntropySource(config, where, await folder.openTensors(weightsFile), folder.location);
}

/**
 * The entropy model of a transformers-layout folder (`patcher_config`, `model.patcher.*` weights,
 * the top-level `patching_*` settings), from its already opened weights (shared with the BLT).
 *
 * @param config - the parsed config.json
 * @param where - the file, for messages
 * @param source - the folder's weights (one file or shards); the returned view reads through to it
 * @param location - the folder, for the result
 * @throws {PatcherError} `CONFIG_MISMATCH` naming the field
 */
export function transformersEntropySource(
  config: Readonly<Record<string, unknown>>,
  where: string,
  source: TensorSource,
  location: string,
): PretrainedEntropySource {
  const pc = config['patcher_config'];
  if (!isObject(pc)) throw new PatcherError('CONFIG_MISMATCH', `${where}: no "patcher_config" object (the entropy model's configuration)`);
  const args = argsFromPatcherConfig(pc, `${where} patcher_config`);
  // The file also holds the BLT: the view shows only the patcher's own tensors.
  return {
    layout: 'transformers',
    location,
    args,
    weights: transformersComponentSource(source, 'patcher'),
    defaults: defaultsFromTransformersConfig(config, where),
  };
}

/**
 * The entropy model of a BLT folder of the consolidated or hub layout, where the reference keeps it:
 * `entropy_model/` beside the BLT's folder (consolidated: the reference's demo and download) or
 * inside it (hub: `facebook/blt-1b`). Its patching settings are the entropy folder's own; a BLT
 * loader applies the BLT's.
 *
 * @param folder - the BLT's folder
 * @param layout - its layout
 * @param configPath - the BLT's configuration file, for messages
 * @throws {PatcherError} `INVALID_CHECKPOINT` when no entropy model is there
 */
export async function entropyModelOfBlt(
  folder: ModelFolder,
  layout: 'consolidated' | 'hub',
  configPath: string,
): Promise<PretrainedEntropySource> {
  const other = folder.folder(layout === 'consolidated' ? '../entropy_model' : 'entropy_model');
  let detected: DetectedLayout;
  try {
    detected = await detectCheckpointLayout(other);
  } catch (e) {
    throw new PatcherError(
      'INVALID_CHECKPOINT',
      `${configPath} describes a BLT, and no entropy model was found in ${other.location} (${(e as Error).message}); pass the entropy model's folder explicitly`,
      { cause: e },
    );
  }
  try {
    return await fromDetected(other, detected);
  } catch (e) {
    throw asPatcherError(e);
  }
}
