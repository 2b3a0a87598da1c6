/**
 * Reading and writing the safetensors format (https://github.com/huggingface/safetensors) in pure
 * TypeScript on `Uint8Array`, so the same code runs in Node and in the browser.
 *
 * Layout: an 8-byte little-endian unsigned header length `N`, `N` bytes of UTF-8 JSON header, then
 * the data area. Each header key except `__metadata__` maps to
 * `{ "dtype", "shape", "data_offsets": [begin, end] }`, offsets relative to the data area.
 */

import { CodedError } from '@bytelatent/bytes';
import type { ByteReader, TensorSource } from './tensor-source.js';

/** Element types this module reads and writes (a subset of the official list). */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Machine-readable reason of a {@link SafetensorsError}. */
export type SafetensorsErrorCode =
  | 'TRUNCATED'
  | 'HEADER_TOO_LARGE'
  | 'INVALID_HEADER'
  | 'INVALID_DTYPE'
  | 'INVALID_SHAPE'
  | 'INVALID_OFFSETS'
  | 'OVERLAPPING_OFFSETS'
  | 'SIZE_MISMATCH'
  | 'INVALID_METADATA'
  | 'UNKNOWN_TENSOR'
  | 'UNSUPPORTED_CONVERSION'
  | 'INVALID_ARGUMENT'
  | 'DUPLICATE_TENSOR'
  | 'INVALID_INDEX'
  | 'MISSING_SHARD'
  | 'INDEX_MISMATCH';

/**
 * Every error thrown by the safetensors code of `@bytelatent/nn`. `code` says what went wrong; the
 * message names the tensor and the numbers involved.
 */
export class SafetensorsError extends CodedError<SafetensorsErrorCode> {
  override readonly name = 'SafetensorsError';
}

/** Where one tensor lies in a parsed file. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Absolute offset of the tensor's first byte in the file (not relative to the data area). */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/**
 * The typed array of each dtype: `Float64Array` (F64), `Float32Array` (F32), `Uint16Array` (F16 and
 * BF16, raw bit patterns), `BigInt64Array` (I64), `Int32Array` (I32), `Int16Array` (I16), `Int8Array`
 * (I8), `Uint8Array` (U8 and BOOL).
 */
export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** A tensor to write, or one read with {@link SafetensorsFile.get}. */
export interface SafetensorsTensor {
  readonly dtype: SafetensorsDtype;
  /** Dimensions; `[]` is a scalar (one element). */
  readonly shape: readonly number[];
  /** Row-major elements; `data.length` equals the product of `shape`. */
  readonly data: TensorData;
}

/** Options of {@link SafetensorsFile.parse}. */
export interface ParseOptions {
  /** Largest accepted header, in bytes. Default 100 MB, the official limit. */
  readonly maxHeaderBytes?: number;
  /**
   * What the bytes come from (a path, URL or file name): the file's `description`, which
   * {@link TensorSource} errors name. When given, parse errors start with it too. Default
   * `"safetensors"`.
   */
  readonly description?: string;
}

/** The official reader's header limit (`MAX_HEADER_SIZE` in safetensors). */
const DEFAULT_MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

interface DtypeSpec {
  readonly size: number;
  /** `Object.prototype.toString` tag of the typed array holding this dtype. */
  readonly tag: string;
  readonly make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => TensorData;
}

const DTYPES: Readonly<Record<SafetensorsDtype, DtypeSpec>> = {
  F64: { size: 8, tag: 'Float64Array', make: (b, o, n) => new Float64Array(b, o, n) },
  F32: { size: 4, tag: 'Float32Array', make: (b, o, n) => new Float32Array(b, o, n) },
  F16: { size: 2, tag: 'Uint16Array', make: (b, o, n) => new Uint16Array(b, o, n) },
  BF16: { size: 2, tag: 'Uint16Array', make: (b, o, n) => new Uint16Array(b, o, n) },
  I64: { size: 8, tag: 'BigInt64Array', make: (b, o, n) => new BigInt64Array(b, o, n) },
  I32: { size: 4, tag: 'Int32Array', make: (b, o, n) => new Int32Array(b, o, n) },
  I16: { size: 2, tag: 'Int16Array', make: (b, o, n) => new Int16Array(b, o, n) },
  I8: { size: 1, tag: 'Int8Array', make: (b, o, n) => new Int8Array(b, o, n) },
  U8: { size: 1, tag: 'Uint8Array', make: (b, o, n) => new Uint8Array(b, o, n) },
  BOOL: { size: 1, tag: 'Uint8Array', make: (b, o, n) => new Uint8Array(b, o, n) },
};

