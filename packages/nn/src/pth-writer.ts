/**
 * Writing torch checkpoints (what `torch.save(obj, path)` writes, read back by `torch.load` —
 * `weights_only=True` included — and by {@link parsePth}) in pure TypeScript, so the same code runs
 * in Node and in the browser.
 *
 * The file is a zip of stored (uncompressed) records under one folder, the archive name (torch uses
 * the saved file's name without its extension, or `archive` for a buffer):
 *
 *   data.pkl      pickle protocol 2: {"model": OrderedDict(name → torch._utils._rebuild_tensor_v2(
 *                 persistent_id(("storage", torch.<Type>Storage, "<key>", "cpu", numel)), 0, size,
 *                 stride, False, OrderedDict()))} (or the OrderedDict itself without a top key),
 *                 storages keyed "0", "1", ... in the state dict's order, Python's memo numbering and
 *                 1000-item SETITEMS batches
 *   byteorder     "little"                                  (torch >= 2.1)
 *   data/<key>    raw little-endian storage bytes, records in key order sorted as strings
 *   version       "3\n"
 *   .data/serialization_id   40 digits                      (torch >= 2.1)
 *
 * Every record's data starts on a 64-byte boundary (an "FB" extra field of 'Z' padding in the local
 * header), local headers carry no sizes (flag bit 3: a data descriptor with the CRC-32 and the sizes
 * follows the data; an empty record, e.g. an empty tensor's storage, has neither the flag nor a
 * descriptor), records whose size or header offset reach 4 GiB carry ZIP64 extra fields, and the
 * archive always ends with a ZIP64 end record + locator + the classic end record. With the
 * `torch1` flavour (no byteorder, no serialization id) the bytes are those of torch 1.13's own
 * `torch.save` of the same OrderedDict (checked by `test-data/check_pth_writer.py`).
 *
 * Besides {@link serializePth} (a whole file in memory), the pieces are exported for writers that
 * stream storages too large to hold ({@link planPthArchive}, {@link pthDataDescriptor},
 * {@link pthArchiveEnd}, {@link crc32}).
 */
import { PthError } from './pth.js';
import type { SafetensorsDtype, SafetensorsTensor } from './safetensors.js';

/** `torch2`: the records torch >= 2.1 writes (`byteorder`, `.data/serialization_id`); `torch1`: torch 1.6–2.0. */
export type PthFlavor = 'torch2' | 'torch1';

/** One tensor of a planned checkpoint: what the pickle and the storage record need to know. */
export interface PthTensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** Dimensions; `[]` is a 0-d tensor (one element). */
  readonly shape: readonly number[];
}

/** Options of {@link serializePth} and {@link planPthArchive}. */
export interface PthWriteOptions {
  /**
   * The top-level key the state dict is saved under, as in `torch.save({"model": state_dict})`
   * (default `"model"`, the reference's consolidated checkpoints); `null` saves the OrderedDict itself
   * (`torch.save(state_dict)`).
   */
  readonly topKey?: string | null;
  /** The archive's folder name (default `"archive"`; torch names it after the file: `consolidated`). */
  readonly archiveName?: string;
  /** Which torch's records to write (default `torch2`). */
  readonly flavor?: PthFlavor;
}

/** One record of a planned archive. */
export interface PthRecordPlan {
  /** Full name in the archive (`<archive>/data.pkl`, `<archive>/data/0`, ...). */
  readonly name: string;
  /** Bytes of data. */
  readonly size: number;
  /** Offset of the local header in the file. */
  readonly offset: number;
  /** The local header, padding included: the data starts at `offset + localHeader.byteLength`, a multiple of 64. */
  readonly localHeader: Uint8Array;
  /** Whether the record carries ZIP64 fields (size or offset at or past 4 GiB). */
  readonly zip64: boolean;
  /** The data of a small record (data.pkl, byteorder, version, serialization id); absent for a storage. */
  readonly bytes?: Uint8Array;
  /** For a storage record: the index of its tensor in the planned list (its storage key). */
  readonly storage?: number;
}

/** A planned archive: every record's offset and header, the end records' place, the file size. */
export interface PthArchivePlan {
  readonly records: readonly PthRecordPlan[];
  /** Offset of the central directory. */
  readonly centralOffset: number;
  /** Size of the whole file. */
  readonly totalBytes: number;
}

const ALIGN = 64;
const U32_MAX = 0xffffffff;

