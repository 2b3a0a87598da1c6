// `.pth` files as `torch.save({"model": state_dict}, path)` writes them: a zip of stored entries
// (PyTorchStreamWriter, miniz) under the folder `<basename without extension>/`:
//   data.pkl      pickle protocol 2: {"model": OrderedDict(name → _rebuild_tensor_v2(
//                 persistent_id(("storage", torch.<Type>Storage, "<key>", "cpu", numel)), 0, size,
//                 stride, False, OrderedDict()))}, storages keyed "0", "1", ... in state-dict order
//   byteorder     "little"                                  (torch >= 2.1)
//   data/<key>    raw little-endian storage bytes, entries in key order sorted as strings
//   version       "3\n"
//   .data/serialization_id   40 digits                      (torch >= 2.1)
// Every entry's data starts on a 64-byte boundary (an "FB" extra field of 'Z' padding in the local
// header), local headers carry no sizes (flag bit 3: a data descriptor with the CRC-32 and sizes
// follows the data), entries whose size or header offset reach 4 GiB carry ZIP64 extra fields, and
// the archive always ends with a ZIP64 end record + locator + the classic end record.
//
// Layout checked against torch 1.13's own writer (scripts/check-pth-with-torch.py); the torch >= 2.1
// records follow torch's serialization.py / inline_container.cc.
import { crc32 } from 'node:zlib';
import { numel } from './models.js';
import type { FileSink } from './sink.js';
import { outputByteLength, writeTensorValues, type OutputTensor } from './tensors.js';
import type { Dtype } from './values.js';

/** `torch2`: the records torch >= 2.1 writes (byteorder, serialization id). `torch1`: torch 1.6–2.0. */
export type PthFlavor = 'torch2' | 'torch1';

const ALIGN = 64;
const U32_MAX = 0xffffffff;

// ---------------------------------------------------------------------------------------------------
// Pickle (protocol 2), with Python's memo numbering.

class Pickler {
  private chunks: number[] = [];
  private memoSize = 0;

  private byte(b: number): void {
    this.chunks.push(b & 0xff);
  }
  private u16(v: number): void {
    this.byte(v);
    this.byte(v >>> 8);
  }
  private u32(v: number): void {
    for (let i = 0; i < 4; i++) this.byte(v >>> (8 * i));
  }
  op(code: string): void {
    this.byte(code.charCodeAt(0));
  }
  proto(): void {
    this.byte(0x80);
    this.byte(2);
  }
  /** Memoizes the object just written; returns its memo index. */
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
    for (const b of bytes) this.byte(b);
    return this.put();
  }
  /** GLOBAL + memo. */
  global(module: string, name: string): number {
    this.op('c');
    for (const ch of `${module}\n${name}\n`) this.byte(ch.charCodeAt(0));
    return this.put();
  }
  int(v: number): void {
    if (!Number.isSafeInteger(v)) throw new Error(`cannot pickle ${v} as an int`);
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
  /** A tuple of ints as Python pickles it (EMPTY_TUPLE unmemoized; TUPLE1-3 or MARK..TUPLE, memoized). */
  intTuple(values: readonly number[]): void {
    if (values.length === 0) {
      this.op(')');
      return;
    }
    if (values.length > 3) this.op('(');
    for (const v of values) this.int(v);
    this.byte(values.length > 3 ? 't'.charCodeAt(0) : [0x85, 0x86, 0x87][values.length - 1] as number);
    this.put();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

function storageClass(dtype: Dtype): string {
  return dtype === 'bf16' ? 'BFloat16Storage' : dtype === 'f16' ? 'HalfStorage' : 'FloatStorage';
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

/** `data.pkl` of `torch.save({"model": OrderedDict(tensors)})`; storage keys are "0", "1", ... in order. */
export function statePickle(tensors: readonly OutputTensor[], dtype: Dtype, topKey = 'model'): Uint8Array {
  const p = new Pickler();
  p.proto();
  p.op('}');
  p.put();
  p.str(topKey);
  const orderedDict = p.global('collections', 'OrderedDict');
  p.op(')');
  p.op('R');
  p.put();
  let rebuild: number | undefined;
  let storageStr: number | undefined;
  let cpuStr: number | undefined;
  let storageType: number | undefined;
  const saveTensor = (t: OutputTensor, key: number) => {
    if (rebuild === undefined) rebuild = p.global('torch._utils', '_rebuild_tensor_v2');
    else p.get(rebuild);
    p.op('('); // the 6 arguments
    p.op('('); // the persistent id
    if (storageStr === undefined) storageStr = p.str('storage');
    else p.get(storageStr);
    if (storageType === undefined) storageType = p.global('torch', storageClass(dtype));
    else p.get(storageType);
    p.str(String(key));
    if (cpuStr === undefined) cpuStr = p.str('cpu');
    else p.get(cpuStr);
    p.int(numel(t.shape));
    p.op('t');
    p.put();
    p.op('Q'); // BINPERSID
    p.int(0); // storage offset
    p.intTuple(t.shape);
    p.intTuple(contiguousStrides(t.shape));
    p.op('\x89'); // NEWFALSE: requires_grad
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
        p.str(t.name);
        saveTensor(t, start + i);
      });
      p.op('u');
    } else if (batch.length === 1) {
      p.str((batch[0] as OutputTensor).name);
      saveTensor(batch[0] as OutputTensor, start);
      p.op('s');
    }
    if (batch.length < 1000) break;
  }
  p.op('s'); // {"model": ...}
  p.op('.');
  return p.bytes();
}