const DTYPE_NAMES = Object.keys(DTYPES) as SafetensorsDtype[];

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, value);
}

// safetensors data is little-endian and typed arrays use the host's byte order; views of the file
// bytes are only correct on little-endian hosts (every browser and Node platform in practice).
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new SafetensorsError(
      'UNSUPPORTED_CONVERSION',
      'safetensors data is little-endian and this host is big-endian; @bytelatent/nn supports little-endian hosts only',
    );
  }
}

/** Works for typed arrays from another realm (iframe, vm) too, unlike `instanceof`. */
function typedArrayTag(value: unknown): string | undefined {
  if (!ArrayBuffer.isView(value) || value instanceof DataView) return undefined;
  return Object.prototype.toString.call(value).slice(8, -1);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Bytes per element of a dtype.
 *
 * @param dtype - the dtype
 * @returns 8, 4, 2 or 1
 * @throws {SafetensorsError} `INVALID_DTYPE` for a string that is not a {@link SafetensorsDtype}
 */
export function dtypeByteSize(dtype: SafetensorsDtype): number {
  if (!isDtype(dtype)) {
    throw new SafetensorsError('INVALID_DTYPE', `unknown dtype ${describeValue(dtype)}; supported: ${DTYPE_NAMES.join(', ')}`);
  }
  return DTYPES[dtype].size;
}

/**
 * Checks a shape and returns its element count, or a reason it is invalid. A zero dimension makes
 * the count 0 even if the other dimensions multiplied would overflow.
 */
function shapeElementCount(shape: unknown): number | string {
  if (!Array.isArray(shape)) return `shape must be an array of integers, got ${describeValue(shape)}`;
  let count = 1;
  let overflow = false;
  for (let i = 0; i < shape.length; i++) {
    const dim: unknown = shape[i];
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      return `shape[${i}] must be a non-negative safe integer, got ${describeValue(dim)}`;
    }
    if (dim === 0) return 0;
    count *= dim;
    if (count > Number.MAX_SAFE_INTEGER) overflow = true;
  }
  if (overflow) return `shape [${shape.join(', ')}] has more than Number.MAX_SAFE_INTEGER elements`;
  return count;
}

// --- float16 / bfloat16 -------------------------------------------------------------------------

// Scratch views sharing one buffer: same element size, so the host byte order does not matter.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function checkBits(name: string, bits: number): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > 0xffff) {
    throw new SafetensorsError('INVALID_ARGUMENT', `${name} must be an integer in [0, 65535], got ${describeValue(bits)}`);
  }
}

/**
 * Converts a number to IEEE 754 binary16 bits. The number is first rounded to float32 (it is
 * treated as a float32 value, as if it came from a `Float32Array`), then to binary16 with round to
 * nearest, ties to even. Values beyond the binary16 range become ±Infinity, values below half the
 * smallest subnormal become ±0, and NaN stays a (quiet) NaN.
 *
 * @param x - the value
 * @returns the 16-bit pattern, in [0, 65535]
 */
