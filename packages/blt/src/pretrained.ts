import {
  EntropyPatcher,
  type PatcherDefaults,
  PatcherError,
  type PretrainedEntropySource,
  defaultsFromTransformersConfig,
  entropyModelOfBlt,
  patcherDefaultsFromReference,
  readPretrainedEntropyModel,
  transformersEntropySource,
} from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import {
  type BackendInfo,
  type CheckpointLayout,
  type DetectedLayout,
  type InitBackendOptions,
  type ModelFolder,
  NnError,
  type TensorSource,
  detectCheckpointLayout,
  dtypeByteSize,
  ffnArgsForHiddenSizes,
  ensureBackend,
  initBackend,
  openModelFolder,
  transformersComponentSource,
  transformersNormEps,
  transformersRopeTheta,
} from '@bytelatent/nn';
import { getBackend } from '@tensorflow/tfjs-core';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';

/**
 * Values of the released BLT models that a transformers-layout `config.json` does not carry, because
 * the transformers port hard-codes them or does without (its `BltConfig` has no field for them). The
 * weights were trained with these (the reference's `ByteLatentTransformerArgs` of blt-1b/blt-7b), so
 * a transformers folder is run with them. See docs/architecture.md, "Released checkpoints".
 */
export const RELEASED_BLT_DEFAULTS: Readonly<BltArgs> = Object.freeze({
  // The reference's local encoder/decoder attend within 512 bytes (xformers `make_local_attention`);
  // the transformers port uses a plain causal mask, which differs only past 512 bytes.
  local_attention_window_len: 512,
  attn_bias_type: 'block_causal',
  attn_impl: 'xformers',
  cross_attn_encoder: true,
  cross_attn_decoder: true,
  cross_attn_init_by_pooling: true,
  cross_attn_window_encoder: null,
  cross_attn_window_decoder: null,
  downsampling_by_pooling: 'max',
  use_local_encoder_transformer: true,
  use_rope: true,
  eos_id: 2,
  init_std_factor: 'current_depth',
});

/** Options of {@link loadPretrained}. */
export interface LoadPretrainedOptions {
  /**
   * The TensorFlow.js backend to run on, set up before any weight is created (`initBackend`).
   * Default: the backend already running, or, when none was chosen yet, the fastest available
   * (nn's `ensureBackend`); either way a model too large for wasm's heap goes to cpu.
   */
  readonly backend?: InitBackendOptions['backend'];
  /** Further backend options (wasm paths, software GPUs). */
  readonly backendOptions?: Omit<InitBackendOptions, 'backend'>;
  /** Say nothing when the only backend left is the pure-JavaScript cpu one (one console line otherwise). */
  readonly quiet?: boolean;
  /**
   * The entropy model: a folder (path, URL or opened folder) of any layout, a patcher already
   * loaded, or `false` for none. Default: where the reference keeps it — `entropy_model/` beside the
   * BLT's folder (consolidated layout, as the reference's demo expects), `entropy_model/` inside it
   * (hub layout), `model.patcher.*` in the same file (transformers layout). An explicit value always
   * wins. A folder's patcher gets the BLT's patching settings; a patcher object is used as it is
   * (its own defaults): pass the result's `patching` to its calls to patch as the BLT was trained.
   */
  readonly patcher?: string | URL | ModelFolder | EntropyPatcher | false;
  /** Patching settings that override the files'. */
  readonly patching?: PatcherDefaults;
  /**
   * Where the hash n-gram tables live (`ByteLatentTransformer.fromSafetensors`): `source` (default)
   * reads the rows each batch needs from the weights file, in its precision, and never holds the
   * tables (the file stays open until `dispose`); `tensors` makes them trainable float32 tensors,
   * as fine-tuning needs (for blt-1b, 12 GB more).
   */
  readonly hashTables?: 'tensors' | 'source';
}

