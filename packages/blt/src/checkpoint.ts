/**
 * Our own checkpoint format, on TensorFlow.js `tf.io`: standard tfjs `ModelArtifacts` whose topology is
 * `{ format: 'bytelatent-blt', version: 1, blt_args }` and whose weights are named by the reference
 * `state_dict` keys in reference layout (Linear `[out, in]`), float32.
 *
 * Destinations and sources: any `tf.io.IOHandler`; a URL served by tfjs's registered routers
 * (`indexeddb://`, `localstorage://` in the browser, `http(s)://`); in Node a directory path or a
 * `file://` URL, handled here (`model.json` + `weights.bin`, written atomically). The Node modules are
 * imported lazily, so the browser path never loads `node:fs`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BltError } from '@bytelatent/nn';
import {
  SafetensorsError,
  type SafetensorsDtype,
  type SafetensorsFile,
  type SafetensorsTensor,
  ensureBackend,
  parseSafetensors,
  serializeSafetensors,
} from '@bytelatent/nn';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';

/** `modelTopology.format` of a BLT checkpoint. */
export const BLT_CHECKPOINT_FORMAT = 'bytelatent-blt';
/** `modelTopology.version` written by {@link saveBlt}; {@link loadBlt} reads this version only. */
export const BLT_CHECKPOINT_VERSION = 1;
/** File names of the Node directory format. */
export const BLT_MODEL_JSON = 'model.json';
export const BLT_WEIGHTS_BIN = 'weights.bin';

const GENERATED_BY = '@bytelatent/blt';

/** The `modelTopology` of a BLT checkpoint. */
export interface BltCheckpointTopology {
  readonly format: typeof BLT_CHECKPOINT_FORMAT;
  readonly version: number;
  /** The model's arguments with the reference's names (`ByteLatentTransformerArgs`). */
  readonly blt_args: BltArgs;
}

/**
 * The model as tfjs `ModelArtifacts`: topology `{ format, version, blt_args }`, one float32 weight spec
 * per reference `state_dict` key (reference layout), the weights concatenated in spec order.
 *
 * @param model - the model
 * @returns the artifacts (the weight data is a fresh copy)
 */
export async function toBltArtifacts(model: ByteLatentTransformer): Promise<tf.io.ModelArtifacts> {
  const dict = await model.referenceWeights();
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  let bytes = 0;
  for (const [name, t] of dict) {
    weightSpecs.push({ name, shape: [...t.shape], dtype: 'float32' });
    bytes += t.data.byteLength;
  }
  const weightData = new Uint8Array(bytes);
  let offset = 0;
  for (const t of dict.values()) {
    weightData.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), offset);
    offset += t.data.byteLength;
  }
  const topology: BltCheckpointTopology = {
    format: BLT_CHECKPOINT_FORMAT,
    version: BLT_CHECKPOINT_VERSION,
    blt_args: JSON.parse(JSON.stringify(model.referenceArgs)) as BltArgs,
  };
  return {
    modelTopology: topology,
    format: BLT_CHECKPOINT_FORMAT,
    generatedBy: GENERATED_BY,
    convertedBy: null,
    weightSpecs,
    weightData: weightData.buffer,
  };
}

/**
 * Builds a model from artifacts written by {@link saveBlt} (or anything in the same layout). The
 * weights go through `loadReferenceWeights`, so every missing, unexpected, mis-shaped, non-float or
 * non-finite weight is reported at once. float32 specs are read as is; tfjs `float16` quantization is
 * read as F16 and `uint8`/`uint16` affine quantization is dequantized.
 *
 * @param artifacts - tfjs model artifacts
 * @returns the model (the caller owns it)
 * @throws {BltError} `INVALID_CHECKPOINT` for a topology that is not a BLT checkpoint of a supported
 *   version, missing or inconsistent weight specs / data (truncated data), or weights that do not fit
 *   `blt_args` (listing every problem); `CONFIG_MISMATCH` for invalid `blt_args`
 */