interface StorageSpec {
  /** torch's storage class for the dtype. */
  readonly storage: string;
  readonly size: number;
  /** `Object.prototype.toString` tag of the typed array holding the dtype (as in safetensors). */
  readonly tag: string;
}

/** The storage class of each dtype (what `torch.load` maps back to the dtype) and its element size. */
const STORAGES: Readonly<Record<SafetensorsDtype, StorageSpec>> = {
  F64: { storage: 'DoubleStorage', size: 8, tag: 'Float64Array' },
  F32: { storage: 'FloatStorage', size: 4, tag: 'Float32Array' },
  F16: { storage: 'HalfStorage', size: 2, tag: 'Uint16Array' },
  BF16: { storage: 'BFloat16Storage', size: 2, tag: 'Uint16Array' },
  I64: { storage: 'LongStorage', size: 8, tag: 'BigInt64Array' },
  I32: { storage: 'IntStorage', size: 4, tag: 'Int32Array' },
  I16: { storage: 'ShortStorage', size: 2, tag: 'Int16Array' },
  I8: { storage: 'CharStorage', size: 1, tag: 'Int8Array' },
  U8: { storage: 'ByteStorage', size: 1, tag: 'Uint8Array' },
  BOOL: { storage: 'BoolStorage', size: 1, tag: 'Uint8Array' },
};

function storageSpec(dtype: SafetensorsDtype, what: string): StorageSpec {
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(STORAGES, dtype)) {
    throw new PthError(
      'UNSUPPORTED_DTYPE',
      `${what}: dtype ${JSON.stringify(dtype)} has no torch storage here (supported: ${Object.keys(STORAGES).join(', ')})`,
    );
  }
  return STORAGES[dtype];
}

/**
 * The torch storage class a dtype is saved as (`FloatStorage`, `BFloat16Storage`, ...).
 *
 * @throws {PthError} `UNSUPPORTED_DTYPE` for an unknown dtype
 */
export function pthStorageClass(dtype: SafetensorsDtype): string {
  return storageSpec(dtype, 'pthStorageClass').storage;
}

function numelOf(shape: readonly number[], what: string): number {
  if (!Array.isArray(shape)) throw new PthError('INVALID_ARGUMENT', `${what}: shape must be an array of integers`);
  let n = 1;
  for (const [i, d] of shape.entries()) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      throw new PthError('INVALID_ARGUMENT', `${what}: shape[${i}] must be a non-negative safe integer, got ${String(d)}`);
    n *= d;
  }
  if (!Number.isSafeInteger(n))
    throw new PthError('INVALID_ARGUMENT', `${what}: shape [${shape.join(', ')}] has more than Number.MAX_SAFE_INTEGER elements`);
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Pickle (protocol 2), with Python's memo numbering.

class Pickler {
  private buf = new Uint8Array(4096);
  private length = 0;
  private memoSize = 0;

