import { BOS_ID, BYTE_OFFSET, EOS_ID, PAD_ID, VOCAB_SIZE } from './constants.js';
import { BytesError, assertInteger } from './errors.js';
import { type InvalidUtf8Policy, type LoneSurrogatePolicy, decodeUtf8, encodeUtf8 } from './utf8.js';

/** Options of {@link encode}. */
export interface EncodeOptions {
  /** Prepend BOS (id 1). Default `true`, as the reference tokenizer. */
  readonly bos?: boolean;
  /** Append EOS (id 2). Default `true`, as the reference tokenizer; generation prompts use `false`. */
  readonly eos?: boolean;
  /** Lone UTF-16 surrogates in a string input: `'drop'` (default, the reference), `'replace'`, `'error'`. */
  readonly loneSurrogates?: LoneSurrogatePolicy;
  /** Refuse inputs of more than this many bytes (before BOS/EOS). Default: no limit. */
  readonly maxBytes?: number;
}

/**
 * Encodes text or raw bytes to BLT token ids: `[BOS] (byte + 4)... [EOS]` (architecture §1.2).
 *
 * Any byte array is legal input, valid UTF-8 or not: BLT models bytes, not characters.
 *
 * @param input - a string (encoded as UTF-8) or raw bytes
 * @param options - BOS/EOS, lone-surrogate policy, size limit
 * @returns the ids, each in `[0, 260)`
 * @throws {BytesError} `INPUT_TOO_LARGE` over `maxBytes`; `INVALID_TEXT` for a lone surrogate
 *   under `loneSurrogates: 'error'`; `INVALID_ARGUMENT` for an input that is neither
 */
export function encode(input: string | Uint8Array, options: EncodeOptions = {}): Int32Array {
  const { bos = true, eos = true, loneSurrogates = 'drop', maxBytes } = options;
  let bytes: Uint8Array;
  if (typeof input === 'string') bytes = encodeUtf8(input, loneSurrogates);
  else if (input instanceof Uint8Array) bytes = input;
  else {
    throw new BytesError('INVALID_ARGUMENT', `input must be a string or a Uint8Array, got ${input === null ? 'null' : typeof input}`);
  }
  if (maxBytes !== undefined) {
    assertInteger('maxBytes', maxBytes, 0);
    if (bytes.length > maxBytes) {
      throw new BytesError('INPUT_TOO_LARGE', `input has ${bytes.length} bytes, more than maxBytes=${maxBytes}`);
    }
  }
  const start = bos ? 1 : 0;
  const ids = new Int32Array(start + bytes.length + (eos ? 1 : 0));
  if (bos) ids[0] = BOS_ID;
  for (let i = 0; i < bytes.length; i++) ids[start + i] = bytes[i]! + BYTE_OFFSET;
  if (eos) ids[ids.length - 1] = EOS_ID;
  return ids;
}

/** Options of {@link decodeToBytes}. */
export interface DecodeBytesOptions {
  /** Stop at the first EOS (the reference's `cut_at_eos`). Default `false`. */
  readonly cutAtEos?: boolean;
}

/** Options of {@link decode}. */
export interface DecodeOptions extends DecodeBytesOptions {
  /**
   * Invalid UTF-8 in the byte stream: `'replace'` with U+FFFD (default), `'ignore'` it (the
   * reference tokenizer's behaviour), or throw (`'error'`). Use {@link decodeToBytes} for a
   * lossless result.
   */
  readonly invalidUtf8?: InvalidUtf8Policy;
}

/** @internal Throws unless `id` is a valid token id (PAD included). */
export function checkTokenId(id: number, index: number): void {
  if (!Number.isInteger(id) || id < PAD_ID || id >= VOCAB_SIZE) {
    throw new BytesError('INVALID_TOKEN_ID', `ids[${index}] = ${id} is not a token id: expected an integer in [${PAD_ID}, ${VOCAB_SIZE})`);
  }
}

/**
 * Turns ids back into the exact bytes they encode, dropping special ids (BOE, BOS, EOS, BPE, PAD).
 * Lossless: `decodeToBytes(encode(b))` equals `b` for every byte array `b`.
 *
 * @param ids - token ids
 * @param options - `cutAtEos`
 * @returns the bytes
 * @throws {BytesError} `INVALID_TOKEN_ID` for an id outside `[-1, 260)` or not an integer
 */
export function decodeToBytes(ids: ArrayLike<number>, options: DecodeBytesOptions = {}): Uint8Array {
  const out = new Uint8Array(ids.length);
  let n = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    checkTokenId(id, i);
    if (id === EOS_ID && options.cutAtEos) break;
    if (id >= BYTE_OFFSET) out[n++] = id - BYTE_OFFSET;
  }
  return out.slice(0, n);
}

/**
 * Decodes ids to text (architecture §1.3): special ids are dropped, the bytes are read as UTF-8.
 *
 * @param ids - token ids
 * @param options - `cutAtEos`, and what to do with invalid UTF-8 (default: U+FFFD)
 * @returns the text
 * @throws {BytesError} `INVALID_TOKEN_ID` for a bad id; `INVALID_UTF8` under `invalidUtf8: 'error'`
 */
export function decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
  return decodeUtf8(decodeToBytes(ids, options), options.invalidUtf8 ?? 'replace');
}
