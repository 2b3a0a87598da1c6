import * as tf from '@tensorflow/tfjs-core';
import { NnError, checkInt } from '../errors.js';

/**
 * Attention masks. Every mask of the model is built here, once: the entropy model, local encoder
 * and local decoder use windowed document-split causal self-attention, the latent transformer
 * block-causal self-attention over patches, and both cross-attentions a group-matching mask.
 * A mask is a `Uint8Array` of `[batch, queries, keys]`, 1 = may attend.
 */

/** Document index of each position: documents split *after* each EOS (the EOS ends its document). */
export function documentIds(tokens: ArrayLike<number>, eosId = 2): Int32Array {
  const ids = new Int32Array(tokens.length);
  let doc = 0;
  for (let t = 0; t < tokens.length; t++) {
    ids[t] = doc;
    if (tokens[t] === eosId) doc++;
  }
  return ids;
}

/** Options of {@link causalMask}. */
export interface CausalMaskOptions {
  /** Query i sees key j only if `i - window < j <= i` (xformers local attention). Default: unlimited. */
  readonly window?: number;
  /** Per row, the document of each position (see {@link documentIds}); keys of other documents are hidden. */
  readonly documents?: readonly Int32Array[];
}

/**
 * Causal self-attention mask, optionally windowed and split into documents.
 *
 * @param batch - number of rows
 * @param seqLen - positions per row
 * @returns `[batch, seqLen, seqLen]`
 */
export function causalMask(batch: number, seqLen: number, options: CausalMaskOptions = {}): Uint8Array {
  checkInt('seqLen', seqLen, 0);
  return causalMaskBlock(batch, { start: 0, length: seqLen }, { start: 0, length: seqLen }, options);
}

/**
 * A rectangular block of the causal mask: queries at absolute positions `queries.start ..` against
 * keys at `keys.start ..`. Blocked local attention builds only the blocks it needs, so a windowed
 * mask never exists as `N × N`.
 *
 * @returns `[batch, queries.length, keys.length]`
 */
export function causalMaskBlock(
  batch: number,
  queries: { start: number; length: number },
  keys: { start: number; length: number },
  options: CausalMaskOptions = {},
): Uint8Array {
  checkInt('batch', batch, 1);
  const window = options.window ?? Number.POSITIVE_INFINITY;
  if (!(window >= 1)) throw new NnError('INVALID_ARGUMENT', `window must be >= 1, got ${window}`);
  if (options.documents && options.documents.length !== batch) {
    throw new NnError('INVALID_ARGUMENT', `documents must have one entry per row (${batch}), got ${options.documents.length}`);
  }
  const q = queries.length;
  const k = keys.length;
  const mask = new Uint8Array(batch * q * k);
  for (let b = 0; b < batch; b++) {
    const docs = options.documents?.[b];
    const needed = Math.max(queries.start + q, keys.start + k);
    if (docs && docs.length < needed) {
      throw new NnError('INVALID_ARGUMENT', `documents[${b}] has ${docs.length} positions, expected at least ${needed}`);
    }
    for (let i = 0; i < q; i++) {
      const qi = queries.start + i;
      const row = (b * q + i) * k;
      // Key kj is visible iff qi - window < kj <= qi (xformers local attention) and same document.
      const from = Math.max(keys.start, qi - window + 1);
      const to = Math.min(keys.start + k - 1, qi);
      for (let kj = from; kj <= to; kj++) {
        if (!docs || docs[qi] === docs[kj]) mask[row + kj - keys.start] = 1;
      }
    }
  }
  return mask;
}

/**
 * Queries per block of windowed attention for a window: twice the window, at least 64. Each block
 * computes `blockSize × (blockSize + window)` scores, of which only `window` per query are
 * visible, while each block costs ~30 kernel launches forward and backward; measured on a BLT
 * training step (wasm), against the former fixed 256: window 24 → 64 is 8 % faster (32: 0 %,
 * 128: 6 %), window 512 → 1024 (one dense block for 513 positions) 4 % faster.
 */
export function localAttentionBlockSize(window: number): number {
  return Math.max(64, 2 * window);
}

/**
 * Causal attention described instead of materialised: {@link scaledDotProductAttention} then
 * computes it block by block (queries in blocks of `blockSize`, each against the keys its window
 * can reach), so memory grows with `N · window`, not `N²`. Results equal the dense mask's up to
 * float summation order. Treat a spec as immutable: the block masks built from it are cached with
 * it (every layer of a forward shares one spec).
 */