  private ensure(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + extra));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b & 0xff;
  }
  private u16(v: number): void {
    this.byte(v);
    this.byte(v >>> 8);
  }
  private u32(v: number): void {
    for (let i = 0; i < 4; i++) this.byte(v >>> (8 * i));
  }
  private raw(bytes: Uint8Array): void {
    this.ensure(bytes.byteLength);
    this.buf.set(bytes, this.length);
    this.length += bytes.byteLength;
  }
  op(code: string): void {
    this.byte(code.charCodeAt(0));
  }
  proto(): void {
    this.byte(0x80);
    this.byte(2);
  }
  /** Memoizes the object just written (BINPUT / LONG_BINPUT); returns its memo index. */
  put(): number {
    const i = this.memoSize++;
    if (i < 256) {
      this.op('q');
      this.byte(i);
    } else {
      this.op('r');
      this.u32(i);
    }
    return i;
  }
  /** BINGET / LONG_BINGET. */
  get(i: number): void {
    if (i < 256) {
      this.op('h');
      this.byte(i);
    } else {
      this.op('j');
      this.u32(i);
    }
  }
  /** BINUNICODE + memo. */
  str(s: string): number {
    const bytes = new TextEncoder().encode(s);
    this.op('X');
    this.u32(bytes.byteLength);
    this.raw(bytes);
    return this.put();
  }
  /** GLOBAL + memo. */
  global(module: string, name: string): number {
    this.op('c');
    this.raw(new TextEncoder().encode(`${module}\n${name}\n`));
    return this.put();
  }
  /** BININT1 / BININT2 / BININT / LONG1, the smallest that holds the value, as pickle chooses. */
  int(v: number): void {
    if (!Number.isSafeInteger(v)) throw new PthError('INVALID_ARGUMENT', `cannot pickle ${v} as an int`);
    if (v >= 0 && v <= 0xff) {
      this.op('K');
      this.byte(v);
    } else if (v >= 0 && v <= 0xffff) {
      this.op('M');
      this.u16(v);
    } else if (v >= -0x80000000 && v <= 0x7fffffff) {
      this.op('J');
      this.u32(v >>> 0);
    } else {
      // LONG1: minimal little-endian two's complement.
      let x = BigInt(v);
      const bytes: number[] = [];
      const neg = x < 0n;
      for (;;) {
        const b = Number(x & 0xffn);
        bytes.push(b);
        x >>= 8n;
        if ((!neg && x === 0n && (b & 0x80) === 0) || (neg && x === -1n && (b & 0x80) !== 0)) break;
      }
      this.byte(0x8a);
      this.byte(bytes.length);
      for (const b of bytes) this.byte(b);
    }
  }
  /** A tuple of ints as pickle writes it: EMPTY_TUPLE (not memoized), TUPLE1-3, or MARK ... TUPLE; memoized. */
  intTuple(values: readonly number[]): void {
    if (values.length === 0) {
      this.op(')');
      return;
    }
    if (values.length > 3) this.op('(');
    for (const v of values) this.int(v);
    this.byte(values.length > 3 ? 0x74 : ([0x85, 0x86, 0x87][values.length - 1] as number));
    this.put();
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i] as number;
  }
  return strides;
}

/**
 * `data.pkl` of `torch.save({topKey: OrderedDict(tensors)})` (or of `torch.save(OrderedDict(tensors))`
 * with `topKey: null`), as torch's pickler writes it: each tensor contiguous on its own storage, the
 * storage keys "0", "1", ... in list order, location "cpu", `requires_grad` false.
 *
 * @param tensors - names, dtypes and shapes, in state-dict order
 * @param options - `topKey` (default `"model"`)
 * @returns the pickle's bytes
 * @throws {PthError} `UNSUPPORTED_DTYPE`, `INVALID_ARGUMENT` (a bad shape or name)
 */
export function pthStatePickle(tensors: readonly PthTensorSpec[], options: Pick<PthWriteOptions, 'topKey'> = {}): Uint8Array {
  const topKey = options.topKey === undefined ? 'model' : options.topKey;
  if (topKey !== null && typeof topKey !== 'string')
    throw new PthError('INVALID_ARGUMENT', `topKey must be a string or null, got ${typeof topKey}`);
  const p = new Pickler();
  p.proto();
  if (topKey !== null) {
    p.op('}'); // EMPTY_DICT
    p.put();
    p.str(topKey);
  }
  const orderedDict = p.global('collections', 'OrderedDict');
  p.op(')');
  p.op('R');
  p.put();
  let rebuild: number | undefined;
  let storageStr: number | undefined;
  let cpuStr: number | undefined;
  // pickle memoizes each storage class (a global) once, where it first appears.
  const storageTypes = new Map<string, number>();
  const saveTensor = (t: PthTensorSpec, key: number) => {
    const what = `tensor ${JSON.stringify(t.name)}`;
    const storage = storageSpec(t.dtype, what).storage;
    const numel = numelOf(t.shape, what);
    if (rebuild === undefined) rebuild = p.global('torch._utils', '_rebuild_tensor_v2');
    else p.get(rebuild);
    p.op('('); // the 6 arguments
    p.op('('); // the persistent id
    if (storageStr === undefined) storageStr = p.str('storage');
    else p.get(storageStr);
    const memo = storageTypes.get(storage);
    if (memo === undefined) storageTypes.set(storage, p.global('torch', storage));
    else p.get(memo);
    p.str(String(key));
    if (cpuStr === undefined) cpuStr = p.str('cpu');
    else p.get(cpuStr);
    p.int(numel);
    p.op('t');
    p.put();
    p.op('Q'); // BINPERSID
    p.int(0); // storage offset
    p.intTuple(t.shape);
    p.intTuple(contiguousStrides(t.shape));
    p.byte(0x89); // NEWFALSE: requires_grad
    p.get(orderedDict); // backward hooks: OrderedDict()
    p.op(')');
    p.op('R');
    p.put();
    p.op('t');
    p.put();
    p.op('R');
    p.put();
  };
  // pickle's _batch_setitems: batches of 1000, SETITEMS for a batch of several, SETITEM for one.
  for (let start = 0; ; start += 1000) {
    const batch = tensors.slice(start, start + 1000);
    if (batch.length > 1) {
      p.op('(');
      batch.forEach((t, i) => {
        if (typeof t.name !== 'string') throw new PthError('INVALID_ARGUMENT', `tensor names must be strings, got ${typeof t.name}`);
        p.str(t.name);
        saveTensor(t, start + i);
      });
      p.op('u');
    } else if (batch.length === 1) {
      const t = batch[0] as PthTensorSpec;
      if (typeof t.name !== 'string') throw new PthError('INVALID_ARGUMENT', `tensor names must be strings, got ${typeof t.name}`);
      p.str(t.name);
      saveTensor(t, start);
      p.op('s');
    }
    if (batch.length < 1000) break;
  }
  if (topKey !== null) p.op('s'); // {topKey: ...}
  p.op('.');
  return p.bytes();
}

