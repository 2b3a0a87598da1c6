import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPthFile, writePthFile } from './node.js';
import { PthError, PthTensor, parsePth } from './pth.js';
import {
  crc32,
  planPthArchive,
  pthArchiveEnd,
  pthDataDescriptor,
  pthStatePickle,
  pthStorageRecordOrder,
  serializePth,
  type PthTensorSpec,
} from './pth-writer.js';
import type { SafetensorsDtype, SafetensorsTensor } from './safetensors.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytesOf = (d: SafetensorsTensor['data']) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/** Every dtype, with 0-d, empty and multi-dimensional shapes, and values that exercise each type's range. */
function sampleTensors(): Map<string, SafetensorsTensor> {
  const m = new Map<string, SafetensorsTensor>();
  m.set('f64', { dtype: 'F64', shape: [2, 3], data: Float64Array.of(0, -1.5, 1e300, -1e-300, Math.PI, Number.NaN) });
  m.set('f32', { dtype: 'F32', shape: [3], data: Float32Array.of(1, -2.5, Number.POSITIVE_INFINITY) });
  m.set('f16', { dtype: 'F16', shape: [2, 1, 2], data: Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001) });
  m.set('bf16', { dtype: 'BF16', shape: [], data: Uint16Array.of(0x3f80) });
  m.set('i64', { dtype: 'I64', shape: [3], data: BigInt64Array.of(-(2n ** 63n), 2n ** 53n + 1n, 7n) });
  m.set('i32', { dtype: 'I32', shape: [2, 2], data: Int32Array.of(-(2 ** 31), 2 ** 31 - 1, 0, 5) });
  m.set('i16', { dtype: 'I16', shape: [2], data: Int16Array.of(-32768, 32767) });
  m.set('i8', { dtype: 'I8', shape: [1, 1, 1, 2], data: Int8Array.of(-128, 127) });
  m.set('u8', { dtype: 'U8', shape: [3], data: Uint8Array.of(0, 128, 255) });
  m.set('bool', { dtype: 'BOOL', shape: [4], data: Uint8Array.of(1, 0, 0, 1) });
  m.set('empty', { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) });
  m.set('empty.bf16', { dtype: 'BF16', shape: [0], data: new Uint16Array(0) });
  m.set('scalar.i64', { dtype: 'I64', shape: [], data: BigInt64Array.of(-3n) });
  m.set('layers.0.attention.wq.weight', { dtype: 'F32', shape: [4, 4], data: Float32Array.from({ length: 16 }, (_, i) => i / 7) });
  return m;
}

/** The records of a stored zip, read independently of nn's reader: name, data offset and size, CRC, and the local header's alignment. */
function zipRecords(bytes: Uint8Array): Array<{ name: string; dataAt: number; size: number; crc: number; flags: number }> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const eocd = bytes.byteLength - 22;
  expect(v.getUint32(eocd, true)).toBe(0x06054b50);
  // The ZIP64 locator sits just before the classic end record.
  expect(v.getUint32(eocd - 20, true)).toBe(0x07064b50);
  const eocd64 = Number(v.getBigUint64(eocd - 20 + 8, true));
  expect(v.getUint32(eocd64, true)).toBe(0x06064b50);
  const count = Number(v.getBigUint64(eocd64 + 32, true));
  let at = Number(v.getBigUint64(eocd64 + 48, true));
  const out = [];
  for (let i = 0; i < count; i++) {
    expect(v.getUint32(at, true)).toBe(0x02014b50);
    const nameLen = v.getUint16(at + 28, true);
    const extraLen = v.getUint16(at + 30, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    const local = v.getUint32(at + 42, true);
    expect(v.getUint16(at + 10, true)).toBe(0); // stored
    const dataAt = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    const flags = v.getUint16(at + 8, true);
    expect(v.getUint16(local + 6, true)).toBe(flags);
    out.push({ name, dataAt, size: v.getUint32(at + 24, true), crc: v.getUint32(at + 16, true), flags });
    at += 46 + nameLen + extraLen;
  }
  return out;
}

