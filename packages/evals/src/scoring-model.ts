/**
 * The one interface every metric of this package is written against: a model that gives the
 * log-probability of each next id of a row. Byte-level models (BLT, entropy model, byte
 * transformer) read ids = byte + 4 after a BOS; token models read their tokenizer's ids. Nothing
 * else about a model is assumed, so any architecture can be evaluated by writing one adapter.
 */
import { BOS_ID, BYTE_OFFSET, VOCAB_SIZE } from '@bytelatent/bytes';
import { EvalError } from './errors.js';

/** One row to score: `tokens[t]` is the context's last id when `targets[t]` is predicted. */
export interface ScoringRow {
  readonly tokens: Int32Array;
  readonly targets: Int32Array;
}

/**
 * Turns bytes into token ids and back. Ids 0..3 are reserved for the specials of the BLT byte
 * vocabulary (BOE, BOS, EOS, BPE) so a byte model and a token model share BOS.
 */
export interface Tokenizer {
  /** For tables and errors. */
  readonly name: string;
  /** Ids are in `[0, vocabSize)`. */
  readonly vocabSize: number;
  /** Encodes bytes (any bytes, valid UTF-8 or not); never emits the specials 0..3. */
  encode(bytes: Uint8Array): Int32Array;
  /** Decodes ids back to bytes (specials are dropped). */
  decode(ids: ArrayLike<number>): Uint8Array;
  /**
   * The longest prefix `bytes[0..n)` whose encoding cannot change whatever bytes follow; a
   * streaming encoder encodes that prefix and keeps the rest. 0 when no such cut exists yet.
   */
  stableLength(bytes: Uint8Array): number;
}

interface ScoringModelBase {
  /** For tables. */
  readonly name: string;
  /** Longest row one call accepts, in positions (the leading BOS included). */
  readonly maxContext: number;
  /** The id that starts a text (BOS = 1 for every model here). */
  readonly bosId: number;
  /**
   * Natural-log probability of each target given its row's ids up to and including `tokens[t]`.
   * One array per row, of the row's length; every value finite and <= 0 (up to rounding).
   */
  logProbs(rows: readonly ScoringRow[]): Promise<Array<Float32Array | Float64Array>>;
  /** Frees what the model holds (optional). */
  dispose?(): void;
}

/** A model over the BLT byte vocabulary: id = byte + 4, BOS = 1, EOS = 2. */
export interface ByteScoringModel extends ScoringModelBase {
  readonly kind: 'byte';
}

/** A model over a tokenizer's ids. */
export interface TokenScoringModel extends ScoringModelBase {
  readonly kind: 'token';
  readonly tokenizer: Tokenizer;
}

/** What the metrics accept. */
export type ScoringModel = ByteScoringModel | TokenScoringModel;

/**
 * The ids a model reads for `bytes` (no BOS): byte + 4 for byte models, the tokenizer's ids otherwise.
 *
 * @param model - the model
 * @param bytes - the text's bytes
 * @returns the ids
 */
export function encodeFor(model: ScoringModel, bytes: Uint8Array): Int32Array {
  if (model.kind === 'token') return model.tokenizer.encode(bytes);
  const ids = new Int32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) ids[i] = bytes[i]! + BYTE_OFFSET;
  return ids;
}

/**
 * A model that gives every one of `vocab` ids the same probability: `ln p = −ln vocab` at every
 * position, so its bits per byte are exactly `log2(vocab)` (log2 260 ≈ 8.022 for the byte
 * vocabulary). The reference point of "knows nothing"; also what the tests check the metrics with.
 *
 * @param vocab - vocabulary size (default 260, the BLT byte vocabulary)
 * @param maxContext - row length (default 1024)
 * @returns a byte-level scoring model
 * @throws {EvalError} `INVALID_ARGUMENT` for a vocabulary below 2 or a context below 2
 */
export function uniformByteModel(vocab = VOCAB_SIZE, maxContext = 1024): ByteScoringModel {
  if (!Number.isSafeInteger(vocab) || vocab < 2)
    throw new EvalError('INVALID_ARGUMENT', `vocab must be an integer >= 2, got ${String(vocab)}`);
  if (!Number.isSafeInteger(maxContext) || maxContext < 2)
    throw new EvalError('INVALID_ARGUMENT', `maxContext must be an integer >= 2, got ${String(maxContext)}`);
  const logp = -Math.log(vocab);
  return {
    kind: 'byte',
    name: `uniform(${vocab})`,
    maxContext,
    bosId: BOS_ID,
    logProbs: async (rows) => rows.map((r) => new Float64Array(r.targets.length).fill(logp)),
  };
}

/**
 * Scores rows in batches and checks what the model returned.
 *
 * @param model - the model
 * @param rows - rows, each at most `model.maxContext` long
 * @param batchSize - rows per model call
 * @param onProgress - called after each call with the rows scored so far
 * @returns per row, the log-probability of each target
 * @throws {EvalError} `INVALID_ARGUMENT` for an over-long or ragged row; `INVALID_MODEL_OUTPUT`
 *   when the model returns the wrong number of values, a non-finite value or a positive one
 */
export async function scoreRows(
  model: ScoringModel,
  rows: readonly ScoringRow[],
  batchSize = 8,
  onProgress?: (rowsScored: number) => void,
): Promise<Array<Float32Array | Float64Array>> {
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new EvalError('INVALID_ARGUMENT', `batchSize must be an integer >= 1, got ${String(batchSize)}`);
  rows.forEach((r, i) => {
    if (r.tokens.length !== r.targets.length || r.tokens.length === 0) {
      throw new EvalError(
        'INVALID_ARGUMENT',
        `row ${i} has ${r.tokens.length} tokens and ${r.targets.length} targets (expected equal, non-zero)`,
      );
    }
    if (r.tokens.length > model.maxContext) {
      throw new EvalError(
        'INVALID_ARGUMENT',
        `row ${i} has ${r.tokens.length} positions, more than ${model.name}'s context of ${model.maxContext}`,
      );
    }
  });
  const out: Array<Float32Array | Float64Array> = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const batch = rows.slice(i, i + batchSize);
    const values = await model.logProbs(batch);
    if (!Array.isArray(values) || values.length !== batch.length) {
      throw new EvalError(
        'INVALID_MODEL_OUTPUT',
        `${model.name} returned ${Array.isArray(values) ? values.length : typeof values} rows for ${batch.length}`,
      );
    }
    values.forEach((v, b) => {
      const want = batch[b]!.targets.length;
      if (v.length !== want)
        throw new EvalError(
          'INVALID_MODEL_OUTPUT',
          `${model.name} returned ${v.length} log-probabilities for row ${i + b} of ${want} targets`,
        );
      for (let t = 0; t < v.length; t++) {
        const x = v[t]!;
        // A log-probability is <= 0; float32 softmax rounding can give a hair above.
        if (!Number.isFinite(x) || x > 1e-3) {
          throw new EvalError(
            'INVALID_MODEL_OUTPUT',
            `${model.name} returned log-probability ${x} at row ${i + b}, position ${t} (expected finite and <= 0)`,
          );
        }
      }
      out.push(v);
    });
    onProgress?.(out.length);
  }
  return out;
}
