import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PthError, PthTensor, parsePth, type PickleValue, type PthErrorCode, type PthFile } from './pth.js';
import { bytesToFloat32, readFloat32 } from './tensor-source.js';

// --- fixtures written by test-data/make_pth_fixtures.py with torch 1.13 ----------------------------

const fixtureDir = fileURLToPath(new URL('../test-data/pth/', import.meta.url));
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(`${fixtureDir}${name}`));

interface ExpectedTensor {
  readonly dtype: string;
  readonly shape: number[];
  readonly hex: string;
  readonly values: (number | string)[];
}
interface ExpectedFile {
  readonly tree: unknown;
  readonly tensors: Record<string, ExpectedTensor>;
}
const expected = JSON.parse(readFileSync(`${fixtureDir}expected.json`, 'utf8')) as { files: Record<string, ExpectedFile> };

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

/** The tree in the JSON encoding of make_pth_fixtures.py; tensors are collected by dotted path. */
function toJson(value: PickleValue, path: string, tensors: Map<string, PthTensor>): unknown {
  if (value instanceof PthTensor) {
    tensors.set(path, value);
    return { __tensor__: path };
  }
  if (value instanceof Map) {
    return { __dict__: [...value].map(([k, v]) => [k, toJson(v, path ? `${path}.${String(k)}` : String(k), tensors)]) };
  }
  if (value instanceof Uint8Array) return { __bytes__: hex(value) };
  if (Array.isArray(value)) {
    const items = value.map((v, i) => toJson(v, `${path}.${i}`, tensors));
    return Object.isFrozen(value) ? { __tuple__: items } : items;
  }
  if (typeof value === 'bigint') return { __int__: value.toString() };
  return value;
}

function expectPthError(fn: () => unknown, code: PthErrorCode, ...fragments: (string | RegExp)[]): PthError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(PthError);
  const err = caught as PthError;
  expect(err.name).toBe('PthError');
  expect(err.code, err.message).toBe(code);
  for (const f of fragments) expect(err.message).toMatch(f);
  return err;
}

/** Elements of a tensor's bytes as the JSON's values (int64 as decimal strings, floats as numbers). */
function decode(bytes: Uint8Array, dtype: string): (number | string)[] {
  const b = bytes.slice();
  switch (dtype) {
    case 'I64':
      return Array.from(new BigInt64Array(b.buffer), (x) => x.toString());
    case 'I32':
      return Array.from(new Int32Array(b.buffer));
    case 'I16':
      return Array.from(new Int16Array(b.buffer));
    case 'I8':
      return Array.from(new Int8Array(b.buffer));
    case 'U8':
    case 'BOOL':
      return Array.from(b);
    case 'F64':
      return Array.from(new Float64Array(b.buffer));
    default:
      throw new Error(dtype);
  }
}

const READABLE = ['flat.pth', 'nested.pth', 'views.pth', 'tied.pth', 'proto4.pth', 'parameter.pth', 'weights.pth'];

