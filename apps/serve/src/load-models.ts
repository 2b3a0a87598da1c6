/** Loading the models the server serves: the shipped ones by default. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteLatentTransformer, BLT_ARGS_METADATA_KEY, type BltArgs } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { parseSafetensors } from '@bytelatent/nn';
import { ModelService } from './model-service.js';
import { MODELS_DIR } from './paths.js';
import { createGenerator } from './generator.js';

/** The BLT shipped with this app. */
export const DEFAULT_BLT_MODEL = join(MODELS_DIR, 'blt-demo.safetensors');

/**
 * Loads the entropy patcher and the BLT.
 *
 * @param options - model files (default: the shipped ones) and the backend name (for /health)
 * @throws {Error} naming the file that cannot be read or does not fit
 */
export async function loadServeModels(options: { patcher?: string | undefined; blt?: string | undefined; backend: string }): Promise<ModelService> {
  const patcher = options.patcher ? await EntropyPatcher.fromSafetensors(options.patcher) : await EntropyPatcher.pretrained();
  const bltPath = options.blt ?? DEFAULT_BLT_MODEL;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(bltPath);
  } catch (e) {
    throw new Error(`cannot read the BLT model ${bltPath}: ${(e as Error).message}`);
  }
  const file = parseSafetensors(bytes);
  const raw = file.metadata[BLT_ARGS_METADATA_KEY];
  if (raw === undefined) throw new Error(`${bltPath} has no "${BLT_ARGS_METADATA_KEY}" metadata: cannot tell the model's configuration`);
  const blt = ByteLatentTransformer.fromSafetensors(file, JSON.parse(raw) as BltArgs);
  return new ModelService(patcher, blt, createGenerator(blt, patcher), {
    backend: options.backend,
    patcherModel: options.patcher ?? 'pretrained (@bytelatent/entropy-patcher)',
    bltModel: options.blt ?? 'blt-demo (shipped)',
  });
}
