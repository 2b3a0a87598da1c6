import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  parseSafetensors,
  serializeSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensor,
} from '../safetensors.js';
import { openSafetensorsFile } from '../safetensors-node.js';
import type { TensorSource } from '../tensor-source.js';
import { NnError, type NnErrorCode } from '../errors.js';
import { HostEmbedding } from './host-embedding.js';
import { seededUniform } from './init.js';

const ROWS = 7;
const DIM = 5;

/** Deterministic values in [-4, 4), a few special ones (exact in every dtype) mixed in. */
function values(n: number, seed: number): Float32Array {
  const random = seededUniform(seed);
  const out = Float32Array.from({ length: n }, () => (random() * 2 - 1) * 4);
  if (n > 3) {
    out[0] = 0;
    out[1] = 1;
    out[2] = -2.5;
  }
  return out;
}

/**
 * The table stored in `dtype` (rounded to it) and the float32 values it holds exactly: what the
 * widened rows must equal bit for bit.
 */
function table(
  dtype: 'F32' | 'F16' | 'BF16',
  data: Float32Array,
  shape: number[] = [ROWS, DIM],
): { tensor: SafetensorsTensor; exact: Float32Array } {
  if (dtype === 'F32') return { tensor: { dtype, shape, data: Float32Array.from(data) }, exact: Float32Array.from(data) };
  const toBits = dtype === 'F16' ? float32ToFloat16Bits : float32ToBfloat16Bits;
  const fromBits = dtype === 'F16' ? float16BitsToFloat32 : bfloat16BitsToFloat32;
  const bits = Uint16Array.from(data, (v) => toBits(v));
  return { tensor: { dtype, shape, data: bits }, exact: Float32Array.from(bits, (b) => fromBits(b)) };
}

function expectNnError(fn: () => unknown, code: NnErrorCode, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(NnError);
  expect((caught as NnError).code, (caught as Error).message).toBe(code);
  for (const f of fragments) expect((caught as Error).message).toMatch(f);
}

/** Rows `ids` of a row-major `[rows, dim]` array. */
function gather(exact: Float32Array, ids: readonly number[], dim = DIM): Float32Array {
  const out = new Float32Array(ids.length * dim);
  ids.forEach((id, i) => out.set(exact.subarray(id * dim, (id + 1) * dim), i * dim));
  return out;
}

/**
 * Safetensors bytes laid out by hand: the tensors in the given order, contiguous, after a header of
 * `8 + headerLength` bytes (padded with spaces). Lets a tensor start at any byte offset (the official
 * writer aligns them), e.g. an odd one after a 1-byte U8 tensor.
 */
function handLaidOut(
  tensors: readonly { name: string; dtype: SafetensorsDtype; shape: number[]; bytes: Uint8Array }[],
  headerLength: number,
): Uint8Array {
  let offset = 0;
  const entries = tensors.map((t) => {
    const begin = offset;
    offset += t.bytes.byteLength;
    return `${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [begin, offset] })}`;
  });
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  if (json.byteLength > headerLength) throw new Error(`header needs ${json.byteLength} bytes`);
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setUint32(0, headerLength, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLength);
  let at = 8 + headerLength;
  for (const t of tensors) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  return out;
}