describe('torch.save fixtures (torch 1.13)', () => {
  for (const name of READABLE) {
    it(`${name}: the tree and every element of every tensor`, () => {
      const want = expected.files[name]!;
      const file = parsePth(fixture(name), { description: name });
      expect(file.description).toBe(name);
      expect(file.version).toBe(3);
      expect(file.folder).toBe(name.replace(/\.pth$/, ''));
      const tensors = new Map<string, PthTensor>();
      expect(toJson(file.root, '', tensors)).toEqual(want.tree);
      expect([...tensors.keys()].sort()).toEqual(Object.keys(want.tensors).sort());
      for (const [path, t] of Object.entries(want.tensors)) {
        const tensor = tensors.get(path)!;
        expect(tensor.dtype, path).toBe(t.dtype);
        expect(tensor.shape, path).toEqual(t.shape);
        const bytes = tensor.readBytes();
        expect(hex(bytes), path).toBe(t.hex);
        expect(tensor.byteLength).toBe(t.hex.length / 2);
        if (['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
          expect(Array.from(bytesToFloat32(bytes, tensor.dtype, path)), path).toEqual((t.values as number[]).map(Math.fround));
        } else {
          expect(decode(bytes, t.dtype), path).toEqual(t.values);
        }
      }
    });
  }

  it('flat.pth: a module state dict (OrderedDict with _metadata) is the default state dict, every dtype', () => {
    const file = parsePth(fixture('flat.pth'));
    const sd = file.stateDict();
    expect(sd.path).toEqual([]);
    expect(sd.skipped).toEqual([]);
    expect(sd.names()).toEqual([
      'f16',
      'bf16',
      'ids',
      'i32',
      'i16',
      'i8',
      'u8',
      'mask',
      'f64',
      'scalar',
      'empty',
      'proj.weight',
      'proj.bias',
    ]);
    // The file is a TensorSource over the same state dict.
    expect(file.names()).toEqual(sd.names());
    expect(file.has('ids')).toBe(true);
    expect(file.info('proj.weight')).toEqual({ name: 'proj.weight', dtype: 'F32', shape: [4, 3], byteLength: 48 });
    expect(file.info('scalar')).toEqual({ name: 'scalar', dtype: 'F32', shape: [], byteLength: 4 });
    expect(file.info('empty')).toEqual({ name: 'empty', dtype: 'F32', shape: [0, 3], byteLength: 0 });
    expect(file.readBytes('empty').length).toBe(0);
    expect(Array.from(readFloat32(file, 'scalar'))).toEqual([2.5]);
    expect(decode(file.readBytes('ids', 2, 4), 'I64')).toEqual([String(2 ** 40), String(-(2n ** 62n))]);
    expect([...file.storages.keys()].length).toBe(13);
    expectPthError(() => file.info('nope'), 'UNKNOWN_TENSOR', /flat|pth: unknown tensor "nope"/);
  });

  it('nested.pth: the state dict under "model"; other keys stay in the tree; explicit paths', () => {
    const file = parsePth(fixture('nested.pth'), { description: 'nested.pth' });
    const sd = file.stateDict();
    expect(sd.path).toEqual(['model']);
    expect(sd.names()).toEqual(['tok_embeddings.weight', 'layers.0.attention.wq.weight', 'norm.weight']);
    expect(file.stateDict('model').names()).toEqual(sd.names());
    expect(file.stateDict(['model']).names()).toEqual(sd.names());
    // The top level flattened: nested dicts joined with dots, non-tensors skipped.
    const top = file.stateDict([]);
    expect(top.names()).toEqual(['model.tok_embeddings.weight', 'model.layers.0.attention.wq.weight', 'model.norm.weight']);
    expect(top.skipped).toEqual([
      'epoch',
      'lr',
      'name',
      'big',
      'neg_big',
      'neg',
      'int32',
      'cfg.dim',
      'cfg.layers',
      'cfg.flag',
      'cfg.off',
      'cfg.none',
      'cfg.pair',
      'cfg.nested.x',
      'bytes',
      'no_bytes',
      'empty.list',
      'empty.tuple',
    ]);
    const root = file.root as Map<string, PickleValue>;
    expect(root.get('big')).toBe(2n ** 70n);
    expect(root.get('neg_big')).toBe(-(2n ** 64n) - 5n);
    expect(root.get('lr')).toBe(1e-3);
    expectPthError(() => file.stateDict('optimizer'), 'NOT_A_STATE_DICT', 'no entry "optimizer"', /"model", "epoch"/);
    expectPthError(() => file.stateDict('cfg'), 'NOT_A_STATE_DICT', /"cfg" holds no tensors \(keys: "dim"/);
    expectPthError(() => file.stateDict(['epoch', 'x']), 'NOT_A_STATE_DICT', /number 3 is not a dict/);
  });

  it('views.pth: transposed, sliced, offset, expanded tensors share one storage and read row-major', () => {
    const file = parsePth(fixture('views.pth'));
    const sd = file.stateDict();
    const t = (name: string) => sd.tensor(name);
    expect(t('base').contiguous).toBe(true);
    expect(t('transposed')).toMatchObject({ contiguous: false, shape: [4, 3], stride: [1, 4], storageOffset: 0 });
    expect(t('slice')).toMatchObject({ contiguous: false, shape: [2, 2], stride: [4, 1], storageOffset: 5 });
    expect(t('row')).toMatchObject({ contiguous: true, shape: [4], stride: [1], storageOffset: 8 });
    expect(t('column')).toMatchObject({ contiguous: false, shape: [3], stride: [4], storageOffset: 1 });
    expect(t('expanded')).toMatchObject({ contiguous: false, shape: [2, 3], stride: [1, 0], dtype: 'F16' });
    expect(t('bf16_t')).toMatchObject({ contiguous: false, shape: [3, 2], stride: [1, 3], dtype: 'BF16' });
    for (const name of ['transposed', 'slice', 'row', 'column']) expect(t(name).storage).toBe(t('base').storage);
    expect(file.storages.size).toBe(3);
    // Every element range of every view equals the same range of the whole tensor's bytes.
    for (const name of sd.names()) {
      const whole = sd.readBytes(name);
      const { numel } = t(name);
      const size = whole.length / numel;
      for (let b = 0; b <= numel; b++) {
        for (let e = b; e <= numel; e++)
          expect(hex(sd.readBytes(name, b, e)), `${name} [${b}, ${e})`).toBe(hex(whole.subarray(b * size, e * size)));
      }
    }
  });

  it('tied.pth: the same tensor twice is one handle; a view of it shares the storage', () => {
    const sd = parsePth(fixture('tied.pth')).stateDict();
    expect(sd.tensor('tok_embeddings.weight')).toBe(sd.tensor('output.weight'));
    expect(sd.tensor('flat').storage).toBe(sd.tensor('output.weight').storage);
    expect(Array.from(readFloat32(sd, 'flat'))).toEqual([0.25, 1.25, 2.25, 3.25, 4.25, 5.25]);
  });

  it('contiguous reads are views of the bytes in memory; non-contiguous ones are gathered copies', () => {
    const bytes = fixture('views.pth');
    const sd = parsePth(bytes).stateDict();
    expect(sd.readBytes('row').buffer).toBe(bytes.buffer);
    expect(sd.readBytes('transposed').buffer).not.toBe(bytes.buffer);
  });

  it('PthTensor.readBytes and readBytes check the element range', () => {
    const sd = parsePth(fixture('views.pth'), { description: 'views.pth' }).stateDict();
    expectPthError(
      () => sd.readBytes('base', 0, 13),
      'INVALID_ARGUMENT',
      /views\.pth: tensor "base" has 12 elements; element range \[0, 13\)/,
    );
    expectPthError(() => sd.readBytes('transposed', 3, 2), 'INVALID_ARGUMENT');
    expectPthError(() => sd.readBytes('base', -1), 'INVALID_ARGUMENT');
    expectPthError(() => sd.readBytes('base', 0.5), 'INVALID_ARGUMENT');
    expectPthError(() => sd.readBytes('nope'), 'UNKNOWN_TENSOR', /views\.pth: unknown tensor "nope"/);
  });
});

describe('corrupted torch files', () => {
  it('random byte changes in real files: a PthError or a readable file, never another error', () => {
    let seed = 1;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const name of ['flat.pth', 'nested.pth', 'views.pth', 'proto4.pth']) {
      const original = fixture(name);
      for (let trial = 0; trial < 400; trial++) {
        const bytes = original.slice();
        for (let k = 1 + rand(4); k > 0; k--) bytes[rand(bytes.length)] = rand(256);
        try {
          const file = parsePth(bytes);
          for (const tensor of file.names()) file.readBytes(tensor);
        } catch (e) {
          if (!(e instanceof PthError)) throw new Error(`${name}, trial ${trial}: ${String(e)}`);
        }
      }
    }
  });
});

describe('refused torch files', () => {
  it('the legacy (pre-1.6) format gets a typed error that says so', () => {
    expectPthError(
      () => parsePth(fixture('legacy.pth'), { description: 'legacy.pth' }),
      'LEGACY_FORMAT',
      /legacy\.pth is in torch's legacy \(pre-1\.6\) format/,
      /_use_new_zipfile_serialization=False/,
    );
  });

  it('a pickle calling os.system is refused, naming the global', () => {
    expectPthError(() => parsePth(fixture('evil-system.pth')), 'FORBIDDEN_GLOBAL', /global posix\.system/, /weights_only=True/);
  });

  it('builtins.eval is refused in protocol 2 (GLOBAL __builtin__ eval) and 4 (STACK_GLOBAL)', () => {
    expectPthError(() => parsePth(fixture('evil-eval.pth')), 'FORBIDDEN_GLOBAL', /global __builtin__\.eval/, /opcode GLOBAL/);
    expectPthError(() => parsePth(fixture('evil-eval-proto4.pth')), 'FORBIDDEN_GLOBAL', /global builtins\.eval/, /opcode STACK_GLOBAL/);
  });

  it('an allowed global is only accepted in its place: REDUCE of torch.FloatStorage is refused', () => {
    expectPthError(() => parsePth(fixture('evil-reduce.pth')), 'FORBIDDEN_GLOBAL', /REDUCE of torch\.FloatStorage/);
  });
});

// --- hand-built archives and pickles ----------------------------------------------------------------

const enc = new TextEncoder();

function concat(parts: readonly (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p)));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

