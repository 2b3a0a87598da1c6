import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SafetensorsError, parseSafetensors, serializeSafetensors, type SafetensorsDtype, type SafetensorsTensor } from './safetensors.js';
import { readSafetensorsFile, writeFileAtomic, writeSafetensorsFile } from './safetensors-node.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytelatent-nn-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tensors: Record<string, SafetensorsTensor> = {
  w: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 3.5, 0.25]) },
  ids: { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -1n, 2n ** 40n]) },
  h: { dtype: 'BF16', shape: [1], data: new Uint16Array([0x3f80]) },
};

async function leftovers(folder: string): Promise<string[]> {
  return (await readdir(folder)).filter((f) => f.includes('.tmp-'));
}

describe('writeSafetensorsFile / readSafetensorsFile', () => {
  it('round-trips through a file and leaves no temporary file', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, tensors, { format: 'pt' });
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    // The file is exactly what serializeSafetensors produces.
    expect(new Uint8Array(await readFile(path))).toEqual(serializeSafetensors(tensors, { format: 'pt' }));
    const file = await readSafetensorsFile(path);
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.names().sort()).toEqual(['h', 'ids', 'w']);
    expect(Array.from(file.toFloat32('w'))).toEqual([1, -2, 3.5, 0.25]);
    expect(Array.from(file.toBigInt64('ids'))).toEqual([1n, -1n, 2n ** 40n]);
    expect(Array.from(file.toFloat32('h'))).toEqual([1]);
  });

  it('replaces an existing file', async () => {
    const path = join(dir, 'model.safetensors');
    await writeFile(path, 'old contents');
    await writeSafetensorsFile(path, { x: { dtype: 'U8', shape: [2], data: new Uint8Array([5, 6]) } });
    const file = await readSafetensorsFile(path);
    expect(file.get('x').data).toEqual(new Uint8Array([5, 6]));
    expect(await leftovers(dir)).toEqual([]);
  });

  it('validates tensors before touching the file system', async () => {
    const path = join(dir, 'bad.safetensors');
    await expect(writeSafetensorsFile(path, { x: { dtype: 'F16', shape: [1], data: new Float32Array(1) } })).rejects.toMatchObject({
      name: 'SafetensorsError',
      code: 'INVALID_ARGUMENT',
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('reports a missing file with the fs error and a corrupt one with SafetensorsError', async () => {
    await expect(readSafetensorsFile(join(dir, 'missing.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
    const path = join(dir, 'short.safetensors');
    await writeFile(path, new Uint8Array([1, 2, 3]));
    await expect(readSafetensorsFile(path)).rejects.toBeInstanceOf(SafetensorsError);
    await expect(readSafetensorsFile(path)).rejects.toMatchObject({ code: 'TRUNCATED' });
  });

  it('passes parse options through', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, tensors);
    await expect(readSafetensorsFile(path, { maxHeaderBytes: 16 })).rejects.toMatchObject({ code: 'HEADER_TOO_LARGE' });
  });
});

describe('writeFileAtomic', () => {
  it('writes the bytes and leaves no temporary file', async () => {
    const path = join(dir, 'out.bin');
    const data = new Uint8Array(100_000).map((_, i) => i * 7);
    await writeFileAtomic(path, data);
    expect((await readFile(path)).equals(data)).toBe(true);
    expect(await readdir(dir)).toEqual(['out.bin']);
  });

  it('throws and leaves no temporary file when the directory does not exist', async () => {
    const path = join(dir, 'no-such-dir', 'out.bin');
    await expect(writeFileAtomic(path, new Uint8Array([1]))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(dir)).toEqual([]);
  });

  it('removes the temporary file when the final rename fails', async () => {
    // A directory at the target path: the temporary file is written, then rename() fails.
    const path = join(dir, 'taken');
    await mkdir(path);
    await writeFile(join(path, 'keep'), 'x');
    await expect(writeFileAtomic(path, new Uint8Array([1, 2, 3]))).rejects.toThrow();
    expect(await leftovers(dir)).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(['taken']);
    expect(await readdir(path)).toEqual(['keep']);
  });

  it('rejects data that is not a Uint8Array', async () => {
    await expect(writeFileAtomic(join(dir, 'x'), 'text' as unknown as Uint8Array)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(await readdir(dir)).toEqual([]);
  });
});

// The reference weights exported by the golden generator (shared/golden/README.md).
const goldenDir = process.env['BYTELATENT_GOLDEN_DIR'] ?? fileURLToPath(new URL('../../../../shared/golden/tiny/', import.meta.url));
const manifestPath = join(goldenDir, 'weights_manifest.json');

/** Torch dtype names of the manifest to safetensors dtypes. */
const TORCH_DTYPES: Record<string, SafetensorsDtype> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

describe.each([
  ['blt_model.safetensors', 74],
  ['entropy_model.safetensors', 21],
])('golden %s', (fileName, tensorCount) => {
  const path = join(goldenDir, fileName);

  it.skipIf(!existsSync(path) || !existsSync(manifestPath))('has every tensor of the manifest with its dtype and shape', async () => {
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, Record<string, { dtype: string; shape: number[] }>>;
    const expected = manifest[fileName]!;
    const file = await readSafetensorsFile(path);
    expect(file.names()).toHaveLength(tensorCount);
    expect(file.names().sort()).toEqual(Object.keys(expected).sort());
    for (const [name, { dtype, shape }] of Object.entries(expected)) {
      const info = file.info(name);
      expect(info.dtype, name).toBe(TORCH_DTYPES[dtype]);
      expect(info.shape, name).toEqual(shape);
      const values = file.toFloat32(name);
      expect(values.length, name).toBe(shape.reduce((a, b) => a * b, 1));
      expect(values.every(Number.isFinite), name).toBe(true);
    }
    expect(file.metadata['format']).toBe('pt');
    // Re-serialising gives a file with the same tensors, bit for bit.
    const again = parseSafetensors(serializeSafetensors(Object.fromEntries(file.names().map((n) => [n, file.get(n)])), file.metadata));
    for (const name of file.names()) expect(Buffer.from(again.raw(name)).equals(file.raw(name)), name).toBe(true);
  });
});

describe('golden blt_model.safetensors', () => {
  const path = join(goldenDir, 'blt_model.safetensors');

  it.skipIf(!existsSync(path))('has the expected dtype, shape and layout for a few known names', async () => {
    const file = await readSafetensorsFile(path);
    expect(file.info('local_encoder.tok_embeddings.weight')).toMatchObject({ dtype: 'F32', shape: [260, 32] });
    expect(file.info('local_encoder.layers.0.feed_forward.w1.weight')).toMatchObject({ dtype: 'F32', shape: [256, 32] });
    expect(file.info('local_encoder.layers.0.attention.wq.weight')).toMatchObject({ dtype: 'F32', shape: [32, 32], byteLength: 4096 });
  });
});
