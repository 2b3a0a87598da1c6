import { describe, expect, it } from 'vitest';
import {
  SafetensorsError,
  SafetensorsFile,
  bfloat16BitsToFloat32,
  dtypeByteSize,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  parseSafetensors,
  serializeSafetensors,
  type SafetensorsDtype,
  type SafetensorsErrorCode,
  type SafetensorsTensor,
  type TensorData,
} from './safetensors.js';

const enc = new TextEncoder();

/** A file with the given header (JSON text or a value to stringify) and data area. */
function craft(header: string | object, data: Uint8Array | number = 0, headerLength?: number): Uint8Array {
  const json = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function expectError(fn: () => unknown, code: SafetensorsErrorCode, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(SafetensorsError);
  const err = caught as SafetensorsError;
  expect(err.name).toBe('SafetensorsError');
  expect(err.code).toBe(code);
  for (const f of fragments) expect(err.message).toMatch(f);
}

/** Elements as numbers (TensorData includes BigInt64Array, which Array.from types as bigint[]). */
const nums = (data: TensorData): number[] => Array.from(data as ArrayLike<number>);

function bytesOf(data: ArrayBufferView): number[] {
  return Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

const f32 = (...values: number[]) => new Float32Array(values);
const t = (dtype: SafetensorsDtype, shape: number[], data: SafetensorsTensor['data']): SafetensorsTensor => ({ dtype, shape, data });

// Scratch views to step to the adjacent float32 and to inspect bit patterns.
const sf = new Float32Array(1);
const su = new Uint32Array(sf.buffer);
const fromBits = (bits: number) => ((su[0] = bits), sf[0]!);
const bitsOf = (x: number) => ((sf[0] = x), su[0]!);

describe('parse: a hand-built file', () => {
  // F32 [1, -2] then I16 [[-2]]: 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0, int16 -2 = fe ff.
  const header =
    '{"b":{"dtype":"I16","shape":[1,1],"data_offsets":[8,10]},"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const data = new Uint8Array([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0xfe, 0xff]);
  const bytes = craft(header, data);
  const dataStart = 8 + enc.encode(header).length;

  it('reads names, infos, metadata and values', () => {
    const file = SafetensorsFile.parse(bytes);
    expect(file.byteLength).toBe(bytes.length);
    expect(file.names()).toEqual(['a', 'b']);
    expect(file.has('a')).toBe(true);
    expect(file.has('c')).toBe(false);
    expect(file.has('__metadata__')).toBe(false);
    expect(file.metadata).toEqual({ k: 'v' });
    expect(file.info('a')).toEqual({ name: 'a', dtype: 'F32', shape: [2], byteOffset: dataStart, byteLength: 8 });
    expect(file.info('b')).toEqual({ name: 'b', dtype: 'I16', shape: [1, 1], byteOffset: dataStart + 8, byteLength: 2 });
    expect(nums(file.get('a').data)).toEqual([1, -2]);
    expect(file.get('a').data).toBeInstanceOf(Float32Array);
    expect(file.get('b')).toEqual({ dtype: 'I16', shape: [1, 1], data: new Int16Array([-2]) });
    expect(Array.from(file.toFloat32('a'))).toEqual([1, -2]);
    expect(Array.from(file.toInt32('b'))).toEqual([-2]);
  });

  it('raw() is a view of the file bytes, not a copy', () => {
    const file = parseSafetensors(bytes);
    const raw = file.raw('b');
    expect(Array.from(raw)).toEqual([0xfe, 0xff]);
    expect(raw.buffer).toBe(bytes.buffer);
    expect(raw.byteOffset).toBe(dataStart + 8);
  });

  it('works on a file that is an unaligned slice of a larger buffer, and on a Node Buffer', () => {
    const big = new Uint8Array(bytes.length + 3);
    big.set(bytes, 1);
    const file = parseSafetensors(big.subarray(1, 1 + bytes.length));
    expect(nums(file.get('a').data)).toEqual([1, -2]);
    expect(nums(file.get('b').data)).toEqual([-2]);
    const fromBuffer = parseSafetensors(Buffer.from(bytes));
    // raw() hands out plain Uint8Arrays even for Buffer input (Buffer#slice semantics differ).
    expect(Object.getPrototypeOf(fromBuffer.raw('a'))).toBe(Uint8Array.prototype);
    expect(Array.from(fromBuffer.toFloat32('a'))).toEqual([1, -2]);
  });

  it('accepts a header without padding and with trailing spaces', () => {
    const padded = craft(`${header}      `, data);
    expect(parseSafetensors(padded).names()).toEqual(['a', 'b']);
  });

  it('reports no metadata as an empty object', () => {
    const file = parseSafetensors(craft({ x: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }, 1));
    expect(file.metadata).toEqual({});
  });

  it('keeps a "__proto__" metadata key as plain data', () => {
    const file = parseSafetensors(craft('{"__metadata__":{"__proto__":"x","a":"b"}}'));
    expect(Object.keys(file.metadata).sort()).toEqual(['__proto__', 'a']);
    expect(file.metadata['__proto__']).toBe('x');
    expect(Object.getPrototypeOf(file.metadata)).toBe(Object.prototype);
  });

  it('accepts zero-sized tensors anywhere in the tiling', () => {
    const file = parseSafetensors(
      craft(
        {
          z0: { dtype: 'F32', shape: [0], data_offsets: [0, 0] },
          a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
          mid: { dtype: 'I64', shape: [2, 0], data_offsets: [4, 4] },
          b: { dtype: 'U8', shape: [4], data_offsets: [4, 8] },
          end: { dtype: 'F16', shape: [0, 5], data_offsets: [8, 8] },
        },
        8,
      ),
    );
    expect(file.names()).toEqual(['z0', 'a', 'mid', 'b', 'end']);
    expect(file.get('mid').data).toEqual(new BigInt64Array(0));
    expect(file.toFloat32('end')).toEqual(new Float32Array(0));
    // A file with no tensors at all is an empty object and no data.
    expect(parseSafetensors(craft('{}')).names()).toEqual([]);
  });

  it('returns a view when aligned and a correct copy when not (odd U8 before F32)', () => {
    // Header padded so the data area starts at 16; the F32 then starts at absolute 19.
    const values = f32(1.5, -3.25, 1e-30);
    const body = new Uint8Array(3 + 12);
    body.set([7, 8, 9]);
    body.set(new Uint8Array(values.buffer), 3);
    const json = '{"u":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"f":{"dtype":"F32","shape":[3],"data_offsets":[3,15]}}';
    const padded = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
    const bytes2 = craft(padded, body);
    const file = parseSafetensors(bytes2);
    expect(file.info('f').byteOffset % 4).toBe(3);
    const got = file.get('f').data;
    expect(got).toBeInstanceOf(Float32Array);
    expect(got.buffer).not.toBe(bytes2.buffer);
    expect(nums(got)).toEqual(Array.from(values));
    expect(Array.from(file.toFloat32('f'))).toEqual(Array.from(values));
    const u = file.get('u').data;
    expect(u.buffer).toBe(bytes2.buffer);
    expect(nums(u)).toEqual([7, 8, 9]);
  });
});

describe('serializeSafetensors', () => {
  it('writes the exact known bytes of a one-tensor file', () => {
    const out = serializeSafetensors({ x: t('F32', [1], f32(1.5)) });
    const json = '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect(json.length).toBe(54);
    // 54 bytes of JSON padded with 2 spaces to 56, so 8 + 56 = 64 is a multiple of 8.
    expect(Array.from(out.subarray(0, 8))).toEqual([56, 0, 0, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(out.subarray(8, 64))).toBe(`${json}  `);
    expect(Array.from(out.subarray(64))).toEqual([0x00, 0x00, 0xc0, 0x3f]);
    expect(out.length).toBe(68);
  });

  it('round-trips every dtype with exact values', () => {
    const tensors: Record<string, SafetensorsTensor> = {
      f64: t('F64', [2, 3], new Float64Array([Math.PI, -0, Infinity, -Infinity, NaN, 5e-324])),
      f32: t('F32', [5], f32(1 / 3, -0, 3.4028234663852886e38, 1.401298464324817e-45, NaN)),
      f16: t('F16', [4], new Uint16Array([0x3c00, 0x8000, 0x7bff, 0x0001])),
      bf16: t('BF16', [2, 2], new Uint16Array([0x3f80, 0xff80, 0x7fc0, 0x0001])),
      i64: t('I64', [3], new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, -1n])),
      i32: t('I32', [3], new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0])),
      i16: t('I16', [3], new Int16Array([-32768, 32767, -1])),
      i8: t('I8', [3], new Int8Array([-128, 127, 0])),
      u8: t('U8', [3], new Uint8Array([0, 128, 255])),
      bool: t('BOOL', [1, 2], new Uint8Array([0, 1])),
    };
    const file = parseSafetensors(serializeSafetensors(tensors));
    expect(file.names().sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, tensor] of Object.entries(tensors)) {
      const got = file.get(name);
      expect(got.dtype, name).toBe(tensor.dtype);
      expect(got.shape, name).toEqual(tensor.shape);
      expect(Object.prototype.toString.call(got.data), name).toBe(Object.prototype.toString.call(tensor.data));
      // Bytes, not values: NaN payloads and -0 must survive too.
      expect(bytesOf(got.data), name).toEqual(bytesOf(tensor.data));
      expect(Array.from(file.raw(name)), name).toEqual(bytesOf(tensor.data));
    }
    expect(Array.from(file.toBigInt64('i64'))).toEqual([-(2n ** 63n), 2n ** 63n - 1n, -1n]);
    expect(Array.from(file.toInt32('bool'))).toEqual([0, 1]);
    expect(Array.from(file.toInt32('u8'))).toEqual([0, 128, 255]);
    expect(Array.from(file.toInt32('i8'))).toEqual([-128, 127, 0]);
    expect(Array.from(file.toInt32('i16'))).toEqual([-32768, 32767, -1]);
    expect(Array.from(file.toInt32('i32'))).toEqual([-(2 ** 31), 2 ** 31 - 1, 0]);
    expect(Array.from(file.toFloat32('f16'))).toEqual([1, -0, 65504, 2 ** -24]);
    expect(Array.from(file.toFloat32('bf16'))).toEqual([1, -Infinity, NaN, bfloat16BitsToFloat32(1)]);
    expect(Array.from(file.toFloat32('f64'))).toEqual([Math.fround(Math.PI), -0, Infinity, -Infinity, NaN, 0]);
  });

  it('round-trips empty tensors, scalars, a Map and metadata', () => {
    const tensors = new Map<string, SafetensorsTensor>([
      ['scalar', t('F32', [], f32(42))],
      ['empty', t('I32', [0], new Int32Array(0))],
      ['empty2d', t('F64', [3, 0], new Float64Array(0))],
      ['0', t('U8', [2], new Uint8Array([1, 2]))],
    ]);
    const metadata = { format: 'pt', '10': 'integer-like key', note: 'ünïcode ✓' };
    const file = parseSafetensors(serializeSafetensors(tensors, metadata));
    expect(file.metadata).toEqual(metadata);
    expect(file.get('scalar')).toEqual({ dtype: 'F32', shape: [], data: f32(42) });
    expect(file.get('empty')).toEqual({ dtype: 'I32', shape: [0], data: new Int32Array(0) });
    expect(file.get('empty2d').shape).toEqual([3, 0]);
    expect(nums(file.get('0').data)).toEqual([1, 2]);
  });

  it('lays tensors out by descending element size then name, aligned, after a padded header', () => {
    const out = serializeSafetensors({
      c: t('U8', [3], new Uint8Array(3)),
      b: t('F32', [1], f32(1)),
      a: t('I16', [1], new Int16Array(1)),
      z: t('F64', [1], new Float64Array(1)),
      y: t('BOOL', [1], new Uint8Array(1)),
      x: t('F16', [3], new Uint16Array(3)),
    });
    const headerLength = Number(new DataView(out.buffer).getBigUint64(0, true));
    expect((8 + headerLength) % 8).toBe(0);
    // Header keys appear in data order too.
    const keys = Object.keys(JSON.parse(new TextDecoder().decode(out.subarray(8, 8 + headerLength))) as object);
    expect(keys).toEqual(['z', 'b', 'a', 'x', 'c', 'y']);
    const file = parseSafetensors(out);
    expect(file.names()).toEqual(['z', 'b', 'a', 'x', 'c', 'y']);
    for (const name of file.names()) {
      const info = file.info(name);
      expect(info.byteOffset % dtypeByteSize(info.dtype), name).toBe(0);
      // Aligned, so get() is a view of the output.
      expect(file.get(name).data.buffer, name).toBe(out.buffer);
    }
  });

  it('writes the bytes of a typed array that is a view into a larger buffer', () => {
    const backing = f32(9, 1, 2, 9);
    const file = parseSafetensors(serializeSafetensors({ v: t('F32', [2], backing.subarray(1, 3)) }));
    expect(Array.from(file.toFloat32('v'))).toEqual([1, 2]);
  });

  it('rejects a data array of the wrong type, naming the tensor', () => {
    expectError(() => serializeSafetensors({ h: t('F16', [1], f32(1)) }), 'INVALID_ARGUMENT', 'tensor "h"', 'Uint16Array', 'Float32Array');
    expectError(() => serializeSafetensors({ b: t('BOOL', [1], new Int8Array(1)) }), 'INVALID_ARGUMENT', 'tensor "b"', 'Uint8Array');
    expectError(() => serializeSafetensors({ i: t('I64', [1], new Int32Array(2) as never) }), 'INVALID_ARGUMENT', 'BigInt64Array');
    expectError(() => serializeSafetensors({ n: t('F32', [1], [1] as never) }), 'INVALID_ARGUMENT', 'tensor "n"', 'an array');
  });

  it('rejects a length that does not match the shape', () => {
    expectError(
      () => serializeSafetensors({ w: t('F32', [2, 3], f32(1, 2, 3, 4, 5)) }),
      'INVALID_ARGUMENT',
      'tensor "w"',
      '6 elements',
      'data has 5',
    );
    expectError(() => serializeSafetensors({ s: t('F32', [], f32()) }), 'INVALID_ARGUMENT', 'has 1 elements but data has 0');
  });

  it('rejects bad names, dtypes, shapes and metadata', () => {
    expectError(() => serializeSafetensors({ '': t('U8', [0], new Uint8Array(0)) }), 'INVALID_ARGUMENT', 'non-empty');
    expectError(() => serializeSafetensors({ __metadata__: t('U8', [0], new Uint8Array(0)) }), 'INVALID_ARGUMENT', '__metadata__');
    expectError(
      () => serializeSafetensors({ q: t('F8' as SafetensorsDtype, [0], new Uint8Array(0)) }),
      'INVALID_DTYPE',
      'tensor "q"',
      '"F8"',
    );
    expectError(() => serializeSafetensors({ q: t('U8', [-1], new Uint8Array(0)) }), 'INVALID_SHAPE', 'tensor "q"', 'shape[0]');
    expectError(() => serializeSafetensors({}, { k: 1 as unknown as string }), 'INVALID_METADATA', '"k"');
    expectError(() => serializeSafetensors(null as never), 'INVALID_ARGUMENT', 'tensors');
  });

  it('omits empty metadata and writes an empty file for no tensors', () => {
    const out = serializeSafetensors({}, {});
    expect(new TextDecoder().decode(out.subarray(8))).toBe('{}      ');
    expect(parseSafetensors(out).names()).toEqual([]);
  });
});