export interface LocalAttentionSpec {
  readonly kind: 'local';
  readonly batch: number;
  readonly seqLen: number;
  readonly window: number;
  readonly documents?: readonly Int32Array[];
  /** Queries per block (default {@link localAttentionBlockSize} of the window). */
  readonly blockSize?: number;
}

/**
 * Cross-attention mask by group: query q sees key k iff `queryGroups[q] == keyGroups[k]` (and, with
 * a window, iff `keyGroup <= queryGroup < keyGroup + window`, architecture §5.4). A negative group marks
 * padding (a padded byte or an empty patch row of a batch): it matches nothing.
 *
 * @param queryGroups - per row, the group of each query (e.g. patch index of each patch row)
 * @param keyGroups - per row, the group of each key (e.g. patch id of each byte)
 * @param window - optional window in groups
 * @returns `[batch, queries, keys]`
 */
export function groupMask(queryGroups: readonly Int32Array[], keyGroups: readonly Int32Array[], window?: number): Uint8Array {
  if (queryGroups.length !== keyGroups.length || queryGroups.length === 0) {
    throw new NnError('INVALID_ARGUMENT', `queryGroups and keyGroups need the same non-zero number of rows`);
  }
  const q = queryGroups[0]!.length;
  const k = keyGroups[0]!.length;
  const mask = new Uint8Array(queryGroups.length * q * k);
  queryGroups.forEach((qg, b) => {
    const kg = keyGroups[b]!;
    if (qg.length !== q || kg.length !== k) throw new NnError('INVALID_ARGUMENT', `row ${b} has ragged group arrays`);
    for (let i = 0; i < q; i++) {
      const row = (b * q + i) * k;
      for (let j = 0; j < k; j++) {
        const g = qg[i]!;
        const h = kg[j]!;
        const ok = g >= 0 && h >= 0 && (window === undefined ? g === h : h <= g && g < h + window);
        if (ok) mask[row + j] = 1;
      }
    }
  });
  return mask;
}

/** A mask ready for attention: additive bias and, when some row sees nothing, a row-valid factor. */
export interface MaskTensors {
  /** `[B, 1, Q, K]`: 0 where allowed, -1e9 where masked. */
  readonly bias: tf.Tensor;
  /** `[B, 1, Q, 1]`: 0 for rows with no allowed key (their output must be 0), else 1; null if every row has one. */
  readonly rowValid: tf.Tensor | null;
}

// A large finite negative instead of -inf: a fully masked row would otherwise give NaN, and NaN
// times a zero weight still poisons a matMul (architecture §14.5). exp(-1e9 - max) is exactly 0 in
// float32, so partially masked rows equal the -inf result.
const MASKED = -1e9;

/**
 * Turns a `[batch, queries, keys]` mask into attention tensors. The caller owns (disposes) them.
 *
 * @param mask - 1 = may attend
 * @param batch - rows
 * @param queries - queries per row
 * @param keys - keys per row
 */
export function maskTensors(mask: Uint8Array, batch: number, queries: number, keys: number): MaskTensors {
  const { bias, rowValid } = maskArrays(mask, batch, queries, keys);
  return {
    bias: tf.tensor4d(bias, [batch, 1, queries, keys]),
    rowValid: rowValid ? tf.tensor4d(rowValid, [batch, 1, queries, 1]) : null,
  };
}

/**
 * The host arrays of {@link maskTensors}: the additive bias `[batch, queries, keys]` and the row-valid
 * factors `[batch, queries]` (null when every row sees a key).
 */
export function maskArrays(
  mask: Uint8Array,
  batch: number,
  queries: number,
  keys: number,
): { bias: Float32Array; rowValid: Float32Array | null } {
  if (mask.length !== batch * queries * keys) {
    throw new NnError('SHAPE_MISMATCH', `mask has ${mask.length} entries, expected ${batch}×${queries}×${keys}`);
  }
  const bias = new Float32Array(mask.length);
  const valid = new Float32Array(batch * queries);
  let emptyRows = 0;
  for (let r = 0; r < batch * queries; r++) {
    let any = 0;
    for (let j = 0; j < keys; j++) {
      const m = mask[r * keys + j]!;
      bias[r * keys + j] = m ? 0 : MASKED;
      any |= m;
    }
    valid[r] = any;
    if (!any) emptyRows++;
  }
  return { bias, rowValid: emptyRows > 0 ? valid : null };
}
