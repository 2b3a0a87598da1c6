/**
 * Loading a model into a {@link ScoringModel} by what it is: a folder of any published layout (Meta's
 * released BLTs and entropy model — consolidated, hub, transformers — or ours exported by
 * `savePretrained`), read with `loadPretrained` / `EntropyPatcher.fromPretrained` and its patching
 * settings; or a single model file by what its metadata says: a BLT (`blt_args`, as
 * `apps/train export-blt` writes and `apps/serve` ships), an entropy model (`entropy_model_args`), a
 * token transformer (`token_model_args`), or an `apps/train` training checkpoint of any of them.
 * Node only (reads files).
 */
import { stat, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer, loadPretrained, type BltArgs, type PretrainedBlt } from '@bytelatent/blt';
import { ARGS_METADATA_KEY, EntropyModel, EntropyPatcher, pretrainedModelNamed, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import {
  type CheckpointLayout,
  type SafetensorsFile,
  detectCheckpointLayout,
  loadReferenceWeights,
  openModelFolder,
  parseSafetensors,
} from '@bytelatent/nn';
import { type BltPatching, type StoredPatching, bltPatchingOfModel, patchingOfMetadata, usesEntropyModel } from '@bytelatent/blt';
import { bltScorer, entropyModelScorer } from './adapters.js';
import { BytePairTokenizer } from './bpe.js';
import { EvalError } from './errors.js';
import { type BltFlopsShape, type TransformerShape, bltFlopsShape, transformerShape } from './flops.js';
import type { ScoringModel } from './scoring-model.js';
import {
  TOKEN_MODEL_ARGS_KEY,
  TOKEN_MODEL_TOKENIZER_KEY,
  TokenTransformer,
  type TokenTransformerArgs,
  tokenTransformerScorer,
} from './token-transformer.js';

/** Metadata key of `apps/train` checkpoints. */
const TRAIN_STATE_KEY = 'train_state';

/**
 * What a model file or folder held, with what the FLOP accounting needs. `layout` is the published
 * layout a folder was read in (undefined for a single file).
 */
export type LoadedModel =
  | {
      readonly kind: 'blt';
      readonly model: ScoringModel & { patchCounts(): { positions: number; patches: number } };
      readonly parameters: number;
      readonly shape: BltFlopsShape;
      readonly patching: BltPatching;
      readonly contextBytes: number;
      readonly layout?: CheckpointLayout;
      dispose(): void;
    }
  | {
      readonly kind: 'entropy' | 'token';
      readonly model: ScoringModel;
      readonly parameters: number;
      readonly shape: TransformerShape;
      readonly vocab: number;
      readonly contextTokens: number;
      readonly layout?: CheckpointLayout;
      dispose(): void;
    };

/** Options of {@link loadModel}, {@link loadModelFile} and {@link loadPretrainedModel}. */
export interface LoadModelOptions {
  /**
   * BLT only: the entropy model to patch with, instead of the model's own — a folder of any
   * published layout (path or `http(s):` URL), an entropy model safetensors file, or a shipped one
   * (`pretrained` = `pretrained:small`, the one BLT runs are trained with, or `pretrained:fast`). A folder BLT keeps its own patching settings
   * (they win over the entropy model's, as in the reference); a file BLT keeps its metadata's.
   */
  readonly patcher?: string;
  /** Name shown in tables (default: derived from the file or folder). */
  readonly name?: string;
}

function json<T>(raw: string | undefined, what: string): T | undefined {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    throw new EvalError('INVALID_MODEL_FILE', `metadata "${what}" is not valid JSON`);
  }
}

const isUrl = (location: string) => /^https?:\/\//i.test(location);