/** What {@link loadPretrained} returns. */
export interface PretrainedBlt {
  readonly model: ByteLatentTransformer;
  /** The entropy patcher (undefined with `patcher: false`). Its defaults are the BLT's patching settings. */
  readonly patcher: EntropyPatcher | undefined;
  /** The layout the BLT was read from. */
  readonly layout: CheckpointLayout;
  /** The BLT folder's path or URL. */
  readonly location: string;
  /** The patching settings read from the files (with `options.patching` applied). */
  readonly patching: PatcherDefaults;
  /**
   * The backend the model runs on and why: the one asked for or already running, else the fastest
   * available (`'auto: …'`); a model too large for the wasm heap goes to cpu, see {@link loadPretrained}.
   */
  readonly backend: BackendInfo;
  /** Frees the model's and the patcher's weights (and closes the weights file). */
  dispose(): void;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Converts a transformers-layout `config.json` (`model_type: "blt"`) to the reference's
 * `ByteLatentTransformerArgs`: sizes from `encoder_config` / `decoder_config` / `global_config` (keys
 * of the published converter — `norm_eps`, `rope_theta` — and of transformers 5 — `rms_norm_eps`,
 * `rope_parameters`), hash and patching settings from the top level, and the rest from
 * {@link RELEASED_BLT_DEFAULTS}. Cross-attention uses the local models' head count (as the port does).
 *
 * @param config - the parsed config.json
 * @param where - the file, for messages
 * @throws {BltError} `CONFIG_MISMATCH` naming the field
 */
export function bltArgsFromTransformersConfig(config: Readonly<Record<string, unknown>>, where: string): BltArgs {
  const bad = (path: string, why: string) => new BltError('CONFIG_MISMATCH', `${where}: ${path} ${why}`);
  const sub = (key: string) => {
    const v = config[key];
    if (!isObject(v)) throw bad(key, 'must be an object');
    return v;
  };
  const enc = sub('encoder_config');
  const dec = sub('decoder_config');
  const glob = sub('global_config');
  const int = (obj: Record<string, unknown>, path: string, key: string): number => {
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw bad(`${path}.${key}`, `must be an integer >= 1, got ${JSON.stringify(v)}`);
    return v;
  };
  const dimEnc = int(enc, 'encoder_config', 'hidden_size');
  const dimDec = int(dec, 'decoder_config', 'hidden_size');
  const dimGlobal = int(glob, 'global_config', 'hidden_size');
  // The reference has one feed-forward rounding, one norm_eps and one rope_theta for every component:
  // the sub-configurations must agree.
  const same = <T>(what: string, values: ReadonlyArray<readonly [string, T | undefined]>): T | undefined => {
    const given = values.filter(([, v]) => v !== undefined);
    const first = given[0];
    for (const [path, v] of given) {
      if (first && v !== first[1])
        throw bad(
          path,
          `is ${JSON.stringify(v)} but ${first[0]} is ${JSON.stringify(first[1])}: the reference BLT has one ${what} for every component`,
        );
    }
    return first?.[1];
  };
  const sized = (
    [
      ['encoder_config', enc, dimEnc],
      ['decoder_config', dec, dimDec],
      ['global_config', glob, dimGlobal],
    ] as const
  ).filter(([, obj]) => obj['intermediate_size'] != null);
  for (const [path, obj] of sized) {
    if (typeof obj['intermediate_size'] !== 'number')
      throw bad(`${path}.intermediate_size`, `must be a number, got ${JSON.stringify(obj['intermediate_size'])}`);
  }
  const ffn =
    sized.length > 0
      ? ffnArgsForHiddenSizes(
          sized.map(([path, obj, dim]) => ({ path, dim, intermediate: obj['intermediate_size'] as number })),
          where,
        )
      : { multiple_of: 256, ffn_dim_multiplier: 1.0 };
  const normEps = same('norm_eps', [
    ['encoder_config.norm_eps', transformersNormEps(enc)],
    ['decoder_config.norm_eps', transformersNormEps(dec)],
    ['global_config.norm_eps', transformersNormEps(glob)],
  ]);
  const ropeTheta = same('rope_theta', [
    ['encoder_config.rope_theta', transformersRopeTheta(enc, `${where} encoder_config`)],
    ['decoder_config.rope_theta', transformersRopeTheta(dec, `${where} decoder_config`)],
    ['global_config.rope_theta', transformersRopeTheta(glob, `${where} global_config`) ?? transformersRopeTheta(config, where)],
  ]);
  const act = [enc, dec, glob].map((c) => c['hidden_act'] ?? 'silu').find((a) => a !== 'silu');
  if (act !== undefined) throw bad('hidden_act', `must be "silu" (SwiGLU, as the reference), got ${JSON.stringify(act)}`);
  const optionalInt = (obj: Record<string, unknown>, key: string) => (typeof obj[key] === 'number' ? (obj[key] as number) : undefined);
  const encHeads = int(enc, 'encoder_config', 'num_attention_heads');
  const decHeads = int(dec, 'decoder_config', 'num_attention_heads');
  if (encHeads !== decHeads)
    throw bad(
      'decoder_config.num_attention_heads',
      `(${decHeads}) must equal encoder_config's (${encHeads}): the reference has one cross-attention head count`,
    );
  const encKv = optionalInt(enc, 'num_key_value_heads');
  const k = typeof config['cross_attn_k'] === 'number' ? config['cross_attn_k'] : enc['cross_attn_k'];
  const sizes = config['encoder_hash_byte_group_size'];
  // Reference settings the port's config has no key for: a file written by our exporter carries them
  // under the reference's names; any other file gets the released models' values.
  const carried: Record<string, unknown> = {};
  for (const key of [
    'local_attention_window_len',
    'attn_bias_type',
    'cross_attn_window_encoder',
    'cross_attn_window_decoder',
    'cross_attn_nheads',
    'eos_id',
  ] as const) {
    if (key in config) carried[key] = config[key];
  }
  return {
    ...RELEASED_BLT_DEFAULTS,
    vocab_size: int(config, '', 'vocab_size'),
    pm_size: typeof config['pm_size'] === 'number' ? config['pm_size'] : 0,
    dim_global: dimGlobal,
    dim_local_encoder: dimEnc,
    dim_local_decoder: dimDec,
    n_layers_global: int(glob, 'global_config', 'num_hidden_layers'),
    n_layers_local_encoder: int(enc, 'encoder_config', 'num_hidden_layers'),
    n_layers_local_decoder: int(dec, 'decoder_config', 'num_hidden_layers'),
    n_heads_global: int(glob, 'global_config', 'num_attention_heads'),
    n_heads_local_encoder: encHeads,
    n_heads_local_decoder: decHeads,
    n_kv_heads: encKv === encHeads ? null : (encKv ?? null),
    n_kv_heads_global: (() => {
      const kv = optionalInt(glob, 'num_key_value_heads');
      return kv === undefined || kv === glob['num_attention_heads'] ? null : kv;
    })(),
    ...ffn,
    ...(normEps !== undefined ? { norm_eps: normEps } : {}),
    ...(ropeTheta !== undefined ? { rope_theta: ropeTheta } : { rope_theta: 500000 }),
    max_seqlen: int(glob, 'global_config', 'max_position_embeddings'),
    max_encoder_seq_length: int(enc, 'encoder_config', 'max_position_embeddings'),
    cross_attn_k: typeof k === 'number' ? k : 2,
    cross_attn_nheads: encHeads,
    cross_attn_all_layers_encoder: enc['cross_attn_all_layers'] === true,
    cross_attn_all_layers_decoder: dec['cross_attn_all_layers'] !== false,
    encoder_hash_byte_group_size: Array.isArray(sizes) ? (sizes as number[]) : [3, 4, 5, 6, 7, 8],
    encoder_hash_byte_group_vocab:
      typeof config['encoder_hash_byte_group_vocab'] === 'number' ? config['encoder_hash_byte_group_vocab'] : 500002,
    encoder_hash_byte_group_nb_functions:
      typeof config['encoder_hash_byte_group_nb_functions'] === 'number' ? config['encoder_hash_byte_group_nb_functions'] : 1,
    patch_size: typeof config['patch_size'] === 'number' ? config['patch_size'] : 4,
    patching_mode: typeof config['patching_mode'] === 'string' ? config['patching_mode'] : 'entropy',
    ...carried,
  };
}

/** The BLT's arguments, weights and patching settings of a detected folder. */
interface BltSource {
  readonly args: BltArgs;
  /** The weights under the reference's names (a view of `file`). */
  readonly weights: TensorSource;
  /** The weights file(s) as opened: closed once both models are built. */
  readonly file: TensorSource;
  readonly patching: PatcherDefaults;
  /** The entropy model in the same file (transformers layout). */
  readonly sameFileEntropy?: PretrainedEntropySource;
  /** The configuration file's path or URL, named by argument errors. */
  readonly configPath: string;
}

async function readBltSource(folder: ModelFolder, detected: DetectedLayout): Promise<BltSource> {
  const { layout, config, configFile, weightsFile } = detected;
  const where = folder.describe(configFile);
  if (layout === 'consolidated') {
    if (config['train_entropy_model'] === true || (isObject(config['entropy_model']) && !isObject(config['model']))) {
      throw new BltError('CONFIG_MISMATCH', `${where} describes an entropy model, not a BLT: load it with EntropyPatcher.fromPretrained`);
    }
    const model = config['model'];
    if (!isObject(model)) throw new BltError('CONFIG_MISMATCH', `${where}: no "model" object (the BLT's arguments)`);
    const file = await folder.openTensors(weightsFile);
    return { args: model as BltArgs, weights: file, file, patching: patchingOfTrainArgs(config, where, model), configPath: where };
  }
  if (layout === 'hub') {
    const args = config['args'] as Record<string, unknown>;
    if (!('dim_global' in args) && !('dim_local_encoder' in args) && 'dim' in args) {
      throw new BltError(
        'CONFIG_MISMATCH',
        `${where} describes an entropy model (LMTransformer args), not a BLT: load it with EntropyPatcher.fromPretrained`,
      );
    }
    const trainArgs = (await folder.exists('train_args.json')) ? await folder.readJson('train_args.json') : undefined;
    const file = await folder.openTensors(weightsFile);
    return {
      args: args as BltArgs,
      weights: file,
      file,
      patching: patchingOfTrainArgs(trainArgs, folder.describe('train_args.json'), args),
      configPath: where,
    };
  }
  const args = bltArgsFromTransformersConfig(config, where);
  const file = await folder.openTensors(weightsFile);
  const sizes = args.encoder_hash_byte_group_size as number[];
  const count = sizes.length * (args.encoder_hash_byte_group_nb_functions as number);
  try {
    return {
      args,
      weights: transformersComponentSource(file, 'blt', { count, vocab: args.encoder_hash_byte_group_vocab as number }),
      file,
      patching: defaultsFromTransformersConfig(config, where),
      sameFileEntropy: transformersEntropySource(config, where, file, folder.location),
      configPath: where,
    };
  } catch (e) {
    file.close?.();
    throw e;
  }
}

/**
 * The patching settings of a BLT: `data.patcher_args` of its training arguments (what the reference's
 * demo builds its patcher from), else the model arguments' own `patching_*` fields.
 */
function patchingOfTrainArgs(trainArgs: unknown, where: string, modelArgs: Record<string, unknown>): PatcherDefaults {
  const data = isObject(trainArgs) ? trainArgs['data'] : undefined;
  const patcherArgs = isObject(data) ? data['patcher_args'] : undefined;
  if (isObject(patcherArgs)) return patcherDefaultsFromReference(patcherArgs, `${where} data.patcher_args`);
  const fromModel: Record<string, unknown> = {};
  if (modelArgs['patching_mode'] != null) fromModel['patching_mode'] = modelArgs['patching_mode'];
  if (modelArgs['patching_threshold'] != null) fromModel['threshold'] = modelArgs['patching_threshold'];
  if (modelArgs['patching_threshold_add'] != null) fromModel['threshold_add'] = modelArgs['patching_threshold_add'];
  if (modelArgs['monotonicity'] != null) fromModel['monotonicity'] = modelArgs['monotonicity'];
  if (modelArgs['max_patch_length'] != null) fromModel['max_patch_length'] = modelArgs['max_patch_length'];
  if (modelArgs['patch_size'] != null) fromModel['patch_size'] = modelArgs['patch_size'];
  return patcherDefaultsFromReference(fromModel, `${where} (model args)`);
}

/**
 * The BLTs shipped in this package, each a hub-layout folder under `models/` (its entropy model
 * inside): `demo`, trained by us on public-domain books (apps/train preset `demo`; what it can and
 * cannot do: this package's README). `loadPretrained('pretrained:demo')` loads it.
 */
export const PRETRAINED_BLTS = { demo: 'blt-demo' } as const;

/** A shipped BLT, see {@link PRETRAINED_BLTS}. */
export type PretrainedBltName = keyof typeof PRETRAINED_BLTS;

/**
 * Where a shipped BLT's folder lies: a `file:` URL in Node; in a page, the package's files must be
 * served (a bundler copies single files, not folders): serve `models/blt-demo/` and load its URL.
 *
 * @param name - which shipped BLT (default `demo`)
 * @throws {BltError} `INVALID_ARGUMENT` for an unknown name
 */
export function pretrainedBltUrl(name: PretrainedBltName = 'demo'): URL {
  if (typeof name !== 'string' || !Object.hasOwn(PRETRAINED_BLTS, name)) {
    throw new BltError(
      'INVALID_ARGUMENT',
      `no shipped BLT named ${JSON.stringify(name)} (${Object.keys(PRETRAINED_BLTS)
        .map((m) => `pretrained:${m}`)
        .join(', ')})`,
    );
  }
  return new URL(`../models/${PRETRAINED_BLTS[name]}/`, import.meta.url);
}

/** `pretrained:NAME` → the shipped folder's URL; anything else as it is. */
function shippedLocation(location: string | URL | ModelFolder): string | URL | ModelFolder {
  if (typeof location !== 'string') return location;
  const match = /^pretrained:(.*)$/.exec(location);
  return match ? pretrainedBltUrl(match[1] as PretrainedBltName) : location;
}

/**
 * Loads a BLT and its entropy patcher from a folder of any published layout, in one call, reading
 * every argument and patching setting from the files (in the style of transformers.js
 * `from_pretrained`):
 * - consolidated — the reference's download (`hf-weights/blt_1b`: `params.json` + `consolidated.pth`;
 *   the entropy model in `hf-weights/entropy_model` beside it);
 * - hub — `facebook/blt-1b` / `facebook/blt-7b` (`config.json` `{"args"}`, `model.safetensors`,
 *   `train_args.json`, `entropy_model/` inside);
 * - transformers — `model_type: "blt"` (`config.json` with sub-configurations, one or several
 *   `model*.safetensors`, the entropy model as `model.patcher.*`).
 * Weights stored as BF16, F16 or F32 are read as they are, one tensor at a time, and widened to float32;
 * the hash n-gram tables stay in the file (`hashTables`). A model whose float32 weights cannot fit
 * the wasm backend's 4 GiB heap (a released BLT-1B: 5.4 GiB) is built on the cpu backend when no
 * backend (or `'auto'`) was asked for, and `backend.reason` says so; asking for `'wasm'` then fails.
 *
 * @example
 * const blt = await loadPretrained('hf-weights/blt_1b', { backend: 'wasm' });
 * const { text } = await generate(blt, 'A BLT has', { maxBytes: 40 });
 *
 * @param location - the BLT's folder: a path (Node), an `http(s):` or `file:` URL, an opened folder,
 *   or `pretrained:demo` (the BLT shipped in this package, {@link PRETRAINED_BLTS})
 * @param options - backend, entropy model, patching overrides
 * @returns the model, the patcher, the layout and the patching settings
 * @throws {BltError} `INVALID_CHECKPOINT` naming the file (missing, corrupt, foreign — e.g. a Llama
 *   checkpoint —, a shard missing from the index, mismatched shapes, no entropy model where expected),
 *   `CONFIG_MISMATCH` naming the field (unsupported or invalid arguments, e.g. an unknown `attn_impl`)
 */
export async function loadPretrained(where: string | URL | ModelFolder, options: LoadPretrainedOptions = {}): Promise<PretrainedBlt> {
  const location = shippedLocation(where);
  const asked = options.backend === undefined ? undefined : await initBackend({ ...options.backendOptions, backend: options.backend });
  let folder: ModelFolder;
  let layout: CheckpointLayout;
  let source: BltSource;
  try {
    folder = typeof location === 'object' && 'openTensors' in location ? location : await openModelFolder(location);
    const detected = await detectCheckpointLayout(folder);
    layout = detected.layout;
    source = await readBltSource(folder, detected);
  } catch (e) {
    throw toBltError(e);
  }
  const patching = { ...source.patching, ...options.patching };
  let backend: BackendInfo;
  let model: ByteLatentTransformer | undefined;
  let patcher: EntropyPatcher | undefined;
  const hashTables = options.hashTables ?? 'source';
  try {
    backend = await backendThatHolds(
      source.weights,
      hashTables,
      options,
      asked ?? (await ensureBackend({ ...options.backendOptions, quiet: options.quiet })),
    );
  } catch (e) {
    source.file.close?.();
    throw e;
  }
  try {
    // With host hash tables the model keeps the weights (a view of the file) and closes them when disposed.
    model = withFileNamed(
      () => ByteLatentTransformer.fromSafetensors(source.weights, source.args, { hashTables }),
      source.configPath,
      source.weights.description,
    );
    if (options.patcher instanceof EntropyPatcher) {
      patcher = options.patcher;
    } else if (options.patcher !== false) {
      // An explicit folder wins; else where the reference keeps it: model.patcher.* in the same file
      // (transformers), entropy_model/ inside (hub) or beside (consolidated).
      const entropy =
        options.patcher !== undefined
          ? await readPretrainedEntropyModel(options.patcher)
          : layout === 'transformers'
            ? { ...source.sameFileEntropy!, weights: withoutClose(source.sameFileEntropy!.weights) }
            : await entropyModelOfBlt(folder, layout, source.configPath);
      // The BLT's own patching settings win over the entropy model folder's, as in the reference's demo
      // (its patcher is built from the BLT's `data.patcher_args`, only the checkpoint folder swapped).
      patcher = EntropyPatcher.fromPretrainedSource(entropy, patching, backend);
    }
  } catch (e) {
    model?.dispose();
    source.file.close?.();
    throw toBltError(e);
  }
  if (model.localEncoder.hostHashTables === undefined) source.file.close?.();
  const loaded = model;
  const loadedPatcher = patcher;
  return {
    model: loaded,
    patcher: loadedPatcher,
    layout,
    location: folder.location,
    patching,
    backend,
    dispose: () => {
      loaded.dispose();
      if (loadedPatcher !== options.patcher) loadedPatcher?.dispose();
    },
  };
}

/**
 * Most float32 weight bytes a model may hold on the wasm backend: its heap stops at 4 GiB, and the
 * activations, the entropy model and tfjs need the rest.
 */
const WASM_WEIGHT_BYTES_LIMIT = 3.25 * 2 ** 30;

/**
 * The backend to build the model on: the one given or active, unless that is wasm and the model's
 * tensors (float32; the hash tables too unless they stay in the file) cannot fit its 4 GiB heap —
 * then cpu (its tensors live in JavaScript memory, its matmuls on OpenBLAS where built) when the
 * caller left the choice open, else a clear error.
 */
export async function backendThatHolds<C extends BackendInfo | undefined>(
  weights: TensorSource,
  hashTables: 'tensors' | 'source',
  options: LoadPretrainedOptions,
  chosen: C,
): Promise<C | BackendInfo> {
  if ((chosen?.name ?? getBackend()) !== 'wasm') return chosen;
  let bytes = 0;
  for (const name of weights.names()) {
    if (hashTables === 'source' && name.startsWith('encoder_hash_tok_embedding.')) continue;
    const info = weights.info(name);
    bytes += (info.byteLength / dtypeByteSize(info.dtype)) * 4;
  }
  if (bytes <= WASM_WEIGHT_BYTES_LIMIT) return chosen;
  const gib = (bytes / 2 ** 30).toFixed(1);
  if (options.backend === 'wasm') {
    throw new BltError(
      'INVALID_ARGUMENT',
      `${weights.description}: the model's ${gib} GiB of float32 weights do not fit the wasm backend's 4 GiB heap: load it with backend 'cpu' (or 'auto')`,
    );
  }
  const cpu = await initBackend({ ...options.backendOptions, backend: 'cpu' });
  return {
    ...cpu,
    reason: `the model's ${gib} GiB of float32 weights exceed the wasm heap (4 GiB): ${cpu.reason.replace(/^forced \(backend: 'cpu'\)$/, 'cpu')}`,
  };
}

/**
 * A view of a source whose `close` does nothing: the entropy model read from the BLT's own file
 * (transformers layout) must not close the file the BLT's host hash tables keep reading; the BLT
 * (or this loader, when it fails) closes it.
 */
function withoutClose(source: TensorSource): TensorSource {
  return {
    description: source.description,
    names: () => source.names(),
    has: (name) => source.has(name),
    info: (name) => source.info(name),
    readBytes: (name, begin, end) => source.readBytes(name, begin, end),
  };
}

/**
 * Runs a model build, naming the file in its errors: the configuration file for an argument error,
 * the weights file for weights that do not fit.
 */
function withFileNamed<T>(build: () => T, configPath: string, weightsPath: string): T {
  try {
    return build();
  } catch (e) {
    if (!(e instanceof BltError)) throw e;
    const where = e.code === 'CONFIG_MISMATCH' ? configPath : weightsPath;
    throw e.message.startsWith(where) ? e : new BltError(e.code, `${where}: ${e.message}`);
  }
}

/** Errors of the layers below as the BLT package's typed error, message (file and field) kept. */
function toBltError(e: unknown): unknown {
  if (e instanceof BltError) return e;
  if (e instanceof NnError) return new BltError(e.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'INVALID_CHECKPOINT', e.message);
  if (e instanceof PatcherError) {
    return new BltError(
      e.code === 'CONFIG_MISMATCH' ? 'CONFIG_MISMATCH' : e.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'INVALID_CHECKPOINT',
      e.message,
    );
  }
  return e;
}
