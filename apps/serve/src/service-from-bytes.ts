/**
 * Builds the {@link ModelService} from model file bytes. No file system: the server passes what it
 * read from disk, the web page what it fetched from the server's `/models/` route.
 */
import { ByteLatentTransformer, BLT_ARGS_METADATA_KEY, type BltArgs } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { parseSafetensors } from '@bytelatent/nn';
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
  let file;
  try {
    file = parseSafetensors(sources.blt);
  } catch (e) {
    throw new Error(`${sources.bltName} is not a safetensors file: ${(e as Error).message}`);
  }
  const raw = file.metadata[BLT_ARGS_METADATA_KEY];
  if (raw === undefined) throw new Error(`${sources.bltName} has no "${BLT_ARGS_METADATA_KEY}" metadata: cannot tell the model's configuration`);
  let args: BltArgs;
  try {
    args = JSON.parse(raw) as BltArgs;
  } catch (e) {
    throw new Error(`${sources.bltName}: the "${BLT_ARGS_METADATA_KEY}" metadata is not JSON: ${(e as Error).message}`);
  }
  const blt = ByteLatentTransformer.fromSafetensors(file, args);
  return new ModelService(patcher, blt, createGenerator(blt, patcher), {
    backend: sources.backend,
    patcherModel: sources.patcherName,
    bltModel: sources.bltName,
  });
}