// ---------------------------------------------------------------------------------------------------
// Zip layout.

type RecordData = { readonly kind: 'bytes'; readonly bytes: Uint8Array } | { readonly kind: 'tensor'; readonly tensor: OutputTensor };

interface PlannedRecord {
  readonly name: string;
  readonly data: RecordData;
  readonly size: number;
  /** Offset of the local header. */
  readonly offset: number;
  readonly localHeader: Uint8Array;
  readonly zip64: boolean;
}

export interface PthPlan {
  readonly records: readonly PlannedRecord[];
  /** Offset of the central directory. */
  readonly centralOffset: number;
  readonly totalBytes: number;
  readonly dtype: Dtype;
}

function le(view: DataView, at: number, bytes: 2 | 4 | 8, v: number): void {
  if (bytes === 2) view.setUint16(at, v, true);
  else if (bytes === 4) view.setUint32(at, v, true);
  else view.setBigUint64(at, BigInt(v), true);
}

/** The zip64 extended-information extra field miniz writes for large entries (or none). */
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
  // torch's detail::getPadding: pad the data start to 64 with an "FB" field of 'Z's (always present).
  const start = offset + 30 + name.byteLength + z64.byteLength + 4;
  const pad = (ALIGN - (start % ALIGN)) % ALIGN;
  const header = new Uint8Array(30 + name.byteLength + z64.byteLength + 4 + pad);
  const v = new DataView(header.buffer);
  le(v, 0, 4, 0x04034b50);
  le(v, 4, 2, 0); // version needed (miniz writes 0)
  le(v, 6, 2, 0x0808); // data descriptor follows, UTF-8 names
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

function descriptorBytes(zip64: boolean): number {
  return zip64 ? 24 : 16;
}