function le(value: number, bytes: number): number[] {
  const out: number[] = [];
  let v = BigInt(value);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

interface Entry {
  readonly name: string;
  readonly data: Uint8Array;
  /** Compression method written in both headers (default 0, stored). */
  readonly method?: number;
  readonly flags?: number;
}

interface BuiltZip {
  readonly bytes: Uint8Array;
  /** Offset of each entry's local header and central directory record. */
  readonly local: number[];
  readonly central: number[];
  readonly directoryOffset: number;
  readonly endOffset: number;
}

/**
 * A zip of stored entries, optionally with ZIP64 records (saturated 32-bit fields, ZIP64 extra
 * fields, the ZIP64 end record and locator), as torch or Python write them for large files.
 */
function buildZip(entries: readonly Entry[], options: { zip64?: boolean; comment?: string } = {}): BuiltZip {
  const { zip64 = false, comment = '' } = options;
  const parts: Uint8Array[] = [];
  const local: number[] = [];
  let at = 0;
  const push = (p: Uint8Array) => {
    parts.push(p);
    at += p.length;
  };
  for (const e of entries) {
    local.push(at);
    const name = enc.encode(e.name);
    const extra = zip64 ? [...le(1, 2), ...le(16, 2), ...le(e.data.length, 8), ...le(e.data.length, 8)] : [];
    const size = zip64 ? 0xffffffff : e.data.length;
    push(
      concat([
        le(0x04034b50, 4),
        le(45, 2),
        le(e.flags ?? 0, 2),
        le(e.method ?? 0, 2),
        le(0, 4),
        le(0, 4),
        le(size, 4),
        le(size, 4),
        le(name.length, 2),
        le(extra.length, 2),
        name,
        extra,
        e.data,
      ]),
    );
  }
  const directoryOffset = at;
  const central: number[] = [];
  entries.forEach((e, i) => {
    central.push(at);
    const name = enc.encode(e.name);
    const extra = zip64 ? [...le(1, 2), ...le(24, 2), ...le(e.data.length, 8), ...le(e.data.length, 8), ...le(local[i]!, 8)] : [];
    const size = zip64 ? 0xffffffff : e.data.length;
    const offset = zip64 ? 0xffffffff : local[i]!;
    push(
      concat([
        le(0x02014b50, 4),
        le(45, 2),
        le(45, 2),
        le(e.flags ?? 0, 2),
        le(e.method ?? 0, 2),
        le(0, 4),
        le(0, 4),
        le(size, 4),
        le(size, 4),
        le(name.length, 2),
        le(extra.length, 2),
        le(0, 2),
        le(0, 2),
        le(0, 2),
        le(0, 4),
        le(offset, 4),
        name,
        extra,
      ]),
    );
  });
  const directorySize = at - directoryOffset;
  if (zip64) {
    const end64 = at;
    push(
      concat([
        le(0x06064b50, 4),
        le(44, 8),
        le(45, 2),
        le(45, 2),
        le(0, 4),
        le(0, 4),
        le(entries.length, 8),
        le(entries.length, 8),
        le(directorySize, 8),
        le(directoryOffset, 8),
      ]),
    );
    push(concat([le(0x07064b50, 4), le(0, 4), le(end64, 8), le(1, 4)]));
  }
  const endOffset = at;
  const c = enc.encode(comment);
  push(
    concat([
      le(0x06054b50, 4),
      le(0, 2),
      le(0, 2),
      le(zip64 ? 0xffff : entries.length, 2),
      le(zip64 ? 0xffff : entries.length, 2),
      le(zip64 ? 0xffffffff : directorySize, 4),
      le(zip64 ? 0xffffffff : directoryOffset, 4),
      le(c.length, 2),
      c,
    ]),
  );
  return { bytes: concat(parts), local, central, directoryOffset, endOffset };
}

/** Pickle opcodes, enough to write state dicts by hand. */
const op = {
  proto: (n = 2) => [0x80, n],
  mark: [0x28],
  stop: [0x2e],
  str: (s: string) => {
    const b = enc.encode(s);
    return [0x58, ...le(b.length, 4), ...b];
  },
  /** BININT, or LONG1 of 8 bytes beyond the int32 range. */
  int: (n: number) =>
    n >= -(2 ** 31) && n < 2 ** 31
      ? [0x4a, ...le(n < 0 ? n + 2 ** 32 : n, 4)]
      : [0x8a, 8, ...le(n < 0 ? Number(2n ** 64n + BigInt(n)) : n, 8)],
  global: (module: string, name: string) => [0x63, ...enc.encode(`${module}\n${name}\n`)],
  emptyDict: [0x7d],
  emptyList: [0x5d],
  emptyTuple: [0x29],
  tuple: [0x74],
  setitem: [0x73],
  setitems: [0x75],
  append: [0x61],
  reduce: [0x52],
  build: [0x62],
  persid: [0x51],
  false: [0x89],
  none: [0x4e],
  put: (i: number) => [0x71, i],
  get: (i: number) => [0x68, i],
};

interface TensorSpec {
  readonly key: string;
  readonly storage?: string;
  readonly numel: number;
  readonly offset?: number;
  readonly size: readonly number[];
  readonly stride?: readonly number[];
}

function contiguousStride(size: readonly number[]): number[] {
  const stride: number[] = [];
  let s = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    stride[d] = s;
    s *= size[d]!;
  }
  return stride;
}

/** Opcodes of one `_rebuild_tensor_v2` call. */
function tensorOps(t: TensorSpec): number[] {
  return [
    ...op.global('torch._utils', '_rebuild_tensor_v2'),
    ...op.mark,
    ...op.mark,
    ...op.str('storage'),
    ...op.global('torch', t.storage ?? 'FloatStorage'),
    ...op.str(t.key),
    ...op.str('cpu'),
    ...op.int(t.numel),
    ...op.tuple,
    ...op.persid,
    ...op.int(t.offset ?? 0),
    ...op.mark,
    ...t.size.flatMap(op.int),
    ...op.tuple,
    ...op.mark,
    ...(t.stride ?? contiguousStride(t.size)).flatMap(op.int),
    ...op.tuple,
    ...op.false,
    ...op.global('collections', 'OrderedDict'),
    ...op.emptyTuple,
    ...op.reduce,
    ...op.tuple,
    ...op.reduce,
  ];
}

/** A pickled dict of tensors, `{name: tensor}`. */
function statePickle(tensors: Record<string, TensorSpec>): Uint8Array {
  return Uint8Array.from([
    ...op.proto(),
    ...op.emptyDict,
    ...op.mark,
    ...Object.entries(tensors).flatMap(([name, t]) => [...op.str(name), ...tensorOps(t)]),
    ...op.setitems,
    ...op.stop,
  ]);
}

/** A torch-like archive: `<folder>/data.pkl`, `<folder>/data/<key>`, `<folder>/version`. */
function torchZip(
  pickle: Uint8Array | number[],
  storages: Record<string, Uint8Array>,
  options: { folder?: string; zip64?: boolean; records?: Record<string, Uint8Array | string>; method?: number } = {},
): BuiltZip {
  const folder = options.folder ?? 'archive';
  const entries: Entry[] = [{ name: `${folder}/data.pkl`, data: Uint8Array.from(pickle), method: options.method }];
  for (const [key, data] of Object.entries(storages)) entries.push({ name: `${folder}/data/${key}`, data });
  for (const [name, data] of Object.entries(options.records ?? { version: '3\n' })) {
    entries.push({ name: `${folder}/${name}`, data: typeof data === 'string' ? enc.encode(data) : data });
  }
  return buildZip(entries, { zip64: options.zip64 });
}