describe('crc32', () => {
  it('is zlib’s CRC-32, in one piece or continued', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const data = new Uint8Array(100_003);
    let x = 12345;
    for (let i = 0; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    for (const n of [1, 7, 8, 9, 63, 1000, data.length]) expect(crc32(data.subarray(0, n))).toBe(zlibCrc32(data.subarray(0, n)));
    expect(crc32(data.subarray(5000), crc32(data.subarray(0, 5000)))).toBe(zlibCrc32(data));
  });
});

describe('pthStatePickle', () => {
  const specs = (list: Array<[string, SafetensorsDtype, number[]]>): PthTensorSpec[] =>
    list.map(([name, dtype, shape]) => ({ name, dtype, shape }));

  it("is byte for byte torch 1.13's data.pkl of torch.save({'model': OrderedDict(...)})", () => {
    // torch.save({"model": sd}) with bf16 zeros of shapes (2,3), (5,), (2,1,3,3), (), (70000,1).
    const torch113 =
      '80027d710058050000006d6f64656c710163636f6c6c656374696f6e730a4f726465726564446963740a710229527103285808000000612e776569676874710463746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71052828580700000073746f72616765710663746f7263680a42466c6f6174313653746f726167650a71075801000000307108580300000063707571094b0674710a514b004b024b0386710b4b034b0186710c8968022952710d74710e52710f5808000000622e77656967687471106805282868066807580100000031711168094b05747112514b004b058571134b018571148968022952711574711652711758010000006371186805282868066807580100000032711968094b1274711a514b00284b024b014b034b0374711b284b094b094b034b0174711c8968022952711d74711e52711f58010000006471206805282868066807580100000033712168094b01747122514b0029298968022952712374712452712558010000006571266805282868066807580100000034712768094a70110100747128514b004a701101004b018671294b014b0186712a8968022952712b74712c52712d75732e';
    const pkl = pthStatePickle(
      specs([
        ['a.weight', 'BF16', [2, 3]],
        ['b.weight', 'BF16', [5]],
        ['c', 'BF16', [2, 1, 3, 3]],
        ['d', 'BF16', []],
        ['e', 'BF16', [70000, 1]],
      ]),
    );
    expect(hex(pkl)).toBe(torch113);
    // One tensor: SETITEM instead of MARK ... SETITEMS; F16 → HalfStorage.
    expect(hex(pthStatePickle(specs([['big', 'F16', [1]]])))).toBe(
      '80027d710058050000006d6f64656c710163636f6c6c656374696f6e730a4f726465726564446963740a7102295271035803000000626967710463746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71052828580700000073746f72616765710663746f7263680a48616c6653746f726167650a71075801000000307108580300000063707571094b0174710a514b004b0185710b4b0185710c8968022952710d74710e52710f73732e',
    );
  });

  it("is torch 1.13's data.pkl of torch.save(OrderedDict(...)) with every dtype (topKey null), each storage class memoized once", () => {
    // torch.save(OrderedDict(f64=zeros(2), f32=zeros(1, 2), f16=zeros(()), bf16=zeros(0, 3), i64=zeros(3), i32, i16, i8, u8, bool=zeros(1),
    // f32b=zeros(2, 2, 2, 2)) with those dtypes.
    const torch113 =
      '800263636f6c6c656374696f6e730a4f726465726564446963740a710029527101285803000000663634710263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72616765710463746f7263680a446f75626c6553746f726167650a71055801000000307106580300000063707571074b02747108514b004b028571094b0185710a8968002952710b74710c52710d5803000000663332710e68032828680463746f7263680a466c6f617453746f726167650a710f580100000031711068074b02747111514b004b014b028671124b024b01867113896800295271147471155271165803000000663136711768032828680463746f7263680a48616c6653746f726167650a7118580100000032711968074b0174711a514b0029298968002952711b74711c52711d580400000062663136711e68032828680463746f7263680a42466c6f6174313653746f726167650a711f580100000033712068074b00747121514b004b004b038671224b034b01867123896800295271247471255271265803000000693634712768032828680463746f7263680a4c6f6e6753746f726167650a7128580100000034712968074b0374712a514b004b0385712b4b0185712c8968002952712d74712e52712f5803000000693332713068032828680463746f7263680a496e7453746f726167650a7131580100000035713268074b01747133514b004b018571344b01857135896800295271367471375271385803000000693136713968032828680463746f7263680a53686f727453746f726167650a713a580100000036713b68074b0174713c514b004b0185713d4b0185713e8968002952713f74714052714158020000006938714268032828680463746f7263680a4368617253746f726167650a7143580100000037714468074b01747145514b004b018571464b018571478968002952714874714952714a58020000007538714b68032828680463746f7263680a4279746553746f726167650a714c580100000038714d68074b0174714e514b004b0185714f4b01857150896800295271517471525271535804000000626f6f6c715468032828680463746f7263680a426f6f6c53746f726167650a7155580100000039715668074b01747157514b004b018571584b018571598968002952715a74715b52715c580400000066333262715d680328286804680f58020000003130715e68074b1074715f514b00284b024b024b024b02747160284b084b044b024b0174716189680029527162747163527164752e';
    const pkl = pthStatePickle(
      specs([
        ['f64', 'F64', [2]],
        ['f32', 'F32', [1, 2]],
        ['f16', 'F16', []],
        ['bf16', 'BF16', [0, 3]],
        ['i64', 'I64', [3]],
        ['i32', 'I32', [1]],
        ['i16', 'I16', [1]],
        ['i8', 'I8', [1]],
        ['u8', 'U8', [1]],
        ['bool', 'BOOL', [1]],
        ['f32b', 'F32', [2, 2, 2, 2]],
      ]),
      { topKey: null },
    );
    expect(hex(pkl)).toBe(torch113);
  });

  it('batches 1000 items per SETITEMS and switches to 4-byte memo indices like pickle', () => {
    // torch 1.13: 1001 float32 tensors "t0".."t1000" of i % 3 + 1 elements → 85250 bytes, this sha256.
    const pkl = pthStatePickle(Array.from({ length: 1001 }, (_, i) => ({ name: `t${i}`, dtype: 'F32' as const, shape: [(i % 3) + 1] })));
    expect(pkl.byteLength).toBe(85250);
    expect(createHash('sha256').update(pkl).digest('hex')).toBe('9106edd59fe2ac8c58442d2caef8e8cd3aea9ec76c9a451952c262d48819a43a');
  });
});