/** Whether a path is a folder (false for a file, a URL or nothing). */
async function isDirectory(path: string): Promise<boolean> {
  if (isUrl(path)) return false;
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * An explicit entropy model: `pretrained`, a folder (path or URL) of any layout, or a safetensors
 * file; `overrides` (patching settings) win over the file's own.
 */
async function loadPatcher(
  source: string | undefined,
  base: string,
  overrides: Parameters<typeof EntropyPatcher.pretrained>[0] = {},
): Promise<EntropyPatcher> {
  // A BLT file without its own entropy model was trained on the patches of a shipped one: bare
  // `pretrained` (and no choice at all) means the one BLT runs were trained with, `small`.
  if (source === undefined) return EntropyPatcher.pretrained({ ...overrides, model: 'small' });
  const shipped = pretrainedModelNamed(source, 'small');
  if (shipped !== undefined) return EntropyPatcher.pretrained({ ...overrides, model: shipped });
  if (isUrl(source)) return EntropyPatcher.fromPretrained(source, overrides);
  const path = isAbsolute(source) ? source : resolve(base, source);
  if (await isDirectory(path)) return EntropyPatcher.fromPretrained(path, overrides);
  return EntropyPatcher.fromSafetensors(path, overrides);
}

/** Our loaders' typed errors (BltError, PatcherError, NnError) as `INVALID_MODEL_FILE`, message kept. */
function modelError(e: unknown, where: string): unknown {
  if (e instanceof EvalError) return e;
  const code = (e as { code?: unknown })?.code;
  if (e instanceof Error && typeof code === 'string') {
    return new EvalError('INVALID_MODEL_FILE', e.message.includes(where) ? e.message : `${where}: ${e.message}`);
  }
  return e;
}

/**
 * Whether a folder of a published layout holds a BLT or an entropy model (Meta publishes both:
 * `facebook/blt-1b`, `facebook/blt-entropy`), from its configuration file alone.
 *
 * @param location - folder path or `http(s):` URL
 * @throws {EvalError} `INVALID_MODEL_FILE` when the folder is not a checkpoint folder
 */
export async function pretrainedFolderKind(location: string): Promise<'blt' | 'entropy'> {
  try {
    const { layout, config } = await detectCheckpointLayout(await openModelFolder(location));
    const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
    if (layout === 'consolidated')
      return config['train_entropy_model'] === true || (isObject(config['entropy_model']) && !isObject(config['model']))
        ? 'entropy'
        : 'blt';
    if (layout === 'hub') {
      const args = isObject(config['args']) ? config['args'] : {};
      return !('dim_global' in args) && !('dim_local_encoder' in args) && 'dim' in args ? 'entropy' : 'blt';
    }
    return 'blt';
  } catch (e) {
    throw modelError(e, location);
  }
}

/**
 * Loads a model from a folder of any published layout — a BLT with its entropy model and patching
 * settings (`loadPretrained`: the BLT is scored with exactly the rule its files give — mode,
 * thresholds, maximum patch length), or an entropy model alone (`EntropyPatcher.fromPretrained`, scored
 * as the byte-level language model it is).
 *
 * @param location - folder path (Node) or `http(s):` base URL
 * @param options - explicit entropy model, display name
 * @returns the model, its kind, layout, size and FLOP shape (dispose it when done)
 * @throws {EvalError} `DATA_UNAVAILABLE` when there is no such folder; `INVALID_MODEL_FILE` naming
 *   the file and field when the folder cannot be read as a model
 */
export async function loadPretrainedModel(location: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (!isUrl(location) && !(await isDirectory(location))) throw new EvalError('DATA_UNAVAILABLE', `${location}: no such folder`);
  const name =
    options.name ??
    location
      .replace(/[\\/]+$/, '')
      .split(/[\\/]/)
      .pop()!;
  if ((await pretrainedFolderKind(location)) === 'entropy') {
    let patcher: EntropyPatcher;
    try {
      patcher = await EntropyPatcher.fromPretrained(location);
    } catch (e) {
      throw modelError(e, location);
    }
    return { ...entropyLoaded(patcher.model, name, () => patcher.dispose()), ...(patcher.layout ? { layout: patcher.layout } : {}) };
  }
  const explicit = options.patcher;
  // A folder (or URL) goes to loadPretrained, which builds the patcher with the BLT's settings; a
  // file or the shipped model is loaded here, with the same precedence: the BLT's settings win.
  const explicitFolder = explicit !== undefined && explicit !== 'pretrained' && (isUrl(explicit) || (await isDirectory(explicit)));
  let loaded: PretrainedBlt;
  try {
    loaded = await loadPretrained(
      location,
      explicit === undefined || explicitFolder ? (explicit === undefined ? {} : { patcher: explicit }) : { patcher: false },
    );
  } catch (e) {
    throw modelError(e, location);
  }
  let patcher = loaded.patcher;
  let ownPatcher: EntropyPatcher | undefined;
  if (explicit !== undefined && !explicitFolder) {
    try {
      patcher = ownPatcher = await loadPatcher(explicit, process.cwd(), loaded.patching);
    } catch (e) {
      loaded.dispose();
      throw modelError(e, explicit);
    }
  }
  const patching = bltPatchingOfModel(loaded.patching, patcher);
  let model;
  try {
    model = bltScorer(loaded.model, patching, name);
  } catch (e) {
    loaded.dispose();
    ownPatcher?.dispose();
    throw e;
  }
  const args = loaded.model.referenceArgs;
  return {
    kind: 'blt',
    model,
    parameters: loaded.model.parameterCount(),
    shape: bltFlopsShape(args),
    patching,
    contextBytes: model.maxContext,
    layout: loaded.layout,
    dispose: () => {
      loaded.dispose();
      ownPatcher?.dispose();
    },
  };
}

/**
 * Loads a model from a path: a folder goes through {@link loadPretrainedModel} (any published
 * layout), a file through {@link loadModelFile} (this project's single-file models). `http(s):`
 * URLs are folders.
 *
 * @param location - file or folder path, or URL
 * @param options - explicit entropy model, display name
 * @throws {EvalError} `DATA_UNAVAILABLE` when nothing is there; `INVALID_MODEL_FILE` when it is not a model
 */
export async function loadModel(location: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (isUrl(location) || (await isDirectory(location))) return loadPretrainedModel(location, options);
  return loadModelFile(location, options);
}

function entropyLoaded(em: EntropyModel, name: string, dispose: () => void): LoadedModel {
  return {
    kind: 'entropy',
    model: entropyModelScorer(em, name),
    parameters: em.registry.count(),
    shape: transformerShape(em.referenceArgs),
    vocab: em.args.vocabSize,
    contextTokens: Math.min(em.args.window ?? em.maxSeqLen, em.maxSeqLen),
    dispose,
  };
}

/**
 * The shipped entropy model of `@bytelatent/entropy-patcher` as a byte-level language model.
 *
 * @returns the loaded model (dispose it when done)
 */
export async function loadPretrainedEntropyModel(): Promise<LoadedModel> {
  const patcher = await EntropyPatcher.pretrained();
  const args = patcher.model.referenceArgs;
  return {
    kind: 'entropy',
    model: entropyModelScorer(patcher.model, 'entropy-patcher (pretrained)'),
    parameters: patcher.model.registry.count(),
    shape: transformerShape(args),
    vocab: patcher.model.args.vocabSize,
    contextTokens: Math.min(patcher.model.args.window ?? patcher.model.maxSeqLen, patcher.model.maxSeqLen),
    dispose: () => patcher.dispose(),
  };
}

/**
 * Loads a model file (safetensors) of any kind this project writes.
 *
 * @param path - the file
 * @param options - BLT patcher override, display name
 * @returns the model, its kind, size and FLOP shape (dispose it when done)
 * @throws {EvalError} `DATA_UNAVAILABLE` when the file cannot be read; `INVALID_MODEL_FILE` when it
 *   is not a model this package knows
 */
export async function loadModelFile(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(await readFile(path));
  } catch (e) {
    const code =
      (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EISDIR'
        ? 'DATA_UNAVAILABLE'
        : 'INVALID_MODEL_FILE';
    throw new EvalError(code, `cannot load ${path}: ${(e as Error).message}`);
  }
  const base = dirname(path);
  const name =
    options.name ??
    path
      .split(/[\\/]/)
      .pop()!
      .replace(/\.safetensors$/, '');
  const meta = file.metadata;
  const train = json<{ kind: string; config: Record<string, unknown> }>(meta[TRAIN_STATE_KEY], TRAIN_STATE_KEY);
  const prefix = train ? 'model.' : '';
  const kind =
    train?.kind ??
    (meta[BLT_ARGS_METADATA_KEY] ? 'blt' : meta[ARGS_METADATA_KEY] ? 'entropy' : meta[TOKEN_MODEL_ARGS_KEY] ? 'token' : undefined);
  const load = (registry: Parameters<typeof loadReferenceWeights>[0], dispose: () => void) => {
    try {
      loadReferenceWeights(registry, file, { prefix });
    } catch (e) {
      dispose();
      throw new EvalError('INVALID_MODEL_FILE', `${path}: ${(e as Error).message}`);
    }
  };
  if (kind === 'blt') {
    const args = (train ? train.config['model'] : json<BltArgs>(meta[BLT_ARGS_METADATA_KEY], BLT_ARGS_METADATA_KEY)) as BltArgs;
    let stored: StoredPatching | null | undefined;
    try {
      stored = train ? (train.config['patching'] as StoredPatching | null | undefined) : patchingOfMetadata(meta);
    } catch (e) {
      throw new EvalError('INVALID_MODEL_FILE', `${path}: ${(e as Error).message}`);
    }
    const mode = stored?.mode ?? 'entropy';
    const blt = new ByteLatentTransformer(args);
    load(blt.registry, () => blt.dispose());
    const patcher = usesEntropyModel({ mode }) ? await loadPatcher(options.patcher ?? stored?.entropyModel, base) : undefined;
    // The file's settings over the patcher's own, as for a folder; a run that recorded no rule
    // trained with entropy patching (the trainer's default).
    const patching: BltPatching = bltPatchingOfModel({ ...stored, mode }, patcher);
    const model = bltScorer(blt, patching, name);
    return {
      kind: 'blt',
      model,
      parameters: blt.parameterCount(),
      shape: bltFlopsShape(args),
      patching,
      contextBytes: model.maxContext,
      dispose: () => {
        blt.dispose();
        patcher?.dispose();
      },
    };
  }
  if (kind === 'entropy') {
    const args = (train ? train.config['model'] : json<EntropyModelArgs>(meta[ARGS_METADATA_KEY], ARGS_METADATA_KEY)) as EntropyModelArgs;
    const em = new EntropyModel(args);
    load(em.registry, () => em.dispose());
    return {
      kind: 'entropy',
      model: entropyModelScorer(em, name),
      parameters: em.registry.count(),
      shape: transformerShape(args),
      vocab: em.args.vocabSize,
      contextTokens: Math.min(em.args.window ?? em.maxSeqLen, em.maxSeqLen),
      dispose: () => em.dispose(),
    };
  }
  if (kind === 'token') {
    const args = (
      train ? train.config['model'] : json<TokenTransformerArgs>(meta[TOKEN_MODEL_ARGS_KEY], TOKEN_MODEL_ARGS_KEY)
    ) as TokenTransformerArgs;
    const tokJson = train ? train.config['tokenizer'] : json(meta[TOKEN_MODEL_TOKENIZER_KEY], TOKEN_MODEL_TOKENIZER_KEY);
    if (tokJson === undefined)
      throw new EvalError('INVALID_MODEL_FILE', `${path}: a token model without its tokenizer ("${TOKEN_MODEL_TOKENIZER_KEY}")`);
    const tokenizer = BytePairTokenizer.fromJSON(tokJson);
    const tm = new TokenTransformer(args);
    load(tm.registry, () => tm.dispose());
    return {
      kind: 'token',
      model: tokenTransformerScorer(tm, tokenizer, name),
      parameters: tm.parameterCount(),
      shape: transformerShape(args),
      vocab: args.vocab_size,
      contextTokens: tm.maxSeqLen,
      dispose: () => tm.dispose(),
    };
  }
  throw new EvalError(
    'INVALID_MODEL_FILE',
    `${path} is not a model this package knows: no "${BLT_ARGS_METADATA_KEY}", "${ARGS_METADATA_KEY}", "${TOKEN_MODEL_ARGS_KEY}" or "${TRAIN_STATE_KEY}" metadata`,
  );
}
