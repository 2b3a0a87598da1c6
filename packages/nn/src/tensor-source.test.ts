import { describe, expect, it } from 'vitest';
import {
  SafetensorsError,
  SafetensorsFile,
  SafetensorsReader,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  parseSafetensors,
  serializeSafetensors,
  type SafetensorsDtype,
  type SafetensorsErrorCode,
  type SafetensorsTensor,
} from './safetensors.js';
import {
  bytesReader,
  bytesToFloat32,
  bytesToFloat32Transposed,
  mergeTensorSources,
  readFloat32,
  transposeFloat32,
  type ByteReader,
} from './tensor-source.js';

function expectError(fn: () => unknown, code: SafetensorsErrorCode, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(SafetensorsError);
  expect((caught as SafetensorsError).code, (caught as Error).message).toBe(code);
  for (const f of fragments) expect((caught as Error).message).toMatch(f);
}

const tensors: Record<string, SafetensorsTensor> = {
  w: { dtype: 'F32', shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0.25, 5, 6) },
  h: { dtype: 'F16', shape: [3], data: Uint16Array.from([1, -0.5, 65504].map(float32ToFloat16Bits)) },
  b: { dtype: 'BF16', shape: [2], data: Uint16Array.from([1.5, -3].map(float32ToBfloat16Bits)) },
  d: { dtype: 'F64', shape: [2], data: Float64Array.of(1 / 3, -1e300) },
  ids: { dtype: 'I64', shape: [2], data: BigInt64Array.of(1n, -2n) },
};
const bytes = serializeSafetensors(tensors);

describe('SafetensorsFile as a TensorSource', () => {
  it('has a description (default "safetensors") and reads element ranges as views', () => {
    const file = parseSafetensors(bytes);
    expect(file.description).toBe('safetensors');
    expect(parseSafetensors(bytes, { description: 'model.safetensors' }).description).toBe('model.safetensors');
    const all = file.readBytes('w');
    expect(all).toEqual(file.raw('w'));
    expect(all.buffer).toBe(bytes.buffer);
    expect(Array.from(new Float32Array(file.readBytes('w', 2, 5).slice().buffer))).toEqual([3.5, 0.25, 5]);
    expect(file.readBytes('w', 6).length).toBe(0);
    expect(file.readBytes('w', 3, 3).length).toBe(0);
    file.close();
    expect(file.readBytes('w').length).toBe(24);
  });

  it('checks ranges, naming the file and the tensor', () => {
    const file = parseSafetensors(bytes, { description: 'm.safetensors' });
    expectError(
      () => file.readBytes('w', 0, 7),
      'INVALID_ARGUMENT',
      'm.safetensors: tensor "w" has 6 elements; element range [0, 7) is not within [0, 6]',
    );
    expectError(() => file.readBytes('w', 4, 3), 'INVALID_ARGUMENT');
    expectError(() => file.readBytes('w', -1), 'INVALID_ARGUMENT');
    expectError(() => file.readBytes('w', 1.5), 'INVALID_ARGUMENT');
    expectError(() => file.readBytes('w', Number.NaN), 'INVALID_ARGUMENT');
    expectError(() => file.readBytes('nope'), 'UNKNOWN_TENSOR');
  });

  it('parse errors name the file when a description is given', () => {
    expectError(
      () => parseSafetensors(bytes.subarray(0, 20), { description: 'cut.safetensors' }),
      'TRUNCATED',
      /^cut\.safetensors: header length/,
    );
    expectError(() => parseSafetensors(bytes.subarray(0, 20)), 'TRUNCATED', /^header length/);
    expectError(() => parseSafetensors(bytes, { description: 5 as unknown as string }), 'INVALID_ARGUMENT', /description must be a string/);
  });
});

