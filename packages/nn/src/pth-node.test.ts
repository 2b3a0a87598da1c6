import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PthError, parsePth } from './pth.js';
import { openPthFile } from './pth-node.js';
import { readFloat32 } from './tensor-source.js';

const fixtureDir = fileURLToPath(new URL('../test-data/pth/', import.meta.url));
const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytelatent-pth-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('openPthFile', () => {
  for (const name of ['flat.pth', 'nested.pth', 'views.pth', 'tied.pth', 'proto4.pth', 'weights.pth']) {
    it(`${name}: positioned reads give the same tensors as parsing the bytes`, () => {
      const path = join(fixtureDir, name);
      const inMemory = parsePth(new Uint8Array(readFileSync(path))).stateDict();
      const file = openPthFile(path);
      try {
        expect(file.description).toBe(path);
        const sd = file.stateDict();
        expect(sd.names()).toEqual(inMemory.names());
        for (const tensor of sd.names()) {
          expect(sd.info(tensor)).toEqual(inMemory.info(tensor));
          expect(hex(sd.readBytes(tensor)), tensor).toBe(hex(inMemory.readBytes(tensor)));
          const { byteLength, shape } = sd.info(tensor);
          const numel = shape.reduce((a, b) => a * b, 1);
          if (numel > 1)
            expect(hex(sd.readBytes(tensor, 1, numel)), tensor).toBe(hex(inMemory.readBytes(tensor).subarray(byteLength / numel)));
        }
      } finally {
        file.close();
      }
    });
  }

  it('closes the file: reads fail after close(), close() twice is fine', () => {
    const file = openPthFile(join(fixtureDir, 'flat.pth'), { description: 'flat' });
    expect(file.description).toBe('flat');
    file.close();
    file.close();
    expect(() => file.readBytes('ids')).toThrow(/read after close\(\)/);
  });

  it('reports fs errors and refused files', async () => {
    expect(() => openPthFile(join(dir, 'missing.pth'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => openPthFile(dir)).toThrow(/is not a regular file/);
    expect(() => openPthFile(join(fixtureDir, 'evil-system.pth'))).toThrow(
      expect.objectContaining({ name: 'PthError', code: 'FORBIDDEN_GLOBAL' }),
    );
    const legacy = join(fixtureDir, 'legacy.pth');
    expect(() => openPthFile(legacy)).toThrow(new RegExp(`${legacy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in torch's legacy`));
    await writeFile(join(dir, 'empty.pth'), '');
    expect(() => openPthFile(join(dir, 'empty.pth'))).toThrow(PthError);
  });

  it('a sparse 4.8 GB checkpoint (ZIP64, a storage over 4 GiB): reads ranges, views and the tail by offset', () => {
    const numel = 1_200_000_001; // float32: 4,800,000,004 bytes
    const path = join(dir, 'big.pth');
    const enc = new TextEncoder();
    const le = (value: number | bigint, bytes: number): number[] => {
      const out: number[] = [];
      let v = BigInt(value);
      for (let i = 0; i < bytes; i++) {
        out.push(Number(v & 0xffn));
        v >>= 8n;
      }
      return out;
    };
    const str = (s: string) => [0x58, ...le(s.length, 4), ...enc.encode(s)];
    const int = (n: number) => [0x8a, 8, ...le(n, 8)];
    const tensor = (offset: number, size: number[], stride: number[]) => [
      0x63,
      ...enc.encode('torch._utils\n_rebuild_tensor_v2\n'),
      0x28,
      0x28,
      ...str('storage'),
      0x63,
      ...enc.encode('torch\nFloatStorage\n'),
      ...str('0'),
      ...str('cpu'),
      ...int(numel),
      0x74,
      0x51,
      ...int(offset),
      0x28,
      ...size.flatMap(int),
      0x74,
      0x28,
      ...stride.flatMap(int),
      0x74,
      0x89,
      0x63,
      ...enc.encode('collections\nOrderedDict\n'),
      0x29,
      0x52,
      0x74,
      0x52,
    ];
    const pickle = Uint8Array.from([
      0x80,
      0x02,
      0x7d,
      0x28,
      ...str('big'),
      ...tensor(0, [numel], [1]),
      ...str('tail'),
      ...tensor(numel - 4, [4], [1]),
      ...str('strided'),
      ...tensor(numel - 8, [2, 4], [1, 2]),
      0x75,
      0x2e,
    ]);
    const entries = [
      { name: 'big/data.pkl', size: pickle.length },
      { name: 'big/data/0', size: numel * 4 },
      { name: 'big/version', size: 2 },
    ];
    const fd = openSync(path, 'w');
    const write = (bytes: number[] | Uint8Array, at: number) => writeSync(fd, Uint8Array.from(bytes), 0, bytes.length, at);
    try {
      let at = 0;
      const local: number[] = [];
      const dataAt: number[] = [];
      for (const e of entries) {
        local.push(at);
        const name = enc.encode(e.name);
        const extra = [...le(1, 2), ...le(16, 2), ...le(e.size, 8), ...le(e.size, 8)];
        write(
          [
            ...le(0x04034b50, 4),
            ...le(45, 2),
            0,
            0,
            0,
            0,
            ...le(0, 4),
            ...le(0, 4),
            ...le(0xffffffff, 4),
            ...le(0xffffffff, 4),
            ...le(name.length, 2),
            ...le(extra.length, 2),
            ...name,
            ...extra,
          ],
          at,
        );
        at += 30 + name.length + extra.length;
        dataAt.push(at);
        at += e.size;
      }
      write(pickle, dataAt[0]!);
      write(enc.encode('3\n'), dataAt[2]!);
      // The storage is zeros (a hole in the file) except its last 8 floats.
      const tail = new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]).buffer);
      write(tail, dataAt[1]! + (numel - 8) * 4);
      const directory = at;
      entries.forEach((e, i) => {
        const name = enc.encode(e.name);
        const extra = [...le(1, 2), ...le(24, 2), ...le(e.size, 8), ...le(e.size, 8), ...le(local[i]!, 8)];
        const record = [
          ...le(0x02014b50, 4),
          ...le(45, 2),
          ...le(45, 2),
          0,
          0,
          0,
          0,
          ...le(0, 4),
          ...le(0, 4),
          ...le(0xffffffff, 4),
          ...le(0xffffffff, 4),
          ...le(name.length, 2),
          ...le(extra.length, 2),
          0,
          0,
          0,
          0,
          0,
          0,
          ...le(0, 4),
          ...le(0xffffffff, 4),
          ...name,
          ...extra,
        ];
        write(record, at);
        at += record.length;
      });
      const end64 = at;
      write(
        [
          ...le(0x06064b50, 4),
          ...le(44, 8),
          ...le(45, 2),
          ...le(45, 2),
          ...le(0, 4),
          ...le(0, 4),
          ...le(3, 8),
          ...le(3, 8),
          ...le(end64 - directory, 8),
          ...le(directory, 8),
        ],
        at,
      );
      at += 56;
      write([...le(0x07064b50, 4), ...le(0, 4), ...le(end64, 8), ...le(1, 4)], at);
      at += 20;
      write([...le(0x06054b50, 4), 0, 0, 0, 0, ...le(0xffff, 2), ...le(0xffff, 2), ...le(0xffffffff, 4), ...le(0xffffffff, 4), 0, 0], at);
    } finally {
      closeSync(fd);
    }

    const file = openPthFile(path);
    try {
      expect(file.info('big')).toEqual({ name: 'big', dtype: 'F32', shape: [numel], byteLength: numel * 4 });
      expect(file.storages.get('0')!.byteOffset).toBeGreaterThan(0);
      expect(file.storages.get('0')!.byteLength).toBe(4_800_000_004);
      expect(Array.from(readFloat32(file, 'big', 0, 3))).toEqual([0, 0, 0]);
      expect(Array.from(readFloat32(file, 'big', numel - 9, numel))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
      expect(Array.from(readFloat32(file, 'tail'))).toEqual([5, 6, 7, 8]);
      // [2, 4] with strides [1, 2] over [1..8]: rows (1, 3, 5, 7) and (2, 4, 6, 8).
      expect(Array.from(readFloat32(file, 'strided'))).toEqual([1, 3, 5, 7, 2, 4, 6, 8]);
      expect(Array.from(readFloat32(file, 'strided', 3, 6))).toEqual([7, 2, 4]);
    } finally {
      file.close();
    }
  });
});
