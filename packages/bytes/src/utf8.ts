import { BytesError } from './errors.js';

/** What to do with lone UTF-16 surrogates when encoding a JavaScript string. */
export type LoneSurrogatePolicy = 'drop' | 'replace' | 'error';

/** What to do with invalid UTF-8 when decoding bytes to text. */
export type InvalidUtf8Policy = 'replace' | 'ignore' | 'error';

const encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF: decoding must never lose a byte that was valid UTF-8.
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function isWellFormed(text: string): boolean {
  const native = (text as { isWellFormed?: () => boolean }).isWellFormed;
  if (native) return native.call(text);
  LONE_SURROGATE.lastIndex = 0;
  return !LONE_SURROGATE.test(text);
}

/**
 * Encodes a string as UTF-8.
 *
 * A JavaScript string may hold lone surrogates, which UTF-8 cannot represent. The reference
 * tokenizer encodes with Python's `errors="ignore"` and drops them (architecture §1.2), so `'drop'` is the
 * default; `'replace'` writes U+FFFD like `TextEncoder`; `'error'` throws.
 *
 * @param text - the string to encode
 * @param loneSurrogates - policy for unpaired surrogates (default `'drop'`, the reference behaviour)
 * @returns the UTF-8 bytes
 * @throws {BytesError} `INVALID_TEXT` when `loneSurrogates` is `'error'` and the string has one
 */
export function encodeUtf8(text: string, loneSurrogates: LoneSurrogatePolicy = 'drop'): Uint8Array {
  if (typeof text !== 'string') {
    throw new BytesError('INVALID_ARGUMENT', `text must be a string, got ${typeof text}`);
  }
  if (loneSurrogates === 'replace' || isWellFormed(text)) return encoder.encode(text);
  if (loneSurrogates === 'error') {
    LONE_SURROGATE.lastIndex = 0;
    const match = LONE_SURROGATE.exec(text);
    const at = match?.index ?? -1;
    throw new BytesError('INVALID_TEXT', `text has a lone surrogate U+${text.charCodeAt(at).toString(16).toUpperCase()} at index ${at}`);
  }
  return encoder.encode(text.replace(LONE_SURROGATE, ''));
}

/** Result of {@link scanUtf8}. */
export interface Utf8Scan {
  /** Half-open byte ranges `[start, end)` that are not valid UTF-8, each one maximal subpart. */
  readonly invalid: ReadonlyArray<readonly [number, number]>;
  /**
   * Start of a trailing sequence that is valid so far but incomplete (more bytes could complete
   * it), or `bytes.length` when there is none. Only a streaming decoder treats it as pending;
   * {@link decodeUtf8} counts it as invalid.
   */
  readonly incompleteFrom: number;
}

/**
 * Finds invalid UTF-8 using the "maximal subpart" rule of Unicode §3.9 (U+FFFD substitution of
 * maximal subparts), which both the WHATWG decoder and Python's decoder follow. One invalid range
 * becomes one U+FFFD when replacing, and disappears when ignoring, exactly as in the reference's
 * `bytes.decode(errors="ignore")`.
 *
 * @param bytes - the bytes to scan
 * @returns the invalid ranges and where an incomplete trailing sequence starts
 */
export function scanUtf8(bytes: Uint8Array): Utf8Scan {
  const invalid: Array<readonly [number, number]> = [];
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      else if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      else if (b === 0xf4) hi = 0x8f;
    } else {
      invalid.push([i, i + 1]);
      i++;
      continue;
    }
    let k = 1;
    while (k <= need) {
      if (i + k >= n) return { invalid, incompleteFrom: i };
      const c = bytes[i + k]!;
      const min = k === 1 ? lo : 0x80;
      const max = k === 1 ? hi : 0xbf;
      if (c < min || c > max) break;
      k++;
    }
    if (k <= need) invalid.push([i, i + k]);
    i += k;
  }
  return { invalid, incompleteFrom: n };
}

/**
 * Decodes UTF-8 bytes to a string.
 *
 * @param bytes - the bytes to decode
 * @param invalidUtf8 - `'replace'` (default): each invalid maximal subpart becomes U+FFFD, as
 *   `TextDecoder` does; `'ignore'`: invalid bytes are dropped, as the reference tokenizer does;
 *   `'error'`: throw
 * @returns the decoded text
 * @throws {BytesError} `INVALID_UTF8` (with the byte offset) when `invalidUtf8` is `'error'`
 */
export function decodeUtf8(bytes: Uint8Array, invalidUtf8: InvalidUtf8Policy = 'replace'): string {
  if (invalidUtf8 === 'replace') return decoder.decode(bytes);
  const scan = scanUtf8(bytes);
  const invalid = [...scan.invalid];
  if (scan.incompleteFrom < bytes.length) invalid.push([scan.incompleteFrom, bytes.length]);
  if (invalid.length === 0) return decoder.decode(bytes);
  if (invalidUtf8 === 'error') {
    const [start, end] = invalid[0]!;
    const shown = Array.from(bytes.subarray(start, end), (x) => x.toString(16).padStart(2, '0'));
    throw new BytesError('INVALID_UTF8', `invalid UTF-8 at byte ${start}: 0x${shown.join(' 0x')}`);
  }
  return decodeAround(bytes, invalid, bytes.length, false);
}

/**
 * @internal Decodes `bytes[0, end)` skipping the given invalid ranges, each replaced by U+FFFD
 * when `replace` is set. Shared by {@link decodeUtf8} and the streaming decoder.
 */
export function decodeAround(bytes: Uint8Array, invalid: ReadonlyArray<readonly [number, number]>, end: number, replace: boolean): string {
  let text = '';
  let from = 0;
  for (const [start, stop] of invalid) {
    text += decoder.decode(bytes.subarray(from, start));
    if (replace) text += '\uFFFD';
    from = stop;
  }
  return text + decoder.decode(bytes.subarray(from, end));
}