describe('serializePth -> parsePth', () => {
  it('round-trips every dtype and shape (0-d, empty), in order, under "model"', () => {
    const tensors = sampleTensors();
    const bytes = serializePth(tensors);
    const pth = parsePth(bytes, { description: 'mem.pth' });
    expect(pth.folder).toBe('archive');
    expect(pth.version).toBe(3);
    expect([...(pth.root as Map<unknown, unknown>).keys()]).toEqual(['model']);
    expect(pth.stateDict().path).toEqual(['model']);
    expect(pth.names()).toEqual([...tensors.keys()]);
    for (const [name, t] of tensors) {
      const handle = pth.stateDict().tensor(name);
      expect(handle).toBeInstanceOf(PthTensor);
      expect(handle.contiguous).toBe(true);
      expect(pth.info(name)).toMatchObject({ dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength });
      expect(hex(pth.readBytes(name))).toBe(hex(bytesOf(t.data)));
    }
    // Every tensor on its own storage: no tied names.
    expect(pth.storages.size).toBe(tensors.size);
    pth.close();
  });

  it('writes the zip torch writes: stored records in torch’s order, data 64-byte aligned, right CRCs, both flavours', () => {
    const tensors = sampleTensors();
    for (const flavor of ['torch2', 'torch1'] as const) {
      const bytes = serializePth(tensors, { archiveName: 'consolidated', flavor });
      const records = zipRecords(bytes);
      const storages = pthStorageRecordOrder(tensors.size).map((k) => `data/${k}`);
      expect(records.map((r) => r.name)).toEqual(
        flavor === 'torch2'
          ? ['data.pkl', 'byteorder', ...storages, 'version', '.data/serialization_id'].map((n) => `consolidated/${n}`)
          : ['data.pkl', ...storages, 'version'].map((n) => `consolidated/${n}`),
      );
      for (const r of records) {
        expect(r.dataAt % 64).toBe(0);
        // A data descriptor follows every record but an empty one (miniz's way: torch 1.13 writes the same bytes).
        expect(r.flags).toBe(r.size === 0 ? 0x0800 : 0x0808);
        if (r.size > 0) expect(new DataView(bytes.buffer).getUint32(r.dataAt + r.size, true)).toBe(0x08074b50);
        expect(r.crc).toBe(zlibCrc32(bytes.subarray(r.dataAt, r.dataAt + r.size)));
      }
      const text = (name: string) =>
        new TextDecoder().decode(((r) => bytes.subarray(r.dataAt, r.dataAt + r.size))(records.find((r) => r.name === name)!));
      expect(text('consolidated/version')).toBe('3\n');
      if (flavor === 'torch2') {
        expect(text('consolidated/byteorder')).toBe('little');
        expect(text('consolidated/.data/serialization_id')).toMatch(/^\d{40}$/);
      }
      expect(parsePth(bytes).names()).toEqual([...tensors.keys()]);
    }
  });

  it('saves the OrderedDict itself with topKey null, and under any other key', () => {
    const tensors = { w: { dtype: 'F32' as const, shape: [2], data: Float32Array.of(1, 2) } };
    const bare = parsePth(serializePth(tensors, { topKey: null }));
    expect(bare.root).toBeInstanceOf(Map);
    expect(bare.stateDict().path).toEqual([]);
    expect([...(bare.root as Map<unknown, unknown>).keys()]).toEqual(['w']);
    const other = parsePth(serializePth(tensors, { topKey: 'state_dict' }));
    expect(other.stateDict().path).toEqual(['state_dict']);
    expect(hex(other.readBytes('w'))).toBe(hex(bytesOf(tensors.w.data)));
    // A record works like a Map; an empty state dict is a valid file.
    expect(parsePth(serializePth(new Map())).root).toEqual(new Map([['model', new Map()]]));
  });

  it('refuses data of the wrong type or length, BOOL values other than 0/1, unknown dtypes and bad options, naming the tensor', () => {
    const bad = (t: Record<string, unknown>, options = {}) => {
      try {
        serializePth(t as never, options);
      } catch (e) {
        expect(e).toBeInstanceOf(PthError);
        return e as PthError;
      }
      throw new Error('expected an error');
    };
    let e = bad({ w: { dtype: 'F32', shape: [2], data: new Float64Array(2) } });
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toBe('tensor "w": dtype F32 needs a Float32Array as data, got Float64Array');
    e = bad({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } });
    expect(e.message).toBe('tensor "w": shape [2, 2] has 4 elements but data has 3');
    e = bad({ m: { dtype: 'BOOL', shape: [2], data: Uint8Array.of(1, 2) } });
    expect(e.message).toBe('tensor "m": BOOL element 1 is 2, not 0 or 1');
    e = bad({ w: { dtype: 'C64', shape: [1], data: new Float32Array(2) } });
    expect(e.code).toBe('UNSUPPORTED_DTYPE');
    expect(e.message).toContain('tensor "w": dtype "C64" has no torch storage here');
    e = bad({ w: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } });
    expect(e.message).toBe('tensor "w": shape[0] must be a non-negative safe integer, got -1');
    expect(bad({}, { archiveName: 'a/b' }).message).toContain('archiveName must be a non-empty string');
    expect(bad({}, { flavor: 'torch3' }).message).toContain('flavor must be "torch2" or "torch1"');
    expect(bad({}, { topKey: 3 }).message).toContain('topKey must be a string or null');
  });
});

