import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import {
  type ModelFolder,
  type SafetensorsTensor,
  type TensorSource,
  initBackend,
  modelFolderFromFiles,
  parseSafetensors,
  serializeSafetensors,
} from '@bytelatent/nn';
import { type Mock, afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { toBltArtifacts } from './checkpoint.js';
import { exportPretrained, savePretrained } from './export-pretrained.js';
import { BltError } from './index.js';
import { loadPretrained } from './pretrained.js';
import { SMALL_ARGS } from './test-fixtures.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

// SMALL_ARGS: 3 n-gram sizes × 2 functions = 6 tables of 97 × 16.
const TABLES = 6;
const HASH_NAMES = Array.from({ length: TABLES }, (_, t) => `encoder_hash_tok_embedding.${t}.weight`);

const ROWS = [
  [1, 20, 21, 2, 1, 22, 23, 24, 25, 26, 27],
  [1, 30, 31, 32, 33],
];
const LENGTHS = [
  [1, 3, 0, 4, 2, 2],
  [1, 2, 3],
];

const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 2,
  n_heads: 2,
  max_seqlen: 64,
  vocab_size: 260,
  ffn_dim_multiplier: 1.0,
  attn_bias_type: 'local_block_causal',
  sliding_window: 7,
  attn_impl: 'xformers',
};

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    return e as BltError;
  }
  throw new Error('expected an error');
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function logitsOf(model: ByteLatentTransformer, rows = ROWS, lengths = LENGTHS): Float32Array {
  const t = model.forward(rows, lengths);
  const data = t.dataSync() as Float32Array;
  t.dispose();
  return data;
}

/** A view of a source whose `close` is a spy (and which counts reads). */
function spySource(inner: TensorSource): TensorSource & { close: Mock<() => void>; reads: string[] } {
  const reads: string[] = [];
  return {
    description: inner.description,
    names: () => inner.names(),
    has: (n) => inner.has(n),
    info: (n) => inner.info(n),
    readBytes: (n, b, e) => {
      reads.push(n);
      return inner.readBytes(n, b, e);
    },
    close: vi.fn<() => void>(),
    reads,
  };
}

/** The same tensors with some left out or replaced. */
function edited(bytes: Uint8Array, edit: (tensors: Map<string, SafetensorsTensor>) => void): TensorSource {
  const file = parseSafetensors(bytes);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const name of file.names()) {
    const info = file.info(name);
    tensors.set(name, { dtype: 'F32', shape: [...info.shape], data: file.toFloat32(name) });
  }
  edit(tensors);
  return parseSafetensors(serializeSafetensors(tensors), { description: 'edited.safetensors' });
}

/**
 * A folder in memory whose weights files behave as files on disk do once closed: reads after
 * `close()` fail (an in-memory source's close is a no-op, which hides a file closed too early).
 * Counts the sources opened and closed.
 */
function strictFolder(inner: ModelFolder, counts = { opened: 0, closed: 0 }): ModelFolder & { counts: typeof counts } {
  return {
    get location() {
      return inner.location;
    },
    describe: (name) => inner.describe(name),
    exists: (name) => inner.exists(name),
    readText: (name) => inner.readText(name),
    readJson: (name) => inner.readJson(name),
    openTensors: async (name) => {
      const source = await inner.openTensors(name);
      counts.opened++;
      let closed = false;
      const live = () => {
        if (closed) throw new Error(`${source.description}: read after close()`);
      };
      return {
        description: source.description,
        names: () => source.names(),
        has: (n) => source.has(n),
        info: (n) => source.info(n),
        readBytes: (n, b, e) => {
          live();
          return source.readBytes(n, b, e);
        },
        close: () => {
          if (!closed) counts.closed++;
          closed = true;
          source.close?.();
        },
      };
    },
    folder: (name) => strictFolder(inner.folder(name), counts),
    counts,
  };
}