export function fromBltArtifacts(artifacts: tf.io.ModelArtifacts): ByteLatentTransformer {
  const invalid = (m: string) => new BltError('INVALID_CHECKPOINT', m);
  if (artifacts === null || typeof artifacts !== 'object') throw invalid('the model artifacts are missing');
  const topology = artifacts.modelTopology;
  if (!isPlainObject(topology))
    throw invalid(`not a BLT checkpoint: modelTopology must be a JSON object with format "${BLT_CHECKPOINT_FORMAT}"`);
  if (topology['format'] !== BLT_CHECKPOINT_FORMAT) {
    throw invalid(
      `not a BLT checkpoint: modelTopology.format is ${JSON.stringify(topology['format'])}, expected "${BLT_CHECKPOINT_FORMAT}"`,
    );
  }
  const version = topology['version'];
  if (version !== BLT_CHECKPOINT_VERSION) {
    throw invalid(`unsupported BLT checkpoint version ${JSON.stringify(version)} (this library reads version ${BLT_CHECKPOINT_VERSION})`);
  }
  const args = topology['blt_args'];
  if (!isPlainObject(args)) throw invalid('modelTopology.blt_args is missing or not an object');
  const specs = artifacts.weightSpecs;
  if (!Array.isArray(specs)) throw invalid('the checkpoint has no weight specs (weightSpecs / weightsManifest)');
  if (artifacts.weightData == null) throw invalid('the checkpoint has no weight data');
  const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
  const tensors = decodeSpecs(specs, data);
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(serializeSafetensors(tensors));
  } catch (e) {
    if (e instanceof SafetensorsError) throw invalid(`the checkpoint's weights cannot be read: ${e.message}`);
    throw e;
  }
  return ByteLatentTransformer.fromSafetensors(file, args as BltArgs);
}

/**
 * Saves the model in the BLT checkpoint format (tfjs `ModelArtifacts`, see {@link toBltArtifacts}).
 *
 * @param model - the model
 * @param destination - a `tf.io.IOHandler` with `save`; a URL for tfjs's registered routers
 *   (`indexeddb://name`, `localstorage://name`, `http(s)://...`); in Node, a directory path or a
 *   `file://` URL: the directory is created if missing and gets `weights.bin` then `model.json`, each
 *   written atomically (a reader never sees a `model.json` whose weights are missing or partial)
 * @returns the handler's save result
 * @throws {BltError} `INVALID_ARGUMENT` when no handler takes the destination
 * @throws the handler's or file system's error when saving fails
 */
export async function saveBlt(model: ByteLatentTransformer, destination: string | tf.io.IOHandler): Promise<tf.io.SaveResult> {
  const handler = await resolveHandler(destination, 'save');
  return handler.save!(await toBltArtifacts(model));
}

/**
 * Loads a model saved by {@link saveBlt}.
 *
 * @param source - a `tf.io.IOHandler` with `load`; a URL for tfjs's registered routers; in Node, a
 *   directory path or `file://` URL holding `model.json` and its weight files
 * @returns the model (the caller owns it), on the backend already running or, when none was chosen
 *   yet, the fastest available (nn's `ensureBackend`)
 * @throws {BltError} `INVALID_ARGUMENT` when no handler takes the source; `INVALID_CHECKPOINT` for a
 *   missing or unreadable `model.json`, missing or truncated weight files, a wrong format or version,
 *   or weights that do not fit the stored arguments; `CONFIG_MISMATCH` for invalid stored arguments
 */