describe('planPthArchive', () => {
  it('plans ZIP64 fields and 64-byte alignment past 4 GiB, and an end that a zip reader follows', () => {
    // 3 tensors of 1.5 GiB (bf16) and one of 4.5 GiB: offsets and a size pass 4 GiB.
    const specs: PthTensorSpec[] = [
      ['a', 3 * 2 ** 28],
      ['b', 3 * 2 ** 28],
      ['c', 3 * 2 ** 28],
      ['d', 9 * 2 ** 28],
      ['e', 3],
    ].map(([name, n]) => ({ name: name as string, dtype: 'BF16', shape: [n as number] }));
    const plan = planPthArchive(specs, { archiveName: 'consolidated' });
    expect(plan.records.map((r) => r.name)).toEqual([
      'consolidated/data.pkl',
      'consolidated/byteorder',
      'consolidated/data/0',
      'consolidated/data/1',
      'consolidated/data/2',
      'consolidated/data/3',
      'consolidated/data/4',
      'consolidated/version',
      'consolidated/.data/serialization_id',
    ]);
    let offset = 0;
    for (const r of plan.records) {
      expect(r.offset).toBe(offset);
      const h = r.localHeader;
      const v = new DataView(h.buffer, h.byteOffset);
      const nameLen = v.getUint16(26, true);
      const extraLen = v.getUint16(28, true);
      expect(30 + nameLen + extraLen).toBe(h.byteLength);
      expect((r.offset + h.byteLength) % 64).toBe(0);
      const fields = (r.size >= 0xffffffff ? 2 : 0) + (r.offset >= 0xffffffff ? 1 : 0);
      expect(r.zip64).toBe(fields > 0);
      if (fields > 0) {
        expect(v.getUint16(30 + nameLen, true)).toBe(1);
        expect(v.getUint16(30 + nameLen + 2, true) / 8).toBe(fields);
      }
      const fb = 30 + nameLen + (fields > 0 ? 4 + 8 * fields : 0);
      expect(String.fromCharCode(h[fb]!, h[fb + 1]!)).toBe('FB');
      const desc = pthDataDescriptor(r, 0x12345678);
      expect(desc.byteLength).toBe(r.zip64 ? 24 : 16);
      offset += h.byteLength + r.size + desc.byteLength;
    }
    expect(plan.centralOffset).toBe(offset);
    expect(plan.records.filter((r) => r.zip64).map((r) => r.name.split('/').slice(1).join('/'))).toEqual([
      'data/3',
      'data/4',
      'version',
      '.data/serialization_id',
    ]);
    const end = pthArchiveEnd(
      plan,
      plan.records.map(() => 0),
    );
    expect(plan.centralOffset + end.byteLength).toBe(plan.totalBytes);
    const v = new DataView(end.buffer);
    // Classic end record: sizes and offsets saturated, the ZIP64 end record holds them.
    expect(v.getUint32(end.byteLength - 22, true)).toBe(0x06054b50);
    expect(v.getUint32(end.byteLength - 22 + 16, true)).toBe(0xffffffff);
    const eocd64 = end.byteLength - 22 - 20 - 56;
    expect(v.getUint32(eocd64, true)).toBe(0x06064b50);
    expect(Number(v.getBigUint64(eocd64 + 48, true))).toBe(plan.centralOffset);
    expect(Number(v.getBigUint64(end.byteLength - 22 - 20 + 8, true))).toBe(plan.centralOffset + eocd64);
    expect(plan.totalBytes).toBeGreaterThan(9 * 2 ** 30);
  });
});