describe('parse: validation', () => {
  const ok = (name = 'w') => ({ [name]: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });

  it('TRUNCATED: fewer than 8 bytes', () => {
    expectError(() => parseSafetensors(new Uint8Array(5)), 'TRUNCATED', 'file has 5 bytes');
  });

  it('TRUNCATED: header longer than the file', () => {
    expectError(() => parseSafetensors(craft('{}', 0, 100)), 'TRUNCATED', 'header length 100', 'needs 108 bytes', 'file has 10');
  });

  it('TRUNCATED: data area shorter than the header declares', () => {
    expectError(() => parseSafetensors(craft(ok(), 6)), 'TRUNCATED', 'file has 6 data bytes but the header declares 8', '"w"');
  });

  it('TRUNCATED (no allocation): a huge tensor claimed by a tiny file', () => {
    const n = 2 ** 48;
    expectError(
      () => parseSafetensors(craft({ big: { dtype: 'F64', shape: [n], data_offsets: [0, n * 8] } }, 16)),
      'TRUNCATED',
      `file has 16 data bytes but the header declares ${n * 8}`,
    );
  });

  it('HEADER_TOO_LARGE: non-zero high 32 bits, or above the limit', () => {
    const bytes = craft('{}');
    new DataView(bytes.buffer).setUint32(4, 1, true);
    expectError(() => parseSafetensors(bytes), 'HEADER_TOO_LARGE', '4294967298');
    expectError(() => parseSafetensors(craft('{}', 0, 100_000_001)), 'HEADER_TOO_LARGE', '100000001', '100000000');
    expectError(() => parseSafetensors(craft(ok(), 8), { maxHeaderBytes: 10 }), 'HEADER_TOO_LARGE', 'limit of 10 bytes');
    expect(parseSafetensors(craft('{}'), { maxHeaderBytes: 2 }).names()).toEqual([]);
  });

  it('HEADER_TOO_LARGE before any allocation: header lengths of 2^53 and 2^64 - 1', () => {
    const heap = process.memoryUsage().arrayBuffers;
    for (const declared of [2n ** 53n, 2n ** 64n - 1n, 2n ** 32n]) {
      const bytes = craft('{}');
      new DataView(bytes.buffer).setBigUint64(0, declared, true);
      expectError(() => parseSafetensors(bytes), 'HEADER_TOO_LARGE', `header length ${declared}`, 'limit of 100000000 bytes');
    }
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(1 << 20);
  });

  it('INVALID_HEADER: JSON nested too deep for the parser is reported, not a crash', () => {
    const deep = `{"a":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    expectError(() => parseSafetensors(craft(deep)), 'INVALID_HEADER');
  });

  it('INVALID_HEADER: not UTF-8, not JSON, not an object, not starting with {', () => {
    const bad = craft('{"x":1}');
    bad[10] = 0xff;
    expectError(() => parseSafetensors(bad), 'INVALID_HEADER', 'UTF-8');
    expectError(() => parseSafetensors(craft('{"a":')), 'INVALID_HEADER', 'not valid UTF-8 JSON');
    expectError(() => parseSafetensors(craft('[]')), 'INVALID_HEADER', "starting with '{'");
    expectError(() => parseSafetensors(craft('null')), 'INVALID_HEADER', "starting with '{'");
    expectError(() => parseSafetensors(craft('12')), 'INVALID_HEADER', "starting with '{'");
    expectError(() => parseSafetensors(craft(' {}')), 'INVALID_HEADER', "starting with '{'");
    expectError(() => parseSafetensors(craft('')), 'INVALID_HEADER', '0 header bytes');
    // Starts with '{' but is not an object once parsed is impossible; trailing junk is not JSON.
    expectError(() => parseSafetensors(craft('{} []')), 'INVALID_HEADER', 'JSON');
  });

  it('INVALID_HEADER: an entry that is not an object or lacks a field', () => {
    expectError(() => parseSafetensors(craft({ w: 5 })), 'INVALID_HEADER', 'tensor "w"', 'must be an object', 'number 5');
    expectError(() => parseSafetensors(craft({ w: null })), 'INVALID_HEADER', 'tensor "w"', 'null');
    expectError(() => parseSafetensors(craft({ w: [1] })), 'INVALID_HEADER', 'an array');
    expectError(
      () => parseSafetensors(craft({ w: { dtype: 'F32', shape: [2] } }, 8)),
      'INVALID_HEADER',
      'tensor "w"',
      'missing "data_offsets"',
    );
    expectError(() => parseSafetensors(craft({ w: { shape: [2], data_offsets: [0, 8] } }, 8)), 'INVALID_HEADER', 'missing "dtype"');
  });

  it('INVALID_DTYPE: unknown or non-string dtype', () => {
    expectError(
      () => parseSafetensors(craft({ w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, 1)),
      'INVALID_DTYPE',
      'tensor "w"',
      '"F8_E4M3"',
      'supported: F64',
    );
    expectError(() => parseSafetensors(craft({ w: { dtype: 4, shape: [1], data_offsets: [0, 1] } }, 1)), 'INVALID_DTYPE', 'number 4');
    expectError(() => parseSafetensors(craft({ w: { dtype: 'f32', shape: [1], data_offsets: [0, 4] } }, 4)), 'INVALID_DTYPE', '"f32"');
    expectError(() => dtypeByteSize('toString' as SafetensorsDtype), 'INVALID_DTYPE', '"toString"');
  });

  it('INVALID_SHAPE: negative, fractional, unsafe, non-array, overflowing', () => {
    const shaped = (shape: unknown) => craft({ w: { dtype: 'U8', shape, data_offsets: [0, 0] } });
    expectError(() => parseSafetensors(shaped([2, -1])), 'INVALID_SHAPE', 'tensor "w"', 'shape[1]', 'number -1');
    expectError(() => parseSafetensors(shaped([1.5])), 'INVALID_SHAPE', 'shape[0]', '1.5');
    expectError(() => parseSafetensors(shaped(['3'])), 'INVALID_SHAPE', 'string "3"');
    expectError(() => parseSafetensors(shaped([2 ** 53])), 'INVALID_SHAPE', 'shape[0]');
    expectError(() => parseSafetensors(shaped(3)), 'INVALID_SHAPE', 'must be an array');
    expectError(() => parseSafetensors(shaped([2 ** 30, 2 ** 30, 2 ** 30])), 'INVALID_SHAPE', 'MAX_SAFE_INTEGER', '1073741824');
    // A zero dimension makes the count 0 whatever the others are.
    expect(parseSafetensors(shaped([2 ** 40, 2 ** 40, 0])).info('w').shape).toEqual([2 ** 40, 2 ** 40, 0]);
  });

  it('INVALID_OFFSETS: malformed offsets, begin after end', () => {
    const at = (data_offsets: unknown) => craft({ w: { dtype: 'U8', shape: [4], data_offsets } }, 4);
    expectError(() => parseSafetensors(at([0])), 'INVALID_OFFSETS', 'tensor "w"', '[0]');
    expectError(() => parseSafetensors(at([0, 4, 8])), 'INVALID_OFFSETS', '[0,4,8]');
    expectError(() => parseSafetensors(at([-1, 3])), 'INVALID_OFFSETS', 'non-negative');
    expectError(() => parseSafetensors(at([0, '4'])), 'INVALID_OFFSETS', '[0,"4"]');
    expectError(() => parseSafetensors(at('0,4')), 'INVALID_OFFSETS');
    expectError(() => parseSafetensors(at([0, 2 ** 60])), 'INVALID_OFFSETS', 'safe integers');
    expectError(() => parseSafetensors(at([4, 0])), 'INVALID_OFFSETS', 'begin 4 is after end 0');
  });

  it('INVALID_OFFSETS: a gap at the start or between tensors', () => {
    expectError(
      () => parseSafetensors(craft({ w: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, 4)),
      'INVALID_OFFSETS',
      'tensor "w" begins at data offset 2',
      'data area starts at 0',
      'gap of 2 bytes',
    );
    expectError(
      () =>
        parseSafetensors(
          craft(
            {
              a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
              b: { dtype: 'U8', shape: [2], data_offsets: [3, 5] },
            },
            5,
          ),
        ),
      'INVALID_OFFSETS',
      'tensor "b" begins at data offset 3',
      '"a" ends at 2',
      'gap of 1 bytes',
    );
  });

  it('INVALID_OFFSETS: trailing bytes after the last tensor', () => {
    expectError(
      () => parseSafetensors(craft(ok(), 12)),
      'INVALID_OFFSETS',
      'declares 8 data bytes but the file has 12',
      '4 trailing bytes',
    );
  });

  it('OVERLAPPING_OFFSETS', () => {
    expectError(
      () =>
        parseSafetensors(
          craft(
            {
              a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
              b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
            },
            8,
          ),
        ),
      'OVERLAPPING_OFFSETS',
      'tensor "b" begins at data offset 4',
      'inside "a" which ends at 8',
    );
  });

  it('SIZE_MISMATCH', () => {
    expectError(
      () => parseSafetensors(craft({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12)),
      'SIZE_MISMATCH',
      'tensor "w"',
      'span 12 bytes',
      'shape [2, 2] of F32 needs 16 bytes',
    );
    expectError(() => parseSafetensors(craft({ s: { dtype: 'I64', shape: [], data_offsets: [0, 0] } })), 'SIZE_MISMATCH', 'needs 8 bytes');
  });

  it('INVALID_METADATA', () => {
    expectError(() => parseSafetensors(craft({ __metadata__: { a: 'x', n: 1 } })), 'INVALID_METADATA', '__metadata__["n"]', 'number 1');
    expectError(() => parseSafetensors(craft({ __metadata__: ['x'] })), 'INVALID_METADATA', 'an array');
    expectError(() => parseSafetensors(craft({ __metadata__: 'x' })), 'INVALID_METADATA', 'string "x"');
    expectError(() => parseSafetensors(craft({ __metadata__: null })), 'INVALID_METADATA', 'null');
    expectError(() => parseSafetensors(craft({ __metadata__: { a: { b: 'c' } } })), 'INVALID_METADATA', '["a"]');
  });

  it('INVALID_ARGUMENT: not a Uint8Array, or a bad option', () => {
    expectError(() => parseSafetensors([1, 2, 3] as unknown as Uint8Array), 'INVALID_ARGUMENT', 'Uint8Array', 'an array');
    expectError(() => parseSafetensors(new Uint16Array(8) as unknown as Uint8Array), 'INVALID_ARGUMENT', 'Uint8Array');
    expectError(() => parseSafetensors(new ArrayBuffer(8) as unknown as Uint8Array), 'INVALID_ARGUMENT', 'an object');
    expectError(() => parseSafetensors(undefined as unknown as Uint8Array), 'INVALID_ARGUMENT', 'undefined');
    expectError(() => parseSafetensors(craft('{}'), { maxHeaderBytes: -1 }), 'INVALID_ARGUMENT', 'maxHeaderBytes');
    expectError(() => parseSafetensors(craft('{}'), { maxHeaderBytes: 1.5 }), 'INVALID_ARGUMENT', 'maxHeaderBytes');
  });

  it('throws only SafetensorsError for every truncation and many corruptions of a valid file', () => {
    const valid = serializeSafetensors(
      {
        a: t('F32', [2, 3], f32(1, 2, 3, 4, 5, 6)),
        b: t('I64', [2], new BigInt64Array([1n, 2n])),
        c: t('BOOL', [3], new Uint8Array([1, 0, 1])),
      },
      { m: 'n' },
    );
    for (let len = 0; len < valid.length; len++) {
      expect(() => parseSafetensors(valid.subarray(0, len)), `length ${len}`).toThrow(SafetensorsError);
    }
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0), seed / 2 ** 32);
    for (let trial = 0; trial < 2000; trial++) {
      const bad = valid.slice();
      const flips = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < flips; k++) bad[Math.floor(rand() * bad.length)] = Math.floor(rand() * 256);
      try {
        const file = parseSafetensors(bad);
        for (const name of file.names()) file.get(name);
      } catch (err) {
        expect(err, `trial ${trial}`).toBeInstanceOf(SafetensorsError);
      }
    }
  });
});

describe('SafetensorsFile accessors', () => {
  const file = parseSafetensors(
    serializeSafetensors({
      f: t('F32', [2], f32(1, 2)),
      h: t('F16', [3], new Uint16Array([0x3c00, 0xc000, 0x7c00])),
      bf: t('BF16', [2], new Uint16Array([0x3f80, 0xc0a0])),
      d: t('F64', [2], new Float64Array([0.1, 1e300])),
      i: t('I32', [1], new Int32Array([7])),
      big: t('I64', [4], new BigInt64Array([-(2n ** 31n), 2n ** 31n - 1n, 0n, -5n])),
      over: t('I64', [3], new BigInt64Array([1n, 2n ** 31n, 3n])),
      under: t('I64', [2], new BigInt64Array([-(2n ** 31n) - 1n, 0n])),
      high: t('I64', [1], new BigInt64Array([2n ** 32n])),
    }),
  );

  it('UNKNOWN_TENSOR names the tensor and how many exist', () => {
    for (const call of [
      () => file.info('nope'),
      () => file.raw('nope'),
      () => file.get('nope'),
      () => file.toFloat32('nope'),
      () => file.toInt32('nope'),
      () => file.toBigInt64('nope'),
    ]) {
      expectError(call, 'UNKNOWN_TENSOR', '"nope"', '9 tensors');
    }
  });

  it('toFloat32 decodes F16, BF16, F64 and copies F32', () => {
    expect(Array.from(file.toFloat32('h'))).toEqual([1, -2, Infinity]);
    expect(Array.from(file.toFloat32('bf'))).toEqual([1, -5]);
    expect(Array.from(file.toFloat32('d'))).toEqual([Math.fround(0.1), Infinity]);
    const copy = file.toFloat32('f');
    copy[0] = 99;
    expect(Array.from(file.toFloat32('f'))).toEqual([1, 2]);
    expectError(() => file.toFloat32('i'), 'UNSUPPORTED_CONVERSION', '"i" is I32');
    expectError(() => file.toFloat32('big'), 'UNSUPPORTED_CONVERSION', '"big" is I64');
  });

  it('toInt32 narrows I64 in range and rejects values outside int32', () => {
    expect(Array.from(file.toInt32('big'))).toEqual([-(2 ** 31), 2 ** 31 - 1, 0, -5]);
    expect(Array.from(file.toInt32('i'))).toEqual([7]);
    expectError(() => file.toInt32('over'), 'UNSUPPORTED_CONVERSION', '"over"', '2147483648', 'index 1', 'int32 range');
    expectError(() => file.toInt32('under'), 'UNSUPPORTED_CONVERSION', '"under"', '-2147483649', 'index 0');
    expectError(() => file.toInt32('high'), 'UNSUPPORTED_CONVERSION', '4294967296');
    expectError(() => file.toInt32('f'), 'UNSUPPORTED_CONVERSION', '"f" is F32');
    expectError(() => file.toInt32('h'), 'UNSUPPORTED_CONVERSION', '"h" is F16');
  });

  it('toBigInt64 accepts I64 only and returns a copy', () => {
    const v = file.toBigInt64('big');
    expect(Array.from(v)).toEqual([-(2n ** 31n), 2n ** 31n - 1n, 0n, -5n]);
    v[0] = 0n;
    expect(file.toBigInt64('big')[0]).toBe(-(2n ** 31n));
    expectError(() => file.toBigInt64('i'), 'UNSUPPORTED_CONVERSION', '"i" is I32', 'I64 only');
  });

  it('names() is a fresh array in file order', () => {
    const names = file.names();
    names.pop();
    expect(file.names()).toHaveLength(9);
    const offsets = file.names().map((n) => file.info(n).byteOffset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  });
});

describe('dtypeByteSize', () => {
  it('gives the element size of every dtype', () => {
    const sizes: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
    for (const [dtype, size] of Object.entries(sizes)) expect(dtypeByteSize(dtype as SafetensorsDtype), dtype).toBe(size);
  });
});

describe('float16', () => {
  it('encodes known bit patterns', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00);
    expect(float32ToFloat16Bits(1e10)).toBe(0x7c00);
    expect(float32ToFloat16Bits(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16Bits(2 ** -14)).toBe(0x0400);
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -24)).toBe(0x03ff);
    expect(float32ToFloat16Bits(0)).toBe(0x0000);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(1e-30)).toBe(0x0000);
    expect(float32ToFloat16Bits(-1e-30)).toBe(0x8000);
  });

  it('rounds to nearest, ties to even', () => {
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    // Subnormal ties: 2^-25 is halfway between 0 and 2^-24; 3 * 2^-25 between 1 and 2 (even) ulps.
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000);
    expect(float32ToFloat16Bits(2 ** -25 + 2 ** -40)).toBe(0x0001);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(float32ToFloat16Bits(5 * 2 ** -25)).toBe(0x0002);
    // Rounding the largest subnormal up carries into the smallest normal.
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400);
  });

  it('keeps NaN a NaN, whatever its sign and payload', () => {
    const isNaN16 = (bits: number) => (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
    expect(isNaN16(float32ToFloat16Bits(NaN))).toBe(true);
    expect(isNaN16(float32ToFloat16Bits(fromBits(0x7f800001)))).toBe(true);
    expect(isNaN16(float32ToFloat16Bits(fromBits(0xff800001)))).toBe(true);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
    expect(float16BitsToFloat32(0xfc01)).toBeNaN();
  });

  it('decodes known bit patterns', () => {
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x03ff)).toBe(2 ** -14 - 2 ** -24);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(float16BitsToFloat32(0x3555)).toBe(0.333251953125);
    expectError(() => float16BitsToFloat32(0x10000), 'INVALID_ARGUMENT', '65536');
    expectError(() => float16BitsToFloat32(-1), 'INVALID_ARGUMENT');
  });

  it('round-trips all 65536 patterns', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const x = float16BitsToFloat32(bits);
      if (Number.isNaN(x)) continue;
      if (Math.fround(x) !== x) expect(Math.fround(x)).toBe(x);
      if (float32ToFloat16Bits(x) !== bits) expect(float32ToFloat16Bits(x), `bits ${bits}`).toBe(bits);
    }
  });

  it('rounds every midpoint to the even neighbour and its float32 neighbours to the nearer one', () => {
    for (let h = 0; h < 0x7c00; h++) {
      const lo = float16BitsToFloat32(h);
      const hi = h === 0x7bff ? 65536 : float16BitsToFloat32(h + 1); // 65536 would be the next step
      const mid = (lo + hi) / 2;
      const even = h & 1 ? h + 1 : h;
      const m = bitsOf(mid);
      const got = [
        float32ToFloat16Bits(mid),
        float32ToFloat16Bits(fromBits(m - 1)),
        float32ToFloat16Bits(fromBits(m + 1)),
        float32ToFloat16Bits(-mid),
      ];
      const want = [even, h, h + 1, 0x8000 | even];
      if (got.some((g, k) => g !== want[k])) expect(got, `h = ${h}`).toEqual(want);
    }
  });

  it('matches a nearest-value search on sampled float32 inputs', () => {
    for (let b = 0; b < 0x7f800000; b += 4093) {
      const x = fromBits(b);
      const r = float32ToFloat16Bits(x);
      if (r === 0x7c00) {
        if (x < 65520) expect(r, `x = ${x}`).not.toBe(0x7c00);
        continue;
      }
      const err = Math.abs(x - float16BitsToFloat32(r));
      const neighbours = [r - 1, r + 1].filter((n) => n >= 0 && n < 0x7c00);
      for (const n of neighbours) {
        const other = Math.abs(x - float16BitsToFloat32(n));
        if (!(err < other || (err === other && (r & 1) === 0))) expect({ x, r }).toEqual({ x, r: n });
      }
    }
  });
});

describe('bfloat16', () => {
  it('encodes and decodes known bit patterns', () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2)).toBe(0xc000);
    expect(float32ToBfloat16Bits(-0)).toBe(0x8000);
    expect(float32ToBfloat16Bits(Infinity)).toBe(0x7f80);
    expect(float32ToBfloat16Bits(-Infinity)).toBe(0xff80);
    expect(float32ToBfloat16Bits(3.4028234663852886e38)).toBe(0x7f80); // rounds past the largest bf16
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(bfloat16BitsToFloat32(0x4049)).toBe(3.140625);
    expect(bfloat16BitsToFloat32(0x7f7f)).toBe(3.3895313892515355e38);
    expect(Object.is(bfloat16BitsToFloat32(0x8000), -0)).toBe(true);
    expectError(() => bfloat16BitsToFloat32(1.5), 'INVALID_ARGUMENT', '1.5');
  });

  it('rounds to nearest, ties to even', () => {
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(float32ToBfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBfloat16Bits(Math.PI)).toBe(0x4049);
  });

  it('keeps NaN a quiet NaN, whatever its sign and payload', () => {
    for (const x of [NaN, fromBits(0x7f800001), fromBits(0xff80ffff), fromBits(0x7fc00000)]) {
      const r = float32ToBfloat16Bits(x);
      expect(r & 0x7f80).toBe(0x7f80);
      expect(r & 0x40).toBe(0x40);
      expect(bfloat16BitsToFloat32(r)).toBeNaN();
    }
  });

  it('round-trips all 65536 patterns and rounds every midpoint to even', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const x = bfloat16BitsToFloat32(bits);
      if (Number.isNaN(x)) continue;
      if (float32ToBfloat16Bits(x) !== bits) expect(float32ToBfloat16Bits(x), `bits ${bits}`).toBe(bits);
    }
    for (let h = 0; h < 0x7f80; h++) {
      const mid = h * 0x10000 + 0x8000;
      const even = h & 1 ? h + 1 : h;
      const got = [
        float32ToBfloat16Bits(fromBits(mid)),
        float32ToBfloat16Bits(fromBits(mid - 1)),
        float32ToBfloat16Bits(fromBits(mid + 1)),
      ];
      if (got[0] !== even || got[1] !== h || got[2] !== h + 1) expect(got, `h = ${h}`).toEqual([even, h, h + 1]);
      // And the midpoint really is halfway between the two values.
      const lo = bfloat16BitsToFloat32(h);
      const hi = h === 0x7f7f ? 2 ** 128 : bfloat16BitsToFloat32(h + 1);
      if (fromBits(mid) !== (lo + hi) / 2) expect(fromBits(mid)).toBe((lo + hi) / 2);
    }
  });
});
