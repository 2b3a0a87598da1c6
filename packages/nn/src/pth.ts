/**
 * Reading torch checkpoints (`torch.save` files: `.pth`, `.pt`, `.bin`) in pure TypeScript, so the
 * same code runs in Node and in the browser, without ever executing anything from the file.
 *
 * A `torch.save` file is a zip archive of stored (uncompressed) records under one folder whose name
 * varies (`archive/`, or the file's stem): `data.pkl` (the pickled object), `data/<key>` (the raw
 * bytes of each storage), `version`, and in newer files `byteorder` and `.data/serialization_id`.
 * Tensors in the pickle are calls of `torch._utils._rebuild_tensor_v2` on a persistent id
 * `('storage', torch.FloatStorage, key, location, numel)`.
 *
 * The reader here has two parts: a zip central-directory reader (ZIP64 included, so files over
 * 4 GiB work; every offset and size checked against the file before use) and a restricted
 * unpickler that accepts only what a state dict needs, the same promise as
 * `torch.load(weights_only=True)`: any other global or callable is refused with a
 * {@link PthError} naming it.
 */
import { CodedError } from '@bytelatent/bytes';
import { checkElementRange, dtypeByteSize, type SafetensorsDtype } from './safetensors.js';
import { type ByteReader, type TensorSource, type TensorSourceInfo, bytesReader } from './tensor-source.js';

/**
 * Machine-readable reason of a {@link PthError}.
 *
 * - `NOT_A_ZIP`: no zip end record (not a zip at all).
 * - `LEGACY_FORMAT`: the pre-1.6 torch format (`_use_new_zipfile_serialization=False`), not supported.
 * - `TRUNCATED`: an offset or size points past the end of the file or of its region.
 * - `INVALID_ZIP`: a bad signature, an inconsistent or corrupt central directory or local header.
 * - `UNSUPPORTED_ENTRY`: a compressed or encrypted record, or a multi-disk archive.
 * - `MISSING_RECORD`: no `<folder>/data.pkl`, or no `data/<key>` record for a storage.
 * - `UNSUPPORTED_BYTE_ORDER`: the `byteorder` record is not `little`.
 * - `INVALID_PICKLE`: a malformed pickle (unknown opcode, stack underflow, wrong argument types).
 * - `FORBIDDEN_GLOBAL`: the pickle names a global or calls something a state dict does not need.
 * - `UNSUPPORTED_DTYPE`: a storage type without a {@link SafetensorsDtype} (complex, quantized).
 * - `INVALID_TENSOR`: a shape, stride or offset outside its storage, or a storage whose record has
 *   the wrong size.
 * - `LIMIT_EXCEEDED`: the pickle, the central directory or the nesting is larger than allowed.
 * - `NOT_A_STATE_DICT`: no dict of tensors where {@link PthFile.stateDict} looked.
 * - `DUPLICATE_TENSOR`: two entries of a state dict flatten to the same name.
 * - `UNKNOWN_TENSOR`, `INVALID_ARGUMENT`: a bad name, range or option.
 */
export type PthErrorCode =
  | 'NOT_A_ZIP'
  | 'LEGACY_FORMAT'
  | 'TRUNCATED'
  | 'INVALID_ZIP'
  | 'UNSUPPORTED_ENTRY'
  | 'MISSING_RECORD'
  | 'UNSUPPORTED_BYTE_ORDER'
  | 'INVALID_PICKLE'
  | 'FORBIDDEN_GLOBAL'
  | 'UNSUPPORTED_DTYPE'
  | 'INVALID_TENSOR'
  | 'LIMIT_EXCEEDED'
  | 'NOT_A_STATE_DICT'
  | 'DUPLICATE_TENSOR'
  | 'UNKNOWN_TENSOR'
  | 'INVALID_ARGUMENT';

/**
 * Every error thrown by the torch checkpoint reader of `@bytelatent/nn`. `code` says what went
 * wrong; the message names the file (its `description`), the record or tensor, and the numbers.
 */
export class PthError extends CodedError<PthErrorCode> {
  override readonly name = 'PthError';
}

/** Options of {@link parsePth} and {@link openPth}. */
export interface PthOptions {
  /** What the bytes come from (a path, URL or file name), named by errors. Default `"pth"`. */
  readonly description?: string;
  /** Largest accepted `data.pkl`, in bytes. Default 100 MB (a state dict's pickle is ~100 bytes per tensor). */
  readonly maxPickleBytes?: number;
  /** Largest accepted zip central directory, in bytes. Default 100 MB. */
  readonly maxDirectoryBytes?: number;
  /** Deepest accepted nesting of pickle marks and of containers in the result. Default 1000. */
  readonly maxDepth?: number;
}

const DEFAULT_MAX_PICKLE_BYTES = 100_000_000;
const DEFAULT_MAX_DIRECTORY_BYTES = 100_000_000;
const DEFAULT_MAX_DEPTH = 1000;
/** Longest LONG4 integer accepted, in bytes (an int of 2^65536: far beyond any state dict). */
const MAX_LONG_BYTES = 8192;

// --- values ---------------------------------------------------------------------------------------

/**
 * A value of the unpickled tree: `None` → `null`, bools, ints (a `number` when it is a safe integer,
 * else a `bigint`), floats (`number`), `str` → `string`, `bytes`/`bytearray` → `Uint8Array`, lists
 * → arrays, tuples → frozen arrays, dicts and `OrderedDict`s → `Map`s (keys in insertion order),
 * tensors → {@link PthTensor} handles. A pickle may make a list contain itself: the tree can have
 * cycles (state dicts never do).
 */
export type PickleValue = null | boolean | number | bigint | string | Uint8Array | readonly PickleValue[] | PickleDict | PthTensor;

/** A pickled dict or `OrderedDict`. */
export type PickleDict = Map<PickleValue, PickleValue>;

/** One storage of the archive: the raw bytes of `<folder>/data/<key>`. */
export interface PthStorage {
  /** The record key (`data/<key>`). */
  readonly key: string;
  readonly dtype: SafetensorsDtype;
  /** Number of elements. */
  readonly numel: number;
  /** Absolute offset of the storage's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/**
 * A tensor of a torch checkpoint: a view (`shape`, `stride`, `storageOffset`, all in elements) of a
 * {@link PthStorage}. Tied tensors share a storage; a tensor saved as a view (a transpose, a slice)
 * keeps its strides. Nothing is read until {@link PthTensor.readBytes}.
 */
export class PthTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  readonly storageOffset: number;
  readonly storage: PthStorage;
  /** Number of elements (the product of `shape`). */
  readonly numel: number;
  /** `numel × bytes per element`: the size of {@link PthTensor.readBytes} of the whole tensor. */
  readonly byteLength: number;
  /** Whether the elements lie row-major and dense in the storage (then reads are views, no gather). */
  readonly contiguous: boolean;

  readonly #archive: Archive;

