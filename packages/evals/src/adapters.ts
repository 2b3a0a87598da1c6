/**
 * Adapters from this project's models to {@link ScoringModel}: the entropy model (a byte-level
 * transformer) and the BLT with its patching rule. Each one computes per-target log-probabilities
 * inside `tf.tidy` and reads them back with `await data()`, so no tensor outlives a call.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BOS_ID, BYTE_OFFSET } from '@bytelatent/bytes';
import type { ByteLatentTransformer } from '@bytelatent/blt';
import {
  type EntropyModel,
  type EntropyPatcher,
  type PatcherDefaults,
  type PatchingMode,
  findPatchBoundaries,
} from '@bytelatent/entropy-patcher';
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

/** How a {@link bltScorer} patches each row (the rule the BLT was trained with). */
export interface BltPatching {
  /**
   * Any rule of `findPatchBoundaries`: `entropy`, `monotonic` and `combined` read the entropy model;
   * `space`, `static` and `byte` do not.
   */
  readonly mode: PatchingMode;
  /** Entropy modes: the entropy model (its `defaults.threshold` unless `threshold` is given). */
  readonly patcher?: EntropyPatcher;
  readonly threshold?: number;
  /** `combined` mode: the relative threshold (the reference's `threshold_add`). */
  readonly thresholdAdd?: number;
  /** Static mode: bytes per patch. */
  readonly patchSize?: number;
  readonly maxPatchLength?: number;
}

/** The modes that read the entropy model. */
const ENTROPY_MODES: readonly PatchingMode[] = ['entropy', 'monotonic', 'combined'];
const MODES: readonly PatchingMode[] = [...ENTROPY_MODES, 'space', 'static', 'byte'];

/** Whether a patching rule reads an entropy model. */
export function usesEntropyModel(patching: Pick<BltPatching, 'mode'>): boolean {
  return ENTROPY_MODES.includes(patching.mode);
}

/**
 * The scoring rule of a BLT loaded with its patching settings (`loadPretrained`'s `patching`, an
 * entropy patcher's `defaults`): mode (entropy when unset), thresholds, patch size and maximum
 * patch length as the files give them. The patcher is kept only when the mode reads it.
 *
 * @param settings - the patching settings
 * @param patcher - the entropy patcher
 * @returns the rule for {@link bltScorer} and {@link measurePatching}
 */
export function bltPatchingFromSettings(settings: PatcherDefaults, patcher: EntropyPatcher | undefined): BltPatching {
  const mode = settings.mode ?? 'entropy';
  return {
    mode,
    ...(ENTROPY_MODES.includes(mode) && patcher ? { patcher } : {}),
    ...(settings.threshold !== undefined ? { threshold: settings.threshold } : {}),
    ...(settings.thresholdAdd !== undefined ? { thresholdAdd: settings.thresholdAdd } : {}),
    ...(settings.patchSize !== undefined ? { patchSize: settings.patchSize } : {}),
    ...(settings.maxPatchLength !== undefined ? { maxPatchLength: settings.maxPatchLength } : {}),
  };
}

/** Checks a rule; returns the threshold the entropy modes use. */
function checkPatching(patching: BltPatching): number | undefined {
  const { mode, patcher } = patching;
  if (!MODES.includes(mode))
    throw new EvalError('INVALID_ARGUMENT', `patching.mode must be one of ${MODES.join(', ')}, got ${String(mode)}`);
  const threshold = patching.threshold ?? patcher?.defaults.threshold;
  if (ENTROPY_MODES.includes(mode) && (!patcher || threshold === undefined)) {
    throw new EvalError(
      'INVALID_ARGUMENT',
      `${mode} patching needs an entropy patcher with a threshold (patching.patcher, patching.threshold)`,
    );
  }
  if (mode === 'combined' && patching.thresholdAdd === undefined)
    throw new EvalError('INVALID_ARGUMENT', 'combined patching needs patching.thresholdAdd');
  if (mode === 'static' && !(Number.isInteger(patching.patchSize) && patching.patchSize! >= 1)) {
    throw new EvalError('INVALID_ARGUMENT', `static patching needs patchSize >= 1, got ${String(patching.patchSize)}`);
  }
  return threshold;
}

/** The row's patch lengths under a checked rule, without the next-token slot (the training convention). */
function rowPatchLengths(
  patching: BltPatching,
  threshold: number | undefined,
  tokens: Int32Array,
  entropies: Float32Array | undefined,
): Int32Array {
  return findPatchBoundaries(tokens, entropies, {
    mode: patching.mode,
    threshold,
    ...(patching.mode === 'combined' ? { thresholdAdd: patching.thresholdAdd } : {}),
    patchSize: patching.patchSize,
    maxPatchLength: patching.maxPatchLength,
    includeNextToken: false,
  }).patchLengths;
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
  const threshold = checkPatching(patching);
  const { mode, patcher } = patching;
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
      const tokens = rows.map((r) => r.tokens);
      const entropies = usesEntropyModel(patching) ? await patcher!.model.entropies(tokens) : undefined;
      const lengths = tokens.map((t, i) => rowPatchLengths(patching, threshold, t, entropies?.[i]));
      const losses = model.tokenLosses(
        tokens,
        lengths,
        rows.map((r) => r.targets),
      );
      let data: Float32Array;
      try {
        data = (await losses.data()) as Float32Array;
      } finally {
        losses.dispose();
      }
      const seqLen = losses.shape[1];
      rows.forEach((r, b) => {
        positions += r.tokens.length;
        patches += lengths[b]!.length;
      });
      return rows.map((r, b) => data.slice(b * seqLen, b * seqLen + r.targets.length).map((x) => -x));
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
  const threshold = checkPatching(patching);
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
    const entropies = usesEntropyModel(patching) ? await patching.patcher!.model.entropies(group) : undefined;
    group.forEach((t, k) => {
      positions += t.length;
      patches += rowPatchLengths(patching, threshold, t, entropies?.[k]).length;
    });
  }
  return { positions, patches, meanPatchSize: positions / patches };
}
