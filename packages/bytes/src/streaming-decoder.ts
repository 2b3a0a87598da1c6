import { BYTE_OFFSET, EOS_ID } from './constants.js';
import { BytesError } from './errors.js';
import { checkTokenId } from './tokenizer.js';
import { decodeAround, scanUtf8 } from './utf8.js';

/** Options of {@link StreamingDecoder}. */
export interface StreamingDecoderOptions {
  /** Invalid UTF-8: `'replace'` with U+FFFD (default) or `'ignore'` (the reference tokenizer). */
  readonly invalidUtf8?: 'replace' | 'ignore';
  /** Ignore every id after the first EOS and report {@link StreamingDecoder.done}. Default `false`. */
  readonly stopAtEos?: boolean;
}

/**
 * Decodes ids to text as they arrive, for streaming generation. Text is emitted as soon as it is
 * complete; the bytes of a UTF-8 sequence that more ids could still complete are held back, so a
 * character is never split across two chunks. The concatenation of every `push` and the final
 * `flush` equals `decode(allIds)` with the same invalid-UTF-8 policy.
 *
 * @example
 * const d = new StreamingDecoder();
 * d.push([0xe2 + 4, 0x82 + 4]); // '' (first two bytes of '€' held back)
 * d.push(0xac + 4);             // '€'
 */
export class StreamingDecoder {
  private pending = new Uint8Array(0);
  private stopped = false;
  private readonly invalidUtf8: 'replace' | 'ignore';
  private readonly stopAtEos: boolean;

  constructor(options: StreamingDecoderOptions = {}) {
    const { invalidUtf8 = 'replace', stopAtEos = false } = options;
    if (invalidUtf8 !== 'replace' && invalidUtf8 !== 'ignore') {
      throw new BytesError('INVALID_ARGUMENT', `invalidUtf8 must be 'replace' or 'ignore', got ${String(invalidUtf8)}`);
    }
    this.invalidUtf8 = invalidUtf8;
    this.stopAtEos = stopAtEos;
  }

  /** True once an EOS arrived with `stopAtEos`; later ids are ignored. */
  get done(): boolean {
    return this.stopped;
  }

  /** Bytes held back because they may start a multi-byte character (0 to 3). */
  get pendingBytes(): number {
    return this.pending.length;
  }

  /**
   * Adds ids and returns the text they complete.
   *
   * @param ids - one id or several
   * @returns newly decodable text (may be empty)
   * @throws {BytesError} `INVALID_TOKEN_ID` for a bad id (nothing of that call is consumed)
   */
  push(ids: number | ArrayLike<number>): string {
    const list: ArrayLike<number> = typeof ids === 'number' ? [ids] : ids;
    for (let i = 0; i < list.length; i++) checkTokenId(list[i]!, i);
    if (this.stopped) return '';
    const bytes = new Uint8Array(this.pending.length + list.length);
    bytes.set(this.pending);
    let n = this.pending.length;
    for (let i = 0; i < list.length; i++) {
      const id = list[i]!;
      if (id === EOS_ID && this.stopAtEos) {
        this.stopped = true;
        break;
      }
      if (id >= BYTE_OFFSET) bytes[n++] = id - BYTE_OFFSET;
    }
    // After EOS nothing can complete a held-back sequence, so everything is final.
    return this.emit(bytes.subarray(0, n), this.stopped);
  }

  /**
   * Ends the stream: held-back bytes can no longer be completed and are emitted as U+FFFD
   * (or dropped under `'ignore'`). The decoder can be reused afterwards.
   *
   * @returns the remaining text
   */
  flush(): string {
    const text = this.emit(this.pending, true);
    this.stopped = false;
    return text;
  }

  private emit(bytes: Uint8Array, final: boolean): string {
    const scan = scanUtf8(bytes);
    const end = final ? bytes.length : scan.incompleteFrom;
    const invalid = [...scan.invalid];
    if (final && scan.incompleteFrom < bytes.length) invalid.push([scan.incompleteFrom, bytes.length]);
    const text = decodeAround(bytes, invalid, end, this.invalidUtf8 === 'replace');
    this.pending = bytes.slice(end);
    return text;
  }
}