// ---------------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, as zip uses), slicing by 8: eight 256-entry tables.

let crcTables: Int32Array | undefined;

function getCrcTables(): Int32Array {
  if (crcTables === undefined) {
    const t = new Int32Array(256 * 8);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c;
    }
    for (let n = 0; n < 256; n++) {
      let c = t[n]!;
      for (let k = 1; k < 8; k++) {
        c = t[c & 0xff]! ^ (c >>> 8);
        t[k * 256 + n] = c;
      }
    }
    crcTables = t;
  }
  return crcTables;
}

/**
 * The CRC-32 of zip (and zlib's `crc32`), continued from a previous value so that a record can be
 * checksummed in pieces: `crc32(b, crc32(a)) === crc32(a ‖ b)`.
 *
 * @param bytes - the data
 * @param previous - the CRC of the data before (default 0: none)
 * @returns the CRC, an unsigned 32-bit integer
 */
export function crc32(bytes: Uint8Array, previous = 0): number {
  const t = getCrcTables();
  let c = ~previous;
  const n = bytes.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    const b = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + (b & 0xff)]! ^
      t[512 + ((b >>> 8) & 0xff)]! ^
      t[256 + ((b >>> 16) & 0xff)]! ^
      t[b >>> 24]!;
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Zip layout.

function le(view: DataView, at: number, bytes: 2 | 4 | 8, v: number): void {
  if (bytes === 2) view.setUint16(at, v, true);
  else if (bytes === 4) view.setUint32(at, v, true);
  else view.setBigUint64(at, BigInt(v), true);
}

/** The ZIP64 extended-information extra field miniz writes for a large record (or none). */
function zip64Extra(size: number, offset: number): Uint8Array {
  const fields: number[] = [];
  if (size >= U32_MAX) fields.push(size, size);
  if (offset >= U32_MAX) fields.push(offset);
  if (fields.length === 0) return new Uint8Array(0);
  const out = new Uint8Array(4 + 8 * fields.length);
  const v = new DataView(out.buffer);
  le(v, 0, 2, 0x0001);
  le(v, 2, 2, 8 * fields.length);
  fields.forEach((f, i) => le(v, 4 + 8 * i, 8, f));
  return out;
}

function localHeader(name: Uint8Array, size: number, offset: number): { header: Uint8Array; zip64: boolean } {
  const z64 = zip64Extra(size, offset);
  // Pad the data start to 64 with an "FB" extra field of 'Z's (always present, as torch writes it).
  const start = offset + 30 + name.byteLength + z64.byteLength + 4;
  const pad = (ALIGN - (start % ALIGN)) % ALIGN;
  const header = new Uint8Array(30 + name.byteLength + z64.byteLength + 4 + pad);
  const v = new DataView(header.buffer);
  le(v, 0, 4, 0x04034b50);
  le(v, 4, 2, 0); // version needed (miniz writes 0)
  le(v, 6, 2, recordFlags(size));
  // method 0 (stored), time 0, date 0, crc 0, sizes 0 (in the data descriptor)
  le(v, 26, 2, name.byteLength);
  le(v, 28, 2, z64.byteLength + 4 + pad);
  header.set(name, 30);
  header.set(z64, 30 + name.byteLength);
  const fb = 30 + name.byteLength + z64.byteLength;
  header[fb] = 0x46; // 'F'
  header[fb + 1] = 0x42; // 'B'
  le(v, fb + 2, 2, pad);
  header.fill(0x5a, fb + 4); // 'Z'
  return { header, zip64: z64.byteLength > 0 };
}

