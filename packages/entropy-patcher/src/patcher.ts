import { BYTE_OFFSET, decodeUtf8, encode } from '@bytelatent/bytes';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BackendInfo,
  type BackendName,
  BackendError,
  type SafetensorsFile,
  ensureBackend,
  initBackend,
  parseSafetensors,
} from '@bytelatent/nn';
import { ARGS_METADATA_KEY, EntropyModel, type EntropyModelArgs } from './entropy-model.js';
import { EntropyWorkers, defaultPatchThreads } from './entropy-workers.js';
import { type PretrainedEntropySource, readPretrainedEntropyModel } from './pretrained.js';
import type { CheckpointLayout, ModelFolder } from '@bytelatent/nn';

export { ARGS_METADATA_KEY };
import { PatcherError } from './errors.js';
import {
  type PatchOptions,
  type PatchingMode,
  calibrateThreshold,
  decoderPatchIdsFromLengths,
  findPatchBoundaries,
  patchingSignal,
  PATCHING_MODES,
  patchIdsFromLengths,
  StreamingPatcher,
} from './patching.js';

/** Metadata key for the patcher defaults (JSON `{ mode, threshold, maxPatchLength }`). */
export const PATCHER_METADATA_KEY = 'patcher_defaults';

/** Defaults of a patcher; every field can be overridden per call. */
export interface PatcherDefaults {
  readonly mode?: PatchingMode;
  readonly threshold?: number;
  readonly thresholdAdd?: number;
  readonly patchSize?: number;
  readonly maxPatchLength?: number;
  readonly includeNextToken?: boolean;
}

/** How a loader sets the patcher up: its backend and limits. */
export interface PatcherLoadOptions {
  /**
   * Refuse inputs longer than this many bytes (`INPUT_TOO_LONG`), e.g. to bound a server's work.
   * Default: no limit — inputs longer than the model's context are cut into contexts as the
   * reference does (see {@link EntropyModel.entropies}).
   */
  readonly maxBytes?: number;
  /**
   * The TensorFlow.js backend to load the model on (`initBackend`). Default: the backend already
   * running, or, when none was chosen yet, the fastest available (WebGPU on a hardware adapter,
   * wasm, cpu; nn's `ensureBackend`). {@link EntropyPatcher.backend} says which.
   */
  readonly backend?: 'auto' | BackendName;
  /** Say nothing when the only backend left is the pure-JavaScript cpu one (one console line otherwise). */
  readonly quiet?: boolean;
  /**
   * Threads that compute a long input's entropies in `patch`, `patchBatch` and `calibrate` (Node):
   * this one plus `threads − 1` worker threads, each with a copy of the model, started in the
   * background on the first input of more than two groups of 4 contexts (over 2 KiB for a
   * 256-byte context), and stopped by
   * {@link EntropyPatcher.dispose}. The entropies do not depend on it.
   * Default: every core up to four on the wasm backend for a model up to 16M parameters, else 1
   * (the native matmuls of the cpu backend, and GPUs, already use the machine).
   */
  readonly threads?: number;
}

/** Options of {@link EntropyPatcher.fromSafetensors}. */
export interface EntropyPatcherOptions extends PatcherDefaults, PatcherLoadOptions {
  /**
   * The entropy model's arguments, with the reference's names. Default: the JSON stored in the
   * file's metadata under `entropy_model_args` (our checkpoints carry it).
   */
  readonly args?: EntropyModelArgs;
}

/** Options of {@link EntropyPatcher.patch}. */
export interface PatchCallOptions extends PatcherDefaults {
  /** Prepend BOS, as the reference does (default true). The first patch is then `[BOS]` alone. */
  readonly bos?: boolean;
}

