import { BOE_ID } from './constants.js';
import { BytesError, assertInteger } from './errors.js';
import { encode } from './tokenizer.js';

/** One training row: the model reads `tokens[t]` and is scored on `targets[t]` where `mask[t]` is 1. */
export interface PackedRow {
  /** Model input ids, `rowLength` long, padded with `padId`. */
  readonly tokens: Int32Array;
  /** Next-token targets: `targets[t]` is the id that follows `tokens[t]` in the stream. */
  readonly targets: Int32Array;
  /** 1 where `targets[t]` is a real next token, 0 on padding. */
  readonly mask: Uint8Array;
}

/** Options of {@link packDocuments}. */
export interface PackOptions {
  /** Ids per row (the model's sequence length). */
  readonly rowLength: number;
  /** Start each document with BOS. Default `true`. */
  readonly bos?: boolean;
  /** End each document with EOS. Default `true`. */
  readonly eos?: boolean;
  /** Id used to pad the last row (and, with `'per-document'`, each document's last row). Default BOE (0), as the reference. */
  readonly padId?: number;
  /**
   * `'concat'` (default): documents are concatenated into one stream (`[BOS] doc [EOS] [BOS] doc
   * [EOS] ...`) and cut into rows, so a row can hold several documents and a document can span rows,
   * as in the reference's training pipeline (architecture §8.3; the masks split attention at EOS).
   * `'per-document'`: every document starts on a fresh row and its last row is padded: no row mixes
   * documents, for evaluation without cross-document context.
   */
  readonly strategy?: 'concat' | 'per-document';
}

/**
 * Packs documents into fixed-length training rows with next-token targets. Rows are produced
 * lazily, so the input may be an unbounded iterable (a file stream, a generator).
 *
 * Consecutive rows of one stream overlap by one id: the last target of a row is the first token of
 * the next, so every id except the stream's first is a target exactly once.
 *
 * @param documents - texts or raw byte arrays
 * @param options - row length, BOS/EOS, padding id, strategy
 * @returns a generator of rows
 * @throws {BytesError} `INVALID_ARGUMENT` for a bad option
 */
export function* packDocuments(documents: Iterable<string | Uint8Array>, options: PackOptions): Generator<PackedRow, void, undefined> {
  const { rowLength, bos = true, eos = true, padId = BOE_ID, strategy = 'concat' } = options;
  assertInteger('rowLength', rowLength, 1);
  assertInteger('padId', padId, 0);
  if (strategy !== 'concat' && strategy !== 'per-document') {
    throw new BytesError('INVALID_ARGUMENT', `strategy must be 'concat' or 'per-document', got ${String(strategy)}`);
  }
  // `buffer[0, fill)` holds ids not yet emitted as tokens; a row needs rowLength + 1 of them.
  let buffer = new Int32Array(2 * (rowLength + 1));
  let fill = 0;

  const takeRow = (count: number): PackedRow => {
    const tokens = new Int32Array(rowLength).fill(padId);
    const targets = new Int32Array(rowLength).fill(padId);
    const mask = new Uint8Array(rowLength);
    tokens.set(buffer.subarray(0, count));
    targets.set(buffer.subarray(1, count + 1));
    mask.fill(1, 0, count);
    return { tokens, targets, mask };
  };

  for (const doc of documents) {
    const ids = encode(doc, { bos, eos });
    if (strategy === 'per-document') fill = 0;
    let offset = 0;
    while (offset < ids.length) {
      const take = Math.min(ids.length - offset, buffer.length - fill);
      buffer.set(ids.subarray(offset, offset + take), fill);
      fill += take;
      offset += take;
      while (fill >= rowLength + 1) {
        yield takeRow(rowLength);
        buffer.copyWithin(0, rowLength, fill);
        fill -= rowLength;
      }
    }
    if (strategy === 'per-document' && fill > 1) {
      yield takeRow(fill - 1);
      fill = 0;
    }
  }
  if (fill > 1) yield takeRow(fill - 1);
  buffer = new Int32Array(0);
}