const f32bytes = (...values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

/** `{w: float32 [2, 2] = [1, 2, 3, 4]}` on storage "0". */
const simple = () => torchZip(statePickle({ w: { key: '0', numel: 4, size: [2, 2] } }), { '0': f32bytes(1, 2, 3, 4) });

describe('zip archives', () => {
  it('reads a hand-built archive under any folder name', () => {
    for (const folder of ['archive', 'my-checkpoint', 'consolidated']) {
      const file = parsePth(
        torchZip(statePickle({ w: { key: '0', numel: 4, size: [2, 2] } }), { '0': f32bytes(1, 2, 3, 4) }, { folder }).bytes,
      );
      expect(file.folder).toBe(folder);
      expect(Array.from(readFloat32(file, 'w'))).toEqual([1, 2, 3, 4]);
    }
  });

  it('reads ZIP64 records (saturated fields, extra fields, ZIP64 end record and locator)', () => {
    const file = parsePth(
      torchZip(statePickle({ w: { key: '0', numel: 4, size: [2, 2] } }), { '0': f32bytes(1, 2, 3, 4) }, { zip64: true }).bytes,
    );
    expect(Array.from(readFloat32(file, 'w'))).toEqual([1, 2, 3, 4]);
    // A real torch file rewrapped as ZIP64 reads the same: walk its central directory.
    const flat = fixture('flat.pth');
    const original = parsePth(flat);
    const entries: Entry[] = [];
    const dv = new DataView(flat.buffer, flat.byteOffset, flat.byteLength);
    const end = flat.length - 22;
    expect(dv.getUint32(end, true)).toBe(0x06054b50);
    for (let at = dv.getUint32(end + 16, true), i = 0; i < dv.getUint16(end + 10, true); i++) {
      const nameLength = dv.getUint16(at + 28, true);
      const local = dv.getUint32(at + 42, true);
      const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
      entries.push({
        name: new TextDecoder().decode(flat.subarray(at + 46, at + 46 + nameLength)),
        data: flat.subarray(start, start + dv.getUint32(at + 24, true)),
      });
      at += 46 + nameLength + dv.getUint16(at + 30, true) + dv.getUint16(at + 32, true);
    }
    expect(entries.length).toBe(2 + original.storages.size);
    const rewrapped = parsePth(buildZip(entries, { zip64: true }).bytes);
    for (const name of original.names()) expect(hex(rewrapped.readBytes(name)), name).toBe(hex(original.readBytes(name)));
  });

  it('accepts a zip comment', () => {
    const parts = [statePickle({ w: { key: '0', numel: 1, size: [] } })];
    const z = buildZip(
      [
        { name: 'a/data.pkl', data: parts[0]! },
        { name: 'a/data/0', data: f32bytes(7) },
      ],
      { comment: 'hello' },
    );
    expect(Array.from(readFloat32(parsePth(z.bytes), 'w'))).toEqual([7]);
  });

  it('not a zip, or truncated anywhere: always a PthError, never another error', () => {
    expectPthError(
      () => parsePth(enc.encode('{"not": "a zip"}'), { description: 'x.pth' }),
      'NOT_A_ZIP',
      /x\.pth \(16 bytes, first byte 0x7b\) is not a zip/,
    );
    expectPthError(() => parsePth(new Uint8Array(0)), 'NOT_A_ZIP');
    const { bytes } = simple();
    expectPthError(
      () => parsePth(bytes.subarray(0, bytes.length - 1)),
      'TRUNCATED',
      /starts like a zip but has no end-of-central-directory record/,
    );
    for (let n = 0; n < bytes.length; n++) {
      expect(() => parsePth(bytes.subarray(0, n)), `length ${n}`).toThrow(PthError);
    }
  });

  it('a corrupted central directory', () => {
    const z = simple();
    const bad = z.bytes.slice();
    bad[z.central[1]!] = 0x51; // signature of the second record
    expectPthError(() => parsePth(bad), 'INVALID_ZIP', /central directory entry 1 .*bad signature/);
    // More entries than the directory can hold.
    const many = z.bytes.slice();
    new DataView(many.buffer).setUint16(z.endOffset + 10, 50, true);
    new DataView(many.buffer).setUint16(z.endOffset + 8, 50, true);
    expectPthError(() => parsePth(many), 'INVALID_ZIP', /50 entries cannot fit/);
    // Fewer entries than the directory's bytes.
    const few = z.bytes.slice();
    new DataView(few.buffer).setUint16(z.endOffset + 10, 2, true);
    new DataView(few.buffer).setUint16(z.endOffset + 8, 2, true);
    expectPthError(() => parsePth(few), 'INVALID_ZIP', /declares \d+ bytes but its 2 entries take/);
    // A directory offset past the end record.
    const past = z.bytes.slice();
    new DataView(past.buffer).setUint32(z.endOffset + 16, z.endOffset + 10, true);
    expectPthError(() => parsePth(past), 'TRUNCATED', /central directory \[\d+, \d+\) runs past its end record/);
    // A name length running past the directory.
    const name = z.bytes.slice();
    new DataView(name.buffer).setUint16(z.central[2]! + 28, 60000, true);
    expectPthError(() => parsePth(name), 'INVALID_ZIP', /run past the directory/);
    // A local header whose name differs from the central directory's.
    const local = z.bytes.slice();
    local[z.local[1]! + 30] = 'X'.charCodeAt(0);
    expectPthError(() => parsePth(local), 'INVALID_ZIP', /local header at \d+ says "Xrchive\/data\/0"/);
    // No local header signature where the directory points.
    const sig = z.bytes.slice();
    sig[z.local[1]!] = 0;
    expectPthError(() => parsePth(sig), 'INVALID_ZIP', /no local header signature/);
  });

  it('entry sizes and offsets past the end are refused before reading', () => {
    const z = simple();
    // The storage's size (central directory) made huge: 2^32 - 2 bytes.
    const big = z.bytes.slice();
    const dv = new DataView(big.buffer);
    dv.setUint32(z.central[1]! + 20, 0xfffffffe, true);
    dv.setUint32(z.central[1]! + 24, 0xfffffffe, true);
    expectPthError(() => parsePth(big), 'TRUNCATED', /"archive\/data\/0".*lies past the central directory/);
    // A size just past the data area (runs into the next record's header: fine for zip, but then
    // the storage size no longer matches: 4 floats are 16 bytes).
    const over = z.bytes.slice();
    new DataView(over.buffer).setUint32(z.central[1]! + 20, 17, true);
    new DataView(over.buffer).setUint32(z.central[1]! + 24, 17, true);
    expectPthError(
      () => parsePth(over),
      'INVALID_TENSOR',
      /claims 4 elements of F32 \(16 bytes\) but its record "archive\/data\/0" has 17 bytes/,
    );
    // The last record's data running into the central directory.
    const last = z.bytes.slice();
    const lastIndex = z.central.length - 1;
    new DataView(last.buffer).setUint32(z.central[lastIndex]! + 20, 100, true);
    new DataView(last.buffer).setUint32(z.central[lastIndex]! + 24, 100, true);
    expectPthError(
      () => parsePth(last),
      'TRUNCATED',
      /"archive\/version": 100 bytes of data at offset \d+ run past the central directory at \d+ \(by \d+ bytes\)/,
    );
    new DataView(last.buffer).setUint32(z.central[lastIndex]! + 20, 1000, true);
    new DataView(last.buffer).setUint32(z.central[lastIndex]! + 24, 1000, true);
    expectPthError(
      () => parsePth(last),
      'TRUNCATED',
      /"archive\/version"\): local header at \d+ with 1000 bytes of data lies past the central directory/,
    );
    // A local header offset past the directory.
    const off = z.bytes.slice();
    new DataView(off.buffer).setUint32(z.central[0]! + 42, z.directoryOffset - 10, true);
    expectPthError(
      () => parsePth(off),
      'TRUNCATED',
      /local header at \d+ with \d+ bytes of data lies past|runs past the central directory/,
    );
  });

  it('ZIP64 records pointing outside the file', () => {
    const z = torchZip(statePickle({ w: { key: '0', numel: 1, size: [] } }), { '0': f32bytes(1) }, { zip64: true });
    const locator = z.endOffset - 20;
    const bad = z.bytes.slice();
    new DataView(bad.buffer).setBigUint64(locator + 8, 2n ** 40n, true);
    expectPthError(() => parsePth(bad), 'TRUNCATED', /ZIP64 locator points to an end record at offset 1099511627776/);
    const sig = z.bytes.slice();
    sig[locator - 56] = 0;
    expectPthError(() => parsePth(sig), 'INVALID_ZIP', /no ZIP64 end-of-central-directory signature/);
    // ZIP64 extra field values past the end.
    const size = z.bytes.slice();
    new DataView(size.buffer).setBigUint64(z.central[1]! + 46 + 'archive/data/0'.length + 4, 2n ** 52n, true);
    new DataView(size.buffer).setBigUint64(z.central[1]! + 46 + 'archive/data/0'.length + 12, 2n ** 52n, true);
    expectPthError(() => parsePth(size), 'TRUNCATED', /with 4503599627370496 bytes of data lies past the central directory/);
    // Saturated fields without a ZIP64 locator.
    const plain = simple();
    const sat = plain.bytes.slice();
    new DataView(sat.buffer).setUint32(plain.endOffset + 16, 0xffffffff, true);
    expectPthError(() => parsePth(sat), 'INVALID_ZIP', /saturated fields \(ZIP64\) but there is no ZIP64 locator/);
  });

  it('compressed and encrypted records are refused', () => {
    const deflated = torchZip(statePickle({ w: { key: '0', numel: 1, size: [] } }), { '0': f32bytes(1) }, { method: 8 });
    expectPthError(
      () => parsePth(deflated.bytes, { description: 'c.pth' }),
      'UNSUPPORTED_ENTRY',
      /c\.pth: zip entry "archive\/data\.pkl" is compressed \(method 8, deflate\)/,
    );
    const encrypted = buildZip([{ name: 'a/data.pkl', data: statePickle({}), flags: 1 }]);
    expectPthError(() => parsePth(encrypted.bytes), 'UNSUPPORTED_ENTRY', /is encrypted/);
  });

  it('records: data.pkl, storages, byteorder, version', () => {
    expectPthError(
      () => parsePth(buildZip([{ name: 'a/other', data: new Uint8Array(1) }]).bytes),
      'MISSING_RECORD',
      /no <folder>\/data\.pkl record/,
    );
    expectPthError(
      () =>
        parsePth(
          buildZip([
            { name: 'a/data.pkl', data: statePickle({}) },
            { name: 'b/data.pkl', data: statePickle({}) },
          ]).bytes,
        ),
      'INVALID_ZIP',
      /several data\.pkl records/,
    );
    expectPthError(
      () => parsePth(torchZip(statePickle({ w: { key: '7', numel: 1, size: [] } }), {}).bytes),
      'MISSING_RECORD',
      /storage "7" has no record "archive\/data\/7"/,
    );
    const pickle = statePickle({ w: { key: '0', numel: 1, size: [] } });
    const storages = { '0': f32bytes(1) };
    expect(parsePth(torchZip(pickle, storages, { records: { version: '3\n', byteorder: 'little' } }).bytes).names()).toEqual(['w']);
    expectPthError(
      () => parsePth(torchZip(pickle, storages, { records: { byteorder: 'big' } }).bytes),
      'UNSUPPORTED_BYTE_ORDER',
      /byteorder record says "big"/,
    );
    expect(parsePth(torchZip(pickle, storages, { records: { '.data/version': '6\n', version: '3\n' } }).bytes).version).toBe(6);
    expect(parsePth(torchZip(pickle, storages, { records: {} }).bytes).version).toBeUndefined();
    expectPthError(
      () => parsePth(torchZip(pickle, storages, { records: { version: 'three' } }).bytes),
      'INVALID_ZIP',
      /version record archive\/version is not a number/,
    );
  });
});