/** Patches that became final in a {@link EntropyPatcher.patchStream}, in token positions (BOS = 0). */
export interface StreamedPatchBatch {
  readonly starts: Int32Array;
  readonly lengths: Int32Array;
  /** Entropies of the positions computed since the previous batch, starting at `entropyOffset`. */
  readonly entropies: Float32Array;
  readonly entropyOffset: number;
}

/** One patch of the input, in bytes. */
export interface PatchSegment {
  /** Byte offsets in the input, half-open. */
  readonly start: number;
  readonly end: number;
  /** The bytes decoded as UTF-8 (U+FFFD for invalid or split characters). */
  readonly text: string;
}

/** What {@link EntropyPatcher.patch} returns. Positions are token positions (BOS = position 0). */
export interface PatchResult {
  /** The token ids the entropy model read: `[BOS] bytes+4` (no EOS, as for generation). */
  readonly tokens: Int32Array;
  /** Next-byte entropy in nats at every token position (zeros for the rules that read none). */
  readonly entropies: Float32Array;
  /**
   * `'bpe-patcher'` only: at each position t >= 1, the id the model predicts after reading tokens
   * 1..t (the reference feeds it the row without BOS); -1 at position 0.
   */
  readonly predictions?: Int32Array;
  /** Patch lengths after the max-length split; sum = tokens + 1 with `includeNextToken`. */
  readonly patchLengths: Int32Array;
  /** Start position of each patch. */
  readonly patchStarts: Int32Array;
  /** Before the max-length split. */
  readonly patchLengthsUnsplit: Int32Array;
  readonly patchStartsUnsplit: Int32Array;
  /** Patch index of every token position. */
  readonly patchIds: Int32Array;
  /** The patch whose latent state each position's decoder reads (the previous patch, architecture §7.1). */
  readonly decoderPatchIds: Int32Array;
  /** The options that produced this result. */
  readonly options: Required<Pick<PatchOptions, 'mode' | 'includeNextToken'>> & PatcherDefaults;
  /** The patches as byte ranges of the input with their text (BOS and the next-byte slot left out). */
  segments(): PatchSegment[];
}

function checkThreads(threads: unknown): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 64) {
    throw new PatcherError(
      'INVALID_ARGUMENT',
      `threads must be an integer from 1 to 64, got ${JSON.stringify(threads) ?? String(threads)}`,
    );
  }
}

/**
 * The entropy models shipped in this package (under `models/`), both trained by us on the same data
 * (`apps/train` presets `entropy-fast`, `entropy-small`): `fast` (the default; dim 64, 2 layers)
 * does a quarter of the arithmetic of `small` (dim 128, 2 layers) per byte at the same quality;
 * `small` is the model the shipped demo BLT was trained with.
 */
export const PRETRAINED_MODELS = { fast: 'entropy-fast.safetensors', small: 'entropy-small.safetensors' } as const;

/** A shipped entropy model, see {@link PRETRAINED_MODELS}. */
export type PretrainedModelName = keyof typeof PRETRAINED_MODELS;

/** File name of the default shipped model, under the package's `models/` folder. */
export const PRETRAINED_MODEL_FILE = PRETRAINED_MODELS.fast;

/**
 * The shipped model a configuration names: `pretrained:fast`, `pretrained:small`, or a bare
 * `pretrained`, which means `bare` (BLT training configurations and files written before two models
 * shipped say `pretrained` and mean `small`, the model the demo BLT was trained with); undefined
 * for anything else (a path or URL).
 *
 * @throws {PatcherError} `INVALID_ARGUMENT` for `pretrained:` and an unknown name
 */
export function pretrainedModelNamed(source: string, bare: PretrainedModelName): PretrainedModelName | undefined {
  if (source === 'pretrained') return bare;
  const match = /^pretrained:(\w+)$/.exec(source);
  if (match === null) return undefined;
  const name = match[1]!;
  if (!Object.hasOwn(PRETRAINED_MODELS, name)) {
    throw new PatcherError(
      'INVALID_ARGUMENT',
      `${source}: no shipped entropy model named ${JSON.stringify(name)} (${Object.keys(PRETRAINED_MODELS)
        .map((m) => `pretrained:${m}`)
        .join(', ')})`,
    );
  }
  return name as PretrainedModelName;
}