export async function loadBlt(source: string | tf.io.IOHandler): Promise<ByteLatentTransformer> {
  const handler = await resolveHandler(source, 'load');
  let artifacts: tf.io.ModelArtifacts;
  try {
    artifacts = await handler.load!();
  } catch (e) {
    if (e instanceof BltError) throw e;
    // tfjs's handlers throw plain Errors (e.g. IndexedDB: "Cannot find model with path ..."; HTTP: a
    // 404): the caller gets the same typed error as for a missing Node directory.
    const where = typeof source === 'string' ? `"${source}"` : 'the IOHandler';
    throw new BltError('INVALID_CHECKPOINT', `cannot load a checkpoint from ${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
  // Before the first weight: the caller's backend, or the fastest available when none was chosen.
  await ensureBackend();
  return fromBltArtifacts(artifacts);
}

// --- handlers -----------------------------------------------------------------------------------

async function resolveHandler(target: string | tf.io.IOHandler, op: 'save' | 'load'): Promise<tf.io.IOHandler> {
  if (typeof target !== 'string') {
    if (target === null || typeof target !== 'object' || typeof target[op] !== 'function') {
      throw new BltError(
        'INVALID_ARGUMENT',
        `expected a path, a URL or a tf.io.IOHandler with ${op}(), got ${target === null ? 'null' : typeof target}`,
      );
    }
    return target;
  }
  if (target === '') throw new BltError('INVALID_ARGUMENT', 'the checkpoint path is empty');
  const dir = await nodeDirectory(target);
  if (dir !== undefined) return new NodeDirectoryHandler(dir);
  // tfjs registers its http(s) router as a side effect of a module that tfjs-core's package.json
  // declares side-effect free, so bundlers (vite/rolldown) drop the registration and
  // getLoadHandlers finds nothing for a URL in the browser: take HTTP directly.
  if (tf.io.isHTTPScheme(target)) return tf.io.http(target);
  const handlers = op === 'save' ? tf.io.getSaveHandlers(target) : tf.io.getLoadHandlers(target);
  if (handlers.length === 0) {
    const where = isNode() ? 'directory paths, file:// and' : '';
    throw new BltError(
      'INVALID_ARGUMENT',
      `no tf.io ${op} handler for "${target}" (supported here: ${where} URLs of the registered tfjs routers)`,
    );
  }
  if (handlers.length > 1)
    throw new BltError('INVALID_ARGUMENT', `${handlers.length} tf.io ${op} handlers match "${target}"; pass an IOHandler`);
  return handlers[0]!;
}

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/** The directory a string names in Node (plain path or `file://` URL); undefined for other URLs. */
async function nodeDirectory(target: string): Promise<string | undefined> {
  if (!isNode()) return undefined;
  if (/^file:\/\//i.test(target)) {
    const { fileURLToPath } = await import('node:url');
    try {
      return fileURLToPath(target);
    } catch (e) {
      throw new BltError('INVALID_ARGUMENT', `invalid file URL "${target}": ${(e as Error).message}`);
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return undefined;
  return target;
}

/** `model.json` + `weights.bin` in a directory (Node only). */
class NodeDirectoryHandler implements tf.io.IOHandler {
  constructor(private readonly dir: string) {}

  async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
    if (artifacts.modelTopology instanceof ArrayBuffer) throw new BltError('INVALID_ARGUMENT', 'binary model topologies are not supported');
    const [{ writeFileAtomic }, fs, path] = await Promise.all([
      import('@bytelatent/nn/node'),
      import('node:fs/promises'),
      import('node:path'),
    ]);
    await fs.mkdir(this.dir, { recursive: true });
    const weights = artifacts.weightData == null ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
    const modelJson: tf.io.ModelJSON = {
      modelTopology: artifacts.modelTopology ?? {},
      weightsManifest: [{ paths: [BLT_WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
    };
    if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
    if (artifacts.signature != null) modelJson.signature = artifacts.signature;
    if (artifacts.userDefinedMetadata != null) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
    if (artifacts.modelInitializer != null) modelJson.modelInitializer = artifacts.modelInitializer;
    if (artifacts.initializerSignature != null) modelJson.initializerSignature = artifacts.initializerSignature;
    // Weights first, model.json last: model.json never points at missing or partial weights.
    await writeFileAtomic(path.join(this.dir, BLT_WEIGHTS_BIN), new Uint8Array(weights));
    await writeFileAtomic(path.join(this.dir, BLT_MODEL_JSON), new TextEncoder().encode(JSON.stringify(modelJson)));
    return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
  }

  async load(): Promise<tf.io.ModelArtifacts> {
    const [fs, path] = await Promise.all([import('node:fs/promises'), import('node:path')]);
    const invalid = (m: string) => new BltError('INVALID_CHECKPOINT', m);
    const jsonPath = path.join(this.dir, BLT_MODEL_JSON);
    const read = async (file: string, what: string): Promise<Buffer> => {
      try {
        return await fs.readFile(file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw invalid(`${what} "${file}" is missing (${code})`);
        throw e;
      }
    };
    let json: unknown;
    const text = (await read(jsonPath, BLT_MODEL_JSON)).toString('utf8');
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw invalid(`"${jsonPath}" is not valid JSON: ${(e as Error).message}`);
    }
    if (!isPlainObject(json) || !Array.isArray(json['weightsManifest']))
      throw invalid(`"${jsonPath}" is not a tfjs model.json (no weightsManifest array)`);
    const root = path.resolve(this.dir);
    return tf.io.getModelArtifactsForJSON(json as unknown as tf.io.ModelJSON, async (manifest) => {
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: ArrayBuffer[] = [];
      for (const [g, group] of manifest.entries()) {
        if (!isPlainObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
          throw invalid(`"${jsonPath}": weightsManifest[${g}] must have "paths" and "weights" arrays`);
        }
        for (const p of group.paths) {
          if (typeof p !== 'string') throw invalid(`"${jsonPath}": weightsManifest[${g}].paths holds a non-string`);
          const file = path.resolve(root, p);
          if (path.relative(root, file).startsWith('..') || path.isAbsolute(path.relative(root, file))) {
            throw invalid(`"${jsonPath}": weight path "${p}" leaves the checkpoint directory`);
          }
          const bytes = await read(file, 'weight file');
          buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
        }
        specs.push(...group.weights);
      }
      return [specs, buffers];
    });
  }
}

// --- weights ------------------------------------------------------------------------------------

const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2 };

/**
 * The weights as safetensors tensors (float32 → F32, int32 → I32, bool → BOOL, float16-quantized →
 * F16, affine-quantized → dequantized F32), so that `loadReferenceWeights` reports names, shapes,
 * dtypes and values. Only problems that make the data unreadable are reported here: malformed specs,
 * duplicate names, string weights, and a byte count that does not match the data.
 */
function decodeSpecs(specs: readonly tf.io.WeightsManifestEntry[], data: ArrayBuffer): Map<string, SafetensorsTensor> {
  const problems: string[] = [];
  const seen = new Set<string>();
  const layout: Array<{ spec: tf.io.WeightsManifestEntry; offset: number; count: number }> = [];
  let offset = 0;
  let sized = true;
  specs.forEach((spec, i) => {
    const where = isPlainObject(spec) && typeof spec.name === 'string' ? `weight "${spec.name}"` : `weight spec ${i}`;
    if (!isPlainObject(spec) || typeof spec.name !== 'string' || spec.name === '') {
      problems.push(`${where} has no name`);
      sized = false;
      return;
    }
    if (seen.has(spec.name)) problems.push(`${where} is listed twice`);
    seen.add(spec.name);
    if (!Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      problems.push(`${where} has an invalid shape ${JSON.stringify(spec.shape)}`);
      sized = false;
      return;
    }
    const storage = spec.quantization?.dtype ?? spec.dtype;
    const size = DTYPE_BYTES[storage];
    if (size === undefined) {
      problems.push(`${where} has unsupported dtype ${JSON.stringify(storage)}`);
      sized = false;
      return;
    }
    if (spec.quantization && spec.dtype !== 'float32') problems.push(`${where}: quantized ${spec.dtype} weights are not supported`);
    if (spec.dtype === 'complex64') problems.push(`${where} has unsupported dtype complex64`);
    const count = spec.shape.reduce((a, b) => a * b, 1);
    layout.push({ spec, offset, count });
    offset += count * size;
  });
  if (sized && offset !== data.byteLength) {
    problems.push(
      `the weight data has ${data.byteLength} bytes but the weight specs describe ${offset} (truncated or mismatched weights file)`,
    );
  }
  if (problems.length > 0) {
    throw new BltError(
      'INVALID_CHECKPOINT',
      `the checkpoint's weights cannot be read (${problems.length} problem(s)):\n  ${problems.join('\n  ')}`,
    );
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const { spec, offset: o, count } of layout) {
    const q = spec.quantization;
    let dtype: SafetensorsDtype;
    let values: SafetensorsTensor['data'];
    if (q?.dtype === 'float16') {
      dtype = 'F16';
      values = new Uint16Array(data.slice(o, o + 2 * count));
    } else if (q) {
      const raw = q.dtype === 'uint8' ? new Uint8Array(data.slice(o, o + count)) : new Uint16Array(data.slice(o, o + 2 * count));
      const scale = q.scale ?? 1;
      const min = q.min ?? 0;
      dtype = 'F32';
      values = Float32Array.from(raw, (x) => x * scale + min);
    } else if (spec.dtype === 'int32') {
      dtype = 'I32';
      values = new Int32Array(data.slice(o, o + 4 * count));
    } else if (spec.dtype === 'bool') {
      dtype = 'BOOL';
      values = new Uint8Array(data.slice(o, o + count));
    } else {
      dtype = 'F32';
      values = new Float32Array(data.slice(o, o + 4 * count));
    }
    tensors.set(spec.name, { dtype, shape: spec.shape, data: values });
  }
  return tensors;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof ArrayBuffer);
}
