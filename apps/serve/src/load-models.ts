/** Loading the models the server serves: the shipped ones by default. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import type { ModelService } from './model-service.js';
import { MODELS_DIR } from './paths.js';
import { createModelService } from './service-from-bytes.js';

/** The BLT shipped with this app. */
export const DEFAULT_BLT_MODEL = join(MODELS_DIR, 'blt-demo.safetensors');

/** The loaded models, and their file bytes, which the server also hands to the page (`/models/`). */
export interface LoadedModels {
  readonly service: ModelService;
  readonly files: { readonly patcher: Uint8Array; readonly blt: Uint8Array };
}

async function readModel(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new Error(`cannot read the ${what} ${path}: ${(e as Error).message}`);
  }
}

/**
 * Loads the entropy patcher and the BLT.
 *
 * @param options - model files (default: the shipped ones) and the backend name (for /health)
 * @throws {Error} naming the file that cannot be read or does not fit
 */
export async function loadServeModels(options: { patcher?: string | undefined; blt?: string | undefined; backend: string }): Promise<LoadedModels> {
  const patcher = options.patcher ? await readModel(options.patcher, 'entropy model') : await EntropyPatcher.pretrainedBytes();
  const blt = await readModel(options.blt ?? DEFAULT_BLT_MODEL, 'BLT model');
  const service = await createModelService({
    patcher,
    blt,
    patcherName: options.patcher ?? 'pretrained (@bytelatent/entropy-patcher)',
    bltName: options.blt ?? 'blt-demo (shipped)',
    backend: options.backend,
  });
  return { service, files: { patcher, blt } };
}