function bytesOf(t: SafetensorsTensor): Uint8Array {
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** A source that counts its reads (to check that only the rows asked for are read). */
function counting(source: TensorSource): TensorSource & { reads: [string, number | undefined, number | undefined][] } {
  const reads: [string, number | undefined, number | undefined][] = [];
  return {
    description: source.description,
    names: () => source.names(),
    has: (n) => source.has(n),
    info: (n) => source.info(n),
    readBytes: (n, b, e) => {
      reads.push([n, b, e]);
      return source.readBytes(n, b, e);
    },
    reads,
  };
}

describe('HostEmbedding.fromSource', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`reads ${dtype} rows widened exactly to float32 (rows and addRows)`, () => {
      const { tensor, exact } = table(dtype, values(ROWS * DIM, 11));
      const file = parseSafetensors(
        serializeSafetensors({ other: { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2, 3) }, 'emb.weight': tensor }),
        { description: 'mem.safetensors' },
      );
      const emb = HostEmbedding.fromSource(file, 'emb.weight', [ROWS, DIM]);
      expect(emb.numEmbeddings).toBe(ROWS);
      expect(emb.dim).toBe(DIM);
      expect(emb.dtype).toBe(dtype);
      expect(emb.name).toBe('emb.weight');
      const ids = [3, 0, 6, 3, 1];
      expect(Array.from(emb.rows(ids))).toEqual(Array.from(gather(exact, ids)));
      // Every row, once.
      const all = Array.from({ length: ROWS }, (_, i) => i);
      expect(Array.from(emb.rows(all))).toEqual(Array.from(exact));
      // addRows adds to what is there (float32 additions, as `+=` on a Float32Array rounds).
      const base = values(ids.length * DIM, 12);
      const out = Float32Array.from(base);
      emb.addRows(ids, out);
      const expected = gather(exact, ids).map((v, i) => Math.fround(base[i]! + v));
      expect(Array.from(out)).toEqual(Array.from(expected));
      // Typed-array ids work as well as arrays.
      expect(Array.from(emb.rows(Int32Array.from(ids)))).toEqual(Array.from(gather(exact, ids)));
    });
  }

  it('sums several tables into one output (the hash embedding sum)', () => {
    const a = table('BF16', values(ROWS * DIM, 1));
    const b = table('F16', values(ROWS * DIM, 2));
    const c = table('F32', values(ROWS * DIM, 3));
    const file = parseSafetensors(serializeSafetensors({ a: a.tensor, b: b.tensor, c: c.tensor }));
    const ids = [
      [0, 5, 2],
      [6, 6, 1],
      [3, 4, 0],
    ];
    const out = new Float32Array(3 * DIM);
    const expected = new Float32Array(3 * DIM);
    [a, b, c].forEach((t, k) => {
      HostEmbedding.fromSource(file, ['a', 'b', 'c'][k]!).addRows(ids[k]!, out);
      const rows = gather(t.exact, ids[k]!);
      for (let i = 0; i < expected.length; i++) expected[i] = Math.fround(expected[i]! + rows[i]!);
    });
    expect(Array.from(out)).toEqual(Array.from(expected));
  });

  it('accepts any 2-D shape without an expected shape, and an empty id list', () => {
    const { tensor, exact } = table('F32', values(3 * 4, 5), [3, 4]);
    const emb = HostEmbedding.fromSource(parseSafetensors(serializeSafetensors({ t: tensor })), 't');
    expect([emb.numEmbeddings, emb.dim]).toEqual([3, 4]);
    expect(Array.from(emb.rows([2]))).toEqual(Array.from(exact.subarray(8, 12)));
    expect(emb.rows([]).length).toBe(0);
    emb.addRows([], new Float32Array(0));
  });

  it('reads only the rows asked for, one element range per row', () => {
    const { tensor } = table('BF16', values(ROWS * DIM, 6));
    const source = counting(parseSafetensors(serializeSafetensors({ t: tensor })));
    const emb = HostEmbedding.fromSource(source, 't', [ROWS, DIM]);
    expect(source.reads).toEqual([]);
    emb.rows([4, 2]);
    expect(source.reads).toEqual([
      ['t', 4 * DIM, 5 * DIM],
      ['t', 2 * DIM, 3 * DIM],
    ]);
  });

  it('widens BF16 and F16 special values: subnormals, the largest finite values, signed zero', () => {
    const bf16Bits = Uint16Array.of(0x0001, 0x8001, 0x7f7f, 0xff7f, 0x3f80, 0x0000);
    const f16Bits = Uint16Array.of(0x0001, 0x8001, 0x7bff, 0xfbff, 0x3c00, 0x0000);
    const file = parseSafetensors(
      serializeSafetensors({ b: { dtype: 'BF16', shape: [2, 3], data: bf16Bits }, h: { dtype: 'F16', shape: [2, 3], data: f16Bits } }),
    );
    const b = HostEmbedding.fromSource(file, 'b', [2, 3]).rows([0, 1]);
    expect(Array.from(b)).toEqual(Array.from(bf16Bits, (x) => bfloat16BitsToFloat32(x)));
    expect(b[0]).toBeGreaterThan(0);
    expect(b[0]).toBeLessThan(1e-38);
    const h = HostEmbedding.fromSource(file, 'h', [2, 3]).rows([0, 1]);
    expect(Array.from(h)).toEqual(Array.from(f16Bits, (x) => float16BitsToFloat32(x)));
    expect(h[0]).toBe(2 ** -24);
    expect(h[2]).toBe(65504);
  });

  it('a huge row (wider than the internal scratch) is widened exactly', () => {
    const wide = 3000;
    const { tensor, exact } = table('BF16', values(2 * wide, 9), [2, wide]);
    const emb = HostEmbedding.fromSource(parseSafetensors(serializeSafetensors({ t: tensor })), 't');
    expect(Array.from(emb.rows([1, 0, 1]))).toEqual(Array.from(gather(exact, [1, 0, 1], wide)));
    // A narrower table afterwards still reads right (the scratch is shared).
    const narrow = table('BF16', values(6, 10), [3, 2]);
    expect(Array.from(HostEmbedding.fromSource(parseSafetensors(serializeSafetensors({ n: narrow.tensor })), 'n').rows([2]))).toEqual(
      Array.from(narrow.exact.subarray(4, 6)),
    );
  });
});