describe('writePthFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nn-pth-writer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes atomically, names the archive after the file as torch does, and reads back from disk', async () => {
    const tensors = sampleTensors();
    const path = join(dir, 'consolidated.pth');
    await writePthFile(path, tensors);
    expect(await readdir(dir)).toEqual(['consolidated.pth']);
    const file = openPthFile(path);
    try {
      expect(file.folder).toBe('consolidated');
      expect(file.names()).toEqual([...tensors.keys()]);
      for (const [name, t] of tensors) expect(hex(file.readBytes(name))).toBe(hex(bytesOf(t.data)));
    } finally {
      file.close();
    }
    expect(hex(await readFile(path))).toBe(hex(serializePth(tensors, { archiveName: 'consolidated' })));
    await writePthFile(join(dir, 'weights.v2.pt'), tensors, { flavor: 'torch1' });
    const second = openPthFile(join(dir, 'weights.v2.pt'));
    expect(second.folder).toBe('weights.v2');
    second.close();
    await expect(writePthFile(join(dir, 'bad.pth'), { w: { dtype: 'F32', shape: [2], data: new Float32Array(1) } })).rejects.toThrow(
      PthError,
    );
    expect((await readdir(dir)).sort()).toEqual(['consolidated.pth', 'weights.v2.pt']);
  });
});