describe('tensors and storages', () => {
  it('a huge element count is refused before anything is allocated', () => {
    // 2^40 elements claimed on a 4-element storage.
    expectPthError(
      () => parsePth(torchZip(statePickle({ w: { key: '0', numel: 4, size: [2 ** 20, 2 ** 20] } }), { '0': f32bytes(1, 2, 3, 4) }).bytes),
      'INVALID_TENSOR',
      /size \[1048576, 1048576\], stride \[1048576, 1\], offset 0 reaches element 1099511627775, past the storage's 4 elements/,
    );
    // More elements than a safe integer.
    expectPthError(
      () =>
        parsePth(
          torchZip(statePickle({ w: { key: '0', numel: 4, size: [2 ** 30, 2 ** 30, 2 ** 30], stride: [0, 0, 0] } }), {
            '0': f32bytes(1, 2, 3, 4),
          }).bytes,
        ),
      'INVALID_TENSOR',
      /has too many elements/,
    );
    // A storage claiming 2^50 elements over a 16-byte record.
    expectPthError(
      () => parsePth(torchZip(statePickle({ w: { key: '0', numel: 2 ** 50, size: [4] } }), { '0': f32bytes(1, 2, 3, 4) }).bytes),
      'INVALID_TENSOR',
      /storage "0" claims 1125899906842624 elements of F32 \(4503599627370496 bytes\) but its record "archive\/data\/0" has 16 bytes/,
    );
  });

  it('views outside their storage are refused', () => {
    const storages = { '0': f32bytes(1, 2, 3, 4) };
    const bad = (t: Partial<TensorSpec>) => parsePth(torchZip(statePickle({ w: { key: '0', numel: 4, size: [4], ...t } }), storages).bytes);
    expectPthError(() => bad({ offset: 1 }), 'INVALID_TENSOR', /reaches element 4, past the storage's 4 elements/);
    expectPthError(() => bad({ size: [2, 2], stride: [3, 1] }), 'INVALID_TENSOR', /reaches element 4/);
    expectPthError(() => bad({ size: [0], offset: 5 }), 'INVALID_TENSOR', /starts past the storage's 4 elements/);
    expectPthError(() => bad({ size: [2, 2], stride: [2] }), 'INVALID_TENSOR', /differ in length/);
    expectPthError(() => bad({ size: [-1] }), 'INVALID_TENSOR', /size must be a tuple of non-negative integers/);
    expectPthError(() => bad({ offset: -1 }), 'INVALID_TENSOR', /storage offset must be a non-negative integer/);
    // Fits exactly: the last element.
    expect(Array.from(readFloat32(bad({ size: [1], offset: 3 }), 'w'))).toEqual([4]);
    // An empty tensor at the storage's end.
    expect(bad({ size: [0], offset: 4 }).info('w').byteLength).toBe(0);
  });

  it('one storage key with two dtypes is refused; unsupported storage types name the type', () => {
    const pickle = statePickle({ a: { key: '0', numel: 2, size: [2] }, b: { key: '0', numel: 2, size: [2], storage: 'IntStorage' } });
    expectPthError(
      () => parsePth(torchZip(pickle, { '0': f32bytes(1, 2) }).bytes),
      'INVALID_TENSOR',
      /storage "0" is 2 × F32 in one place and 2 × I32 in another/,
    );
    expectPthError(
      () =>
        parsePth(
          torchZip(statePickle({ c: { key: '0', numel: 1, size: [1], storage: 'ComplexFloatStorage' } }), { '0': new Uint8Array(8) }).bytes,
        ),
      'UNSUPPORTED_DTYPE',
      /storage type torch\.ComplexFloatStorage has no supported dtype/,
    );
  });

  it('every storage class maps to its dtype', () => {
    const classes: [string, string, number][] = [
      ['DoubleStorage', 'F64', 8],
      ['FloatStorage', 'F32', 4],
      ['HalfStorage', 'F16', 2],
      ['BFloat16Storage', 'BF16', 2],
      ['LongStorage', 'I64', 8],
      ['IntStorage', 'I32', 4],
      ['ShortStorage', 'I16', 2],
      ['CharStorage', 'I8', 1],
      ['ByteStorage', 'U8', 1],
      ['BoolStorage', 'BOOL', 1],
    ];
    const specs: Record<string, TensorSpec> = {};
    const storages: Record<string, Uint8Array> = {};
    classes.forEach(([cls, , size], i) => {
      specs[cls] = { key: String(i), numel: 3, size: [3], storage: cls };
      storages[String(i)] = new Uint8Array(3 * size).map((_, j) => j + 1);
    });
    const file = parsePth(torchZip(statePickle(specs), storages).bytes);
    for (const [cls, dtype, size] of classes) {
      expect(file.info(cls)).toEqual({ name: cls, dtype, shape: [3], byteLength: 3 * size });
      expect(Array.from(file.readBytes(cls))).toEqual(Array.from(storages[String(classes.findIndex((c) => c[0] === cls))]!));
    }
  });

  it('gathers any strided view (random shapes, strides, offsets, element sizes, ranges) like a plain loop', () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const classes: [string, number][] = [
      ['ByteStorage', 1],
      ['HalfStorage', 2],
      ['FloatStorage', 4],
      ['LongStorage', 8],
    ];
    for (let trial = 0; trial < 60; trial++) {
      const nd = rand(4) + 1;
      const size = Array.from({ length: nd }, () => rand(4) + 1);
      const stride = Array.from({ length: nd }, () => rand(7));
      const offset = rand(5);
      let last = offset;
      for (let d = 0; d < nd; d++) last += (size[d]! - 1) * stride[d]!;
      const numel = last + 1 + rand(3);
      const [cls, el] = classes[trial % 4]!;
      const storage = new Uint8Array(numel * el).map(() => rand(256));
      const file = parsePth(torchZip(statePickle({ t: { key: '0', numel, size, stride, offset, storage: cls } }), { '0': storage }).bytes);
      const count = size.reduce((a, b) => a * b, 1);
      const reference = new Uint8Array(count * el);
      for (let i = 0; i < count; i++) {
        let rest = i;
        let pos = offset;
        for (let d = nd - 1; d >= 0; d--) {
          pos += (rest % size[d]!) * stride[d]!;
          rest = Math.floor(rest / size[d]!);
        }
        reference.set(storage.subarray(pos * el, (pos + 1) * el), i * el);
      }
      const what = `size [${size}] stride [${stride}] offset ${offset} ${cls}`;
      expect(hex(file.readBytes('t')), what).toBe(hex(reference));
      for (let k = 0; k < 5; k++) {
        const b = rand(count + 1);
        const e = b + rand(count - b + 1);
        expect(hex(file.readBytes('t', b, e)), `${what} [${b}, ${e})`).toBe(hex(reference.subarray(b * el, e * el)));
      }
    }
  });
});

describe('the restricted unpickler', () => {
  const zipOf = (pickle: number[]) => torchZip(pickle, {}).bytes;
  const run = (...ops: number[][]) => parsePth(zipOf([...op.proto(), ...ops.flat(), ...op.stop]));

  it('builds plain values', () => {
    const file = run(
      op.mark,
      op.str('a'),
      op.int(-7),
      op.str('b'),
      [0x88],
      op.str('c'),
      op.none,
      op.str('d'),
      [0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
      [0x64],
    );
    expect(file.root).toEqual(
      new Map<PickleValue, PickleValue>([
        ['a', -7],
        ['b', true],
        ['c', null],
        ['d', 1.5],
      ]),
    );
    expect(run([0x4b, 200]).root).toBe(200);
    expect(run([0x4d, 0x34, 0x12]).root).toBe(0x1234);
    expect(run([0x8a, 0]).root).toBe(0);
    expect(run([0x8a, 1, 0xff]).root).toBe(-1);
    expect(run([0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1]).root).toBe(2n ** 64n);
    expect(run([0x8b, 2, 0, 0, 0, 0x00, 0x80]).root).toBe(-32768);
    expect(run([0x8c, 2, 0x68, 0x69]).root).toBe('hi');
    expect(run([0x43, 2, 1, 2]).root).toEqual(new Uint8Array([1, 2]));
    expect(run(op.mark, op.int(1), op.int(2), [0x6c]).root).toEqual([1, 2]);
    expect(run(op.emptyList, op.mark, op.int(1), op.int(2), [0x65]).root).toEqual([1, 2]);
    expect(run(op.int(1), op.int(2), [0x86]).root).toEqual([1, 2]);
    expect(Object.isFrozen(run(op.int(1), [0x85]).root)).toBe(true);
    // Memo: BINPUT/BINGET, LONG_BINPUT/LONG_BINGET, MEMOIZE; DUP; POP; POP_MARK.
    expect(run(op.str('x'), op.put(3), [0x30], op.get(3)).root).toBe('x');
    expect(run(op.str('y'), [0x72, 0, 1, 0, 0], [0x30], [0x6a, 0, 1, 0, 0]).root).toBe('y');
    expect(run(op.str('z'), [0x94], [0x30], op.get(0)).root).toBe('z');
    expect(run(op.str('d'), [0x32], [0x86]).root).toEqual(['d', 'd']);
    expect(run(op.str('k'), op.mark, op.int(1), op.int(2), [0x31]).root).toBe('k');
    // FRAME (protocol 4) is a length hint.
    expect(parsePth(zipOf([...op.proto(4), 0x95, 3, 0, 0, 0, 0, 0, 0, 0, 0x4b, 5, 0x2e])).root).toBe(5);
  });

  it('OrderedDict by REDUCE with a list of pairs, or NEWOBJ; BUILD of its attributes', () => {
    const od = op.global('collections', 'OrderedDict');
    expect(
      run(od, op.emptyList, op.mark, op.str('a'), op.int(1), [0x86], op.str('b'), op.int(2), [0x86], [0x65], [0x85], op.reduce).root,
    ).toEqual(
      new Map([
        ['a', 1],
        ['b', 2],
      ]),
    );
    expect(run(od, op.emptyTuple, [0x81], op.str('a'), op.int(1), op.setitem).root).toEqual(new Map([['a', 1]]));
    expect(run(od, op.emptyTuple, op.reduce, op.emptyDict, op.build).root).toEqual(new Map());
  });

  it('a list may contain itself (the pickle memo allows cycles): no hang', () => {
    const file = run(op.emptyList, op.put(0), op.get(0), op.append);
    const root = file.root as PickleValue[];
    expect(root[0]).toBe(root);
    expectPthError(() => file.stateDict(), 'NOT_A_STATE_DICT', /holds a list of 1, not a dict of tensors/);
  });

  it('refuses every other global, callable and opcode', () => {
    expectPthError(() => run(op.global('os', 'system'), op.str('x'), [0x85], op.reduce), 'FORBIDDEN_GLOBAL', /the global os\.system/);
    expectPthError(() => run(op.str('os'), op.str('system'), [0x93]), 'FORBIDDEN_GLOBAL', /the global os\.system/, /STACK_GLOBAL/);
    expectPthError(() => run(op.global('torch', 'load')), 'FORBIDDEN_GLOBAL', /torch\.load/);
    expectPthError(() => run(op.global('torch._utils', '_rebuild_qtensor')), 'FORBIDDEN_GLOBAL', /_rebuild_qtensor/);
    expectPthError(() => run(op.global('torch.nn.parameter', 'Parameter')), 'FORBIDDEN_GLOBAL');
    expectPthError(() => run(op.global('__builtin__', 'set')), 'FORBIDDEN_GLOBAL');
    expectPthError(
      () => run(op.str('f'), op.emptyTuple, op.reduce),
      'FORBIDDEN_GLOBAL',
      /REDUCE of the string "f", which is not an allowed callable/,
    );
    expectPthError(
      () => run(op.global('torch._utils', '_rebuild_tensor_v2'), op.emptyTuple, [0x81]),
      'FORBIDDEN_GLOBAL',
      /NEWOBJ of the global torch\._utils\._rebuild_tensor_v2/,
    );
    expectPthError(
      () => run(op.global('_codecs', 'encode'), op.str('x'), op.str('utf-8'), [0x86], op.reduce),
      'FORBIDDEN_GLOBAL',
      /encode\(str, 'latin1'\)/,
    );
    expectPthError(
      () => run(op.global('builtins', 'bytes'), op.int(5), [0x85], op.reduce),
      'FORBIDDEN_GLOBAL',
      /only accepted with no arguments/,
    );
    // Opcodes that build objects by other means, text protocols, extensions, out-of-band buffers.
    for (const [code, name] of [
      [0x69, 'INST'],
      [0x6f, 'OBJ'],
      [0x82, 'EXT1'],
      [0x50, 'PERSID'],
      [0x49, 'INT'],
      [0x97, 'NEXT_BUFFER'],
      [0x8f, 'EMPTY_SET'],
      [0x92, 'NEWOBJ_EX'],
    ] as const) {
      expectPthError(() => run([code]), 'INVALID_PICKLE', new RegExp(`opcode ${name} is not accepted`));
    }
    expectPthError(() => run([0xfe]), 'INVALID_PICKLE', /unknown opcode 0xfe/);
  });

  it('refuses malformed pickles', () => {
    expectPthError(() => parsePth(zipOf([...op.int(1), ...op.stop])), 'INVALID_PICKLE', /must start with PROTO/);
    expectPthError(() => parsePth(zipOf([...op.proto(1), ...op.stop])), 'INVALID_PICKLE', /protocol 1 is not supported/);
    expectPthError(() => parsePth(zipOf([...op.proto(), ...op.int(1)])), 'INVALID_PICKLE', /ends without a STOP/);
    expectPthError(() => run(), 'INVALID_PICKLE', /stack underflow \(opcode STOP/);
    expectPthError(() => run(op.mark, op.stop), 'INVALID_PICKLE', /stack underflow/);
    expectPthError(() => run(op.tuple), 'INVALID_PICKLE', /no MARK/);
    expectPthError(() => run(op.get(9)), 'INVALID_PICKLE', /memo entry 9 was never stored/);
    expectPthError(() => run([0x58, 0xff, 0xff, 0xff, 0x7f]), 'INVALID_PICKLE', /needs 2147483647 more bytes/);
    expectPthError(() => run([0x8c, 2, 0xc3, 0x28]), 'INVALID_PICKLE', /not valid UTF-8/);
    expectPthError(() => run([0x63, 0x61]), 'INVALID_PICKLE', /no terminating newline/);
    expectPthError(() => run(op.int(1), op.int(2), op.append), 'INVALID_PICKLE', /APPEND to number 1, not a list/);
    expectPthError(() => run(op.int(1), op.emptyTuple, op.append), 'INVALID_PICKLE', /APPEND to number 1/);
    expectPthError(() => run(op.emptyTuple, op.int(1), op.append), 'INVALID_PICKLE', /APPEND to a tuple of 0, not a list/);
    expectPthError(() => run(op.emptyDict, op.emptyList, op.int(1), op.setitem), 'INVALID_PICKLE', /a list of 0 cannot be a dict key/);
    expectPthError(() => run(op.emptyDict, op.mark, op.int(1), op.setitems), 'INVALID_PICKLE', /odd number/);
    expectPthError(() => run(op.emptyList, op.emptyDict, op.build), 'INVALID_PICKLE', /BUILD of a list of 0/);
    expectPthError(() => run(op.emptyDict, op.str('state'), op.build), 'INVALID_PICKLE', /BUILD of a dict of 0 with the string "state"/);
    expectPthError(
      () => run(op.mark, op.str('storage'), op.int(1), op.tuple, op.persid),
      'INVALID_PICKLE',
      /persistent id must be \('storage', type, key, location, numel\)/,
    );
    expectPthError(
      () =>
        run(
          op.mark,
          op.str('storage'),
          op.global('collections', 'OrderedDict'),
          op.str('0'),
          op.str('cpu'),
          op.int(1),
          op.tuple,
          op.persid,
        ),
      'INVALID_PICKLE',
      /storage type must be a torch storage class/,
    );
    expectPthError(
      () =>
        run(op.mark, op.str('storage'), op.global('torch', 'FloatStorage'), op.str('../0'), op.str('cpu'), op.int(1), op.tuple, op.persid),
      'INVALID_PICKLE',
      /storage key must be a non-empty string without "\/"/,
    );
    // A bare global or storage in the result.
    expectPthError(
      () => run(op.global('collections', 'OrderedDict')),
      'INVALID_PICKLE',
      /the result holds the global collections\.OrderedDict/,
    );
    // _rebuild_tensor_v2 with the wrong arguments.
    expectPthError(
      () => run(op.global('torch._utils', '_rebuild_tensor_v2'), op.emptyTuple, op.reduce),
      'INVALID_PICKLE',
      /takes 6 or 7 arguments, got 0/,
    );
    expectPthError(
      () => run(op.global('torch._utils', '_rebuild_parameter'), op.emptyTuple, op.reduce),
      'INVALID_PICKLE',
      /_rebuild_parameter takes/,
    );
  });

  it('limits: pickle size, mark nesting, container nesting, LONG4 length', () => {
    const { bytes } = simple();
    expectPthError(
      () => parsePth(bytes, { maxPickleBytes: 10, description: 'm.pth' }),
      'LIMIT_EXCEEDED',
      /m\.pth: archive\/data\.pkl has \d+ bytes, over the limit of 10 \(maxPickleBytes\)/,
    );
    const marks = Array.from({ length: 20 }, () => op.mark);
    expectPthError(
      () => parsePth(zipOf([...op.proto(), ...marks.flat(), ...op.stop]), { maxDepth: 10 }),
      'LIMIT_EXCEEDED',
      /more than 10 nested MARKs/,
    );
    // Lists nested 30 deep without marks: [[[...]]].
    const nested = [...Array.from({ length: 30 }, () => op.emptyList).flat(), ...Array.from({ length: 29 }, () => op.append).flat()];
    expectPthError(
      () => parsePth(zipOf([...op.proto(), ...nested, ...op.stop]), { maxDepth: 10 }),
      'LIMIT_EXCEEDED',
      /containers nested more than 10 deep/,
    );
    expect(parsePth(zipOf([...op.proto(), ...nested, ...op.stop]), { maxDepth: 30 }).root).toHaveLength(1);
    expectPthError(() => run([0x8b, 0, 0, 1, 0]), 'LIMIT_EXCEEDED', /integer of 65536 bytes exceeds the limit/);
    expectPthError(() => parsePth(bytes, { maxDepth: 0 }), 'INVALID_ARGUMENT', /maxDepth must be a positive safe integer/);
  });
});

describe('state dicts', () => {
  const t = (key: string): TensorSpec => ({ key, numel: 1, size: [] });
  const file = (pickle: number[], keys: string[]): PthFile =>
    parsePth(torchZip([...op.proto(), ...pickle, ...op.stop], Object.fromEntries(keys.map((k) => [k, f32bytes(Number(k))]))).bytes, {
      description: 'sd.pth',
    });

  it('auto: "model", then "state_dict", then the top level', () => {
    const entry = (name: string, ...ops: number[][]) => [...op.str(name), ...ops.flat()];
    const withState = file(
      [
        ...op.emptyDict,
        ...op.mark,
        ...entry('epoch', op.int(1)),
        ...entry('state_dict', op.emptyDict, op.str('w'), tensorOps(t('1')), op.setitem),
        ...op.setitems,
      ],
      ['1'],
    );
    expect(withState.stateDict().path).toEqual(['state_dict']);
    expect(withState.names()).toEqual(['w']);
    const both = file(
      [
        ...op.emptyDict,
        ...op.mark,
        ...entry('state_dict', op.emptyDict, op.str('a'), tensorOps(t('1')), op.setitem),
        ...entry('model', op.emptyDict, op.str('b'), tensorOps(t('2')), op.setitem),
        ...op.setitems,
      ],
      ['1', '2'],
    );
    expect(both.stateDict().path).toEqual(['model']);
    // "model" that is a tensor: a plain state dict with a tensor called "model".
    const tensorModel = file(
      [...op.emptyDict, ...op.mark, ...entry('model', tensorOps(t('1'))), ...entry('x', tensorOps(t('2'))), ...op.setitems],
      ['1', '2'],
    );
    expect(tensorModel.stateDict().path).toEqual([]);
    expect(tensorModel.names()).toEqual(['model', 'x']);
    const none = file([...op.emptyDict, ...op.str('epoch'), ...op.int(1), ...op.setitem], []);
    expectPthError(
      () => none.names(),
      'NOT_A_STATE_DICT',
      /sd\.pth: no tensors at the top level or under "model" or "state_dict" \(top-level keys: "epoch"\)/,
    );
    // The error is kept: asking again throws it again.
    expectPthError(() => none.info('x'), 'NOT_A_STATE_DICT');
    expect(none.root).toEqual(new Map([['epoch', 1]]));
  });

  it('two entries flattening to one name are refused', () => {
    const dup = file(
      [
        ...op.emptyDict,
        ...op.mark,
        ...op.str('a.b'),
        ...tensorOps(t('1')),
        ...op.str('a'),
        ...op.emptyDict,
        ...op.str('b'),
        ...tensorOps(t('2')),
        ...op.setitem,
        ...op.setitems,
      ],
      ['1', '2'],
    );
    expectPthError(() => dup.stateDict(), 'DUPLICATE_TENSOR', /sd\.pth: two entries flatten to the tensor name "a\.b"/);
    expectPthError(() => dup.stateDict([]), 'DUPLICATE_TENSOR');
  });

  it('integer keys name tensors; other keys are skipped', () => {
    const ints = file(
      [...op.emptyDict, ...op.mark, ...op.int(0), ...tensorOps(t('1')), ...op.none, ...tensorOps(t('2')), ...op.setitems],
      ['1', '2'],
    );
    expect(ints.names()).toEqual(['0']);
    expect(ints.stateDict().skipped).toEqual(['None']);
  });
});
