/**
 * Training checkpoints: one safetensors file holding the model's weights (reference names under
 * `model.`), the optimizer's moments (`optimizer.m.*`, `optimizer.v.*`) and the training state as JSON
 * metadata. Written atomically (temp file, fsync, rename, directory fsync), so a crash or a kill -9 at
 * any moment leaves either the previous checkpoint or the new one, never a torn file.
 */
import { readFile } from 'node:fs/promises';
import { loadReferenceWeights, parseSafetensors, referenceStateDict, serializeSafetensors, type SafetensorsTensor } from '@bytelatent/nn';
import { writeFileAtomic } from '@bytelatent/nn/node';
import type { AdamW } from './optimizer.js';
import type { TrainableModel } from './models.js';
import { TrainError } from './errors.js';

export const CHECKPOINT_FORMAT = 'bytelatent-train-checkpoint';
export const CHECKPOINT_VERSION = 1;
const STATE_KEY = 'train_state';

/** The JSON stored with the tensors. */
export interface CheckpointState {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly version: number;
  /** Updates applied: training resumes at this step. */
  readonly step: number;
  readonly kind: 'entropy' | 'blt';
  /** The run's configuration (compared on resume). */
  readonly config: Readonly<Record<string, unknown>>;
}

/**
 * Saves model + optimizer + state to `path` atomically.
 *
 * @returns the file size in bytes
 */
export async function saveCheckpoint(path: string, model: TrainableModel, optimizer: AdamW, state: CheckpointState): Promise<number> {
  const tensors = new Map<string, SafetensorsTensor>(await referenceStateDict(model.registry, 'model.'));
  for (const [name, t] of optimizer.state()) {
    tensors.set(name, { dtype: 'F32', shape: t.shape, data: Float32Array.from((await t.data()) as Float32Array) });
  }
  const bytes = serializeSafetensors(tensors, { [STATE_KEY]: JSON.stringify(state) });
  await writeFileAtomic(path, bytes);
  return bytes.length;
}

/**
 * Reads the state of a checkpoint without loading its tensors into a model.
 *
 * @throws {TrainError} `CHECKPOINT_INVALID` for an unreadable, corrupt or foreign file
 */
export async function readCheckpoint(path: string): Promise<{ state: CheckpointState; file: ReturnType<typeof parseSafetensors> }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new TrainError('CHECKPOINT_INVALID', `cannot read checkpoint ${path}: ${(e as Error).message}`);
  }
  let file;
  try {
    file = parseSafetensors(bytes);
  } catch (e) {
    throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path} is corrupt: ${(e as Error).message}`);
  }
  const raw = file.metadata[STATE_KEY];
  let state: CheckpointState;
  try {
    state = JSON.parse(raw ?? '') as CheckpointState;
  } catch {
    throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path} has no valid "${STATE_KEY}" metadata`);
  }
  if (state.format !== CHECKPOINT_FORMAT || state.version !== CHECKPOINT_VERSION || !Number.isInteger(state.step) || state.step < 0) {
    throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path} is not a ${CHECKPOINT_FORMAT} v${CHECKPOINT_VERSION} file`);
  }
  return { state, file };
}

/**
 * Loads a checkpoint's weights and optimizer state into an already built model and optimizer.
 *
 * @throws {TrainError} `CHECKPOINT_MISMATCH` naming every missing or mis-shaped tensor
 */
export function restoreCheckpoint(file: ReturnType<typeof parseSafetensors>, state: CheckpointState, model: TrainableModel, optimizer: AdamW): void {
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
  } catch (e) {
    throw new TrainError('CHECKPOINT_MISMATCH', `checkpoint weights do not fit the model: ${(e as Error).message}`);
  }
  const moments = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const name of file.names()) {
    if (!name.startsWith('optimizer.')) continue;
    const t = file.get(name);
    if (!(t.data instanceof Float32Array)) throw new TrainError('CHECKPOINT_INVALID', `${name} is ${t.dtype}, expected F32`);
    moments.set(name, { shape: t.shape, data: t.data });
  }
  optimizer.loadState(state.step, moments);
}