function checkPretrainedName(model: unknown): PretrainedModelName {
  if (typeof model !== 'string' || !Object.hasOwn(PRETRAINED_MODELS, model)) {
    throw new PatcherError(
      'INVALID_ARGUMENT',
      `model must be one of ${Object.keys(PRETRAINED_MODELS).join(', ')}, got ${JSON.stringify(model) ?? String(model)}`,
    );
  }
  return model as PretrainedModelName;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

async function readSource(source: Uint8Array | string): Promise<Uint8Array> {
  if (source instanceof Uint8Array) return source;
  if (typeof source !== 'string') {
    throw new PatcherError('INVALID_ARGUMENT', 'source must be the bytes of a safetensors file, a file path (Node) or a URL');
  }
  try {
    if (isNode && !/^https?:\/\//.test(source)) {
      const { readFile } = await import('node:fs/promises');
      return await readFile(source);
    }
    const response = await fetch(source);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  } catch (e) {
    throw new PatcherError('INVALID_CHECKPOINT', `cannot read ${source}: ${(e as Error).message}`);
  }
}

function argsFromMetadata(file: SafetensorsFile): EntropyModelArgs | undefined {
  const raw = file.metadata[ARGS_METADATA_KEY];
  if (raw === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new PatcherError('INVALID_CHECKPOINT', `metadata "${ARGS_METADATA_KEY}" is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PatcherError('CONFIG_MISMATCH', `metadata "${ARGS_METADATA_KEY}" must be a JSON object, got ${JSON.stringify(value)}`);
  }
  return value as EntropyModelArgs;
}

/**
 * The patcher defaults stored in a file, checked field by field when the file is loaded (a bad value
 * would otherwise only fail at the first `patch()` call, or not at all).
 */
function defaultsFromMetadata(file: SafetensorsFile): PatcherDefaults {
  const raw = file.metadata[PATCHER_METADATA_KEY];
  if (raw === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new PatcherError('INVALID_CHECKPOINT', `metadata "${PATCHER_METADATA_KEY}" is not valid JSON`);
  }
  const bad = (why: string) => new PatcherError('CONFIG_MISMATCH', `metadata "${PATCHER_METADATA_KEY}": ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`must be a JSON object, got ${JSON.stringify(value)}`);
  const d = value as Record<string, unknown>;
  const shown = (k: string) => JSON.stringify(d[k]);
  if (d['mode'] !== undefined && !(PATCHING_MODES as readonly string[]).includes(d['mode'] as string))
    throw bad(`mode must be one of ${PATCHING_MODES.join(', ')}, got ${shown('mode')}`);
  for (const k of ['threshold', 'thresholdAdd']) {
    if (d[k] !== undefined && (typeof d[k] !== 'number' || !Number.isFinite(d[k])))
      throw bad(`${k} must be a finite number, got ${shown(k)}`);
  }
  // patchSize: bytes per static patch (an integer), or the mean aimed at by 'entropy-top-k' (any number > 0).
  if (
    d['patchSize'] !== undefined &&
    (typeof d['patchSize'] !== 'number' || !((d['patchSize'] as number) > 0) || !Number.isFinite(d['patchSize']))
  )
    throw bad(`patchSize must be a number > 0, got ${shown('patchSize')}`);
  for (const k of ['maxPatchLength']) {
    if (d[k] !== undefined && (typeof d[k] !== 'number' || !Number.isInteger(d[k]) || (d[k] as number) < 1))
      throw bad(`${k} must be an integer >= 1, got ${shown(k)}`);
  }
  if (d['includeNextToken'] !== undefined && typeof d['includeNextToken'] !== 'boolean')
    throw bad(`includeNextToken must be a boolean, got ${shown('includeNextToken')}`);
  return d as PatcherDefaults;
}

/**
 * Splits bytes into patches where a small byte-level language model finds the next byte hard to
 * predict (BLT's entropy patching), or by any of the reference's other rules.
 *
 * @example
 * const patcher = await EntropyPatcher.fromSafetensors('entropy_model.safetensors', { threshold: 1.34 });
 * const { patchLengths, entropies } = await patcher.patch('Hello, world!');
 */
export class EntropyPatcher {
  private constructor(
    /** The underlying model (for entropies of your own token rows). */
    readonly model: EntropyModel,
    /** Defaults applied to every call. */
    readonly defaults: PatcherDefaults,
    private readonly maxBytes: number,
    /** The published layout the model was read from ({@link fromPretrained}); undefined otherwise. */
    readonly layout: CheckpointLayout | undefined = undefined,
    backend: BackendInfo | undefined = undefined,
    threads: number | 'auto' = 1,
  ) {
    this.backend = backend ?? { name: tf.getBackend() as BackendName, reason: 'the backend the model was built on' };
    this.threads = threads === 'auto' ? defaultPatchThreads(this.backend, model.registry.count()) : threads;
    checkThreads(this.threads);
    // Workers get the model as a safetensors file with its arguments, on this thread's backend.
    this.workers = this.threads > 1 ? new EntropyWorkers(this.threads - 1, () => model.toSafetensors(), this.backend.name) : undefined;
  }

  /** Threads computing a long input's entropies (see {@link PatcherLoadOptions.threads}). */
  readonly threads: number;
  private readonly workers: EntropyWorkers | undefined;

  /**
   * The TensorFlow.js backend the model runs on, and why: chosen by the loader when the caller had
   * not chosen one (`'auto: …'`), else the caller's.
   */
  readonly backend: BackendInfo;

  /**
   * Sets up the backend a loader builds the model on: the one asked for, else the running one, else
   * the fastest available.
   */
  private static async prepareBackend(options: PatcherLoadOptions): Promise<BackendInfo> {
    try {
      return options.backend === undefined
        ? await ensureBackend({ quiet: options.quiet })
        : await initBackend({ backend: options.backend });
    } catch (e) {
      if (e instanceof BackendError)
        throw new PatcherError(e.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'BACKEND_UNAVAILABLE', e.message, { cause: e });
      throw e;
    }
  }

  /**
   * Loads an entropy model saved with the reference's `state_dict` names (the reference's own
   * `LMTransformer` weights, or ours).
   *
   * @param source - file bytes, a path (Node) or a URL
   * @param options - model arguments (unless stored in the file) and patching defaults
   * @returns the patcher
   * @throws {PatcherError} `INVALID_CHECKPOINT` (unreadable, corrupt — truncated, bad header, offsets
   *   out of range or overlapping —, weights that do not fit the arguments or hold NaN/Inf, arguments
   *   describing more weights than the file holds; each problem named), `CONFIG_MISMATCH` (missing or
   *   invalid arguments, invalid patcher defaults in the metadata)
   */
  static async fromSafetensors(source: Uint8Array | string, options: EntropyPatcherOptions = {}): Promise<EntropyPatcher> {
    const bytes = await readSource(source);
    let file: SafetensorsFile;
    try {
      file = parseSafetensors(bytes);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new PatcherError(
        'INVALID_CHECKPOINT',
        `not a valid safetensors file${typeof code === 'string' ? ` (${code})` : ''}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const args = options.args ?? argsFromMetadata(file);
    if (!args) {
      throw new PatcherError(
        'CONFIG_MISMATCH',
        `no entropy model arguments: pass options.args or store them in the file metadata "${ARGS_METADATA_KEY}"`,
      );
    }
    // Everything that can be refused is checked before the model's weights are allocated.
    const stored = defaultsFromMetadata(file);
    if (options.threads !== undefined) checkThreads(options.threads);
    const backend = await EntropyPatcher.prepareBackend(options);
    const model = EntropyModel.fromSafetensors(file, args);
    const { args: _args, maxBytes, backend: _backend, quiet: _quiet, threads, ...defaults } = options;
    return new EntropyPatcher(
      model,
      { ...stored, ...defaults },
      maxBytes ?? Number.POSITIVE_INFINITY,
      undefined,
      backend,
      threads ?? 'auto',
    );
  }

  /**
   * Loads Meta's released entropy model (or any entropy model) from a folder of any published layout,
   * reading every argument and patching setting from its files: `facebook/blt-entropy` (hub layout),
   * the `entropy_model/` folder of the reference's download (`params.json` + `consolidated.pth`), a
   * transformers `model_type: "blt"` folder (`model.patcher.*`), or a BLT folder whose entropy model
   * lies where the reference keeps it. BF16/F16/F32 weights are read as they are, tensor by tensor.
   *
   * @example
   * const patcher = await EntropyPatcher.fromPretrained('hf-weights/entropy_model');
   * const { patchLengths } = await patcher.patch('Hello, world!');
   *
   * @param location - folder path (Node), `http(s):` base URL (Node and browser), or an opened folder
   * @param options - patching settings that override the files', `maxBytes`, the backend
   * @returns the patcher; `layout` says which layout was read
   * @throws {PatcherError} `INVALID_CHECKPOINT` naming the file (missing, corrupt, foreign, a shard
   *   missing, mismatched shapes), `CONFIG_MISMATCH` naming the field
   */
  static async fromPretrained(
    location: string | URL | ModelFolder,
    options: PatcherDefaults & PatcherLoadOptions = {},
  ): Promise<EntropyPatcher> {
    if (options.threads !== undefined) checkThreads(options.threads);
    const source = await readPretrainedEntropyModel(location);
    let backend: BackendInfo;
    try {
      backend = await EntropyPatcher.prepareBackend(options);
    } catch (e) {
      source.weights.close?.();
      throw e;
    }
    const { backend: _backend, quiet: _quiet, threads, ...rest } = options;
    return EntropyPatcher.fromSource(source, rest, backend, threads ?? 'auto');
  }

  /**
   * {@link fromPretrained} on a source already read (the BLT loader reads the folder once for both),
   * on the backend already set up (`backend` describes it). Closes the source's files.
   */
  static fromPretrainedSource(
    source: PretrainedEntropySource,
    options: PatcherDefaults & { readonly maxBytes?: number } = {},
    backend?: BackendInfo,
  ): EntropyPatcher {
    return EntropyPatcher.fromSource(source, options, backend, 1);
  }

  /** {@link fromPretrainedSource} with a thread count (`'auto'`: {@link PatcherLoadOptions.threads}'s default). */
  private static fromSource(
    source: PretrainedEntropySource,
    options: PatcherDefaults & { readonly maxBytes?: number },
    backend: BackendInfo | undefined,
    threads: number | 'auto',
  ): EntropyPatcher {
    let model: EntropyModel;
    try {
      model = EntropyModel.fromSafetensors(source.weights, source.args);
    } catch (e) {
      // Name the file: the folder for an argument error, the weights file for weights that do not fit.
      if (!(e instanceof PatcherError)) throw e;
      const where = e.code === 'CONFIG_MISMATCH' ? source.location : source.weights.description;
      throw e.message.startsWith(where) ? e : new PatcherError(e.code, `${where}: ${e.message}`, { cause: e });
    } finally {
      source.weights.close?.();
    }
    const { maxBytes, ...overrides } = options;
    return new EntropyPatcher(
      model,
      { ...source.defaults, ...overrides },
      maxBytes ?? Number.POSITIVE_INFINITY,
      source.layout,
      backend,
      threads,
    );
  }

  /**
   * Where a pretrained entropy model shipped in this package lies (`models/entropy-fast.safetensors`
   * by default, see {@link PRETRAINED_MODELS}): a `file:` URL in Node, an `http(s):` URL when a
   * bundler serves the package's files.
   *
   * @param model - which shipped model (default `fast`)
   */
  static pretrainedUrl(model: PretrainedModelName = 'fast'): URL {
    return new URL(`../models/${PRETRAINED_MODELS[checkPretrainedName(model)]}`, import.meta.url);
  }

  /**
   * The bytes of a shipped pretrained model (for hashing or caching it).
   *
   * @param model - which shipped model (default `fast`)
   * @throws {PatcherError} `INVALID_CHECKPOINT` when the file cannot be read, `INVALID_ARGUMENT` for an unknown name
   */
  static async pretrainedBytes(model: PretrainedModelName = 'fast'): Promise<Uint8Array> {
    const url = EntropyPatcher.pretrainedUrl(model);
    if (url.protocol === 'file:') {
      const { fileURLToPath } = await import('node:url');
      return readSource(fileURLToPath(url));
    }
    return readSource(url.href);
  }

  /**
   * The entropy model trained by this project and shipped in the package — a byte-level transformer
   * trained on public-domain books and Python sources, with a threshold calibrated for a mean patch of
   * about 4.5 bytes on English prose. No download: the weights are part of the package.
   *
   * @param options - `model` (which shipped model, default `fast`: {@link PRETRAINED_MODELS}),
   *   patching defaults, limits, backend and threads (the model's arguments are in the file)
   * @throws {PatcherError} `INVALID_CHECKPOINT` when the shipped file cannot be read, `INVALID_ARGUMENT` for an unknown model
   */
  static async pretrained(
    options: Omit<EntropyPatcherOptions, 'args'> & { readonly model?: PretrainedModelName } = {},
  ): Promise<EntropyPatcher> {
    const { model = 'fast', ...rest } = options;
    return EntropyPatcher.fromSafetensors(await EntropyPatcher.pretrainedBytes(model), rest);
  }

  /**
   * Wraps a model you already have (trained in-process, or composed by hand).
   *
   * @param model - the entropy model; the patcher owns it afterwards (`dispose` frees it)
   * @param defaults - patching defaults, `maxBytes`, and `threads` (default 1 here: see
   *   {@link PatcherLoadOptions.threads})
   */
  static fromModel(model: EntropyModel, defaults: PatcherDefaults & { maxBytes?: number; threads?: number } = {}): EntropyPatcher {
    const { maxBytes, threads, ...rest } = defaults;
    return new EntropyPatcher(model, rest, maxBytes ?? Number.POSITIVE_INFINITY, undefined, undefined, threads ?? 1);
  }

  /**
   * Patches one input.
   *
   * @param input - text (UTF-8 encoded) or raw bytes (any bytes, valid UTF-8 or not)
   * @param options - mode, thresholds, max patch length; default: the patcher's defaults, entropy mode
   * @returns lengths, starts, ids and entropies
   * @throws {PatcherError} `INPUT_TOO_LONG` past the model's context; `INVALID_ARGUMENT` for bad options
   */
  async patch(input: string | Uint8Array, options: PatchCallOptions = {}): Promise<PatchResult> {
    const [result] = await this.patchBatch([input], options);
    return result!;
  }

  /**
   * Patches several inputs in one model call; each row is computed independently (no leakage
   * between rows, unlike the reference).
   */
  async patchBatch(inputs: ReadonlyArray<string | Uint8Array>, options: PatchCallOptions = {}): Promise<PatchResult[]> {
    const { bos = true, ...rest } = options;
    const merged = { mode: 'entropy' as PatchingMode, includeNextToken: true, ...this.defaults, ...rest };
    if (merged.mode === 'bpe')
      throw new PatcherError(
        'INVALID_ARGUMENT',
        "mode 'bpe' cuts BPE-delimiter tokens, not text: encode with @bytelatent/bytes' encodeWithBpeDelimiters and call findPatchBoundaries",
      );
    const rows = inputs.map((input, i) => {
      const tokens = encode(input, { bos, eos: false });
      const byteCount = tokens.length - (bos ? 1 : 0);
      if (byteCount > this.maxBytes) {
        throw new PatcherError('INPUT_TOO_LONG', `input ${i} has ${byteCount} bytes, more than this patcher's limit of ${this.maxBytes}`);
      }
      return tokens;
    });
    const signal = patchingSignal(merged.mode);
    const nonEmpty = rows.filter((r) => r.length > 0);
    const computed = signal === 'entropies' && nonEmpty.length > 0 ? await this.model.entropies(nonEmpty, this.workers) : [];
    const predicted = signal === 'predictions' && nonEmpty.length > 0 ? await this.bpePredictions(nonEmpty) : [];
    let next = 0;
    return rows.map((tokens) => {
      const entropies = signal === 'entropies' && tokens.length > 0 ? computed[next]! : new Float32Array(tokens.length);
      const predictions = signal === 'predictions' && tokens.length > 0 ? predicted[next] : undefined;
      if (tokens.length > 0) next++;
      const b = findPatchBoundaries(tokens, signal === 'entropies' ? entropies : predictions, merged);
      const n = tokens.length;
      const patchIds = patchIdsFromLengths(b.patchLengths, n);
      const decoderPatchIds = decoderPatchIdsFromLengths(b.patchLengths, n);
      return {
        tokens,
        entropies,
        ...(predictions ? { predictions } : {}),
        ...b,
        patchIds,
        decoderPatchIds,
        options: merged,
        segments: () => segmentsOf(tokens, b.patchStarts, b.patchLengths, bos),
      };
    });
  }

  /**
   * What a BPE patcher model predicts along each row, aligned as {@link PatchResult.predictions}:
   * the reference's `find_bpe_patcher_patch_start_ids` runs the model on `tokens[:, 1:]`.
   */
  private async bpePredictions(rows: readonly Int32Array[]): Promise<Int32Array[]> {
    const shifted = rows.map((r) => r.subarray(1));
    const withTokens = shifted.filter((r) => r.length > 0);
    const predicted = withTokens.length > 0 ? await this.model.predictions(withTokens) : [];
    let next = 0;
    return shifted.map((r) => {
      const out = new Int32Array(r.length + 1).fill(-1);
      if (r.length > 0) out.set(predicted[next++]!, 1);
      return out;
    });
  }

  /**
   * Patches a stream (a file read in chunks, a network body, generated text) with bounded memory:
   * bytes are buffered only up to one model context (`max_seqlen` ids), whose entropies are then
   * computed and fed to a {@link StreamingPatcher}. The contexts are the ones the one-shot call
   * uses, so the patches equal `patch()` on the whole input, for any chunking.
   *
   * @param source - chunks of text or bytes (a string chunk may end inside a surrogate pair)
   * @param options - as for {@link patch}
   * @returns batches of patches as soon as they are final; the last one follows the end of the source
   */
  async *patchStream(
    source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>,
    options: PatchCallOptions = {},
  ): AsyncGenerator<StreamedPatchBatch, void, undefined> {
    const { bos = true, ...rest } = options;
    const merged = { mode: 'entropy' as PatchingMode, includeNextToken: true, ...this.defaults, ...rest };
    const signal = patchingSignal(merged.mode);
    if (signal === 'predictions')
      throw new PatcherError('INVALID_ARGUMENT', "mode 'bpe-patcher' is not streamed (its model reads the row without BOS): use patch()");
    const needsModel = signal === 'entropies';
    const streaming = new StreamingPatcher(merged);
    const context = needsModel ? this.model.maxSeqLen : 4096;
    let pending: number[] = bos ? [encode('', { bos: true, eos: false })[0]!] : [];
    let position = 0;
    let carry = ''; // a high surrogate waiting for its pair in the next string chunk
    let bytesSeen = 0;
    const flush = async (count: number): Promise<StreamedPatchBatch> => {
      const tokens = pending.slice(0, count);
      pending = pending.slice(count);
      const entropies = needsModel ? (await this.model.entropies([tokens]))[0]! : new Float32Array(0);
      const out = streaming.push(tokens, needsModel ? entropies : undefined);
      const batch = { ...out, entropies, entropyOffset: position };
      position += tokens.length;
      return batch;
    };
    for await (const chunk of source) {
      let piece = chunk;
      if (typeof piece === 'string') {
        piece = carry + piece;
        carry = '';
        const last = piece.charCodeAt(piece.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) {
          carry = piece.slice(-1);
          piece = piece.slice(0, -1);
        }
      }
      const ids = encode(piece, { bos: false, eos: false });
      bytesSeen += ids.length;
      if (bytesSeen > this.maxBytes) {
        throw new PatcherError('INPUT_TOO_LONG', `stream has more than this patcher's limit of ${this.maxBytes} bytes`);
      }
      for (const id of ids) pending.push(id);
      while (pending.length >= context) yield await flush(context);
    }
    if (carry) for (const id of encode(carry, { bos: false, eos: false })) pending.push(id);
    const tail =
      pending.length > 0
        ? await flush(pending.length)
        : { starts: new Int32Array(0), lengths: new Int32Array(0), entropies: new Float32Array(0), entropyOffset: position };
    const remaining = streaming.finish();
    yield { ...tail, starts: concat(tail.starts, remaining.starts), lengths: concat(tail.lengths, remaining.lengths) };
  }

  /**
   * The threshold that gives a mean patch size closest to `targetMeanPatchSize` on these texts
   * (entropy or monotonic mode). Nothing in the reference does this; users tune it by trial.
   *
   * @param texts - representative inputs
   * @param targetMeanPatchSize - bytes per patch wanted, e.g. 4.5
   * @returns the threshold and the mean patch size it gives on `texts`
   */
  async calibrate(
    texts: ReadonlyArray<string | Uint8Array>,
    targetMeanPatchSize: number,
    options: { mode?: 'entropy' | 'monotonic'; maxPatchLength?: number } = {},
  ): Promise<{ threshold: number; meanPatchSize: number; patches: number; bytes: number }> {
    const rows = texts.map((t) => encode(t, { bos: true, eos: false }));
    const entropies = await this.model.entropies(rows, this.workers);
    return calibrateThreshold(
      rows.map((tokens, i) => ({ tokens, entropies: entropies[i]! })),
      targetMeanPatchSize,
      { includeNextToken: false, ...options },
    );
  }

  /** Frees the model's weights. */
  dispose(): void {
    this.workers?.stop();
    this.model.dispose();
  }
}

/** Byte ranges of the patches: positions map to bytes by −1 when BOS leads; BOS and the next-byte slot are dropped. */
function segmentsOf(tokens: Int32Array, starts: Int32Array, lengths: Int32Array, bos: boolean): PatchSegment[] {
  const offset = bos ? 1 : 0;
  const byteCount = tokens.length - offset;
  const bytes = new Uint8Array(byteCount);
  for (let i = 0; i < byteCount; i++) bytes[i] = tokens[i + offset]! - BYTE_OFFSET;
  const out: PatchSegment[] = [];
  for (let p = 0; p < starts.length; p++) {
    const start = Math.max(starts[p]! - offset, 0);
    const end = Math.min(starts[p]! + lengths[p]! - offset, byteCount);
    if (end > start) out.push({ start, end, text: decodeUtf8(bytes.subarray(start, end)) });
  }
  return out;
}

function concat(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