describe('HostEmbedding errors', () => {
  const f32 = table('F32', values(ROWS * DIM, 21));
  const file = parseSafetensors(
    serializeSafetensors({
      t: f32.tensor,
      ints: { dtype: 'I32', shape: [ROWS, DIM], data: new Int32Array(ROWS * DIM) },
      bytes: { dtype: 'U8', shape: [ROWS, DIM], data: new Uint8Array(ROWS * DIM) },
      f64: { dtype: 'F64', shape: [ROWS, DIM], data: new Float64Array(ROWS * DIM) },
      flat: { dtype: 'F32', shape: [ROWS * DIM], data: new Float32Array(ROWS * DIM) },
      cube: { dtype: 'F32', shape: [1, ROWS, DIM], data: new Float32Array(ROWS * DIM) },
    }),
    { description: 'ckpt.safetensors' },
  );

  it('a missing tensor is INVALID_CHECKPOINT naming the source, the tensor and the expected shape', () => {
    expectNnError(() => HostEmbedding.fromSource(file, 'nope', [ROWS, DIM]), 'INVALID_CHECKPOINT', 'ckpt.safetensors', '"nope"', '[7, 5]');
    expectNnError(() => HostEmbedding.fromSource(file, 'nope'), 'INVALID_CHECKPOINT', 'missing "nope"');
  });

  it('a shape other than the expected one, or not 2-D, is INVALID_CHECKPOINT', () => {
    expectNnError(
      () => HostEmbedding.fromSource(file, 't', [ROWS + 1, DIM]),
      'INVALID_CHECKPOINT',
      '"t" has shape [7, 5], expected [8, 5]',
    );
    expectNnError(() => HostEmbedding.fromSource(file, 't', [ROWS, DIM - 1]), 'INVALID_CHECKPOINT', 'expected [7, 4]');
    expectNnError(() => HostEmbedding.fromSource(file, 't', [DIM, ROWS]), 'INVALID_CHECKPOINT');
    expectNnError(() => HostEmbedding.fromSource(file, 'flat'), 'INVALID_CHECKPOINT', 'a 2-D table');
    expectNnError(() => HostEmbedding.fromSource(file, 'cube'), 'INVALID_CHECKPOINT', 'has shape [1, 7, 5]');
    expectNnError(() => HostEmbedding.fromSource(file, 'flat', [ROWS, DIM]), 'INVALID_CHECKPOINT');
  });

  it('an integer, byte or F64 tensor is INVALID_CHECKPOINT naming its dtype', () => {
    expectNnError(() => HostEmbedding.fromSource(file, 'ints', [ROWS, DIM]), 'INVALID_CHECKPOINT', 'dtype I32', 'F32, F16 or BF16');
    expectNnError(() => HostEmbedding.fromSource(file, 'bytes', [ROWS, DIM]), 'INVALID_CHECKPOINT', 'dtype U8');
    expectNnError(() => HostEmbedding.fromSource(file, 'f64', [ROWS, DIM]), 'INVALID_CHECKPOINT', 'dtype F64');
  });

  it('an id out of range or not an integer is INVALID_ARGUMENT naming it', () => {
    const emb = HostEmbedding.fromSource(file, 't', [ROWS, DIM]);
    for (const id of [-1, ROWS, ROWS + 100, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -Number.MIN_VALUE]) {
      expectNnError(() => emb.rows([0, id]), 'INVALID_ARGUMENT', `row ${id} is not in [0, 7)`);
    }
    expectNnError(() => emb.rows(['2' as unknown as number]), 'INVALID_ARGUMENT');
  });

  it('an output of the wrong length is INVALID_ARGUMENT and leaves it untouched', () => {
    const emb = HostEmbedding.fromSource(file, 't', [ROWS, DIM]);
    for (const n of [0, 2 * DIM - 1, 2 * DIM + 1, 3 * DIM]) {
      const out = new Float32Array(n).fill(7);
      expectNnError(() => emb.addRows([1, 2], out), 'INVALID_ARGUMENT', `${n} outputs for 2 rows of ${DIM}`);
      expect(out.every((v) => v === 7)).toBe(true);
    }
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      it(`a ${dtype} row holding ${bad} is INVALID_CHECKPOINT naming the row, when it is read`, () => {
        const data = values(ROWS * DIM, 31);
        data[4 * DIM + 2] = bad;
        const { tensor } = table(dtype, data);
        const src = parseSafetensors(serializeSafetensors({ 'hash.3.weight': tensor }), { description: 'bad.safetensors' });
        // Loading does not read the rows, and the other rows read fine.
        const emb = HostEmbedding.fromSource(src, 'hash.3.weight', [ROWS, DIM]);
        expect(emb.rows([0, 3, 5, 6]).every(Number.isFinite)).toBe(true);
        expectNnError(() => emb.rows([1, 4]), 'INVALID_CHECKPOINT', 'bad.safetensors', '"hash.3.weight" row 4 holds a non-finite value');
        expectNnError(() => emb.addRows([4], new Float32Array(DIM)), 'INVALID_CHECKPOINT', 'row 4');
      });
    }
  }
});

