/**
 * Training checkpoints: one safetensors file holding the model's weights (reference names under
 * `model.`), the optimizer's moments (`optimizer.m.*`, `optimizer.v.*`) and the training state as JSON
 * metadata. Written atomically (temp file, fsync, rename, directory fsync), so a crash or a kill -9 at
 * any moment leaves either the previous checkpoint or the new one, never a torn file.
 */
import { readFile } from 'node:fs/promises';
import { loadReferenceWeights, parseSafetensors, referenceStateDict, serializeSafetensors, type SafetensorsTensor } from '@bytelatent/nn';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { NnError, type AdamW } from '@bytelatent/nn';
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
  readonly kind: 'entropy' | 'blt' | 'token';
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
  let value: unknown;
  try {
    value = JSON.parse(raw ?? '');
  } catch {
    throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path} has no valid "${STATE_KEY}" metadata`);
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(value) || value['format'] !== CHECKPOINT_FORMAT || value['version'] !== CHECKPOINT_VERSION) {
    throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path} is not a ${CHECKPOINT_FORMAT} v${CHECKPOINT_VERSION} file`);
  }
  const problems: string[] = [];
  if (!Number.isSafeInteger(value['step']) || (value['step'] as number) < 0)
    problems.push(`step must be an integer >= 0, got ${JSON.stringify(value['step'])}`);
  if (value['kind'] !== 'entropy' && value['kind'] !== 'blt' && value['kind'] !== 'token') {
    problems.push(`kind must be "entropy", "blt" or "token", got ${JSON.stringify(value['kind'])}`);
  }
  if (!isObject(value['config'])) problems.push(`config must be an object, got ${JSON.stringify(value['config'])}`);
  if (problems.length > 0) throw new TrainError('CHECKPOINT_INVALID', `checkpoint ${path}: invalid "${STATE_KEY}": ${problems.join('; ')}`);
  return { state: value as unknown as CheckpointState, file };
}

/**
 * Loads a checkpoint's weights and optimizer state into an already built model and optimizer.
 *
 * @throws {TrainError} `CHECKPOINT_MISMATCH` naming every missing, mis-shaped or non-finite weight;
 *   `CHECKPOINT_INVALID` for non-F32, NaN/Inf or negative-second-moment optimizer state (refused
 *   before anything is loaded into the model)
 */
export function restoreCheckpoint(
  file: ReturnType<typeof parseSafetensors>,
  state: CheckpointState,
  model: TrainableModel,
  optimizer: AdamW,
): void {
  // The optimizer moments are checked first, so that a refused file leaves the model as it was.
  const moments = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const name of file.names()) {
    if (!name.startsWith('optimizer.')) continue;
    const t = file.get(name);
    if (!(t.data instanceof Float32Array)) throw new TrainError('CHECKPOINT_INVALID', `${name} is ${t.dtype}, expected F32`);
    // A NaN/Inf moment (or a negative second moment, whose square root is NaN) would poison every
    // later update: refuse the file instead of resuming into a NaN loss.
    const second = name.startsWith('optimizer.v.');
    const bad = t.data.findIndex((x) => !Number.isFinite(x) || (second && x < 0));
    if (bad >= 0) {
      throw new TrainError(
        'CHECKPOINT_INVALID',
        `${name} holds ${t.data[bad]} at flat index ${bad}: optimizer moments must be finite${second ? ' and >= 0' : ''}`,
      );
    }
    moments.set(name, { shape: t.shape, data: t.data });
  }
  try {
    loadReferenceWeights(model.registry, file, { prefix: 'model.' });
  } catch (e) {
    throw new TrainError('CHECKPOINT_MISMATCH', `checkpoint weights do not fit the model: ${(e as Error).message}`);
  }
  try {
    optimizer.loadState(state.step, moments);
  } catch (e) {
    if (e instanceof NnError) throw new TrainError('CHECKPOINT_MISMATCH', e.message);
    throw e;
  }
}