describe('SafetensorsReader', () => {
  /** A reader that counts what it is asked for. */
  function counting(data: Uint8Array): ByteReader & { reads: [number, number][]; closed: number } {
    const inner = bytesReader(data);
    const reads: [number, number][] = [];
    const reader = {
      byteLength: inner.byteLength,
      reads,
      closed: 0,
      read(offset: number, length: number) {
        reads.push([offset, length]);
        return inner.read(offset, length);
      },
      close() {
        reader.closed++;
      },
    };
    return reader;
  }

  it('reads only the header to open, then only the bytes asked for', () => {
    const reader = counting(bytes);
    const file = SafetensorsReader.open(reader, { description: 'r.safetensors' });
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(reader.reads).toEqual([
      [0, 8],
      [8, headerLength],
    ]);
    const parsed = SafetensorsFile.parse(bytes);
    expect(file.names()).toEqual(parsed.names());
    expect(file.metadata).toEqual({});
    expect(file.byteLength).toBe(bytes.length);
    for (const name of file.names()) {
      expect(file.info(name)).toEqual(parsed.info(name));
      expect(file.readBytes(name)).toEqual(parsed.readBytes(name));
    }
    reader.reads.length = 0;
    const w = parsed.info('w');
    expect(Array.from(readFloat32(file, 'w', 1, 3))).toEqual([-2, 3.5]);
    expect(reader.reads).toEqual([[w.byteOffset + 4, 8]]);
    file.close();
    expect(reader.closed).toBe(1);
  });

  it('validates like SafetensorsFile.parse, messages prefixed with the description', () => {
    expectError(
      () => SafetensorsReader.open(bytesReader(bytes.subarray(0, bytes.length - 1)), { description: 'x' }),
      'TRUNCATED',
      /^x: file has \d+ data bytes but the header declares/,
    );
    expectError(() => SafetensorsReader.open(bytesReader(new Uint8Array(3))), 'TRUNCATED', /^safetensors: file has 3 bytes/);
    expectError(() => SafetensorsReader.open(bytesReader(bytes)).info('nope'), 'UNKNOWN_TENSOR', /^safetensors: unknown tensor "nope"/);
    expectError(() => SafetensorsReader.open(bytesReader(bytes)).readBytes('w', 0, 9), 'INVALID_ARGUMENT', /element range \[0, 9\)/);
  });
});

describe('bytesReader', () => {
  it('gives views and checks ranges', () => {
    const data = Uint8Array.of(1, 2, 3, 4);
    const reader = bytesReader(data);
    expect(reader.byteLength).toBe(4);
    expect(reader.read(1, 2)).toEqual(Uint8Array.of(2, 3));
    expect(reader.read(1, 2).buffer).toBe(data.buffer);
    expect(reader.read(4, 0).length).toBe(0);
    expectError(() => reader.read(3, 2), 'INVALID_ARGUMENT', 'read of 2 bytes at offset 3 is outside the 4 bytes in memory');
    expectError(() => reader.read(-1, 1), 'INVALID_ARGUMENT');
    expectError(() => bytesReader([1, 2] as unknown as Uint8Array), 'INVALID_ARGUMENT');
    // A Node Buffer is a Uint8Array; reads are plain Uint8Arrays.
    expect(bytesReader(Buffer.from([5, 6])).read(0, 2).constructor).toBe(Uint8Array);
  });
});

describe('readFloat32 / bytesToFloat32', () => {
  const file = parseSafetensors(bytes, { description: 'f' });

  it('widens F32, F16, BF16 and narrows F64, whole or by range', () => {
    expect(Array.from(readFloat32(file, 'w'))).toEqual([1, -2, 3.5, 0.25, 5, 6]);
    expect(Array.from(readFloat32(file, 'h'))).toEqual([1, -0.5, 65504]);
    expect(Array.from(readFloat32(file, 'h', 1))).toEqual([-0.5, 65504]);
    expect(Array.from(readFloat32(file, 'b'))).toEqual([1.5, -3]);
    expect(Array.from(readFloat32(file, 'd'))).toEqual([Math.fround(1 / 3), -Infinity]);
    // Always a fresh array, not a view of the file.
    expect(readFloat32(file, 'w').buffer).not.toBe(bytes.buffer);
  });

  it('converts unaligned bytes', () => {
    const f32 = new Uint8Array(new Float32Array([1.25, -8]).buffer);
    const shifted = new Uint8Array(9);
    shifted.set(f32, 1);
    expect(Array.from(bytesToFloat32(shifted.subarray(1), 'F32', 'x'))).toEqual([1.25, -8]);
    const h = new Uint8Array(new Uint16Array([float32ToFloat16Bits(2), float32ToFloat16Bits(-0.25)]).buffer);
    const h1 = new Uint8Array(5);
    h1.set(h, 1);
    expect(Array.from(bytesToFloat32(h1.subarray(1), 'F16', 'x'))).toEqual([2, -0.25]);
  });

  it('refuses integer tensors and partial elements', () => {
    expectError(() => readFloat32(file, 'ids'), 'UNSUPPORTED_CONVERSION', 'f: tensor "ids" has dtype I64, not a floating-point type');
    expectError(
      () => bytesToFloat32(new Uint8Array(6), 'F32', 'y'),
      'INVALID_ARGUMENT',
      'y: 6 bytes are not a whole number of F32 elements',
    );
  });
});

