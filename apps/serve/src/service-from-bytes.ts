/**
 * Builds the {@link ModelService} from model file bytes, or from a folder of a published layout. No
 * file system of its own: the server passes what it read from disk (or a folder path), the web page
 * what it fetched from the server's `/models/` route (or the folder's URL there) — the same code on
 * both sides.
 */
import {
  ByteLatentTransformer,
  BLT_ARGS_METADATA_KEY,
  bltPatchingFromSettings,
  bltPatchingOfModel,
  usesEntropyModel,
  loadPretrained,
  patchingOfMetadata,
  type BltArgs,
  type StoredPatching,
} from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { parseSafetensors, type ModelFolder } from '@bytelatent/nn';
import { createGenerator } from './generator.js';
import { ModelService } from './model-service.js';

export interface ModelSources {
  /** Entropy model safetensors (with its arguments in the metadata, as the trainer exports it). */
  readonly patcher: Uint8Array;
  /** BLT safetensors with its `blt_args` metadata. */
  readonly blt: Uint8Array;
  /** Names of the two files for messages and `/health`. */
  readonly patcherName: string;
  readonly bltName: string;
  /** The tfjs backend the models run on (for `/health` and the page). */
  readonly backend: string;
}

/**
 * @throws {Error} naming the file that is not a usable model
 */
export async function createModelService(sources: ModelSources): Promise<ModelService> {
  const patcher = await EntropyPatcher.fromSafetensors(sources.patcher);
  const { blt, stored } = bltOfFile(sources.blt, sources.bltName);
  // One patching for scoring and generation, read once from the files.
  const patching = bltPatchingOfModel(stored, patcher);
  return new ModelService(
    patcher,
    blt,
    createGenerator(blt, patching),
    { backend: sources.backend, patcherModel: sources.patcherName, bltModel: sources.bltName },
    patching,
  );
}

/**
 * A BLT safetensors file: the model built from its `blt_args` metadata, and the patching settings
 * its training run recorded.
 *
 * @throws {Error} naming the file that is not a usable BLT
 */