describe('HostEmbedding over tensors at unaligned offsets', () => {
  // A 1-byte tensor first: the table starts at an odd offset of the data area (and, with an even
  // header length, at an odd offset of the file).
  function oddFile(dtype: 'F32' | 'F16' | 'BF16', headerLength: number): { bytes: Uint8Array; exact: Float32Array } {
    const { tensor, exact } = table(dtype, values(ROWS * DIM, 41));
    const bytes = handLaidOut(
      [
        { name: 'pad', dtype: 'U8', shape: [1], bytes: Uint8Array.of(9) },
        { name: 't', dtype, shape: [ROWS, DIM], bytes: bytesOf(tensor) },
      ],
      headerLength,
    );
    return { bytes, exact };
  }

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    for (const headerLength of [160, 161, 162]) {
      it(`${dtype} in memory, table at file offset ${8 + headerLength + 1}`, () => {
        const { bytes, exact } = oddFile(dtype, headerLength);
        const file = parseSafetensors(bytes);
        expect(file.info('t').byteOffset).toBe(8 + headerLength + 1);
        const emb = HostEmbedding.fromSource(file, 't', [ROWS, DIM]);
        const ids = [6, 0, 3, 3];
        expect(Array.from(emb.rows(ids))).toEqual(Array.from(gather(exact, ids)));
        // The file's bytes are not modified by reading.
        expect(parseSafetensors(bytes).raw('pad')[0]).toBe(9);
      });
    }
  }

  it('a view into a larger buffer at an odd byteOffset works too', () => {
    const { bytes, exact } = oddFile('BF16', 160);
    const big = new Uint8Array(bytes.byteLength + 3);
    big.set(bytes, 3);
    const emb = HostEmbedding.fromSource(parseSafetensors(big.subarray(3)), 't', [ROWS, DIM]);
    expect(Array.from(emb.rows([5, 1]))).toEqual(Array.from(gather(exact, [5, 1])));
  });
});