describe('mergeTensorSources', () => {
  const a = parseSafetensors(serializeSafetensors({ x: tensors.w!, y: tensors.h! }), { description: 'a' });
  const b = parseSafetensors(serializeSafetensors({ z: tensors.b! }), { description: 'b' });

  it('serves every tensor of every source and closes them all', () => {
    const closed: string[] = [];
    const merged = mergeTensorSources([
      { ...sourceOf(a), close: () => closed.push('a') },
      { ...sourceOf(b), close: () => closed.push('b') },
    ]);
    expect(merged.description).toBe('a + b');
    expect(merged.names()).toEqual([...a.names(), 'z']);
    expect(merged.has('z')).toBe(true);
    expect(merged.has('w')).toBe(false);
    expect(merged.info('z')).toEqual(b.info('z'));
    expect(merged.readBytes('x', 1, 2)).toEqual(a.readBytes('x', 1, 2));
    expect(Array.from(readFloat32(merged, 'z'))).toEqual([1.5, -3]);
    expectError(() => merged.info('nope'), 'UNKNOWN_TENSOR', 'a + b: unknown tensor "nope"');
    merged.close!();
    expect(closed).toEqual(['a', 'b']);
    expect(mergeTensorSources([], 'empty').names()).toEqual([]);
  });

  it('refuses a name held by two sources, listing every one', () => {
    const c = parseSafetensors(serializeSafetensors({ x: tensors.w!, z: tensors.b! }), { description: 'c' });
    expectError(
      () => mergeTensorSources([a, b, c], 'shards'),
      'DUPLICATE_TENSOR',
      /shards: 2 tensor name\(s\) appear more than once/,
      '"x" is in both a and c',
      '"z" is in both b and c',
    );
    expectError(() => mergeTensorSources('a' as unknown as []), 'INVALID_ARGUMENT');
  });
});

/** A plain-object TensorSource delegating to a file (so close can be replaced). */
function sourceOf(file: SafetensorsFile) {
  return {
    description: file.description,
    names: () => file.names(),
    has: (n: string) => file.has(n),
    info: (n: string) => file.info(n),
    readBytes: (n: string, b?: number, e?: number) => file.readBytes(n, b, e),
  };
}

describe('bytesToFloat32Transposed / transposeFloat32', () => {
  it('widens and transposes in one pass for every float dtype and for sizes off the block grid', () => {
    for (const [rows, cols] of [
      [1, 1],
      [3, 5],
      [65, 130],
      [200, 7],
    ] as const) {
      const values = Float32Array.from({ length: rows * cols }, (_, i) => (i % 97) - 48.5);
      const expected = new Float32Array(rows * cols);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) expected[j * rows + i] = values[i * cols + j]!;
      expect(transposeFloat32(values, rows, cols)).toEqual(expected);
      const encodings: Array<[SafetensorsDtype, Uint8Array]> = [
        ['F32', new Uint8Array(values.buffer.slice(0))],
        ['F64', new Uint8Array(Float64Array.from(values).buffer)],
        ['BF16', new Uint8Array(Uint16Array.from(values, float32ToBfloat16Bits).buffer)],
        ['F16', new Uint8Array(Uint16Array.from(values, float32ToFloat16Bits).buffer)],
      ];
      for (const [dtype, bytes] of encodings) {
        // Exactly the widened values of bytesToFloat32, transposed (the halves hold these values exactly).
        const widened = bytesToFloat32(bytes, dtype, 't');
        const want = new Float32Array(rows * cols);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) want[j * rows + i] = widened[i * cols + j]!;
        expect(bytesToFloat32Transposed(bytes, dtype, rows, cols, 't')).toEqual(want);
        // An unaligned view is read too.
        const shifted = new Uint8Array(bytes.byteLength + 1);
        shifted.set(bytes, 1);
        expect(bytesToFloat32Transposed(shifted.subarray(1), dtype, rows, cols, 't')).toEqual(want);
      }
    }
  });
  it('refuses integer dtypes and sizes that do not match the shape', () => {
    expect(() => bytesToFloat32Transposed(new Uint8Array(8), 'I32', 1, 2, 't')).toThrow(/not a floating-point type/);
    expect(() => bytesToFloat32Transposed(new Uint8Array(8), 'F32', 3, 1, 't')).toThrow(/8 bytes for a \[3, 1\] F32 matrix/);
  });
});