function bltOfFile(bytes: Uint8Array, name: string): { blt: ByteLatentTransformer; stored: StoredPatching | undefined } {
  let file;
  try {
    file = parseSafetensors(bytes);
  } catch (e) {
    throw new Error(`${name} is not a safetensors file: ${(e as Error).message}`);
  }
  const raw = file.metadata[BLT_ARGS_METADATA_KEY];
  if (raw === undefined) throw new Error(`${name} has no "${BLT_ARGS_METADATA_KEY}" metadata: cannot tell the model's configuration`);
  let args: BltArgs;
  try {
    args = JSON.parse(raw) as BltArgs;
  } catch (e) {
    throw new Error(`${name}: the "${BLT_ARGS_METADATA_KEY}" metadata is not JSON: ${(e as Error).message}`);
  }
  // The BLT's own patching settings (what its training run recorded) over the patcher's defaults.
  let stored: StoredPatching | undefined;
  try {
    stored = patchingOfMetadata(file.metadata);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
  return { blt: ByteLatentTransformer.fromSafetensors(file, args), stored };
}

/** Which model a safetensors file holds, from its metadata: a BLT (`blt_args`) or an entropy model. */
export function modelKindOfFile(bytes: Uint8Array): 'blt' | 'entropy' {
  let metadata: Readonly<Record<string, string>>;
  try {
    metadata = parseSafetensors(bytes).metadata;
  } catch (e) {
    throw new Error(`not a safetensors model file: ${(e as Error).message}`);
  }
  return BLT_ARGS_METADATA_KEY in metadata ? 'blt' : 'entropy';
}

/**
 * The service with one model replaced by a model file (a model the page trained, or one
 * `bytelatent-train` exported): a BLT file replaces the BLT, which then patches as its file records,
 * with the service's entropy model; an entropy model file replaces the entropy model, and a BLT that
 * patches by entropy then uses it at the new model's own threshold. The replaced model is freed.
 *
 * @param name - the file's name for messages and `/health`
 * @throws {Error} naming the file that is not a usable model
 */
export async function serviceWithModelFile(base: ModelService, bytes: Uint8Array, name: string): Promise<ModelService> {
  if (modelKindOfFile(bytes) === 'blt') {
    const { blt, stored } = bltOfFile(bytes, name);
    const patching = bltPatchingOfModel(stored, base.patcher);
    base.blt?.dispose();
    return new ModelService(
      base.patcher,
      blt,
      createGenerator(blt, patching),
      { ...base.info, bltModel: name, bltLayout: 'safetensors' },
      patching,
    );
  }
  const patcher = await EntropyPatcher.fromSafetensors(bytes);
  const patching = usesEntropyModel(base.patching)
    ? bltPatchingFromSettings({ ...patcher.defaults, maxPatchLength: base.patching.maxPatchLength }, patcher)
    : base.patching;
  base.patcher.dispose();
  const generator = base.blt ? createGenerator(base.blt, patching) : undefined;
  return new ModelService(patcher, base.blt, generator, { ...base.info, patcherModel: name }, patching);
}

/**
 * What the server's `/models/index.json` says: how the page gets the models — two safetensors files,
 * or a folder of a published layout (paths relative to `/models/`; a patcher ending in `/` is a
 * folder, else a safetensors file; null: where the reference keeps it).
 */
export type ModelIndex =
  | { readonly format: 'safetensors'; readonly blt: string; readonly patcher: string }
  | { readonly format: 'pretrained'; readonly layout: string; readonly blt: string; readonly patcher: string | null };

/** A BLT folder of a published layout, and its entropy model. */
export interface PretrainedSources {
  /**
   * The BLT's folder: a path (Node), an `http(s):` URL (the page: the server's `/models/blt/`), or an
   * opened folder (the page: files the user picked, `modelFolderFromFiles`).
   */
  readonly blt: string | ModelFolder;
  /**
   * The entropy model: a folder (path or URL, or one opened: the page's, read through its IndexedDB
   * cache) of any layout, or the bytes of a safetensors entropy
   * model; default: where the reference keeps it (inside the BLT's folder, beside it, or in the same
   * file). Either way the BLT's own patching settings apply, as in the reference.
   */
  readonly patcher?: string | ModelFolder | Uint8Array;
  /** Names for messages and `/health` (default: the locations). */
  readonly bltName?: string;
  readonly patcherName?: string;
  /** The tfjs backend the models run on (for `/health` and the page). */
  readonly backend: string;
}

/**
 * Builds the {@link ModelService} from a folder of any published layout with `loadPretrained`:
 * Meta's released BLTs (consolidated, hub, transformers) or ours (`savePretrained`). The patcher
 * patches, scores and generates with the patching settings the files give.
 *
 * @returns the service and the layout the BLT was read in
 * @throws the loader's typed error (`BltError` naming the file and field; `PatcherError` for a bad
 *   entropy model file)
 */
export async function createModelServiceFromPretrained(sources: PretrainedSources): Promise<{ service: ModelService; layout: string }> {
  const source = sources.patcher;
  const patcherBytes = source instanceof Uint8Array ? source : undefined;
  const loaded = await loadPretrained(
    sources.blt,
    source === undefined ? {} : source instanceof Uint8Array ? { patcher: false } : { patcher: source },
  );
  let patcher: EntropyPatcher;
  try {
    // A single-file entropy model gets the BLT's patching settings over its own, as a folder does.
    patcher = patcherBytes ? await EntropyPatcher.fromSafetensors(patcherBytes, loaded.patching) : loaded.patcher!;
  } catch (e) {
    loaded.dispose();
    throw e;
  }
  // Read once from the files: scoring and generation patch the same way (bytelatent-eval does the same).
  const patching = bltPatchingOfModel(loaded.patching, patcher);
  const service = new ModelService(
    patcher,
    loaded.model,
    createGenerator(loaded.model, patching),
    {
      // The loader may have moved a model too large for the wasm heap to cpu.
      backend: loaded.backend.name,
      patcherModel:
        sources.patcherName ??
        (typeof source === 'string'
          ? source
          : source !== undefined && !(source instanceof Uint8Array)
            ? source.location
            : `${loaded.location} (${patcher.layout ?? 'own'} entropy model)`),
      bltModel: sources.bltName ?? loaded.location,
      bltLayout: loaded.layout,
    },
    patching,
  );
  return { service, layout: loaded.layout };
}