/** Storage keys in the order torch writes the data records (`sorted()` of the string keys). */
export function storageRecordOrder(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i).sort((a, b) => {
    const x = String(a);
    const y = String(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** Plans a `.pth` file: every record's offset and header, and the file size. */
export function planPth(archiveName: string, tensors: readonly OutputTensor[], dtype: Dtype, flavor: PthFlavor = 'torch2'): PthPlan {
  const enc = new TextEncoder();
  const datas: Array<{ name: string; data: RecordData; size: number }> = [];
  const pkl = statePickle(tensors, dtype);
  datas.push({ name: 'data.pkl', data: { kind: 'bytes', bytes: pkl }, size: pkl.byteLength });
  if (flavor === 'torch2') datas.push({ name: 'byteorder', data: { kind: 'bytes', bytes: enc.encode('little') }, size: 6 });
  for (const key of storageRecordOrder(tensors.length)) {
    const tensor = tensors[key] as OutputTensor;
    datas.push({ name: `data/${key}`, data: { kind: 'tensor', tensor }, size: outputByteLength(tensor, dtype) });
  }
  datas.push({ name: 'version', data: { kind: 'bytes', bytes: enc.encode('3\n') }, size: 2 });
  if (flavor === 'torch2') {
    datas.push({ name: '.data/serialization_id', data: { kind: 'bytes', bytes: serializationId(datas.map((d) => d.name)) }, size: 40 });
  }
  const records: PlannedRecord[] = [];
  let offset = 0;
  for (const d of datas) {
    const name = `${archiveName}/${d.name}`;
    const { header, zip64 } = localHeader(enc.encode(name), d.size, offset);
    records.push({ name, data: d.data, size: d.size, offset, localHeader: header, zip64 });
    offset += header.byteLength + d.size + descriptorBytes(zip64);
  }
  const centralOffset = offset;
  const central = records.reduce((a, r) => a + 46 + enc.encode(r.name).byteLength + zip64Extra(r.size, r.offset).byteLength, 0);
  return { records, centralOffset, totalBytes: centralOffset + central + 56 + 20 + 22, dtype };
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

/** Streams a planned `.pth` into the sink (which must be at offset 0). */
export async function writePth(sink: FileSink, plan: PthPlan, seed: number): Promise<void> {
  if (sink.position !== 0) throw new Error('a .pth must start at offset 0 of its file');
  const crcs: number[] = [];
  for (const r of plan.records) {
    if (sink.position !== r.offset) throw new Error(`${r.name}: planned at ${r.offset}, writer at ${sink.position}`);
    await sink.write(r.localHeader);
    let crc = 0;
    if (r.data.kind === 'bytes') {
      crc = crc32(r.data.bytes);
      await sink.write(r.data.bytes);
    } else {
      await writeTensorValues(sink, r.data.tensor, seed, plan.dtype, (bytes) => {
        crc = crc32(bytes, crc);
      });
    }
    crcs.push(crc);
    const desc = new Uint8Array(descriptorBytes(r.zip64));
    const v = new DataView(desc.buffer);
    le(v, 0, 4, 0x08074b50);
    le(v, 4, 4, crc);
    le(v, 8, r.zip64 ? 8 : 4, r.size);
    le(v, r.zip64 ? 16 : 12, r.zip64 ? 8 : 4, r.size);
    await sink.write(desc);
  }
  // Central directory.
  const enc = new TextEncoder();
  const cdStart = sink.position;
  for (const [i, r] of plan.records.entries()) {
    const name = enc.encode(r.name);
    const extra = zip64Extra(r.size, r.offset);
    const entry = new Uint8Array(46 + name.byteLength + extra.byteLength);
    const v = new DataView(entry.buffer);
    le(v, 0, 4, 0x02014b50);
    le(v, 4, 2, 0); // made by
    le(v, 6, 2, 0); // needed
    le(v, 8, 2, 0x0808);
    // method, time, date: 0
    le(v, 16, 4, crcs[i] as number);
    le(v, 20, 4, Math.min(r.size, U32_MAX));
    le(v, 24, 4, Math.min(r.size, U32_MAX));
    le(v, 28, 2, name.byteLength);
    le(v, 30, 2, extra.byteLength);
    // comment length, disk, internal and external attributes: 0
    le(v, 42, 4, Math.min(r.offset, U32_MAX));
    entry.set(name, 46);
    entry.set(extra, 46 + name.byteLength);
    await sink.write(entry);
  }
  const cdSize = sink.position - cdStart;
  const eocd64At = sink.position;
  const tail = new Uint8Array(56 + 20 + 22);
  const v = new DataView(tail.buffer);
  const n = plan.records.length;
  le(v, 0, 4, 0x06064b50);
  le(v, 4, 8, 44);
  le(v, 12, 2, 0x031e);
  le(v, 14, 2, 0x002d);
  le(v, 16, 4, 0);
  le(v, 20, 4, 0);
  le(v, 24, 8, n);
  le(v, 32, 8, n);
  le(v, 40, 8, cdSize);
  le(v, 48, 8, cdStart);
  le(v, 56, 4, 0x07064b50);
  le(v, 60, 4, 0);
  le(v, 64, 8, eocd64At);
  le(v, 72, 4, 1);
  le(v, 76, 4, 0x06054b50);
  le(v, 80, 2, 0);
  le(v, 82, 2, 0);
  le(v, 84, 2, Math.min(n, 0xffff));
  le(v, 86, 2, Math.min(n, 0xffff));
  le(v, 88, 4, Math.min(cdSize, U32_MAX));
  le(v, 92, 4, Math.min(cdStart, U32_MAX));
  le(v, 96, 2, 0);
  await sink.write(tail);
  if (sink.position !== plan.totalBytes) throw new Error(`.pth planned at ${plan.totalBytes} bytes, wrote ${sink.position}`);
}