/**
 * General-purpose flags of a record: UTF-8 names, and "a data descriptor follows" — except for an
 * empty record, which miniz (torch's zip writer) writes without a descriptor.
 */
function recordFlags(size: number): number {
  return size === 0 ? 0x0800 : 0x0808;
}

/** Bytes of the data descriptor after a record (none for an empty one; 8-byte sizes for ZIP64). */
function descriptorBytes(size: number, zip64: boolean): number {
  return size === 0 ? 0 : zip64 ? 24 : 16;
}

/** Storage keys in the order torch writes their records (`sorted()` of the string keys: 0, 1, 10, 11, 2, ...). */
export function pthStorageRecordOrder(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i).sort((a, b) => {
    const x = String(a);
    const y = String(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/**
 * torch's `.data/serialization_id` is 20 digits of a hash of the record names and 20 digits of a
 * combined CRC-32 of the records; this writes 40 digits of the same shape (FNV-1a of the names), a
 * value no reader interprets.
 */
function serializationId(names: readonly string[]): Uint8Array {
  let h = 0xcbf29ce484222325n;
  for (const ch of names.join('\n')) {
    h ^= BigInt(ch.charCodeAt(0));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  const digits = (h % 10n ** 20n).toString().padStart(20, '0');
  return new TextEncoder().encode(digits + digits.split('').reverse().join(''));
}

function archiveNameOf(options: PthWriteOptions): string {
  const name = options.archiveName ?? 'archive';
  if (typeof name !== 'string' || name === '' || /[/\\]/.test(name)) {
    throw new PthError('INVALID_ARGUMENT', `archiveName must be a non-empty string without "/" or "\\", got ${JSON.stringify(name)}`);
  }
  return name;
}

/**
 * Plans a checkpoint file: the pickle, every record's offset, local header and ZIP64 need, the
 * central directory's offset and the file size. The storage records' data (each tensor's raw
 * little-endian bytes, `numel × element size`) is the caller's to write: {@link serializePth} copies
 * it, a streaming writer can generate it.
 *
 * Write, in order, for each record: `localHeader`, the data (`bytes`, or tensor `storage`'s bytes),
 * {@link pthDataDescriptor} with the data's {@link crc32}; then {@link pthArchiveEnd}.
 *
 * @param tensors - names, dtypes and shapes, in state-dict order
 * @param options - top key, archive name, flavour
 * @throws {PthError} `UNSUPPORTED_DTYPE`, `INVALID_ARGUMENT`
 */
export function planPthArchive(tensors: readonly PthTensorSpec[], options: PthWriteOptions = {}): PthArchivePlan {
  const archiveName = archiveNameOf(options);
  const flavor = options.flavor ?? 'torch2';
  if (flavor !== 'torch2' && flavor !== 'torch1')
    throw new PthError('INVALID_ARGUMENT', `flavor must be "torch2" or "torch1", got ${JSON.stringify(flavor)}`);
  const enc = new TextEncoder();
  const datas: Array<{ name: string; size: number; bytes?: Uint8Array; storage?: number }> = [];
  const pkl = pthStatePickle(tensors, options);
  datas.push({ name: 'data.pkl', size: pkl.byteLength, bytes: pkl });
  if (flavor === 'torch2') datas.push({ name: 'byteorder', size: 6, bytes: enc.encode('little') });
  for (const key of pthStorageRecordOrder(tensors.length)) {
    const t = tensors[key] as PthTensorSpec;
    const what = `tensor ${JSON.stringify(t.name)}`;
    datas.push({ name: `data/${key}`, size: numelOf(t.shape, what) * storageSpec(t.dtype, what).size, storage: key });
  }
  datas.push({ name: 'version', size: 2, bytes: enc.encode('3\n') });
  if (flavor === 'torch2') datas.push({ name: '.data/serialization_id', size: 40, bytes: serializationId(datas.map((d) => d.name)) });
  const records: PthRecordPlan[] = [];
  let offset = 0;
  for (const d of datas) {
    const name = `${archiveName}/${d.name}`;
    const { header, zip64 } = localHeader(enc.encode(name), d.size, offset);
    records.push({
      name,
      size: d.size,
      offset,
      localHeader: header,
      zip64,
      ...(d.bytes ? { bytes: d.bytes } : { storage: d.storage as number }),
    });
    offset += header.byteLength + d.size + descriptorBytes(d.size, zip64);
  }
  const centralOffset = offset;
  const central = records.reduce((a, r) => a + 46 + enc.encode(r.name).byteLength + zip64Extra(r.size, r.offset).byteLength, 0);
  return { records, centralOffset, totalBytes: centralOffset + central + 56 + 20 + 22 };
}

/**
 * The data descriptor that follows a record's data: its CRC-32 and sizes (8-byte sizes for a ZIP64
 * record); empty for an empty record, which has none.
 *
 * @param record - the planned record
 * @param crc - {@link crc32} of its data
 */
export function pthDataDescriptor(record: PthRecordPlan, crc: number): Uint8Array {
  const desc = new Uint8Array(descriptorBytes(record.size, record.zip64));
  if (desc.byteLength === 0) return desc;
  const v = new DataView(desc.buffer);
  le(v, 0, 4, 0x08074b50);
  le(v, 4, 4, crc >>> 0);
  le(v, 8, record.zip64 ? 8 : 4, record.size);
  le(v, record.zip64 ? 16 : 12, record.zip64 ? 8 : 4, record.size);
  return desc;
}

/**
 * The end of the archive, written after the last record's descriptor (at `plan.centralOffset`): the
 * central directory, the ZIP64 end record and locator, the classic end record.
 *
 * @param plan - the planned archive
 * @param crcs - each record's CRC-32, in plan order
 * @returns `plan.totalBytes - plan.centralOffset` bytes
 */
export function pthArchiveEnd(plan: PthArchivePlan, crcs: readonly number[]): Uint8Array {
  if (crcs.length !== plan.records.length) throw new PthError('INVALID_ARGUMENT', `${plan.records.length} records but ${crcs.length} CRCs`);
  const enc = new TextEncoder();
  const out = new Uint8Array(plan.totalBytes - plan.centralOffset);
  const v = new DataView(out.buffer);
  let at = 0;
  for (const [i, r] of plan.records.entries()) {
    const name = enc.encode(r.name);
    const extra = zip64Extra(r.size, r.offset);
    le(v, at, 4, 0x02014b50);
    // made by, needed: 0
    le(v, at + 8, 2, recordFlags(r.size));
    // method, time, date: 0
    le(v, at + 16, 4, (crcs[i] as number) >>> 0);
    le(v, at + 20, 4, Math.min(r.size, U32_MAX));
    le(v, at + 24, 4, Math.min(r.size, U32_MAX));
    le(v, at + 28, 2, name.byteLength);
    le(v, at + 30, 2, extra.byteLength);
    // comment length, disk, internal and external attributes: 0
    le(v, at + 42, 4, Math.min(r.offset, U32_MAX));
    out.set(name, at + 46);
    out.set(extra, at + 46 + name.byteLength);
    at += 46 + name.byteLength + extra.byteLength;
  }
  const cdSize = at;
  const cdStart = plan.centralOffset;
  const eocd64At = cdStart + cdSize;
  const n = plan.records.length;
  le(v, at, 4, 0x06064b50);
  le(v, at + 4, 8, 44);
  le(v, at + 12, 2, 0x031e);
  le(v, at + 14, 2, 0x002d);
  // disk numbers: 0
  le(v, at + 24, 8, n);
  le(v, at + 32, 8, n);
  le(v, at + 40, 8, cdSize);
  le(v, at + 48, 8, cdStart);
  at += 56;
  le(v, at, 4, 0x07064b50);
  le(v, at + 8, 8, eocd64At);
  le(v, at + 16, 4, 1);
  at += 20;
  le(v, at, 4, 0x06054b50);
  le(v, at + 8, 2, Math.min(n, 0xffff));
  le(v, at + 10, 2, Math.min(n, 0xffff));
  le(v, at + 12, 4, Math.min(cdSize, U32_MAX));
  le(v, at + 16, 4, Math.min(cdStart, U32_MAX));
  at += 22;
  if (at !== out.byteLength) throw new Error(`pth archive end: planned ${out.byteLength} bytes, wrote ${at}`);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// A whole file in memory.

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function typedArrayTag(value: unknown): string | undefined {
  if (!ArrayBuffer.isView(value) || value instanceof DataView) return undefined;
  return Object.prototype.toString.call(value).slice(8, -1);
}

/**
 * Writes tensors as `torch.save` does — by default as `torch.save({"model": state_dict}, path)`, the
 * reference's `consolidated.pth` — into one `Uint8Array` (see the module comment for the layout).
 * `torch.load(path, weights_only=True)` loads it (torch 1.6 and later), and {@link parsePth} reads
 * it back. Every tensor is contiguous on its own storage (no tied names); the order of the input is
 * the state dict's order. Browser-safe.
 *
 * @param tensors - tensors by name (a Map or a record): `{ dtype, shape, data }` as for
 *   `serializeSafetensors` (F16/BF16 as `Uint16Array` bit patterns, I64 as `BigInt64Array`, BOOL as
 *   0/1 in a `Uint8Array`)
 * @param options - `topKey` (default `"model"`; `null`: the OrderedDict itself), `archiveName`
 *   (default `"archive"`), `flavor` (default `torch2`)
 * @returns the file's bytes
 * @throws {PthError} `INVALID_ARGUMENT` (a data array of the wrong type or length, a bad shape, a
 *   BOOL value other than 0/1, bad options), `UNSUPPORTED_DTYPE`, `LIMIT_EXCEEDED` (a file this
 *   runtime cannot allocate)
 */
export function serializePth(
  tensors: ReadonlyMap<string, SafetensorsTensor> | Readonly<Record<string, SafetensorsTensor>>,
  options: PthWriteOptions = {},
): Uint8Array {
  if (!HOST_IS_LITTLE_ENDIAN)
    throw new PthError('UNSUPPORTED_BYTE_ORDER', 'torch checkpoints are written little-endian and this host is big-endian');
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors))
    throw new PthError('INVALID_ARGUMENT', 'tensors must be a Map or a record of tensors');
  const entries: Array<[string, SafetensorsTensor]> =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, SafetensorsTensor>)] : Object.entries(tensors);
  const specs: PthTensorSpec[] = [];
  const datas: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const what = `tensor ${JSON.stringify(name)}`;
    if (typeof name !== 'string') throw new PthError('INVALID_ARGUMENT', `tensor names must be strings, got ${typeof name}`);
    if (typeof t !== 'object' || t === null) throw new PthError('INVALID_ARGUMENT', `${what} must be an object { dtype, shape, data }`);
    const spec = storageSpec(t.dtype, what);
    const numel = numelOf(t.shape, what);
    const tag = typedArrayTag(t.data);
    if (tag !== spec.tag)
      throw new PthError('INVALID_ARGUMENT', `${what}: dtype ${t.dtype} needs a ${spec.tag} as data, got ${tag ?? typeof t.data}`);
    if (t.data.length !== numel)
      throw new PthError('INVALID_ARGUMENT', `${what}: shape [${t.shape.join(', ')}] has ${numel} elements but data has ${t.data.length}`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (t.dtype === 'BOOL') {
      const bad = bytes.findIndex((b) => b > 1);
      if (bad >= 0) throw new PthError('INVALID_ARGUMENT', `${what}: BOOL element ${bad} is ${bytes[bad]}, not 0 or 1`);
    }
    specs.push({ name, dtype: t.dtype, shape: [...t.shape] });
    datas.push(bytes);
  }
  const plan = planPthArchive(specs, options);
  let out: Uint8Array;
  try {
    out = new Uint8Array(plan.totalBytes);
  } catch (e) {
    throw new PthError(
      'LIMIT_EXCEEDED',
      `a ${plan.totalBytes}-byte checkpoint cannot be allocated here (${(e as Error).message}); write it with a streaming writer`,
    );
  }
  const crcs: number[] = [];
  let at = 0;
  for (const r of plan.records) {
    out.set(r.localHeader, at);
    at += r.localHeader.byteLength;
    const data = r.bytes ?? (datas[r.storage as number] as Uint8Array);
    out.set(data, at);
    at += data.byteLength;
    const crc = crc32(data);
    crcs.push(crc);
    const desc = pthDataDescriptor(r, crc);
    out.set(desc, at);
    at += desc.byteLength;
  }
  out.set(pthArchiveEnd(plan, crcs), at);
  return out;
}
