import * as tf from '@tensorflow/tfjs-core';
import { BltError } from '@bytelatent/nn';
import type { ByteLatentTransformer } from './blt-model.js';
import { type BltPatching, patchRows } from './patching.js';

/**
 * Bits per byte (architecture §8.4): `BPB = L / (ln 2 · n_bytes)`, L the summed next-byte cross-entropy in nats.
 *
 * For a token model, `totalNats` sums over its tokens and `bytes` counts the bytes they spell, which
 * makes the figure comparable across tokenizers.
 *
 * @param totalNats - summed cross-entropy in nats (finite, >= 0)
 * @param bytes - number of scored bytes (a positive integer)
 * @returns bits per byte
 * @throws {BltError} `INVALID_ARGUMENT` for a negative or non-finite loss or a non-positive byte count
 */
export function bitsPerByte(totalNats: number, bytes: number): number {
  if (typeof totalNats !== 'number' || !Number.isFinite(totalNats) || totalNats < 0) {
    throw new BltError('INVALID_ARGUMENT', `totalNats must be a finite number >= 0, got ${String(totalNats)}`);
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new BltError('INVALID_ARGUMENT', `bytes must be a positive integer, got ${String(bytes)}`);
  return totalNats / (Math.LN2 * bytes);
}

/** What {@link scoreBytes} measures. */
export interface ByteScore {
  /** Summed next-byte cross-entropy over the scored positions, in nats (accumulated in float64). */
  readonly nats: number;
  /** Number of scored target positions. */
  readonly bytes: number;
  /** `nats / (ln 2 · bytes)`. */
  readonly bitsPerByte: number;
}

/**
 * Scores a batch as the reference's eval does (`eval_ppl_on_path`, architecture §8.4): the per-token
 * cross-entropy ({@link ByteLatentTransformer.tokenLosses}) summed over the counted positions, and
 * `bytes` = the number of counted positions — every real target, BOS/EOS ids included, unless `mask`
 * excludes it. With no mask and one row of N tokens, `bitsPerByte = loss / ln 2`.
 *
 * @param model - the model
 * @param tokens - token ids per row
 * @param patchLengths - patch lengths per row
 * @param targets - per row, the next token of each position
 * @param mask - optional per row, 1/true where a target counts (default: every real position)
 * @returns nats, bytes and bits per byte
 * @throws {BltError} `INVALID_ARGUMENT` for a bad batch, targets or mask, or when nothing is counted
 */
export async function scoreBytes(
  model: ByteLatentTransformer,
  tokens: readonly ArrayLike<number>[],
  patchLengths: readonly ArrayLike<number>[],
  targets: readonly ArrayLike<number>[],
  mask?: readonly ArrayLike<number | boolean>[],
): Promise<ByteScore> {
  if (mask !== undefined) {
    if (!Array.isArray(mask) || mask.length !== tokens.length) {
      throw new BltError('INVALID_ARGUMENT', `mask must have one row per token row (${tokens.length})`);
    }
    tokens.forEach((row, b) => {
      const m = mask[b];
      if (!m || m.length !== row.length) throw new BltError('INVALID_ARGUMENT', `mask[${b}] must have ${row.length} entries`);
    });
  }
  const losses = model.tokenLosses(tokens, patchLengths, targets);
  let values: Float32Array;
  try {
    values = (await losses.data()) as Float32Array;
  } finally {
    tf.dispose(losses);
  }
  const seqLen = losses.shape[1];
  let nats = 0;
  let bytes = 0;
  tokens.forEach((row, b) => {
    const m = mask?.[b];
    for (let t = 0; t < row.length; t++) {
      if (m && !m[t]) continue;
      nats += values[b * seqLen + t]!;
      bytes++;
    }
  });
  if (bytes === 0) throw new BltError('INVALID_ARGUMENT', 'the mask leaves no byte to score');
  // A float32 cross-entropy can round a hair below 0; the sum of true ones cannot be negative.
  return { nats, bytes, bitsPerByte: bitsPerByte(Math.max(0, nats), bytes) };
}

/**
 * Natural-log probability of each row's targets under the BLT, each row patched by `patching` as
 * training patches it ({@link patchRows}): the one BLT scorer that `@bytelatent/evals` (`bltScorer`,
 * `bytelatent-eval bpb`) and the server (`/v1/score`) share.
 *
 * @param model - the BLT
 * @param patching - its patching (`bltPatchingFromSettings` of the loaded model)
 * @param rows - per row, its token ids (BOS first) and the next id of each position
 * @returns per row, ln p(target) for every target, and the patch lengths used
 * @throws {BltError} `INVALID_ARGUMENT` for a patching that cannot patch rows or a bad batch
 */
export async function rowLogProbs(
  model: ByteLatentTransformer,
  patching: BltPatching,
  rows: ReadonlyArray<{ readonly tokens: Int32Array; readonly targets: Int32Array }>,
): Promise<{ logProbs: Float32Array[]; patchLengths: Int32Array[] }> {
  const patchLengths = await patchRows(
    patching,
    rows.map((r) => r.tokens),
  );
  const losses = model.tokenLosses(
    rows.map((r) => r.tokens),
    patchLengths,
    rows.map((r) => r.targets),
  );
  let data: Float32Array;
  try {
    data = (await losses.data()) as Float32Array;
  } finally {
    losses.dispose();
  }
  const seqLen = losses.shape[1];
  return { logProbs: rows.map((r, b) => data.slice(b * seqLen, b * seqLen + r.targets.length).map((x) => -x)), patchLengths };
}