  /** @internal Built by the unpickler after checking the view against the storage. */
  constructor(
    archive: Archive,
    storage: PthStorage,
    storageOffset: number,
    shape: readonly number[],
    stride: readonly number[],
    numel: number,
  ) {
    this.#archive = archive;
    this.dtype = storage.dtype;
    this.storage = storage;
    this.storageOffset = storageOffset;
    this.shape = Object.freeze([...shape]);
    this.stride = Object.freeze([...stride]);
    this.numel = numel;
    this.byteLength = numel * dtypeByteSize(storage.dtype);
    let expected = 1;
    let contiguous = true;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (shape[d] !== 1 && stride[d] !== expected) contiguous = false;
      expected *= shape[d]!;
    }
    this.contiguous = contiguous || numel === 0;
  }

  /**
   * Row-major little-endian bytes of elements `[begin, end)` of the flattened tensor. A contiguous
   * tensor's bytes are read directly (a view of the file for bytes in memory); a non-contiguous one
   * (a transpose, a strided slice, an expanded tensor) is gathered into a new buffer, after reading
   * the span of its storage that it covers.
   *
   * @param begin - first element (default 0)
   * @param end - one past the last element (default: `numel`)
   * @param name - names the tensor in errors
   * @returns `(end - begin) × element size` bytes; may be a view of the file: do not modify it
   * @throws {PthError} `INVALID_ARGUMENT` unless `0 <= begin <= end <= numel` are integers; whatever
   *   the reader throws
   */
  readBytes(begin?: number, end?: number, name = 'tensor'): Uint8Array {
    let range: { begin: number; end: number };
    try {
      range = checkElementRange(this.#archive.description, { name, shape: this.shape }, begin, end);
    } catch (e) {
      throw new PthError('INVALID_ARGUMENT', (e as Error).message);
    }
    const size = dtypeByteSize(this.dtype);
    const count = range.end - range.begin;
    if (this.contiguous || count === 0) {
      return this.#archive.reader.read(this.storage.byteOffset + (this.storageOffset + range.begin) * size, count * size);
    }
    // Strides are non-negative, so the view covers storage elements [storageOffset, last].
    let last = this.storageOffset;
    for (let d = 0; d < this.shape.length; d++) last += (this.shape[d]! - 1) * this.stride[d]!;
    let span = this.#archive.reader.read(this.storage.byteOffset + this.storageOffset * size, (last - this.storageOffset + 1) * size);
    if (span.byteOffset % size !== 0) span = span.slice();
    return gather(span, size, this.shape, this.stride, range.begin, count);
  }
}

/** Copies `count` elements from flat index `begin` of a strided view of `span` into a new buffer. */
function gather(
  span: Uint8Array,
  size: number,
  shape: readonly number[],
  stride: readonly number[],
  begin: number,
  count: number,
): Uint8Array {
  const out = new Uint8Array(count * size);
  const nd = shape.length;
  const index = new Array<number>(nd).fill(0);
  let rest = begin;
  let pos = 0;
  for (let d = nd - 1; d >= 0; d--) {
    index[d] = rest % shape[d]!;
    rest = Math.floor(rest / shape[d]!);
    pos += index[d]! * stride[d]!;
  }
  // Elements of 1, 2 or 4 bytes move as one typed-array element; 8-byte ones as two 32-bit words.
  const words = size === 8 ? 2 : 1;
  const unit = size === 8 ? 4 : size;
  const make = (b: Uint8Array) =>
    unit === 1
      ? b
      : unit === 2
        ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2)
        : new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  const src = make(span);
  const dst = make(out);
  const innerSize = nd === 0 ? 1 : shape[nd - 1]!;
  const innerStride = nd === 0 ? 0 : stride[nd - 1]!;
  let i = 0;
  while (i < count) {
    // The rest of the current innermost row, then carry into the outer dimensions.
    const run = Math.min(count - i, innerSize - (nd === 0 ? 0 : index[nd - 1]!));
    if (words === 1) {
      for (let k = 0; k < run; k++) dst[i + k] = src[pos + k * innerStride]!;
    } else {
      for (let k = 0; k < run; k++) {
        const s = 2 * (pos + k * innerStride);
        dst[2 * (i + k)] = src[s]!;
        dst[2 * (i + k) + 1] = src[s + 1]!;
      }
    }
    i += run;
    if (i >= count) break;
    pos += (run - 1) * innerStride;
    // Advance the odometer by one element past the row just copied.
    let d = nd - 1;
    index[d] = index[d]! + run - 1;
    for (;;) {
      index[d] = index[d]! + 1;
      pos += stride[d]!;
      if (index[d]! < shape[d]!) break;
      pos -= stride[d]! * shape[d]!;
      index[d] = 0;
      d--;
    }
  }
  return out;
}

// --- zip ------------------------------------------------------------------------------------------

interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly flags: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const END_SIZE = 22;
const LOCATOR64_SIZE = 20;
const END64_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const MAX_COMMENT = 0xffff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/** An unsigned 64-bit little-endian field; above 2^53 the result is inexact but still too large for any check to pass. */
function u64(dv: DataView, at: number): number {
  return dv.getUint32(at + 4, true) * 0x100000000 + dv.getUint32(at, true);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The magic number the legacy format pickles first (after `\x80\x02\x8a\x0a`). */
const LEGACY_MAGIC = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/** @internal The zip archive of a checkpoint: its entries and the reader of its bytes. */
class Archive {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Where entry data must end: the start of the central directory. */
  readonly dataEnd: number;
  readonly #dataOffsets = new Map<string, number>();

  constructor(
    readonly reader: ByteReader,
    readonly description: string,
    maxDirectoryBytes: number,
  ) {
    const { entries, dataEnd } = readDirectory(reader, description, maxDirectoryBytes);
    this.entries = entries;
    this.dataEnd = dataEnd;
  }

  /** Absolute offset and size of a stored entry's data, after checking its local header. */
  locate(entry: ZipEntry): { offset: number; size: number } {
    const where = `${this.description}: zip entry ${JSON.stringify(entry.name)}`;
    if ((entry.flags & 0x1) !== 0) throw new PthError('UNSUPPORTED_ENTRY', `${where} is encrypted`);
    if (entry.method !== 0) {
      throw new PthError(
        'UNSUPPORTED_ENTRY',
        `${where} is compressed (method ${entry.method}${entry.method === 8 ? ', deflate' : ''}); torch.save stores records uncompressed and only stored records are read`,
      );
    }
    if (entry.compressedSize !== entry.size) {
      throw new PthError(
        'INVALID_ZIP',
        `${where} is stored but its compressed size ${entry.compressedSize} differs from its size ${entry.size}`,
      );
    }
    let offset = this.#dataOffsets.get(entry.name);
    if (offset === undefined) {
      const h = entry.localHeaderOffset;
      if (h + LOCAL_SIZE > this.dataEnd) {
        throw new PthError('TRUNCATED', `${where}: local header at ${h} runs past the central directory at ${this.dataEnd}`);
      }
      const dv = view(this.reader.read(h, LOCAL_SIZE));
      if (dv.getUint32(0, true) !== SIG_LOCAL) {
        throw new PthError('INVALID_ZIP', `${where}: no local header signature at offset ${h}`);
      }
      const method = dv.getUint16(8, true);
      const nameLength = dv.getUint16(26, true);
      const extraLength = dv.getUint16(28, true);
      offset = h + LOCAL_SIZE + nameLength + extraLength;
      if (offset > this.dataEnd) {
        throw new PthError(
          'TRUNCATED',
          `${where}: local header at ${h} (${LOCAL_SIZE + nameLength + extraLength} bytes) runs past the central directory at ${this.dataEnd}`,
        );
      }
      const localName = decodeUtf8(this.reader.read(h + LOCAL_SIZE, nameLength));
      if (localName !== entry.name || method !== entry.method) {
        throw new PthError(
          'INVALID_ZIP',
          `${where}: the local header at ${h} says ${JSON.stringify(localName)} (method ${method}), the central directory ${JSON.stringify(entry.name)} (method ${entry.method})`,
        );
      }
      this.#dataOffsets.set(entry.name, offset);
    }
    if (offset + entry.size > this.dataEnd) {
      throw new PthError(
        'TRUNCATED',
        `${where}: ${entry.size} bytes of data at offset ${offset} run past the central directory at ${this.dataEnd} (by ${offset + entry.size - this.dataEnd} bytes)`,
      );
    }
    return { offset, size: entry.size };
  }

  /** A whole small record. */
  readEntry(entry: ZipEntry): Uint8Array {
    const { offset, size } = this.locate(entry);
    return this.reader.read(offset, size);
  }
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function isLegacy(head: Uint8Array): boolean {
  return (
    head.length >= 14 &&
    head[0] === 0x80 &&
    head[1] === 0x02 &&
    head[2] === 0x8a &&
    head[3] === 0x0a &&
    LEGACY_MAGIC.every((b, i) => head[4 + i] === b)
  );
}

/** Finds the end records and reads every central directory entry, checking each against the file. */
function readDirectory(
  reader: ByteReader,
  description: string,
  maxDirectoryBytes: number,
): { entries: Map<string, ZipEntry>; dataEnd: number } {
  const length = reader.byteLength;
  const head = reader.read(0, Math.min(length, 14));
  if (isLegacy(head)) {
    throw new PthError(
      'LEGACY_FORMAT',
      `${description} is in torch's legacy (pre-1.6) format, written with _use_new_zipfile_serialization=False; it is not supported: re-save it with torch.save(torch.load(path, weights_only=True), path) or convert it to safetensors`,
    );
  }
  const looksLikeZip = head.length >= 4 && view(head).getUint32(0, true) === SIG_LOCAL;
  const tailStart = Math.max(0, length - END_SIZE - MAX_COMMENT);
  const tail = reader.read(tailStart, length - tailStart);
  const tv = view(tail);
  let end = -1;
  // The end record is the last one whose comment runs exactly to the end of the file.
  for (let i = tail.length - END_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_END && i + END_SIZE + tv.getUint16(i + 20, true) === tail.length) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    if (looksLikeZip) {
      throw new PthError(
        'TRUNCATED',
        `${description} starts like a zip but has no end-of-central-directory record in its last ${tail.length} bytes: the file is truncated`,
      );
    }
    const first = head.length > 0 ? `0x${head[0]!.toString(16).padStart(2, '0')}` : 'nothing';
    throw new PthError(
      'NOT_A_ZIP',
      `${description} (${length} bytes, first byte ${first}) is not a zip archive: no end-of-central-directory record; a torch.save file is a zip`,
    );
  }
  const endOffset = tailStart + end;
  const disk = tv.getUint16(end + 4, true);
  const directoryDisk = tv.getUint16(end + 6, true);
  let entriesOnDisk = tv.getUint16(end + 8, true);
  let count = tv.getUint16(end + 10, true);
  let directorySize = tv.getUint32(end + 12, true);
  let directoryOffset = tv.getUint32(end + 16, true);
  let directoryEnd = endOffset;
  let multiDisk = (disk !== 0 && disk !== U16_MAX) || (directoryDisk !== 0 && directoryDisk !== U16_MAX);

  // ZIP64: a locator right before the end record points to the ZIP64 end record, whose 64-bit
  // fields replace the saturated 16- and 32-bit ones.
  const locatorOffset = endOffset - LOCATOR64_SIZE;
  const locator = locatorOffset >= 0 ? view(reader.read(locatorOffset, LOCATOR64_SIZE)) : undefined;
  if (locator !== undefined && locator.getUint32(0, true) === SIG_LOCATOR64) {
    const end64Offset = u64(locator, 8);
    const disks = locator.getUint32(16, true);
    if (locator.getUint32(4, true) !== 0 || disks > 1) multiDisk = true;
    if (end64Offset + END64_SIZE > locatorOffset) {
      throw new PthError(
        'TRUNCATED',
        `${description}: the ZIP64 locator points to an end record at offset ${end64Offset}, past the locator at ${locatorOffset}`,
      );
    }
    const e64 = view(reader.read(end64Offset, END64_SIZE));
    if (e64.getUint32(0, true) !== SIG_END64) {
      throw new PthError('INVALID_ZIP', `${description}: no ZIP64 end-of-central-directory signature at offset ${end64Offset}`);
    }
    if (e64.getUint32(16, true) !== 0 || e64.getUint32(20, true) !== 0) multiDisk = true;
    entriesOnDisk = u64(e64, 24);
    count = u64(e64, 32);
    directorySize = u64(e64, 40);
    directoryOffset = u64(e64, 48);
    directoryEnd = end64Offset;
  } else if (count === U16_MAX || directorySize === U32_MAX || directoryOffset === U32_MAX) {
    throw new PthError(
      'INVALID_ZIP',
      `${description}: the end record has saturated fields (ZIP64) but there is no ZIP64 locator before it`,
    );
  }
  if (multiDisk || entriesOnDisk !== count) {
    throw new PthError('UNSUPPORTED_ENTRY', `${description} is a multi-disk (split) zip archive, which is not supported`);
  }
  if (directorySize > maxDirectoryBytes) {
    throw new PthError(
      'LIMIT_EXCEEDED',
      `${description}: central directory of ${directorySize} bytes exceeds the limit of ${maxDirectoryBytes}`,
    );
  }
  if (directoryOffset + directorySize > directoryEnd) {
    throw new PthError(
      'TRUNCATED',
      `${description}: central directory [${directoryOffset}, ${directoryOffset + directorySize}) runs past its end record at ${directoryEnd}`,
    );
  }
  if (count * CENTRAL_SIZE > directorySize) {
    throw new PthError('INVALID_ZIP', `${description}: ${count} entries cannot fit in a central directory of ${directorySize} bytes`);
  }
  const directory = reader.read(directoryOffset, directorySize);
  const dv = view(directory);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    const where = `${description}: central directory entry ${i} (offset ${directoryOffset + p})`;
    if (p + CENTRAL_SIZE > directorySize) throw new PthError('INVALID_ZIP', `${where} runs past the directory's ${directorySize} bytes`);
    if (dv.getUint32(p, true) !== SIG_CENTRAL)
      throw new PthError('INVALID_ZIP', `${where}: bad signature 0x${dv.getUint32(p, true).toString(16)}`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLength = dv.getUint16(p + 28, true);
    const extraLength = dv.getUint16(p + 30, true);
    const commentLength = dv.getUint16(p + 32, true);
    let diskStart = dv.getUint16(p + 34, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const next = p + CENTRAL_SIZE + nameLength + extraLength + commentLength;
    if (next > directorySize)
      throw new PthError('INVALID_ZIP', `${where}: name, extra field and comment run past the directory's ${directorySize} bytes`);
    const name = decodeUtf8(directory.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLength));
    if (name === undefined || name.length === 0) throw new PthError('INVALID_ZIP', `${where}: the name is empty or not UTF-8`);
    // Extra fields: (id, size, data)*. The ZIP64 one (id 1) holds, in order, the 64-bit values of
    // the fields saturated in the fixed part.
    let x = p + CENTRAL_SIZE + nameLength;
    const extraEnd = x + extraLength;
    while (x < extraEnd) {
      if (x + 4 > extraEnd) throw new PthError('INVALID_ZIP', `${where} ("${name}"): truncated extra field header`);
      const id = dv.getUint16(x, true);
      const fieldSize = dv.getUint16(x + 2, true);
      const fieldEnd = x + 4 + fieldSize;
      if (fieldEnd > extraEnd)
        throw new PthError(
          'INVALID_ZIP',
          `${where} ("${name}"): extra field 0x${id.toString(16)} of ${fieldSize} bytes runs past the entry`,
        );
      if (id === 0x0001) {
        let f = x + 4;
        const take = (bytes: number, field: string): number => {
          if (f + bytes > fieldEnd) throw new PthError('INVALID_ZIP', `${where} ("${name}"): the ZIP64 extra field lacks the ${field}`);
          const value = bytes === 8 ? u64(dv, f) : dv.getUint32(f, true);
          f += bytes;
          return value;
        };
        if (size === U32_MAX) size = take(8, 'size');
        if (compressedSize === U32_MAX) compressedSize = take(8, 'compressed size');
        if (localHeaderOffset === U32_MAX) localHeaderOffset = take(8, 'local header offset');
        if (diskStart === U16_MAX) diskStart = take(4, 'disk number');
      }
      x = fieldEnd;
    }
    if (diskStart !== 0) throw new PthError('UNSUPPORTED_ENTRY', `${where} ("${name}") is on disk ${diskStart} of a multi-disk archive`);
    if (localHeaderOffset + LOCAL_SIZE > directoryOffset || compressedSize > directoryOffset) {
      throw new PthError(
        'TRUNCATED',
        `${where} ("${name}"): local header at ${localHeaderOffset} with ${compressedSize} bytes of data lies past the central directory at ${directoryOffset}`,
      );
    }
    if (entries.has(name)) throw new PthError('INVALID_ZIP', `${where}: duplicate entry ${JSON.stringify(name)}`);
    entries.set(name, { name, method, flags, compressedSize, size, localHeaderOffset });
    p = next;
  }
  if (p !== directorySize) {
    throw new PthError(
      'INVALID_ZIP',
      `${description}: the central directory declares ${directorySize} bytes but its ${count} entries take ${p}`,
    );
  }
  return { entries, dataEnd: directoryOffset };
}

// --- unpickling -----------------------------------------------------------------------------------

/** A global the pickle named; only these are ever accepted. */
class GlobalRef {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Storage classes of the `torch` module and the dtype each holds. */
const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype>> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/**
 * The callables a state dict needs. `_codecs.encode(text, 'latin1')` and `bytes()` are how pickle
 * protocol 2 writes `bytes` values.
 */
const CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  '_codecs.encode',
  'builtins.bytes',
  '__builtin__.bytes',
]);

