import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  SafetensorsError,
  parseSafetensors,
  serializeSafetensors,
  type SafetensorsErrorCode,
  type SafetensorsTensor,
} from './safetensors.js';
import { openSafetensorsFile, openShardedSafetensors } from './safetensors-node.js';
import { readFloat32 } from './tensor-source.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytelatent-st-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectError(fn: () => unknown, code: SafetensorsErrorCode, ...fragments: (string | RegExp)[]): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(SafetensorsError);
  expect((caught as SafetensorsError).code, (caught as Error).message).toBe(code);
  for (const f of fragments) expect((caught as Error).message).toMatch(f);
}

const f32 = (...values: number[]): SafetensorsTensor => ({ dtype: 'F32', shape: [values.length], data: Float32Array.from(values) });

describe('openSafetensorsFile', () => {
  it('reads the header only, then tensors and element ranges by positioned reads', async () => {
    const path = join(dir, 'model.safetensors');
    const tensors = { a: f32(1, 2, 3, 4), b: { dtype: 'I64', shape: [2], data: BigInt64Array.of(7n, -7n) } as SafetensorsTensor };
    const bytes = serializeSafetensors(tensors, { format: 'pt' });
    await writeFile(path, bytes);
    const file = openSafetensorsFile(path);
    try {
      const parsed = parseSafetensors(bytes);
      expect(file.description).toBe(path);
      expect(file.metadata).toEqual({ format: 'pt' });
      expect(file.byteLength).toBe(bytes.length);
      expect(file.names()).toEqual(parsed.names());
      expect(file.info('a')).toEqual(parsed.info('a'));
      expect(file.readBytes('b')).toEqual(parsed.readBytes('b'));
      expect(Array.from(readFloat32(file, 'a', 1, 3))).toEqual([2, 3]);
      // A fresh buffer each time (not a view of a shared one).
      expect(file.readBytes('a').buffer).not.toBe(file.readBytes('a').buffer);
    } finally {
      file.close();
    }
    expect(() => file.readBytes('a')).toThrow(/read after close\(\)/);
    file.close();
  });

  it('reports a bad header with the path, closes the file, and passes fs errors on', async () => {
    const path = join(dir, 'cut.safetensors');
    const bytes = serializeSafetensors({ a: f32(1, 2) });
    await writeFile(path, bytes.subarray(0, bytes.length - 1));
    await expectError(
      () => openSafetensorsFile(path),
      'TRUNCATED',
      new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: file has 7 data bytes but the header declares 8`),
    );
    await expectError(() => openSafetensorsFile(path, { description: 'cut' }), 'TRUNCATED', /^cut: /);
    expect(() => openSafetensorsFile(join(dir, 'nope.safetensors'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('a file that shrinks after opening gives TRUNCATED on read', async () => {
    const path = join(dir, 'shrink.safetensors');
    await writeFile(path, serializeSafetensors({ a: f32(1, 2, 3, 4) }));
    const file = openSafetensorsFile(path);
    try {
      await truncate(path, file.byteLength - 8);
      await expectError(() => file.readBytes('a'), 'TRUNCATED', /the file ended at byte \d+ while reading 16 bytes/);
    } finally {
      file.close();
    }
  });

  it('a sparse 4.8 GB file: the header, then ranges past 4 GiB', () => {
    const numel = 1_200_000_000; // float32: 4.8e9 bytes, then 4 more floats
    const header = JSON.stringify({
      big: { dtype: 'F32', shape: [numel], data_offsets: [0, numel * 4] },
      tail: { dtype: 'F32', shape: [4], data_offsets: [numel * 4, numel * 4 + 16] },
    });
    const json = new TextEncoder().encode(header);
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
    const path = join(dir, 'big.safetensors');
    const fd = openSync(path, 'w');
    const dataStart = 8 + json.length;
    try {
      writeSync(fd, prefix, 0, 8, 0);
      writeSync(fd, json, 0, json.length, 8);
      const marks = new Uint8Array(Float32Array.of(9, 8, 1, 2, 3, 4).buffer);
      writeSync(fd, marks, 0, marks.length, dataStart + numel * 4 - 8);
    } finally {
      closeSync(fd);
    }
    const file = openSafetensorsFile(path);
    try {
      expect(file.byteLength).toBe(dataStart + numel * 4 + 16);
      expect(file.info('tail').byteOffset).toBe(dataStart + 4_800_000_000);
      expect(Array.from(readFloat32(file, 'tail'))).toEqual([1, 2, 3, 4]);
      expect(Array.from(readFloat32(file, 'big', numel - 3))).toEqual([0, 9, 8]);
      expect(Array.from(readFloat32(file, 'big', 0, 2))).toEqual([0, 0]);
    } finally {
      file.close();
    }
  });
});

describe('openShardedSafetensors', () => {
  const shard1 = { 'layers.0.w': f32(1, 2), 'layers.0.b': f32(3) };
  const shard2 = { 'layers.1.w': f32(4, 5), norm: f32(6) };

  async function writeShards(
    index: unknown,
    shards: Record<string, Record<string, SafetensorsTensor>> = {
      'model-00001-of-00002.safetensors': shard1,
      'model-00002-of-00002.safetensors': shard2,
    },
  ): Promise<string> {
    for (const [name, tensors] of Object.entries(shards)) await writeFile(join(dir, name), serializeSafetensors(tensors));
    const path = join(dir, 'model.safetensors.index.json');
    await writeFile(path, typeof index === 'string' ? index : JSON.stringify(index));
    return path;
  }

  const weightMap = {
    'layers.0.w': 'model-00001-of-00002.safetensors',
    'layers.0.b': 'model-00001-of-00002.safetensors',
    'layers.1.w': 'model-00002-of-00002.safetensors',
    norm: 'model-00002-of-00002.safetensors',
  };

  it('serves every shard through one source', async () => {
    const path = await writeShards({ metadata: { total_size: 24 }, weight_map: weightMap });
    const source = openShardedSafetensors(path);
    try {
      expect(source.description).toBe(path);
      expect(source.metadata).toEqual({ total_size: 24 });
      expect(source.shards).toEqual([join(dir, 'model-00001-of-00002.safetensors'), join(dir, 'model-00002-of-00002.safetensors')]);
      expect(source.names().sort()).toEqual(Object.keys(weightMap).sort());
      expect(source.info('norm')).toMatchObject({ name: 'norm', dtype: 'F32', shape: [1] });
      expect(Array.from(readFloat32(source, 'layers.1.w'))).toEqual([4, 5]);
      expect(Array.from(readFloat32(source, 'layers.0.w', 1))).toEqual([2]);
      expect(source.weightMap.get('norm')).toBe('model-00002-of-00002.safetensors');
    } finally {
      source.close();
    }
  });

  it('shards in a sub-folder of the index', async () => {
    await mkdir(join(dir, 'shards'));
    const path = await writeShards({ weight_map: { a: 'shards/one.safetensors' } }, { 'shards/one.safetensors': { a: f32(1) } });
    const source = openShardedSafetensors(path);
    expect(Array.from(readFloat32(source, 'a'))).toEqual([1]);
    source.close();
  });

  it('a shard missing from disk: MISSING_SHARD listing it', async () => {
    const path = await writeShards({
      weight_map: { ...weightMap, extra: 'model-00003-of-00003.safetensors', extra2: 'model-00003-of-00003.safetensors' },
    });
    await expectError(
      () => openShardedSafetensors(path),
      'MISSING_SHARD',
      /1 of 3 shard file\(s\) missing/,
      /model-00003-of-00003\.safetensors \(index lists 2 tensors in it\)/,
    );
  });

  it('a tensor the index names that the shard lacks, or a shard tensor the index does not list: INDEX_MISMATCH', async () => {
    const path = await writeShards({ weight_map: { ...weightMap, ghost: 'model-00001-of-00002.safetensors' } });
    await expectError(
      () => openShardedSafetensors(path),
      'INDEX_MISMATCH',
      'the index puts "ghost" in model-00001-of-00002.safetensors, which does not hold it',
    );
    const { norm: _norm, ...partial } = weightMap;
    const path2 = await writeShards({ weight_map: partial });
    await expectError(
      () => openShardedSafetensors(path2),
      'INDEX_MISMATCH',
      'model-00002-of-00002.safetensors holds "norm", which the index does not list',
    );
  });

  it('the same tensor in two shards: DUPLICATE_TENSOR naming both files', async () => {
    const path = await writeShards(
      { weight_map: weightMap },
      { 'model-00001-of-00002.safetensors': { ...shard1, norm: f32(0) }, 'model-00002-of-00002.safetensors': shard2 },
    );
    await expectError(
      () => openShardedSafetensors(path),
      'DUPLICATE_TENSOR',
      /"norm" is in both .*model-00001-of-00002\.safetensors and .*model-00002-of-00002\.safetensors/,
    );
  });

  it('invalid indexes: INVALID_INDEX', async () => {
    await expectError(async () => openShardedSafetensors(await writeShards('{not json')), 'INVALID_INDEX', /not valid JSON/);
    await expectError(
      async () => openShardedSafetensors(await writeShards('[]')),
      'INVALID_INDEX',
      /must be a JSON object with a "weight_map"/,
    );
    await expectError(async () => openShardedSafetensors(await writeShards({ weight_map: {} })), 'INVALID_INDEX', /"weight_map" is empty/);
    await expectError(
      async () => openShardedSafetensors(await writeShards({ weight_map: { a: 5 } })),
      'INVALID_INDEX',
      /"weight_map"\["a"\] must be a relative file path/,
    );
    for (const bad of ['../x.safetensors', '/etc/passwd', 'a//b', '']) {
      await expectError(
        async () => openShardedSafetensors(await writeShards({ weight_map: { a: bad } })),
        'INVALID_INDEX',
        /inside the index's folder/,
      );
    }
    await expectError(
      async () => openShardedSafetensors(await writeShards({ weight_map: weightMap, metadata: 3 })),
      'INVALID_INDEX',
      /"metadata" must be an object/,
    );
    await expectError(
      async () => openShardedSafetensors(await writeShards({ weight_map: weightMap }), { maxIndexBytes: 10 }),
      'INVALID_INDEX',
      /over the limit of 10/,
    );
  });

  it('a corrupt shard: its own error, naming the shard', async () => {
    const path = await writeShards({ weight_map: weightMap });
    await writeFile(join(dir, 'model-00002-of-00002.safetensors'), 'garbage!!');
    await expectError(() => openShardedSafetensors(path), 'HEADER_TOO_LARGE', /model-00002-of-00002\.safetensors: header length/);
  });
});
