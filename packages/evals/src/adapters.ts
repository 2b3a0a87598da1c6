/**
 * Adapters from this project's models to {@link ScoringModel}: the entropy model (a byte-level
 * transformer) and the BLT with its patching rule. Each one computes per-target log-probabilities
 * inside `tf.tidy` and reads them back with `await data()`, so no tensor outlives a call.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BOS_ID, BYTE_OFFSET } from '@bytelatent/bytes';
import { type BltPatching, type ByteLatentTransformer, patchOptionsOf, patchRows, rowLogProbs } from '@bytelatent/blt';
import type { EntropyModel } from '@bytelatent/entropy-patcher';
import { EvalError } from './errors.js';
import type { ByteScoringModel, ScoringRow } from './scoring-model.js';

/** ln p(target) per real position from `[B, T, V]` logits, read back and split per row. */
async function pickRows(logits: tf.Tensor3D, rows: readonly ScoringRow[]): Promise<Float32Array[]> {
  const [batch, seqLen, vocab] = logits.shape;
  const index = new Int32Array(batch * seqLen);
  rows.forEach((r, b) => {
    for (let t = 0; t < r.targets.length; t++) {
      const y = r.targets[t]!;
      if (!Number.isInteger(y) || y < 0 || y >= vocab)
        throw new EvalError('INVALID_ARGUMENT', `targets[${b}][${t}] = ${y} is not an id in [0, ${vocab})`);
      index[b * seqLen + t] = (b * seqLen + t) * vocab + y;
    }
  });
  const picked = tf.tidy(() => tf.gather(tf.reshape(tf.logSoftmax(logits), [-1]), tf.tensor1d(index, 'int32')));
  try {
    const data = (await picked.data()) as Float32Array;
    return rows.map((r, b) => data.slice(b * seqLen, b * seqLen + r.targets.length));
  } finally {
    picked.dispose();
  }
}

/**
 * The entropy model as a byte-level language model (it is one: the reference's `LMTransformer`).
 *
 * @param model - the model (not owned: dispose it yourself)
 * @param name - for tables
 * @returns a byte scoring model
 */
export function entropyModelScorer(model: EntropyModel, name = 'entropy-model'): ByteScoringModel {
  return {
    kind: 'byte',
    name,
    maxContext: model.maxSeqLen,
    bosId: BOS_ID,
    async logProbs(rows) {
      const logits = model.logits(rows.map((r) => r.tokens));
      try {
        return await pickRows(logits, rows);
      } finally {
        logits.dispose();
      }
    },
  };
}

/** Checks a patching before any row is scored (the BLT's own check, as an {@link EvalError}). */
function checked(patching: BltPatching): void {
  try {
    patchOptionsOf(patching);
  } catch (e) {
    throw new EvalError('INVALID_ARGUMENT', (e as Error).message);
  }
}

/** A BLT scoring model that also counts the patches it made. */
export interface BltScoringModel extends ByteScoringModel {
  /** Positions scored and patches made so far (mean patch size = positions / patches). */
  patchCounts(): { positions: number; patches: number };
}

/**
 * A BLT as a byte-level language model: each row is patched by `patching` exactly as
 * `apps/train`'s row patcher does during training (the row's first position a patch of its own,
 * no next-token slot — the reference's training and evaluation convention), maximum patch length
 * included, then scored with `tokenLosses`.
 *
 * @param model - the BLT (not owned)
 * @param patching - the patching rule
 * @param name - for tables
 * @returns a byte scoring model that counts its patches
 * @throws {EvalError} `INVALID_ARGUMENT` when an entropy mode has no patcher or no threshold,
 *   combined patching no `thresholdAdd`, or static patching no size
 */
export function bltScorer(model: ByteLatentTransformer, patching: BltPatching, name = 'blt'): BltScoringModel {
  checked(patching);
  const { mode } = patching;
  let positions = 0;
  let patches = 0;
  // Rows must fit both the local models (bytes) and the global model (patches); a patch holds >= 1 byte.
  const staticSize = Math.min(patching.patchSize ?? 1, patching.maxPatchLength ?? Number.POSITIVE_INFINITY);
  const patchBound = mode === 'static' ? (model.args.global.maxSeqLen - 1) * staticSize + 1 : model.args.global.maxSeqLen;
  const maxContext = Math.min(model.args.encoder.maxSeqLen, patchBound);
  return {
    kind: 'byte',
    name,
    maxContext,
    bosId: BOS_ID,
    patchCounts: () => ({ positions, patches }),
    async logProbs(rows) {
      const scored = await rowLogProbs(model, patching, rows);
      rows.forEach((r, b) => {
        positions += r.tokens.length;
        patches += scored.patchLengths[b]!.length;
      });
      return scored.logProbs;
    },
  };
}

/**
 * Patches a text the way {@link bltScorer} does when it scores it (rows of `contextLength`
 * positions, `BOS` first, each row patched on its own) without running the BLT: the mean patch
 * size that enters the FLOP formula.
 *
 * @param patching - the patching rule
 * @param bytes - the text
 * @param contextLength - positions per row (the BLT's context)
 * @returns positions and patches (mean patch size = positions / patches)
 * @throws {EvalError} `EMPTY_INPUT` for no byte; `INVALID_ARGUMENT` for a bad rule or context
 */
export async function measurePatching(
  patching: BltPatching,
  bytes: Uint8Array,
  contextLength: number,
): Promise<{ positions: number; patches: number; meanPatchSize: number }> {
  if (bytes.length === 0) throw new EvalError('EMPTY_INPUT', 'no byte to patch');
  if (!Number.isInteger(contextLength) || contextLength < 2)
    throw new EvalError('INVALID_ARGUMENT', `contextLength must be an integer >= 2, got ${contextLength}`);
  checked(patching);
  const ids = new Int32Array(bytes.length + 1);
  ids[0] = BOS_ID;
  for (let i = 0; i < bytes.length; i++) ids[i + 1] = bytes[i]! + BYTE_OFFSET;
  let positions = 0;
  let patches = 0;
  const rows: Int32Array[] = [];
  // The same rows as evaluateBitsPerByte: row k's tokens are ids[k·L, k·L + L).
  for (let s = 0; s + 1 < ids.length; s += contextLength) rows.push(ids.subarray(s, Math.min(s + contextLength, ids.length - 1)));
  for (let i = 0; i < rows.length; i += 16) {
    const group = rows.slice(i, i + 16);
    const lengths = await patchRows(patching, group);
    group.forEach((t, k) => {
      positions += t.length;
      patches += lengths[k]!.length;
    });
  }
  return { positions, patches, meanPatchSize: positions / patches };
}