/** A storage reference (a persistent id), valid only as `_rebuild_tensor_v2`'s first argument. */
class StorageRef {
  constructor(readonly storage: PthStorage) {}
}

type StackItem = PickleValue | GlobalRef | StorageRef | PickleValue[];

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function isDict(value: unknown): value is PickleDict {
  return value instanceof Map;
}

/** A tuple is a frozen array; a list is a mutable one. */
function isTuple(value: unknown): value is readonly StackItem[] {
  return Array.isArray(value) && Object.isFrozen(value);
}

function isList(value: unknown): value is PickleValue[] {
  return Array.isArray(value) && !Object.isFrozen(value);
}

function describeItem(value: unknown): string {
  if (value === null) return 'None';
  if (value instanceof GlobalRef) return `the global ${value.qualified}`;
  if (value instanceof StorageRef) return `a storage (key ${JSON.stringify(value.storage.key)})`;
  if (value instanceof PthTensor) return `a tensor [${value.shape.join(', ')}]`;
  if (value instanceof Map) return `a dict of ${value.size}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (isTuple(value)) return `a tuple of ${value.length}`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  return `${typeof value} ${String(value)}`;
}

/** A restricted unpickler over `data.pkl` that builds the tree, storages and tensors. */
class Unpickler {
  readonly #bytes: Uint8Array;
  readonly #dv: DataView;
  readonly #archive: Archive;
  readonly #folder: string;
  readonly #maxDepth: number;
  readonly #where: string;
  readonly #storages = new Map<string, PthStorage>();
  #pos = 0;
  #op = 0;
  #opAt = 0;

  constructor(bytes: Uint8Array, archive: Archive, folder: string, maxDepth: number) {
    this.#bytes = bytes;
    this.#dv = view(bytes);
    this.#archive = archive;
    this.#folder = folder;
    this.#maxDepth = maxDepth;
    this.#where = `${archive.description}: ${folder}data.pkl`;
  }

  get storages(): ReadonlyMap<string, PthStorage> {
    return this.#storages;
  }

  #fail(code: PthErrorCode, why: string): PthError {
    const op = OPCODE_NAMES[this.#op] ?? `0x${this.#op.toString(16)}`;
    return new PthError(code, `${this.#where}: ${why} (opcode ${op} at byte ${this.#opAt})`);
  }

  #need(n: number): number {
    const at = this.#pos;
    if (!Number.isSafeInteger(n) || n < 0 || at + n > this.#bytes.length) {
      throw this.#fail('INVALID_PICKLE', `needs ${n} more bytes but the pickle ends at byte ${this.#bytes.length}`);
    }
    this.#pos = at + n;
    return at;
  }

  #u8(): number {
    return this.#bytes[this.#need(1)]!;
  }

  #u16(): number {
    return this.#dv.getUint16(this.#need(2), true);
  }

  #u32(): number {
    return this.#dv.getUint32(this.#need(4), true);
  }

  #u64(): number {
    return u64(this.#dv, this.#need(8));
  }

  #raw(n: number): Uint8Array {
    const at = this.#need(n);
    return this.#bytes.subarray(at, at + n);
  }

  #text(n: number): string {
    const text = decodeUtf8(this.#raw(n));
    if (text === undefined) throw this.#fail('INVALID_PICKLE', `${n} bytes of a string are not valid UTF-8`);
    return text;
  }

  #line(): string {
    const start = this.#pos;
    const nl = this.#bytes.indexOf(0x0a, start);
    if (nl < 0) throw this.#fail('INVALID_PICKLE', 'a GLOBAL line has no terminating newline');
    this.#pos = nl + 1;
    const text = decodeUtf8(this.#bytes.subarray(start, nl));
    if (text === undefined) throw this.#fail('INVALID_PICKLE', 'a GLOBAL name is not valid UTF-8');
    return text;
  }

  /** Two's complement little-endian integer of `n` bytes. */
  #long(n: number): number | bigint {
    if (n > MAX_LONG_BYTES) throw this.#fail('LIMIT_EXCEEDED', `an integer of ${n} bytes exceeds the limit of ${MAX_LONG_BYTES}`);
    const bytes = this.#raw(n);
    if (n === 0) return 0;
    let hex = '';
    for (let i = n - 1; i >= 0; i--) hex += bytes[i]!.toString(16).padStart(2, '0');
    let value = BigInt(`0x${hex}`);
    if (bytes[n - 1]! >= 0x80) value -= 1n << BigInt(8 * n);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  /** Resolves a global: only the callables and storage classes a state dict needs. */
  #global(module: string, name: string): GlobalRef {
    const qualified = `${module}.${name}`;
    if (CALLABLES.has(qualified)) return new GlobalRef(module, name);
    if (module === 'torch' && /^[A-Za-z0-9]+Storage$/.test(name)) {
      if (Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, name)) return new GlobalRef(module, name);
      throw this.#fail(
        'UNSUPPORTED_DTYPE',
        `storage type ${qualified} has no supported dtype (supported: ${Object.keys(STORAGE_DTYPES)
          .map((s) => `torch.${s}`)
          .join(', ')})`,
      );
    }
    throw this.#fail(
      'FORBIDDEN_GLOBAL',
      `the pickle refers to the global ${qualified}, which a state dict does not need; refused, as torch.load(weights_only=True) would (allowed: ${[...CALLABLES].join(', ')}, torch.*Storage)`,
    );
  }

  /** A persistent id: `('storage', storage class, key, location, numel)`. */
  #persistentLoad(pid: StackItem): StorageRef {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') {
      throw this.#fail('INVALID_PICKLE', `a persistent id must be ('storage', type, key, location, numel), got ${describeItem(pid)}`);
    }
    const [, type, key, location, numel] = pid;
    if (!(type instanceof GlobalRef) || !Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, type.name) || type.module !== 'torch') {
      throw this.#fail('INVALID_PICKLE', `a persistent id's storage type must be a torch storage class, got ${describeItem(type)}`);
    }
    if (typeof key !== 'string' || key.length === 0 || key.includes('/')) {
      throw this.#fail('INVALID_PICKLE', `a storage key must be a non-empty string without "/", got ${describeItem(key)}`);
    }
    if (typeof location !== 'string')
      throw this.#fail('INVALID_PICKLE', `storage ${JSON.stringify(key)}: the location must be a string, got ${describeItem(location)}`);
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      throw this.#fail(
        'INVALID_TENSOR',
        `storage ${JSON.stringify(key)}: the element count must be a non-negative safe integer, got ${describeItem(numel)}`,
      );
    }
    const dtype = STORAGE_DTYPES[type.name]!;
    const known = this.#storages.get(key);
    if (known !== undefined) {
      if (known.dtype !== dtype || known.numel !== numel) {
        throw this.#fail(
          'INVALID_TENSOR',
          `storage ${JSON.stringify(key)} is ${known.numel} × ${known.dtype} in one place and ${numel} × ${dtype} in another`,
        );
      }
      return new StorageRef(known);
    }
    const record = `${this.#folder}data/${key}`;
    const entry = this.#archive.entries.get(record);
    if (entry === undefined)
      throw this.#fail('MISSING_RECORD', `storage ${JSON.stringify(key)} has no record ${JSON.stringify(record)} in the archive`);
    // Where the record lies (checked against the file) first, then whether its size fits the claim.
    const { offset } = this.#archive.locate(entry);
    const size = dtypeByteSize(dtype);
    if (numel * size !== entry.size) {
      throw this.#fail(
        'INVALID_TENSOR',
        `storage ${JSON.stringify(key)} claims ${numel} elements of ${dtype} (${numel * size} bytes) but its record ${JSON.stringify(record)} has ${entry.size} bytes`,
      );
    }
    const storage: PthStorage = Object.freeze({ key, dtype, numel, byteOffset: offset, byteLength: entry.size });
    this.#storages.set(key, storage);
    return new StorageRef(storage);
  }

  #intTuple(value: StackItem, what: string): number[] {
    if (!isTuple(value) || !value.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw this.#fail('INVALID_TENSOR', `a tensor's ${what} must be a tuple of non-negative integers, got ${describeItem(value)}`);
    }
    return value as number[];
  }

  /** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`. */
  #rebuildTensor(args: readonly StackItem[]): PthTensor {
    if (args.length !== 6 && args.length !== 7) {
      throw this.#fail('INVALID_PICKLE', `torch._utils._rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
    }
    const [ref, offset, sizeArg, strideArg, requiresGrad, hooks] = args;
    if (!(ref instanceof StorageRef))
      throw this.#fail('INVALID_PICKLE', `_rebuild_tensor_v2's storage must be a persistent id, got ${describeItem(ref)}`);
    const { storage } = ref;
    const what = `tensor on storage ${JSON.stringify(storage.key)} (${storage.numel} × ${storage.dtype})`;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      throw this.#fail('INVALID_TENSOR', `${what}: the storage offset must be a non-negative integer, got ${describeItem(offset)}`);
    }
    const shape = this.#intTuple(sizeArg!, 'size');
    const stride = this.#intTuple(strideArg!, 'stride');
    if (shape.length !== stride.length)
      throw this.#fail('INVALID_TENSOR', `${what}: size [${shape.join(', ')}] and stride [${stride.join(', ')}] differ in length`);
    if (typeof requiresGrad !== 'boolean')
      throw this.#fail('INVALID_PICKLE', `${what}: requires_grad must be a bool, got ${describeItem(requiresGrad)}`);
    if (!isDict(hooks)) throw this.#fail('INVALID_PICKLE', `${what}: backward_hooks must be a dict, got ${describeItem(hooks)}`);
    if (args.length === 7 && args[6] !== null && !isDict(args[6]))
      throw this.#fail('INVALID_PICKLE', `${what}: metadata must be a dict, got ${describeItem(args[6])}`);
    // Element count and the last element the view touches, before anything is allocated.
    let numel = 1;
    for (const d of shape) numel = d === 0 || numel === 0 ? 0 : numel * d;
    const shown = `size [${shape.join(', ')}], stride [${stride.join(', ')}], offset ${offset}`;
    if (!Number.isSafeInteger(numel * dtypeByteSize(storage.dtype))) {
      throw this.#fail('INVALID_TENSOR', `${what}: ${shown} has too many elements`);
    }
    if (numel > 0) {
      let last = offset;
      for (let d = 0; d < shape.length; d++) last += (shape[d]! - 1) * stride[d]!;
      if (!Number.isSafeInteger(last) || last >= storage.numel) {
        throw this.#fail('INVALID_TENSOR', `${what}: ${shown} reaches element ${last}, past the storage's ${storage.numel} elements`);
      }
    } else if (offset > storage.numel) {
      throw this.#fail('INVALID_TENSOR', `${what}: ${shown} starts past the storage's ${storage.numel} elements`);
    }
    return new PthTensor(this.#archive, storage, offset, shape, stride, numel);
  }

  #call(callable: StackItem, args: StackItem, how: string): StackItem {
    if (!(callable instanceof GlobalRef))
      throw this.#fail('FORBIDDEN_GLOBAL', `${how} of ${describeItem(callable)}, which is not an allowed callable`);
    if (!isTuple(args))
      throw this.#fail('INVALID_PICKLE', `${how} of ${callable.qualified} needs a tuple of arguments, got ${describeItem(args)}`);
    switch (callable.qualified) {
      case 'collections.OrderedDict': {
        const dict: PickleDict = new Map();
        if (args.length === 0) return dict;
        const items = args[0];
        if (args.length === 1 && isList(items)) {
          for (const pair of items) {
            if (!Array.isArray(pair) || pair.length !== 2)
              throw this.#fail('INVALID_PICKLE', `OrderedDict items must be pairs, got ${describeItem(pair)}`);
            dict.set(this.#key(pair[0]), pair[1] as PickleValue);
          }
          return dict;
        }
        throw this.#fail('INVALID_PICKLE', `collections.OrderedDict takes no arguments or a list of pairs, got ${describeItem(args)}`);
      }
      case 'torch._utils._rebuild_tensor_v2':
        if (how === 'REDUCE') return this.#rebuildTensor(args);
        break;
      case '_codecs.encode': {
        const [text, encoding] = args;
        if (how !== 'REDUCE' || args.length !== 2 || typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
          throw this.#fail(
            'FORBIDDEN_GLOBAL',
            `${how} of _codecs.encode is only accepted as encode(str, 'latin1') (how pickle writes bytes), got ${describeItem(args)}`,
          );
        }
        const out = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) {
          const code = text.charCodeAt(i);
          if (code > 0xff) throw this.#fail('INVALID_PICKLE', `_codecs.encode: character ${code} at index ${i} is not latin1`);
          out[i] = code;
        }
        return out;
      }
      case 'builtins.bytes':
      case '__builtin__.bytes':
        if (how === 'REDUCE' && args.length === 0) return new Uint8Array(0);
        throw this.#fail(
          'FORBIDDEN_GLOBAL',
          `${how} of ${callable.qualified} is only accepted with no arguments (how pickle writes b''), got ${describeItem(args)}`,
        );
      case 'torch._utils._rebuild_parameter':
        if (how === 'REDUCE') {
          if (args.length !== 3 || !(args[0] instanceof PthTensor)) {
            throw this.#fail(
              'INVALID_PICKLE',
              `torch._utils._rebuild_parameter takes (tensor, requires_grad, backward_hooks), got ${describeItem(args)}`,
            );
          }
          return args[0];
        }
        break;
    }
    throw this.#fail('FORBIDDEN_GLOBAL', `${how} of ${callable.qualified}: it may only be named as a storage type, not called`);
  }

  #key(key: unknown): PickleValue {
    if (key instanceof Map || isList(key) || key instanceof GlobalRef || key instanceof StorageRef) {
      throw this.#fail('INVALID_PICKLE', `${describeItem(key)} cannot be a dict key`);
    }
    return key as PickleValue;
  }

  /** Runs the pickle and returns its result. */
  run(): PickleValue {
    const bytes = this.#bytes;
    const stack: StackItem[] = [];
    const marks: number[] = [];
    const memo = new Map<number, StackItem>();
    const pop = (): StackItem => {
      if (stack.length <= (marks.length > 0 ? marks[marks.length - 1]! : 0)) throw this.#fail('INVALID_PICKLE', 'stack underflow');
      return stack.pop() as StackItem;
    };
    const top = (): StackItem => {
      if (stack.length <= (marks.length > 0 ? marks[marks.length - 1]! : 0)) throw this.#fail('INVALID_PICKLE', 'stack underflow');
      return stack[stack.length - 1] as StackItem;
    };
    const popMark = (): StackItem[] => {
      const mark = marks.pop();
      if (mark === undefined) throw this.#fail('INVALID_PICKLE', 'no MARK to pop to');
      return stack.splice(mark) as StackItem[];
    };
    const dictSet = (dict: StackItem, key: StackItem, value: StackItem) => {
      if (!isDict(dict)) throw this.#fail('INVALID_PICKLE', `setting an item of ${describeItem(dict)}, not a dict`);
      dict.set(this.#key(key), value as PickleValue);
    };
    let first = true;
    for (;;) {
      this.#opAt = this.#pos;
      if (this.#pos >= bytes.length) throw this.#fail('INVALID_PICKLE', 'the pickle ends without a STOP opcode');
      const op = bytes[this.#pos++]!;
      this.#op = op;
      if (first && op !== 0x80) throw this.#fail('INVALID_PICKLE', 'a pickle of protocol 2 to 5 must start with PROTO');
      first = false;
      switch (op) {
        case 0x80: {
          const proto = this.#u8();
          if (proto < 2 || proto > 5) throw this.#fail('INVALID_PICKLE', `pickle protocol ${proto} is not supported (2 to 5 are)`);
          break;
        }
        case 0x95: // FRAME: a length hint of the next frame; the data follows inline.
          this.#u64();
          break;
        case 0x2e: {
          const result = pop();
          return this.#checkResult(result);
        }
        case 0x28:
          marks.push(stack.length);
          if (marks.length > this.#maxDepth) throw this.#fail('LIMIT_EXCEEDED', `more than ${this.#maxDepth} nested MARKs`);
          break;
        case 0x30:
          if (marks.length > 0 && stack.length === marks[marks.length - 1]) marks.pop();
          else pop();
          break;
        case 0x31:
          popMark();
          break;
        case 0x32:
          stack.push(top());
          break;
        case 0x4a:
          stack.push(this.#dv.getInt32(this.#need(4), true));
          break;
        case 0x4b:
          stack.push(this.#u8());
          break;
        case 0x4d:
          stack.push(this.#u16());
          break;
        case 0x8a:
          stack.push(this.#long(this.#u8()));
          break;
        case 0x8b: {
          const n = this.#dv.getInt32(this.#need(4), true);
          if (n < 0) throw this.#fail('INVALID_PICKLE', `negative LONG4 length ${n}`);
          stack.push(this.#long(n));
          break;
        }
        case 0x47:
          stack.push(this.#dv.getFloat64(this.#need(8), false));
          break;
        case 0x4e:
          stack.push(null);
          break;
        case 0x88:
          stack.push(true);
          break;
        case 0x89:
          stack.push(false);
          break;
        case 0x58:
        case 0x54:
          stack.push(this.#text(this.#u32()));
          break;
        case 0x8c:
        case 0x55:
          stack.push(this.#text(this.#u8()));
          break;
        case 0x8d:
          stack.push(this.#text(this.#u64()));
          break;
        case 0x42:
          stack.push(this.#raw(this.#u32()).slice());
          break;
        case 0x43:
          stack.push(this.#raw(this.#u8()).slice());
          break;
        case 0x8e:
        case 0x96:
          stack.push(this.#raw(this.#u64()).slice());
          break;
        case 0x7d:
          stack.push(new Map());
          break;
        case 0x5d:
          stack.push([]);
          break;
        case 0x29:
          stack.push(Object.freeze([]));
          break;
        case 0x74:
          stack.push(Object.freeze(popMark()) as PickleValue);
          break;
        case 0x85: {
          const a = pop();
          stack.push(Object.freeze([a]) as PickleValue);
          break;
        }
        case 0x86: {
          const b = pop();
          const a = pop();
          stack.push(Object.freeze([a, b]) as PickleValue);
          break;
        }
        case 0x87: {
          const c = pop();
          const b = pop();
          const a = pop();
          stack.push(Object.freeze([a, b, c]) as PickleValue);
          break;
        }
        case 0x6c:
          stack.push(popMark() as PickleValue[]);
          break;
        case 0x64: {
          const items = popMark();
          if (items.length % 2 !== 0) throw this.#fail('INVALID_PICKLE', `DICT of an odd number (${items.length}) of items`);
          const dict: PickleDict = new Map();
          for (let i = 0; i < items.length; i += 2) dictSet(dict, items[i]!, items[i + 1]!);
          stack.push(dict);
          break;
        }
        case 0x61: {
          const value = pop();
          const list = top();
          if (!isList(list)) throw this.#fail('INVALID_PICKLE', `APPEND to ${describeItem(list)}, not a list`);
          list.push(value as PickleValue);
          break;
        }
        case 0x65: {
          const items = popMark();
          const list = top();
          if (!isList(list)) throw this.#fail('INVALID_PICKLE', `APPENDS to ${describeItem(list)}, not a list`);
          for (const item of items) list.push(item as PickleValue);
          break;
        }
        case 0x73: {
          const value = pop();
          const key = pop();
          dictSet(top(), key, value);
          break;
        }
        case 0x75: {
          const items = popMark();
          if (items.length % 2 !== 0) throw this.#fail('INVALID_PICKLE', `SETITEMS of an odd number (${items.length}) of items`);
          const dict = top();
          for (let i = 0; i < items.length; i += 2) dictSet(dict, items[i]!, items[i + 1]!);
          break;
        }
        case 0x68:
        case 0x6a: {
          const index = op === 0x68 ? this.#u8() : this.#u32();
          if (!memo.has(index)) throw this.#fail('INVALID_PICKLE', `memo entry ${index} was never stored`);
          stack.push(memo.get(index)!);
          break;
        }
        case 0x71:
        case 0x72: {
          const index = op === 0x71 ? this.#u8() : this.#u32();
          memo.set(index, top());
          break;
        }
        case 0x94:
          memo.set(memo.size, top());
          break;
        case 0x63: {
          const module = this.#line();
          const name = this.#line();
          stack.push(this.#global(module, name));
          break;
        }
        case 0x93: {
          const name = pop();
          const module = pop();
          if (typeof module !== 'string' || typeof name !== 'string') {
            throw this.#fail('INVALID_PICKLE', `STACK_GLOBAL needs two strings, got ${describeItem(module)} and ${describeItem(name)}`);
          }
          stack.push(this.#global(module, name));
          break;
        }
        case 0x52: {
          const args = pop();
          const callable = pop();
          stack.push(this.#call(callable, args, 'REDUCE'));
          break;
        }
        case 0x81: {
          const args = pop();
          const cls = pop();
          if (!(cls instanceof GlobalRef) || cls.qualified !== 'collections.OrderedDict') {
            throw this.#fail('FORBIDDEN_GLOBAL', `NEWOBJ of ${describeItem(cls)}, which is not an allowed class`);
          }
          stack.push(this.#call(cls, args, 'NEWOBJ'));
          break;
        }
        case 0x62: {
          const state = pop();
          const target = top();
          // An OrderedDict's instance attributes (a state dict's `_metadata`): checked, then dropped.
          const isState = (s: StackItem) => s === null || isDict(s);
          const ok =
            isDict(target) && (isState(state) || (isTuple(state) && state.length === 2 && isState(state[0]!) && isState(state[1]!)));
          if (!ok)
            throw this.#fail(
              'INVALID_PICKLE',
              `BUILD of ${describeItem(target)} with ${describeItem(state)}; only a dict's attributes are accepted`,
            );
          break;
        }
        case 0x51:
          stack.push(this.#persistentLoad(pop()));
          break;
        default: {
          const name = OPCODE_NAMES[op];
          throw this.#fail(
            'INVALID_PICKLE',
            name === undefined
              ? `unknown opcode 0x${op.toString(16)}`
              : `opcode ${name} is not accepted: torch.save does not write it for a state dict`,
          );
        }
      }
    }
  }

  /** The result may not expose a bare global or storage; its nesting is bounded. */
  #checkResult(result: StackItem): PickleValue {
    const seen = new Set<object>();
    const pending: [StackItem, number][] = [[result, 1]];
    while (pending.length > 0) {
      const [value, depth] = pending.pop()!;
      if (value instanceof GlobalRef || value instanceof StorageRef) {
        throw this.#fail(
          'INVALID_PICKLE',
          `the result holds ${describeItem(value)}, which is only valid as an argument of a tensor rebuild`,
        );
      }
      if (typeof value !== 'object' || value === null || value instanceof PthTensor || value instanceof Uint8Array || seen.has(value))
        continue;
      seen.add(value);
      if (depth > this.#maxDepth) throw this.#fail('LIMIT_EXCEEDED', `containers nested more than ${this.#maxDepth} deep`);
      if (value instanceof Map) {
        for (const [k, v] of value) pending.push([k, depth + 1], [v, depth + 1]);
      } else {
        for (const v of value) pending.push([v, depth + 1]);
      }
    }
    return result as PickleValue;
  }
}

// --- files and state dicts ------------------------------------------------------------------------

function positiveOption(options: PthOptions, name: 'maxPickleBytes' | 'maxDirectoryBytes' | 'maxDepth', fallback: number): number {
  const value = options[name] ?? fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new PthError('INVALID_ARGUMENT', `${name} must be a positive safe integer, got ${String(value)}`);
  return value;
}

/** Where {@link PthFile.stateDict} looks when no key is given, in order. */
const STATE_DICT_KEYS = ['model', 'state_dict'] as const;

/**
 * The tensors of a dict of a checkpoint as a {@link TensorSource}: nested dicts with string keys
 * are flattened with `.` (`{"layers": {"0": {"w": t}}}` gives `layers.0.w`); entries that are not
 * tensors or dicts (numbers, strings, lists) are not tensors of the source and are listed in
 * {@link PthStateDict.skipped}.
 */
export class PthStateDict implements TensorSource {
  /** The file's description. */
  readonly description: string;
  /** The keys from the file's top-level object to this dict (`[]` for the top level). */
  readonly path: readonly string[];
  /** Flattened names of the entries that are not tensors (nor dicts of them), in file order. */
  readonly skipped: readonly string[];

  readonly #tensors: ReadonlyMap<string, PthTensor>;
  readonly #infos = new Map<string, TensorSourceInfo>();
  readonly #file: PthFile;

  /** @internal Built by {@link PthFile.stateDict}. */
  constructor(file: PthFile, path: readonly string[], tensors: ReadonlyMap<string, PthTensor>, skipped: readonly string[]) {
    this.#file = file;
    this.description = file.description;
    this.path = Object.freeze([...path]);
    this.#tensors = tensors;
    this.skipped = Object.freeze([...skipped]);
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.#tensors.keys()];
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /**
   * The tensor handle of a name (dtype, shape, stride, storage).
   *
   * @throws {PthError} `UNKNOWN_TENSOR`
   */
  tensor(name: string): PthTensor {
    const tensor = this.#tensors.get(name);
    if (tensor === undefined) {
      const where = this.path.length > 0 ? ` under ${this.path.map((k) => JSON.stringify(k)).join(' → ')}` : '';
      throw new PthError(
        'UNKNOWN_TENSOR',
        `${this.description}: unknown tensor ${JSON.stringify(name)}: the state dict${where} has ${this.#tensors.size} tensor(s)`,
      );
    }
    return tensor;
  }

  /**
   * Name, dtype, shape and byte length of a tensor.
   *
   * @throws {PthError} `UNKNOWN_TENSOR`
   */
  info(name: string): TensorSourceInfo {
    let info = this.#infos.get(name);
    if (info === undefined) {
      const t = this.tensor(name);
      info = Object.freeze({ name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength });
      this.#infos.set(name, info);
    }
    return info;
  }

  /**
   * Row-major little-endian bytes of elements `[begin, end)`; see {@link PthTensor.readBytes}.
   *
   * @throws {PthError} `UNKNOWN_TENSOR`, `INVALID_ARGUMENT`
   */
  readBytes(name: string, begin?: number, end?: number): Uint8Array {
    return this.tensor(name).readBytes(begin, end, name);
  }

  /** Closes the file (shared with the {@link PthFile} and its other state dicts). */
  close(): void {
    this.#file.close();
  }
}

/**
 * A parsed torch checkpoint. {@link PthFile.root} is the unpickled object; {@link PthFile.stateDict}
 * gives the tensors of one of its dicts as a {@link TensorSource}. The file itself is a
 * `TensorSource` over the default state dict (`stateDict()`), so it can be passed to
 * `loadReferenceWeights` directly.
 */
export class PthFile implements TensorSource {
  /** What the bytes come from ({@link PthOptions.description}; default `"pth"`). */
  readonly description: string;
  /** The unpickled top-level object, with {@link PthTensor} handles in place of tensors. */
  readonly root: PickleValue;
  /** The archive's folder name (`archive`, or the saved file's stem). */
  readonly folder: string;
  /** The `version` record (3 for torch 1.6 to 2.x), if present. */
  readonly version: number | undefined;
  /** Every storage, by key. */
  readonly storages: ReadonlyMap<string, PthStorage>;

  readonly #reader: ByteReader;
  readonly #maxDepth: number;
  #default: PthStateDict | PthError | undefined;
  #closed = false;

  private constructor(
    reader: ByteReader,
    description: string,
    folder: string,
    version: number | undefined,
    root: PickleValue,
    storages: ReadonlyMap<string, PthStorage>,
    maxDepth: number,
  ) {
    this.#reader = reader;
    this.description = description;
    this.folder = folder;
    this.version = version;
    this.root = root;
    this.storages = storages;
    this.#maxDepth = maxDepth;
  }

  /** @internal See {@link openPth}. */
  static open(reader: ByteReader, options: PthOptions = {}): PthFile {
    const { description = 'pth' } = options;
    if (typeof description !== 'string') throw new PthError('INVALID_ARGUMENT', `description must be a string, got ${typeof description}`);
    const maxPickleBytes = positiveOption(options, 'maxPickleBytes', DEFAULT_MAX_PICKLE_BYTES);
    const maxDirectoryBytes = positiveOption(options, 'maxDirectoryBytes', DEFAULT_MAX_DIRECTORY_BYTES);
    const maxDepth = positiveOption(options, 'maxDepth', DEFAULT_MAX_DEPTH);
    const archive = new Archive(reader, description, maxDirectoryBytes);

    const pickles = [...archive.entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
    if (pickles.length === 0) {
      const names = [...archive.entries.keys()];
      throw new PthError(
        'MISSING_RECORD',
        `${description}: no <folder>/data.pkl record, so not a torch.save archive (${names.length} entries${names.length > 0 ? `: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''}` : ''})`,
      );
    }
    if (pickles.length > 1)
      throw new PthError('INVALID_ZIP', `${description}: several data.pkl records (${pickles.join(', ')}); a torch.save archive has one`);
    const folder = pickles[0]!.slice(0, -'data.pkl'.length);

    const byteorder = archive.entries.get(`${folder}byteorder`);
    if (byteorder !== undefined) {
      archive.locate(byteorder);
      const text = byteorder.size <= 16 ? decodeUtf8(archive.readEntry(byteorder))?.trim() : undefined;
      if (text !== 'little') {
        throw new PthError(
          'UNSUPPORTED_BYTE_ORDER',
          `${description}: the byteorder record says ${JSON.stringify(text ?? `${byteorder.size} bytes`)}; only little-endian checkpoints are supported`,
        );
      }
    }
    let version: number | undefined;
    const versionEntry = archive.entries.get(`${folder}.data/version`) ?? archive.entries.get(`${folder}version`);
    if (versionEntry !== undefined) {
      archive.locate(versionEntry);
      const text = versionEntry.size <= 32 ? decodeUtf8(archive.readEntry(versionEntry))?.trim() : undefined;
      if (text === undefined || !/^\d{1,9}$/.test(text)) {
        throw new PthError(
          'INVALID_ZIP',
          `${description}: the version record ${versionEntry.name} is not a number (${versionEntry.size} bytes)`,
        );
      }
      version = Number(text);
    }

    const pickleEntry = archive.entries.get(pickles[0]!)!;
    if (pickleEntry.size > maxPickleBytes) {
      throw new PthError(
        'LIMIT_EXCEEDED',
        `${description}: ${pickleEntry.name} has ${pickleEntry.size} bytes, over the limit of ${maxPickleBytes} (maxPickleBytes)`,
      );
    }
    const unpickler = new Unpickler(archive.readEntry(pickleEntry), archive, folder, maxDepth);
    const root = unpickler.run();
    return new PthFile(reader, description, folder.slice(0, -1), version, root, unpickler.storages, maxDepth);
  }

  /**
   * The tensors of a dict of the checkpoint, flattened (see {@link PthStateDict}).
   *
   * @param key - which dict: a key of the top-level dict (`"model"`), or a path of keys
   *   (`["model", "ema"]`), or `[]` for the top level itself. By default: the top-level dict's
   *   `model` entry if it is a dict holding tensors, else its `state_dict` entry, else the
   *   top-level dict.
   * @returns the state dict (computed again on each call with a key)
   * @throws {PthError} `NOT_A_STATE_DICT` when there is no such dict or it holds no tensors (the
   *   message lists the keys there); `DUPLICATE_TENSOR` when two entries flatten to one name;
   *   `LIMIT_EXCEEDED` for dicts nested deeper than `maxDepth`
   */
  stateDict(key?: string | readonly string[]): PthStateDict {
    if (key === undefined) {
      if (this.#default === undefined) {
        try {
          this.#default = this.#autoStateDict();
        } catch (e) {
          if (!(e instanceof PthError)) throw e;
          this.#default = e;
        }
      }
      if (this.#default instanceof PthError) throw this.#default;
      return this.#default;
    }
    const path = typeof key === 'string' ? [key] : [...key];
    let node: PickleValue = this.root;
    for (let i = 0; i < path.length; i++) {
      if (!isDict(node) || !node.has(path[i]!)) {
        throw new PthError(
          'NOT_A_STATE_DICT',
          `${this.description}: no entry ${path
            .slice(0, i + 1)
            .map((k) => JSON.stringify(k))
            .join(' → ')}${isDict(node) ? `; the keys there are ${keyList(node)}` : ` (${describeItem(node)} is not a dict)`}`,
        );
      }
      node = node.get(path[i]!)!;
    }
    const found = this.#flatten(node, path);
    if (found.tensors.size === 0) {
      const where = path.length > 0 ? `${path.map((k) => JSON.stringify(k)).join(' → ')}` : 'the top level';
      throw new PthError(
        'NOT_A_STATE_DICT',
        `${this.description}: ${where} ${isDict(node) ? `holds no tensors (keys: ${keyList(node)})` : `is ${describeItem(node)}, not a dict`}`,
      );
    }
    return new PthStateDict(this, path, found.tensors, found.skipped);
  }

  #autoStateDict(): PthStateDict {
    const root = this.root;
    if (isDict(root)) {
      for (const key of STATE_DICT_KEYS) {
        const value = root.get(key);
        if (isDict(value) && this.#flatten(value, [key]).tensors.size > 0) return this.stateDict([key]);
      }
      if (this.#flatten(root, []).tensors.size > 0) return this.stateDict([]);
      throw new PthError(
        'NOT_A_STATE_DICT',
        `${this.description}: no tensors at the top level or under "model" or "state_dict" (top-level keys: ${keyList(root)}); pass the key of the state dict to stateDict()`,
      );
    }
    throw new PthError('NOT_A_STATE_DICT', `${this.description}: the checkpoint holds ${describeItem(root)}, not a dict of tensors`);
  }

  #flatten(node: PickleValue, path: readonly string[]): { tensors: Map<string, PthTensor>; skipped: string[] } {
    const tensors = new Map<string, PthTensor>();
    const skipped: string[] = [];
    if (!isDict(node)) return { tensors, skipped };
    const seen = new Set<PickleDict>();
    const visit = (dict: PickleDict, prefix: string, depth: number) => {
      if (depth > this.#maxDepth)
        throw new PthError(
          'LIMIT_EXCEEDED',
          `${this.description}: dicts nested more than ${this.#maxDepth} deep under ${JSON.stringify(path.join('.'))}`,
        );
      seen.add(dict);
      for (const [k, v] of dict) {
        const name = `${prefix}${typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' ? String(k) : describeItem(k)}`;
        if (v instanceof PthTensor && (typeof k === 'string' || typeof k === 'number')) {
          if (tensors.has(name))
            throw new PthError('DUPLICATE_TENSOR', `${this.description}: two entries flatten to the tensor name ${JSON.stringify(name)}`);
          tensors.set(name, v);
        } else if (isDict(v) && typeof k === 'string' && !seen.has(v)) {
          visit(v, `${name}.`, depth + 1);
        } else {
          skipped.push(name);
        }
      }
    };
    visit(node, '', 1);
    return { tensors, skipped };
  }

  // TensorSource over the default state dict.

  /** Names of the default state dict. @throws {PthError} `NOT_A_STATE_DICT` */
  names(): string[] {
    return this.stateDict().names();
  }

  /** Whether the default state dict has a tensor. @throws {PthError} `NOT_A_STATE_DICT` */
  has(name: string): boolean {
    return this.stateDict().has(name);
  }

  /** A tensor of the default state dict. @throws {PthError} `NOT_A_STATE_DICT`, `UNKNOWN_TENSOR` */
  info(name: string): TensorSourceInfo {
    return this.stateDict().info(name);
  }

  /** Bytes of a tensor of the default state dict. @throws {PthError} `NOT_A_STATE_DICT`, `UNKNOWN_TENSOR`, `INVALID_ARGUMENT` */
  readBytes(name: string, begin?: number, end?: number): Uint8Array {
    return this.stateDict().readBytes(name, begin, end);
  }

  /** Closes the reader (the file, for `openPthFile`); idempotent. Reading afterwards fails. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader.close?.();
  }
}

function keyList(dict: PickleDict): string {
  const keys = [...dict.keys()].map((k) => (typeof k === 'string' ? JSON.stringify(k) : describeItem(k)));
  return keys.length === 0 ? '(none)' : keys.length > 12 ? `${keys.slice(0, 12).join(', ')}, ... (${keys.length})` : keys.join(', ');
}

/**
 * Opens a torch checkpoint read through a {@link ByteReader}: reads the zip central directory, the
 * small records and `data.pkl`, unpickles it without executing anything and checks every tensor
 * against its storage and every storage against its record. Tensor bytes are read later, one
 * tensor at a time. The reader is kept: {@link PthFile.close} closes it (on a failure here it is
 * left open).
 *
 * @param reader - the file's bytes
 * @param options - description, limits
 * @returns the parsed checkpoint
 * @throws {PthError} `NOT_A_ZIP`, `LEGACY_FORMAT`, `TRUNCATED`, `INVALID_ZIP`, `UNSUPPORTED_ENTRY`,
 *   `MISSING_RECORD`, `UNSUPPORTED_BYTE_ORDER` for the archive; `INVALID_PICKLE`,
 *   `FORBIDDEN_GLOBAL` (naming the global), `UNSUPPORTED_DTYPE`, `INVALID_TENSOR`, `LIMIT_EXCEEDED`
 *   for the pickle; `INVALID_ARGUMENT` for bad options
 */
export function openPth(reader: ByteReader, options?: PthOptions): PthFile {
  return PthFile.open(reader, options);
}

/**
 * Parses a torch checkpoint held in memory (see {@link openPth}). Contiguous tensors are read as
 * views of `bytes` (no copy): do not modify them while the file is in use.
 *
 * @param bytes - the whole file
 * @param options - description, limits
 * @returns the parsed checkpoint
 * @throws {PthError} see {@link openPth}; `INVALID_ARGUMENT` if `bytes` is not a Uint8Array
 */
export function parsePth(bytes: Uint8Array, options?: PthOptions): PthFile {
  let reader: ByteReader;
  try {
    reader = bytesReader(bytes);
  } catch (e) {
    throw new PthError('INVALID_ARGUMENT', (e as Error).message);
  }
  return PthFile.open(reader, options);
}
