/** Loading the models the server serves: the shipped ones by default, or a folder of a published layout. */
import { stat, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pretrainedBltUrl } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import type { ModelService } from './model-service.js';
import type { ServedModelFolders } from './server.js';
import { createModelService, createModelServiceFromPretrained } from './service-from-bytes.js';

/**
 * The BLT served by default: the demo shipped in `@bytelatent/blt` (a hub-layout folder with its
 * entropy model), wherever that package is installed.
 */
export const DEFAULT_BLT_FOLDER = fileURLToPath(pretrainedBltUrl('demo')).replace(/[\\/]+$/, '');

/** How the default model is named (`/health`, the start line; the OpenAI model id is `blt-demo`). */
const DEFAULT_BLT_NAME = 'blt-demo (@bytelatent/blt)';

/**
 * The loaded models, and what the server hands to the page (`/models/`) so that it can run the same
 * models: the file bytes of single-file models, or the folders of a published layout. Neither for a
 * model read from a URL (the page then runs it through the API).
 */
export interface LoadedModels {
  readonly service: ModelService;
  readonly files?: { readonly patcher: Uint8Array; readonly blt: Uint8Array };
  readonly folders?: ServedModelFolders;
}

/** Options of {@link loadServeModels}. */
export interface ServeModelOptions {
  /**
   * The BLT as a folder of any published layout (consolidated, hub, transformers), a path or an
   * `http(s):` URL, read with `loadPretrained`. Excludes `blt`.
   */
  readonly model?: string | undefined;
  /** The BLT as one safetensors file with `blt_args` metadata. Without `model` and `blt`: the shipped demo BLT. */
  readonly blt?: string | undefined;
  /**
   * The entropy model: a safetensors file, or (with `model`) a folder or URL of any layout. Default:
   * the shipped one for `blt`; for `model`, where the reference keeps it.
   */
  readonly patcher?: string | undefined;
  /** The backend name (for /health). */
  readonly backend: string;
}

async function readModel(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new Error(`cannot read the ${what} ${path}: ${(e as Error).message}`);
  }
}

const isUrl = (location: string) => /^https?:\/\//i.test(location);

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * Loads the entropy patcher and the BLT.
 *
 * @param options - the models (default: the shipped ones) and the backend name (for /health)
 * @throws {Error} naming the file that cannot be read or does not fit (the loaders' typed errors
 *   name the file and field)
 */
export async function loadServeModels(options: ServeModelOptions): Promise<LoadedModels> {
  if (options.model !== undefined) return loadFolderModels(options.model, options);
  if (options.blt === undefined)
    return loadFolderModels(DEFAULT_BLT_FOLDER, options, DEFAULT_BLT_NAME, 'blt-demo/entropy_model (@bytelatent/blt)');
  if (options.patcher !== undefined && (isUrl(options.patcher) || (await isDirectory(options.patcher)))) {
    throw new Error(
      `--patcher ${options.patcher} is a folder: a folder entropy model goes with a folder BLT (--model DIR); with --blt FILE give a safetensors file`,
    );
  }
  // A single-file BLT without --patcher: the shipped `small` entropy model, which files written by
  // `bytelatent-train export-blt` were trained with.
  const patcher = options.patcher ? await readModel(options.patcher, 'entropy model') : await EntropyPatcher.pretrainedBytes('small');
  const blt = await readModel(options.blt, 'BLT model');
  const service = await createModelService({
    patcher,
    blt,
    patcherName: options.patcher ?? 'pretrained:small (@bytelatent/entropy-patcher)',
    bltName: options.blt,
    backend: options.backend,
  });
  return { service, files: { patcher, blt } };
}

async function loadFolderModels(model: string, options: ServeModelOptions, name = model, ownPatcherName?: string): Promise<LoadedModels> {
  if (options.blt !== undefined)
    throw new Error('give --model DIR (a folder of a published layout) or --blt FILE (one safetensors file), not both');
  const bltIsUrl = isUrl(model);
  const bltDir = bltIsUrl ? model : resolve(model);
  if (!bltIsUrl && !(await isDirectory(bltDir)))
    throw new Error(
      `--model ${model} is not a folder (a BLT of the consolidated, hub or transformers layout; a single safetensors file goes with --blt FILE)`,
    );
  let patcher: string | Uint8Array | undefined;
  let patcherFolder: string | undefined;
  if (options.patcher !== undefined) {
    if (isUrl(options.patcher)) patcher = options.patcher;
    else if (await isDirectory(options.patcher)) patcher = patcherFolder = resolve(options.patcher);
    else patcher = await readModel(options.patcher, 'entropy model');
  }
  const { service, layout } = await createModelServiceFromPretrained({
    blt: bltDir,
    ...(patcher !== undefined ? { patcher } : {}),
    bltName: name,
    ...(options.patcher !== undefined
      ? { patcherName: options.patcher }
      : ownPatcherName !== undefined
        ? { patcherName: ownPatcherName }
        : {}),
    backend: options.backend,
  });
  // The page reads local folders through /models/; a model behind a URL stays on the server.
  if (bltIsUrl || (typeof patcher === 'string' && patcherFolder === undefined)) return { service };
  const sibling = join(dirname(bltDir), 'entropy_model');
  return {
    service,
    folders: {
      blt: bltDir,
      layout,
      ...(patcherFolder !== undefined
        ? { patcher: { folder: patcherFolder } }
        : patcher instanceof Uint8Array
          ? { patcher: { file: patcher } }
          : {}),
      ...(layout === 'consolidated' && patcher === undefined && (await isDirectory(sibling)) ? { sibling } : {}),
    },
  };
}