export function float32ToFloat16Bits(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) {
    // Keep the top payload bits and force the quiet bit so a NaN never turns into Infinity.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7c00 | 0x200 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal result: value = (1.mant) * 2^(e-15) = half * 2^-24 with half = full >> (14 - e).
    // Below 2^-25 (e < -10) everything rounds to zero; float32 subnormals (exp 0) land here too.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    // A carry out of the subnormal mantissa gives 0x400, the smallest normal: still correct.
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry propagates into the exponent; from the largest finite value it yields 0x7c00 (Infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/**
 * Decodes IEEE 754 binary16 bits. Every binary16 value is exactly representable as a float32.
 *
 * @param bits - the 16-bit pattern
 * @returns the value (NaN for any NaN pattern)
 * @throws {SafetensorsError} `INVALID_ARGUMENT` if `bits` is not an integer in [0, 65535]
 */
export function float16BitsToFloat32(bits: number): number {
  checkBits('bits', bits);
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/**
 * Converts a number to bfloat16 bits: the number is rounded to float32, then its bit pattern is
 * rounded to the upper 16 bits with round to nearest, ties to even (overflow gives ±Infinity). NaN
 * stays a quiet NaN.
 *
 * @param x - the value
 * @returns the 16-bit pattern, in [0, 65535]
 */
export function float32ToBfloat16Bits(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0]!;
  // Without the quiet bit, rounding a NaN whose payload sits in the low 16 bits would give Infinity.
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x40;
  // Adding just under half an ulp (plus the kept LSB, for ties to even) rounds by truncation. The
  // sum is a double below 2^32 for every non-NaN pattern, so `>>>` sees it unwrapped.
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/**
 * Decodes bfloat16 bits (the upper half of a float32).
 *
 * @param bits - the 16-bit pattern
 * @returns the value
 * @throws {SafetensorsError} `INVALID_ARGUMENT` if `bits` is not an integer in [0, 65535]
 */
export function bfloat16BitsToFloat32(bits: number): number {
  checkBits('bits', bits);
  scratchU32[0] = bits << 16;
  return scratchF32[0]!;
}

let float16Table: Float32Array | undefined;

/**
 * All 65536 binary16 values, built on first use (256 KiB) so bulk decoding is one lookup each.
 *
 * @internal
 */
export function getFloat16Table(): Float32Array {
  if (float16Table === undefined) {
    const table = new Float32Array(0x10000);
    for (let bits = 0; bits < 0x10000; bits++) table[bits] = float16BitsToFloat32(bits);
    float16Table = table;
  }
  return float16Table;
}

// --- parsing ------------------------------------------------------------------------------------

interface ParsedEntry {
  readonly info: SafetensorsTensorInfo;
  readonly begin: number;
  readonly end: number;
}

function parseEntry(name: string, value: unknown): ParsedEntry {
  if (!isPlainObject(value)) {
    throw new SafetensorsError('INVALID_HEADER', `tensor "${name}": header entry must be an object, got ${describeValue(value)}`);
  }
  for (const field of ['dtype', 'shape', 'data_offsets'] as const) {
    if (!Object.prototype.hasOwnProperty.call(value, field)) {
      throw new SafetensorsError('INVALID_HEADER', `tensor "${name}": header entry is missing "${field}"`);
    }
  }
  const dtype = value['dtype'];
  if (!isDtype(dtype)) {
    throw new SafetensorsError(
      'INVALID_DTYPE',
      `tensor "${name}": unknown dtype ${describeValue(dtype)}; supported: ${DTYPE_NAMES.join(', ')}`,
    );
  }
  const count = shapeElementCount(value['shape']);
  if (typeof count === 'string') throw new SafetensorsError('INVALID_SHAPE', `tensor "${name}": ${count}`);
  // Normalise -0 (valid JSON) so shapes compare and print as 0.
  const shape = Object.freeze((value['shape'] as number[]).map((d) => (d === 0 ? 0 : d)));

  const offsets = value['data_offsets'];
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
  ) {
    throw new SafetensorsError(
      'INVALID_OFFSETS',
      `tensor "${name}": data_offsets must be [begin, end] of two non-negative safe integers, got ${JSON.stringify(offsets)}`,
    );
  }
  const begin = offsets[0] === 0 ? 0 : (offsets[0] as number);
  const end = offsets[1] === 0 ? 0 : (offsets[1] as number);
  if (begin > end) {
    throw new SafetensorsError('INVALID_OFFSETS', `tensor "${name}": data_offsets begin ${begin} is after end ${end}`);
  }
  // Exact: dtype sizes are powers of two, so the product is a correctly scaled double.
  const needed = count * DTYPES[dtype].size;
  if (end - begin !== needed) {
    throw new SafetensorsError(
      'SIZE_MISMATCH',
      `tensor "${name}": data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${needed} bytes`,
    );
  }
  // byteOffset is filled in once the header length is known.
  return { info: { name, dtype, shape, byteOffset: begin, byteLength: end - begin }, begin, end };
}

function parseMetadata(value: unknown): Readonly<Record<string, string>> {
  if (!isPlainObject(value)) {
    throw new SafetensorsError('INVALID_METADATA', `${METADATA_KEY} must be an object of strings, got ${describeValue(value)}`);
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError('INVALID_METADATA', `${METADATA_KEY}["${key}"] must be a string, got ${describeValue(v)}`);
    }
  }
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  return Object.freeze(Object.fromEntries(Object.entries(value as Record<string, string>)));
}

/** What a safetensors header says, validated against the file size. */
interface Layout {
  readonly metadata: Readonly<Record<string, string>>;
  /** By byte offset; offsets are absolute. */
  readonly ordered: readonly SafetensorsTensorInfo[];
}

/** A SafetensorsError with the file's description in front of its message (other errors as they are). */
function prefixed(error: unknown, description: string): unknown {
  return error instanceof SafetensorsError ? new SafetensorsError(error.code, `${description}: ${error.message}`) : error;
}

function parseDescription(options: ParseOptions): string {
  const { description = 'safetensors' } = options;
  if (typeof description !== 'string') {
    throw new SafetensorsError('INVALID_ARGUMENT', `description must be a string, got ${describeValue(description)}`);
  }
  return description;
}

/**
 * Reads and validates the header of a file of `fileLength` bytes, reading only the header through
 * `read` (which returns `length` bytes at `offset`, both already checked against `fileLength`).
 */
function parseLayout(fileLength: number, read: (offset: number, length: number) => Uint8Array, options: ParseOptions): Layout {
  assertLittleEndianHost();
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes < 0) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `maxHeaderBytes must be a non-negative safe integer, got ${describeValue(maxHeaderBytes)}`,
    );
  }
  parseDescription(options);
  if (fileLength < 8) {
    throw new SafetensorsError('TRUNCATED', `file has ${fileLength} bytes, fewer than the 8-byte header length`);
  }
  const prefix = read(0, 8);
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const low = dv.getUint32(0, true);
  const high = dv.getUint32(4, true);
  if (high !== 0 || low > maxHeaderBytes) {
    const declared = high === 0 ? `${low}` : `${BigInt(high) * 0x100000000n + BigInt(low)}`;
    throw new SafetensorsError('HEADER_TOO_LARGE', `header length ${declared} exceeds the limit of ${maxHeaderBytes} bytes`);
  }
  const headerLength = low;
  const dataStart = 8 + headerLength;
  if (dataStart > fileLength) {
    throw new SafetensorsError('TRUNCATED', `header length ${headerLength} needs ${dataStart} bytes but the file has ${fileLength}`);
  }
  const headerBytes = headerLength === 0 ? new Uint8Array(0) : read(8, headerLength);
  if (headerLength === 0 || headerBytes[0] !== 0x7b) {
    throw new SafetensorsError('INVALID_HEADER', `header must be a JSON object starting with '{' (${headerLength} header bytes)`);
  }
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    header = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError('INVALID_HEADER', `header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(header)) {
    throw new SafetensorsError('INVALID_HEADER', `header must be a JSON object, got ${describeValue(header)}`);
  }

  let metadata: Readonly<Record<string, string>> = Object.freeze({});
  const entries: ParsedEntry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value);
    else entries.push(parseEntry(name, value));
  }

  // Ties on begin (zero-sized tensors) are ordered by end, then name, so the order is total.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end || (a.info.name < b.info.name ? -1 : a.info.name > b.info.name ? 1 : 0));
  const dataLength = fileLength - dataStart;
  let expected = 0;
  let previous: string | undefined;
  for (const { info, begin, end } of entries) {
    if (begin > expected) {
      throw new SafetensorsError(
        'INVALID_OFFSETS',
        `tensor "${info.name}" begins at data offset ${begin} but ${previous === undefined ? 'the data area starts at 0' : `"${previous}" ends at ${expected}`}: gap of ${begin - expected} bytes`,
      );
    }
    if (begin < expected) {
      throw new SafetensorsError(
        'OVERLAPPING_OFFSETS',
        `tensor "${info.name}" begins at data offset ${begin}, inside "${previous ?? ''}" which ends at ${expected}`,
      );
    }
    expected = end;
    previous = info.name;
  }
  if (expected > dataLength) {
    throw new SafetensorsError(
      'TRUNCATED',
      `file has ${dataLength} data bytes but the header declares ${expected} (last tensor "${previous ?? ''}")`,
    );
  }
  if (expected < dataLength) {
    throw new SafetensorsError(
      'INVALID_OFFSETS',
      `header declares ${expected} data bytes but the file has ${dataLength}: ${dataLength - expected} trailing bytes`,
    );
  }
  return { metadata, ordered: entries.map(({ info }) => Object.freeze({ ...info, byteOffset: dataStart + info.byteOffset })) };
}

/**
 * Checks a `readBytes` element range of a tensor and returns it with defaults filled in.
 *
 * @internal
 * @throws {SafetensorsError} `INVALID_ARGUMENT` unless `0 <= begin <= end <= numel` are integers
 */
export function checkElementRange(
  description: string,
  info: { readonly name: string; readonly shape: readonly number[] },
  begin: number | undefined,
  end: number | undefined,
): { begin: number; end: number } {
  let numel = 1;
  for (const d of info.shape) numel *= d;
  const b = begin ?? 0;
  const e = end ?? numel;
  if (!Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b || e > numel) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `${description}: tensor ${JSON.stringify(info.name)} has ${numel} element${numel === 1 ? '' : 's'}; element range [${String(b)}, ${String(e)}) is not within [0, ${numel}]`,
    );
  }
  return { begin: b, end: e };
}

function toUint8Array(bytes: unknown, what: string): Uint8Array {
  if (typedArrayTag(bytes) !== 'Uint8Array') {
    throw new SafetensorsError('INVALID_ARGUMENT', `${what} must be a Uint8Array, got ${describeValue(bytes)}`);
  }
  const b = bytes as Uint8Array;
  // A plain view (no copy): subarrays of a Node Buffer would otherwise be Buffers.
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A parsed safetensors file. Parsing validates the whole header against the file size, then every
 * accessor works on the original bytes without copying them.
 */
export class SafetensorsFile implements TensorSource {
  /** The `__metadata__` strings (empty if the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Size of the whole file in bytes. */
  readonly byteLength: number;
  /** What the bytes come from ({@link ParseOptions.description}; default `"safetensors"`). */
  readonly description: string;

  readonly #bytes: Uint8Array;
  /** The tensor index and range reads, shared with files read from disk: views of the bytes here. */
  readonly #index: SafetensorsReader;

  private constructor(bytes: Uint8Array, layout: Layout, description: string) {
    this.#bytes = bytes;
    this.byteLength = bytes.byteLength;
    this.metadata = layout.metadata;
    this.description = description;
    const views: ByteReader = { byteLength: bytes.byteLength, read: (offset, length) => bytes.subarray(offset, offset + length) };
    this.#index = SafetensorsReader.fromLayout(views, layout, description);
  }

  /**
   * Parses and validates a safetensors file. The header must describe tensors that tile the data
   * area exactly (as the official reader requires). The bytes are kept, not copied: do not modify
   * them while the file is in use.
   *
   * @param bytes - the whole file
   * @param options - header size limit
   * @returns the parsed file
   * @throws {SafetensorsError} `INVALID_ARGUMENT` if `bytes` is not a Uint8Array or an option is
   *   bad; `TRUNCATED`, `HEADER_TOO_LARGE`, `INVALID_HEADER`, `INVALID_DTYPE`, `INVALID_SHAPE`,
   *   `INVALID_OFFSETS`, `OVERLAPPING_OFFSETS`, `SIZE_MISMATCH`, `INVALID_METADATA` for a corrupt
   *   file; `UNSUPPORTED_CONVERSION` on a big-endian host
   */
  static parse(bytes: Uint8Array, options: ParseOptions = {}): SafetensorsFile {
    const view = toUint8Array(bytes, 'bytes');
    const description = parseDescription(options);
    let layout: Layout;
    try {
      layout = parseLayout(view.byteLength, (offset, length) => view.subarray(offset, offset + length), options);
    } catch (e) {
      // Messages name the file when the caller said which it is.
      throw options.description === undefined ? e : prefixed(e, description);
    }
    return new SafetensorsFile(view, layout, description);
  }

  /**
   * Tensor names in file order (by byte offset).
   *
   * @returns a new array of names
   */
  names(): string[] {
    return this.#index.names();
  }

  /**
   * Whether the file has a tensor.
   *
   * @param name - tensor name
   * @returns true if it exists
   */
  has(name: string): boolean {
    return this.#index.has(name);
  }

  /**
   * Describes one tensor.
   *
   * @param name - tensor name
   * @returns dtype, shape and absolute byte range
   * @throws {SafetensorsError} `UNKNOWN_TENSOR` if there is no such tensor
   */
  info(name: string): SafetensorsTensorInfo {
    return this.#index.info(name);
  }

  /**
   * The tensor's bytes as stored (little-endian), as a view of the file: no copy.
   *
   * @param name - tensor name
   * @returns a view of `byteLength` bytes
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`
   */
  raw(name: string): Uint8Array {
    return this.#index.readBytes(name);
  }

  /**
   * Bytes of elements `[begin, end)` of the flattened tensor, as stored (little-endian), as a view
   * of the file: no copy. With no range, the same as {@link SafetensorsFile.raw}.
   *
   * @param name - tensor name
   * @param begin - first element (default 0)
   * @param end - one past the last element (default: the element count)
   * @returns a view of `(end - begin) × element size` bytes; do not modify it
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`; `INVALID_ARGUMENT` unless `0 <= begin <= end <=
   *   element count` are integers
   */
  readBytes(name: string, begin?: number, end?: number): Uint8Array {
    return this.#index.readBytes(name, begin, end);
  }

  /** Nothing to release: the bytes are in memory. Present for {@link TensorSource}. */
  close(): void {}

  /**
   * The tensor as the typed array of its dtype (see {@link TensorData}). This is a view of the file
   * bytes when the tensor's offset is aligned for that array type, else a copy; either way, treat
   * it as read-only.
   *
   * @param name - tensor name
   * @returns dtype, shape and data
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`
   */
  get(name: string): SafetensorsTensor {
    const info = this.info(name);
    const spec = DTYPES[info.dtype];
    const count = info.byteLength / spec.size;
    const absolute = this.#bytes.byteOffset + info.byteOffset;
    let data: TensorData;
    if (absolute % spec.size === 0) {
      data = spec.make(this.#bytes.buffer, absolute, count);
    } else {
      // Typed arrays require aligned offsets; copy the bytes into a fresh, aligned buffer.
      const copy = new Uint8Array(info.byteLength);
      copy.set(this.raw(name));
      data = spec.make(copy.buffer, 0, count);
    }
    return { dtype: info.dtype, shape: info.shape, data };
  }

  /**
   * The tensor as a new Float32Array: F32 copied, F16 and BF16 decoded exactly, F64 rounded to
   * the nearest float32.
   *
   * @param name - tensor name
   * @returns a new array
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`; `UNSUPPORTED_CONVERSION` for integer and BOOL dtypes
   */
  toFloat32(name: string): Float32Array {
    const { dtype, data } = this.get(name);
    switch (dtype) {
      case 'F32':
      case 'F64': {
        // set() converts F64 with the float32 rounding of an assignment, without an iterator.
        const out = new Float32Array(data.length);
        out.set(data as Float32Array | Float64Array);
        return out;
      }
      case 'F16': {
        const table = getFloat16Table();
        const bits = data as Uint16Array;
        const out = new Float32Array(bits.length);
        for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
        return out;
      }
      case 'BF16': {
        // bfloat16 is the upper half of a float32: widen the bits in place of decoding.
        const bits = data as Uint16Array;
        const out = new Float32Array(bits.length);
        const outBits = new Uint32Array(out.buffer);
        for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
        return out;
      }
      default:
        throw new SafetensorsError(
          'UNSUPPORTED_CONVERSION',
          `tensor ${JSON.stringify(name)} is ${dtype}; toFloat32 accepts F64, F32, F16 and BF16`,
        );
    }
  }

  /**
   * The tensor as a new Int32Array: I32 copied, I16, I8, U8 and BOOL widened, I64 narrowed when
   * every value fits.
   *
   * @param name - tensor name
   * @returns a new array
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`; `UNSUPPORTED_CONVERSION` for float dtypes or an I64
   *   value outside the int32 range
   */
  toInt32(name: string): Int32Array {
    const { dtype, data } = this.get(name);
    switch (dtype) {
      case 'I32':
      case 'I16':
      case 'I8':
      case 'U8':
      case 'BOOL': {
        const out = new Int32Array(data.length);
        out.set(data as Int32Array | Int16Array | Int8Array | Uint8Array);
        return out;
      }
      case 'I64': {
        const values = data as BigInt64Array;
        // get() returns an 8-byte-aligned array, so its (low, high) int32 halves can be viewed.
        const halves = new Int32Array(values.buffer, values.byteOffset, values.length * 2);
        const out = new Int32Array(values.length);
        for (let i = 0; i < values.length; i++) {
          const low = halves[2 * i]!;
          // The value fits in int32 exactly when the high word is the sign extension of the low word.
          if (halves[2 * i + 1] !== low >> 31) {
            throw new SafetensorsError(
              'UNSUPPORTED_CONVERSION',
              `tensor ${JSON.stringify(name)} (I64) has value ${values[i]} at index ${i}, outside the int32 range [-2147483648, 2147483647]`,
            );
          }
          out[i] = low;
        }
        return out;
      }
      default:
        throw new SafetensorsError(
          'UNSUPPORTED_CONVERSION',
          `tensor ${JSON.stringify(name)} is ${dtype}; toInt32 accepts I64, I32, I16, I8, U8 and BOOL`,
        );
    }
  }

  /**
   * The tensor as a new BigInt64Array.
   *
   * @param name - tensor name
   * @returns a new array
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`; `UNSUPPORTED_CONVERSION` for any dtype but I64
   */
  toBigInt64(name: string): BigInt64Array {
    const { dtype, data } = this.get(name);
    if (dtype !== 'I64') {
      throw new SafetensorsError('UNSUPPORTED_CONVERSION', `tensor ${JSON.stringify(name)} is ${dtype}; toBigInt64 accepts I64 only`);
    }
    return (data as BigInt64Array).slice();
  }
}

/**
 * Parses and validates a safetensors file; same as {@link SafetensorsFile.parse}.
 *
 * @param bytes - the whole file
 * @param options - header size limit
 * @returns the parsed file
 * @throws {SafetensorsError} see {@link SafetensorsFile.parse}
 */
export function parseSafetensors(bytes: Uint8Array, options?: ParseOptions): SafetensorsFile {
  return SafetensorsFile.parse(bytes, options);
}

/**
 * A safetensors file read through a {@link ByteReader} (a file on disk, say): opening reads and
 * validates only the header; {@link SafetensorsReader.readBytes} then reads the bytes of one tensor
 * (or one element range) at a time, so files of any size work without holding them in memory. In
 * Node, `openSafetensorsFile(path)` of `@bytelatent/nn/node` opens one on a file.
 */
export class SafetensorsReader implements TensorSource {
  /** The `__metadata__` strings (empty if the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Size of the whole file in bytes. */
  readonly byteLength: number;
  /** What the bytes come from ({@link ParseOptions.description}; default `"safetensors"`). */
  readonly description: string;

  readonly #reader: ByteReader;
  readonly #tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  readonly #ordered: readonly string[];

  private constructor(reader: ByteReader, layout: Layout, description: string) {
    this.#reader = reader;
    this.byteLength = reader.byteLength;
    this.metadata = layout.metadata;
    this.description = description;
    this.#tensors = new Map(layout.ordered.map((info) => [info.name, info]));
    this.#ordered = Object.freeze(layout.ordered.map((info) => info.name));
  }

  /**
   * Reads and validates the header (the same checks as {@link SafetensorsFile.parse}, against
   * `reader.byteLength`; messages start with the description). The reader is kept:
   * {@link SafetensorsReader.close} closes it. On a failure the reader is left open.
   *
   * @param reader - the file's bytes
   * @param options - header size limit, description
   * @returns the open file
   * @throws {SafetensorsError} as {@link SafetensorsFile.parse}; whatever `reader.read` throws
   */
  static open(reader: ByteReader, options: ParseOptions = {}): SafetensorsReader {
    const description = parseDescription(options);
    let layout: Layout;
    try {
      layout = parseLayout(reader.byteLength, (offset, length) => reader.read(offset, length), options);
    } catch (e) {
      throw prefixed(e, description);
    }
    return SafetensorsReader.fromLayout(reader, layout, description);
  }

  /** @internal A reader over a header already parsed and checked (`SafetensorsFile` builds on it). */
  static fromLayout(reader: ByteReader, layout: Layout, description: string): SafetensorsReader {
    return new SafetensorsReader(reader, layout, description);
  }

  /** Tensor names in file order (by byte offset). */
  names(): string[] {
    return [...this.#ordered];
  }

  /** Whether the file has a tensor. */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /**
   * Describes one tensor.
   *
   * @param name - tensor name
   * @returns dtype, shape and absolute byte range
   * @throws {SafetensorsError} `UNKNOWN_TENSOR` if there is no such tensor
   */
  info(name: string): SafetensorsTensorInfo {
    const info = this.#tensors.get(name);
    if (info === undefined) {
      throw new SafetensorsError(
        'UNKNOWN_TENSOR',
        `${this.description}: unknown tensor ${JSON.stringify(name)}: the file has ${this.#tensors.size} tensor${this.#tensors.size === 1 ? '' : 's'}`,
      );
    }
    return info;
  }

  /**
   * Reads the bytes of elements `[begin, end)` of the flattened tensor (little-endian, as stored).
   *
   * @param name - tensor name
   * @param begin - first element (default 0)
   * @param end - one past the last element (default: the element count)
   * @returns `(end - begin) × element size` bytes (what `reader.read` returns: a fresh buffer for a
   *   file)
   * @throws {SafetensorsError} `UNKNOWN_TENSOR`; `INVALID_ARGUMENT` for a bad range; whatever
   *   `reader.read` throws (`TRUNCATED` if a file shrank since it was opened)
   */
  readBytes(name: string, begin?: number, end?: number): Uint8Array {
    const info = this.info(name);
    const range = checkElementRange(this.description, info, begin, end);
    const size = DTYPES[info.dtype].size;
    return this.#reader.read(info.byteOffset + range.begin * size, (range.end - range.begin) * size);
  }

  /** Closes the reader (the file). Reading afterwards fails. */
  close(): void {
    this.#reader.close?.();
  }
}

// --- writing ------------------------------------------------------------------------------------

interface PreparedTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

function prepareTensor(name: string, tensor: SafetensorsTensor): PreparedTensor {
  if (name === '' || name === METADATA_KEY) {
    throw new SafetensorsError('INVALID_ARGUMENT', `tensor name must be non-empty and not "${METADATA_KEY}", got ${JSON.stringify(name)}`);
  }
  if (!isPlainObject(tensor)) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `tensor "${name}" must be an object { dtype, shape, data }, got ${describeValue(tensor)}`,
    );
  }
  const { dtype, shape, data } = tensor;
  if (!isDtype(dtype)) {
    throw new SafetensorsError(
      'INVALID_DTYPE',
      `tensor "${name}": unknown dtype ${describeValue(dtype)}; supported: ${DTYPE_NAMES.join(', ')}`,
    );
  }
  const count = shapeElementCount(shape);
  if (typeof count === 'string') throw new SafetensorsError('INVALID_SHAPE', `tensor "${name}": ${count}`);
  const spec = DTYPES[dtype];
  const tag = typedArrayTag(data);
  if (tag !== spec.tag) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `tensor "${name}": dtype ${dtype} needs a ${spec.tag} as data, got ${tag ?? describeValue(data)}`,
    );
  }
  if (data.length !== count) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `tensor "${name}": shape [${shape.join(', ')}] has ${count} elements but data has ${data.length}`,
    );
  }
  return {
    name,
    dtype,
    shape: shape.map((d) => (d === 0 ? 0 : d)),
    bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

/**
 * Writes tensors in the safetensors format. As the official writer does, tensors are laid out by
 * descending element size, then by name, so every tensor is aligned for its typed array, and the
 * header is padded with spaces so the data area starts at a multiple of 8.
 *
 * @param tensors - tensors by name (a record or a map)
 * @param metadata - optional `__metadata__` strings (omitted from the file when empty)
 * @returns the file bytes, readable by {@link parseSafetensors}
 * @throws {SafetensorsError} `INVALID_ARGUMENT` for a bad name, a data array of the wrong type or
 *   length; `INVALID_DTYPE`, `INVALID_SHAPE`, `INVALID_METADATA` for a bad dtype, shape or metadata;
 *   `UNSUPPORTED_CONVERSION` on a big-endian host
 */
export function serializeSafetensors(
  tensors: Readonly<Record<string, SafetensorsTensor>> | ReadonlyMap<string, SafetensorsTensor>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  assertLittleEndianHost();
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw new SafetensorsError('INVALID_ARGUMENT', `tensors must be a record or a Map of tensors, got ${describeValue(tensors)}`);
  }
  const input: [string, SafetensorsTensor][] =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, SafetensorsTensor>)] : Object.entries(tensors);
  const prepared: PreparedTensor[] = [];
  for (const [name, tensor] of input) {
    if (typeof name !== 'string') {
      throw new SafetensorsError('INVALID_ARGUMENT', `tensor names must be strings, got ${describeValue(name)}`);
    }
    prepared.push(prepareTensor(name, tensor));
  }
  prepared.sort((a, b) => DTYPES[b.dtype].size - DTYPES[a.dtype].size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Built by hand, not with one JSON.stringify of an object: JS objects move integer-like keys
  // ("0", "12") to the front, and the header should list tensors in data order.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta = parseMetadata(metadata);
    const keys = Object.keys(meta);
    if (keys.length > 0) {
      parts.push(`${JSON.stringify(METADATA_KEY)}:{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(meta[k])}`).join(',')}}`);
    }
  }
  let dataLength = 0;
  for (const t of prepared) {
    const begin = dataLength;
    dataLength += t.bytes.byteLength;
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [begin, dataLength] })}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  // Trailing spaces are valid JSON whitespace; they make 8 + N a multiple of 8.
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLength + dataLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, headerLength % 0x100000000, true);
  dv.setUint32(4, Math.floor(headerLength / 0x100000000), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLength);
  let offset = 8 + headerLength;
  for (const t of prepared) {
    out.set(t.bytes, offset);
    offset += t.bytes.byteLength;
  }
  return out;
}
