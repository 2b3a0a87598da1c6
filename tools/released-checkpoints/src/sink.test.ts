import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Progress } from './progress.js';
import { FileSink, withSink } from './sink.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'released-sink-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('FileSink', () => {
  it('writes copied and produced bytes in order through a ring of small buffers, aligned, then renames', async () => {
    const expected: number[] = [];
    const path = join(root, 'sub', 'a.bin');
    const reports: number[] = [];
    const progress = new Progress(0, (p) => reports.push(p.bytes), 0);
    const size = await withSink(path, { bufferBytes: 256, bufferCount: 3, fsync: true, progress }, async (sink) => {
      for (let k = 0; k < 40; k++) {
        const copied = Uint8Array.from({ length: (k * 37) % 300 }, (_, i) => (i + k) & 0xff);
        await sink.write(copied);
        expected.push(...copied);
        const n = ((k * 53) % 700) * 4;
        const at = sink.position;
        await sink.fill(n, (dst, offset) => {
          // Each view starts at the same offset modulo 64 in the buffer as in the file.
          expect((((dst.byteOffset - (at + offset)) % 64) + 64) % 64).toBe(0);
          for (let i = 0; i < dst.byteLength; i++) dst[i] = (offset + i) * 7 + k;
        });
        for (let i = 0; i < n; i++) expected.push((i * 7 + k) & 0xff);
      }
    });
    expect(size).toBe(expected.length);
    expect([...new Uint8Array(await readFile(path))]).toEqual(expected);
    expect(await readdir(join(root, 'sub'))).toEqual(['a.bin']);
    expect(reports.at(-1)).toBe(expected.length);
  });

  it('removes the temporary file when the body fails', async () => {
    const path = join(root, 'b.bin');
    await expect(
      withSink(path, { bufferBytes: 64, fsync: false }, async (sink) => {
        await sink.write(new Uint8Array(1000));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await readdir(root)).filter((f) => f.includes('b.bin'))).toEqual([]);
  });

  it('rejects bad buffer settings', async () => {
    await expect(FileSink.create(join(root, 'c.bin'), { bufferBytes: 100 })).rejects.toThrow(/multiple of 64/);
    await expect(FileSink.create(join(root, 'd.bin'), { bufferCount: 1 })).rejects.toThrow(/count/);
    expect((await readdir(root)).filter((f) => f.includes('c.bin') || f.includes('d.bin'))).toEqual([]);
  });
});