describe('HostEmbedding over a file on disk (positioned reads)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'host-embedding-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype}: the rows equal the in-memory ones`, async () => {
      const { tensor, exact } = table(dtype, values(ROWS * DIM, 51));
      const path = join(dir, `aligned-${dtype}.safetensors`);
      const bytes = serializeSafetensors({ a: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) }, t: tensor });
      await writeFile(path, bytes);
      const reader = openSafetensorsFile(path);
      try {
        const emb = HostEmbedding.fromSource(reader, 't', [ROWS, DIM]);
        const ids = [2, 6, 0, 2];
        expect(Array.from(emb.rows(ids))).toEqual(Array.from(gather(exact, ids)));
        expect(Array.from(emb.rows(ids))).toEqual(Array.from(HostEmbedding.fromSource(parseSafetensors(bytes), 't').rows(ids)));
      } finally {
        reader.close();
      }
    });

    it(`${dtype} at an odd byte offset of the file`, async () => {
      const { tensor, exact } = table(dtype, values(ROWS * DIM, 52));
      const path = join(dir, `odd-${dtype}.safetensors`);
      const bytes = handLaidOut(
        [
          { name: 'pad', dtype: 'U8', shape: [3], bytes: Uint8Array.of(1, 2, 3) },
          { name: 't', dtype, shape: [ROWS, DIM], bytes: bytesOf(tensor) },
        ],
        120,
      );
      await writeFile(path, bytes);
      const reader = openSafetensorsFile(path);
      try {
        expect(reader.info('t').byteOffset % 2).toBe(1);
        const emb = HostEmbedding.fromSource(reader, 't', [ROWS, DIM]);
        const ids = [0, 6, 4, 1];
        expect(Array.from(emb.rows(ids))).toEqual(Array.from(gather(exact, ids)));
      } finally {
        reader.close();
      }
    });
  }

  it('a corrupt row on disk is found when read; reading after the file is closed fails', async () => {
    const data = values(ROWS * DIM, 53);
    data[2 * DIM] = Number.NaN;
    const path = join(dir, 'corrupt.safetensors');
    await writeFile(path, serializeSafetensors({ t: table('BF16', data).tensor }));
    const reader = openSafetensorsFile(path);
    const emb = HostEmbedding.fromSource(reader, 't', [ROWS, DIM]);
    expect(emb.rows([1]).length).toBe(DIM);
    expectNnError(() => emb.rows([2]), 'INVALID_CHECKPOINT', path, 'row 2');
    reader.close();
    expect(() => emb.rows([1])).toThrow(/after close/);
  });

  it('through the package entry @bytelatent/nn/node', async () => {
    const node = await import('@bytelatent/nn/node');
    const { tensor, exact } = table('BF16', values(ROWS * DIM, 54));
    const path = join(dir, 'pkg.safetensors');
    await writeFile(path, serializeSafetensors({ t: tensor }));
    const reader = node.openSafetensorsFile(path);
    try {
      expect(Array.from(HostEmbedding.fromSource(reader, 't', [ROWS, DIM]).rows([3]))).toEqual(
        Array.from(exact.subarray(3 * DIM, 4 * DIM)),
      );
    } finally {
      reader.close();
    }
  });
});

describe('HostEmbedding.unreadable', () => {
  it('has the shape it stands for and fails every read with its reason (INVALID_CHECKPOINT)', () => {
    const table = HostEmbedding.unreadable(
      'encoder_hash_tok_embedding.0.weight',
      [7, 4],
      'file.safetensors: "encoder_hash_tok_embedding.0.weight" does not fit the model',
    );
    expect([table.numEmbeddings, table.dim]).toEqual([7, 4]);
    const read = () => table.rows([0]);
    expect(read).toThrow(NnError);
    expect(read).toThrow(/does not fit the model/);
    try {
      read();
    } catch (e) {
      expect((e as NnError).code).toBe('INVALID_CHECKPOINT');
    }
  });
});