describe("ByteLatentTransformer.fromSafetensors(…, { hashTables: 'source' })", () => {
  let original: ByteLatentTransformer;
  let bytes: Uint8Array;
  let tensors: ByteLatentTransformer;
  let host: ByteLatentTransformer;

  beforeAll(async () => {
    original = new ByteLatentTransformer(SMALL_ARGS, 3);
    bytes = await original.toSafetensors();
    tensors = ByteLatentTransformer.fromSafetensors(parseSafetensors(bytes), SMALL_ARGS);
    host = ByteLatentTransformer.fromSafetensors(parseSafetensors(bytes), SMALL_ARGS, { hashTables: 'source' });
  });
  afterAll(() => {
    original.dispose();
    tensors.dispose();
    host.dispose();
  });

  it("gives the logits of the default 'tensors' (and of the model saved)", () => {
    const a = logitsOf(host);
    const b = logitsOf(tensors);
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(b, logitsOf(original))).toBe(0);
    // Explicit 'tensors' is the default.
    const explicit = ByteLatentTransformer.fromSafetensors(parseSafetensors(bytes), SMALL_ARGS, { hashTables: 'tensors' });
    expect(maxAbsDiff(logitsOf(explicit), b)).toBe(0);
    expect(explicit.localEncoder.hostHashTables).toBeUndefined();
    explicit.dispose();
  });

  it('gives the same losses and token losses, one row at a time too', () => {
    const targets = ROWS.map((r) => [...r.slice(1), 5]);
    const la = host.tokenLosses(ROWS, LENGTHS, targets);
    const lb = tensors.tokenLosses(ROWS, LENGTHS, targets);
    expect(maxAbsDiff(la.dataSync(), lb.dataSync())).toBeLessThanOrEqual(1e-5);
    tf.dispose([la, lb]);
    for (let r = 0; r < ROWS.length; r++) {
      expect(maxAbsDiff(logitsOf(host, [ROWS[r]!], [LENGTHS[r]!]), logitsOf(tensors, [ROWS[r]!], [LENGTHS[r]!]))).toBeLessThanOrEqual(1e-5);
    }
  });

  it('with a tap: the same logits, and each hash table tap equals the tensor path', () => {
    const collect = (model: ByteLatentTransformer) => {
      const taps = new Map<string, Float32Array>();
      const t = model.forward(ROWS, LENGTHS, (p, v) => {
        if (p.startsWith('encoder_hash_tok_embedding') || p === 'local_encoder.tok_embeddings') taps.set(p, v.dataSync() as Float32Array);
      });
      const logits = t.dataSync() as Float32Array;
      t.dispose();
      return { logits, taps };
    };
    const a = collect(host);
    const b = collect(tensors);
    expect([...a.taps.keys()].sort()).toEqual([...b.taps.keys()].sort());
    expect(a.taps.size).toBe(TABLES + 1);
    for (const [p, v] of a.taps) expect(maxAbsDiff(v, b.taps.get(p)!), p).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-5);
  });

  it('has the same parameterCount(), and no encoder_hash_tok_embedding weight in its registry', () => {
    expect(host.parameterCount()).toBe(tensors.parameterCount());
    expect(host.parameterCount()).toBe(original.parameterCount());
    const names = host.registry.list().map((p) => p.name);
    expect(names.some((n) => n.includes('encoder_hash_tok_embedding'))).toBe(false);
    expect(tensors.registry.list().map((p) => p.name)).toEqual(expect.arrayContaining(HASH_NAMES));
    expect(host.registry.count()).toBe(tensors.registry.count() - TABLES * 97 * 16);
    expect(host.localEncoder.hashEmbeddings).toEqual([]);
    expect(host.localEncoder.hostHashTables?.map((t) => [t.name, t.numEmbeddings, t.dim, t.dtype])).toEqual(
      HASH_NAMES.map((n) => [n, 97, 16, 'F32']),
    );
  });

  it('refuses to save: referenceWeights(), toSafetensors() and what builds on them throw BltError INVALID_ARGUMENT', async () => {
    for (const call of [() => host.referenceWeights(), () => host.toSafetensors(), () => toBltArtifacts(host)]) {
      const e = await call().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(BltError);
      expect((e as BltError).code).toBe('INVALID_ARGUMENT');
      expect((e as Error).message).toMatch(/hashTables: 'tensors'/);
    }
    const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 4), { mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
    try {
      await expect(exportPretrained(host, patcher, { layout: 'hub' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      patcher.dispose();
    }
    // The tensor model still saves.
    expect((await tensors.referenceWeights()).has(HASH_NAMES[0]!)).toBe(true);
  });

  it('keeps the source open while in use and closes it on dispose(), once', () => {
    const source = spySource(parseSafetensors(bytes));
    const model = ByteLatentTransformer.fromSafetensors(source, SMALL_ARGS, { hashTables: 'source' });
    expect(source.close).not.toHaveBeenCalled();
    source.reads.length = 0;
    logitsOf(model);
    // The forward read hash rows from the source.
    expect(source.reads.some((n) => n.startsWith('encoder_hash_tok_embedding'))).toBe(true);
    expect(source.reads.every((n) => n.startsWith('encoder_hash_tok_embedding'))).toBe(true);
    model.dispose();
    expect(source.close).toHaveBeenCalledTimes(1);
    model.dispose();
    expect(source.close).toHaveBeenCalledTimes(1);
  });

  it("with 'tensors' the source is the caller's: dispose() does not close it", () => {
    const source = spySource(parseSafetensors(bytes));
    const model = ByteLatentTransformer.fromSafetensors(source, SMALL_ARGS);
    model.dispose();
    expect(source.close).not.toHaveBeenCalled();
  });

  it("arguments without hash tables: 'source' builds the plain model and leaves the source to its caller", async () => {
    const args: BltArgs = { ...SMALL_ARGS, encoder_hash_byte_group_size: null };
    const plain = new ByteLatentTransformer(args, 5);
    const source = spySource(parseSafetensors(await plain.toSafetensors()));
    const model = ByteLatentTransformer.fromSafetensors(source, args, { hashTables: 'source' });
    expect(model.localEncoder.hostHashTables).toBeUndefined();
    expect(maxAbsDiff(logitsOf(model), logitsOf(plain))).toBe(0);
    model.dispose();
    plain.dispose();
    expect(source.close).not.toHaveBeenCalled();
  });

  it('a bad hashTables value is BltError INVALID_ARGUMENT, before anything is read', () => {
    for (const value of ['memory', 'Source', '', 1, true, {}]) {
      const source = spySource(parseSafetensors(bytes));
      const e = errorOf(() => ByteLatentTransformer.fromSafetensors(source, SMALL_ARGS, { hashTables: value as unknown as 'source' }));
      expect(e).toBeInstanceOf(BltError);
      expect(e.code, String(value)).toBe('INVALID_ARGUMENT');
      expect(e.message).toContain('hashTables');
      expect(source.reads).toEqual([]);
    }
  });

  it('a missing, mis-shaped or integer hash table is BltError INVALID_CHECKPOINT naming it', () => {
    const missing = edited(bytes, (t) => t.delete(HASH_NAMES[3]!));
    const e1 = errorOf(() => ByteLatentTransformer.fromSafetensors(missing, SMALL_ARGS, { hashTables: 'source' }));
    expect(e1).toBeInstanceOf(BltError);
    expect(e1.code).toBe('INVALID_CHECKPOINT');
    expect(e1.message).toContain(`missing "${HASH_NAMES[3]}"`);
    // The same file fails with 'tensors' too.
    expect(errorOf(() => ByteLatentTransformer.fromSafetensors(missing, SMALL_ARGS)).code).toBe('INVALID_CHECKPOINT');

    const shape = edited(bytes, (t) => t.set(HASH_NAMES[1]!, { dtype: 'F32', shape: [96, 16], data: new Float32Array(96 * 16) }));
    const e2 = errorOf(() => ByteLatentTransformer.fromSafetensors(shape, SMALL_ARGS, { hashTables: 'source' }));
    expect(e2.code).toBe('INVALID_CHECKPOINT');
    expect(e2.message).toContain(`"${HASH_NAMES[1]}" has shape [96, 16], expected [97, 16]`);

    const ints = edited(bytes, (t) => t.set(HASH_NAMES[0]!, { dtype: 'I32', shape: [97, 16], data: new Int32Array(97 * 16) }));
    const e3 = errorOf(() => ByteLatentTransformer.fromSafetensors(ints, SMALL_ARGS, { hashTables: 'source' }));
    expect(e3.code).toBe('INVALID_CHECKPOINT');
    expect(e3.message).toContain('dtype I32');
  });

  it('other weights are still checked (missing, unexpected), every tensor read once', () => {
    const missing = edited(bytes, (t) => t.delete('local_decoder.output.weight'));
    const e = errorOf(() => ByteLatentTransformer.fromSafetensors(missing, SMALL_ARGS, { hashTables: 'source' }));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('local_decoder.output.weight');
    const extra = edited(bytes, (t) =>
      t.set('encoder_hash_tok_embedding.6.weight', { dtype: 'F32', shape: [97, 16], data: new Float32Array(97 * 16) }),
    );
    const e2 = errorOf(() => ByteLatentTransformer.fromSafetensors(extra, SMALL_ARGS, { hashTables: 'source' }));
    expect(e2.code).toBe('INVALID_CHECKPOINT');
    expect(e2.message).toContain('encoder_hash_tok_embedding.6.weight');
    // Loading reads no hash table row (they are read when used).
    const source = spySource(parseSafetensors(bytes));
    const model = ByteLatentTransformer.fromSafetensors(source, SMALL_ARGS, { hashTables: 'source' });
    expect(source.reads.filter((n) => n.startsWith('encoder_hash_tok_embedding'))).toEqual([]);
    expect(new Set(source.reads).size).toBe(source.reads.length);
    model.dispose();
  });

  it('a bad hash table and other bad weights are reported at once, as with tensors ("every problem")', () => {
    // fromSafetensors: "Every missing, unexpected or mis-shaped key is reported at once".
    const bad = edited(bytes, (t) => {
      t.set(HASH_NAMES[1]!, { dtype: 'F32', shape: [96, 16], data: new Float32Array(96 * 16) });
      t.delete('local_decoder.output.weight');
    });
    const withTensors = errorOf(() => ByteLatentTransformer.fromSafetensors(bad, SMALL_ARGS));
    expect(withTensors.message).toContain(HASH_NAMES[1]!);
    expect(withTensors.message).toContain('local_decoder.output.weight');
    const withSource = errorOf(() => ByteLatentTransformer.fromSafetensors(bad, SMALL_ARGS, { hashTables: 'source' }));
    expect(withSource.code).toBe('INVALID_CHECKPOINT');
    expect(withSource.message).toContain(HASH_NAMES[1]!);
    expect(withSource.message).toContain('local_decoder.output.weight');
  });

  it("a failed load leaves the caller's source open, as with 'tensors'", () => {
    // No model was returned, so nothing took the source over.
    const missing = edited(bytes, (t) => t.delete('local_decoder.output.weight'));
    for (const hashTables of ['tensors', 'source'] as const) {
      const source = spySource(missing);
      expect(() => ByteLatentTransformer.fromSafetensors(source, SMALL_ARGS, { hashTables })).toThrow(BltError);
      expect(source.close, hashTables).not.toHaveBeenCalled();
    }
  });

  it('BF16 weights: the host tables read bf16 rows, and give the logits of the widened tensors', async () => {
    const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 4), { mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
    try {
      const files = await exportPretrained(original, patcher, { layout: 'hub', dtype: 'BF16' });
      const a = await loadPretrained(modelFolderFromFiles(files), { patcher: false });
      const b = await loadPretrained(modelFolderFromFiles(files), { patcher: false, hashTables: 'tensors' });
      try {
        expect(a.model.localEncoder.hostHashTables?.every((t) => t.dtype === 'BF16')).toBe(true);
        expect(maxAbsDiff(logitsOf(a.model), logitsOf(b.model))).toBeLessThanOrEqual(1e-5);
      } finally {
        a.dispose();
        b.dispose();
      }
    } finally {
      patcher.dispose();
    }
  });
});

describe("loadPretrained: hashTables 'source' (default) against 'tensors'", () => {
  let blt: ByteLatentTransformer;
  let patcher: EntropyPatcher;
  beforeAll(() => {
    blt = new ByteLatentTransformer(SMALL_ARGS, 3);
    patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 4), { mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
  });
  afterAll(() => {
    blt.dispose();
    patcher.dispose();
  });

  for (const layout of ['hub', 'transformers'] as const) {
    it(`${layout}: the same logits; the default keeps the tables in the file`, async () => {
      const files = await exportPretrained(blt, patcher, { layout });
      const byDefault = await loadPretrained(modelFolderFromFiles(files, 'm'));
      const asTensors = await loadPretrained(modelFolderFromFiles(files, 'm'), { hashTables: 'tensors' });
      try {
        expect(byDefault.model.localEncoder.hostHashTables).toHaveLength(TABLES);
        expect(asTensors.model.localEncoder.hostHashTables).toBeUndefined();
        expect(byDefault.model.registry.list().some((p) => p.name.startsWith('encoder_hash_tok_embedding'))).toBe(false);
        const a = logitsOf(byDefault.model);
        const b = logitsOf(asTensors.model);
        expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(b, logitsOf(blt))).toBe(0);
        expect(byDefault.model.parameterCount()).toBe(asTensors.model.parameterCount());
        // The patcher is the same either way.
        const e1 = (await byDefault.patcher!.model.entropies([Int32Array.from(ROWS[0]!)]))[0]!;
        const e2 = (await asTensors.patcher!.model.entropies([Int32Array.from(ROWS[0]!)]))[0]!;
        expect(Array.from(e1)).toEqual(Array.from(e2));
      } finally {
        byDefault.dispose();
        asTensors.dispose();
      }
    });
  }

  for (const layout of ['hub', 'transformers'] as const) {
    it(`${layout}: the model runs after loading when closed files refuse reads (the patcher shares the transformers file)`, async () => {
      const files = await exportPretrained(blt, patcher, { layout });
      const folder = strictFolder(modelFolderFromFiles(files, 'm'));
      const loaded = await loadPretrained(folder);
      try {
        expect(loaded.patcher).toBeDefined();
        // The weights file must stay readable while the model reads its hash rows from it.
        const a = logitsOf(loaded.model);
        expect(maxAbsDiff(a, logitsOf(blt))).toBeLessThanOrEqual(1e-5);
      } finally {
        loaded.dispose();
      }
      // Every file opened is closed once the model is disposed.
      expect(folder.counts.closed).toBe(folder.counts.opened);
    });
  }

  it("with hashTables 'tensors' every file is closed when loadPretrained returns", async () => {
    for (const layout of ['hub', 'transformers'] as const) {
      const folder = strictFolder(modelFolderFromFiles(await exportPretrained(blt, patcher, { layout }), 'm'));
      const loaded = await loadPretrained(folder, { hashTables: 'tensors' });
      expect(folder.counts.opened).toBeGreaterThan(0);
      expect(folder.counts.closed, layout).toBe(folder.counts.opened);
      expect(maxAbsDiff(logitsOf(loaded.model), logitsOf(blt))).toBe(0);
      loaded.dispose();
    }
  });

  it('patcher: false: the default keeps the weights open until dispose()', async () => {
    for (const layout of ['hub', 'transformers'] as const) {
      const folder = strictFolder(modelFolderFromFiles(await exportPretrained(blt, patcher, { layout }), 'm'));
      const loaded = await loadPretrained(folder, { patcher: false });
      expect(folder.counts.closed, layout).toBe(folder.counts.opened - 1);
      expect(maxAbsDiff(logitsOf(loaded.model), logitsOf(blt))).toBeLessThanOrEqual(1e-5);
      loaded.dispose();
      expect(folder.counts.closed, layout).toBe(folder.counts.opened);
    }
  });

  it('an invalid hashTables option is a BltError INVALID_ARGUMENT', async () => {
    const files = await exportPretrained(blt, patcher, { layout: 'hub' });
    await expect(loadPretrained(modelFolderFromFiles(files), { hashTables: 'disk' as unknown as 'source' })).rejects.toMatchObject({
      name: 'BltError',
      code: 'INVALID_ARGUMENT',
    });
  });

  /** Open descriptors of this process on `path` (Linux: /proc/self/fd). */
  const openOn = (path: string) =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    }).length;

  it.skipIf(!existsSync('/proc/self/fd'))(
    'from disk: the default keeps model.safetensors open until dispose(); tensors close it at once',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'blt-host-tables-'));
      try {
        for (const layout of ['hub', 'transformers'] as const) {
          const sub = join(dir, layout);
          await savePretrained(blt, patcher, sub, { layout, dtype: 'F32' });
          const weights = join(sub, 'model.safetensors');
          expect(openOn(weights)).toBe(0);
          const byDefault = await loadPretrained(sub);
          const asTensors = await loadPretrained(sub, { hashTables: 'tensors' });
          // The host tables read from the file: it must still be open (transformers: the patcher is
          // read from the same file).
          expect(maxAbsDiff(logitsOf(byDefault.model), logitsOf(asTensors.model))).toBeLessThanOrEqual(1e-5);
          expect(openOn(weights), `${layout}: open while the model lives, closed by the tensors load`).toBe(1);
          byDefault.dispose();
          expect(openOn(weights), `${layout}: closed by dispose()`).toBe(0);
          asTensors.dispose();
          expect(openOn(weights)).toBe(0);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!existsSync('/proc/self/fd'))('from disk: a load that fails after the model is built closes the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blt-host-tables-'));
    try {
      await savePretrained(blt, patcher, dir, { layout: 'hub', dtype: 'F32' });
      const weights = join(dir, 'model.safetensors');
      // An entropy model folder that does not exist: the BLT loads, then the patcher fails.
      await expect(loadPretrained(dir, { patcher: join(dir, 'no-such-folder') })).rejects.toBeInstanceOf(BltError);
      expect(openOn(weights)).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
