import * as tf from '@tensorflow/tfjs-core';
import {
  HostEmbedding,
  ParameterRegistry,
  ParameterScope,
  type SafetensorsTensor,
  type TensorSource,
  bfloat16BitsToFloat32,
  float32ToBfloat16Bits,
  initBackend,
  parseSafetensors,
  referenceStateDict,
  seededUniform,
  serializeSafetensors,
} from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEncoder, type LocalEncoderConfig } from './local-encoder.js';
import { BltError, localSelfAttentionMask } from '@bytelatent/nn';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

const CONFIG: LocalEncoderConfig = {
  dim: 16,
  nLayers: 2,
  nHeads: 2,
  ropeTheta: 500000,
  maxSeqLen: 64,
  vocabSize: 260,
  crossAttnK: 2,
  crossAttnNHeads: 2,
  crossAttnAllLayers: false,
  hash: { groupSizes: [3, 4], numFunctions: 2, vocabSize: 50 },
  initStdFactor: 'current_depth',
};
const TABLES = 4;

const SCOPES = (registry: ParameterRegistry) => {
  const root = new ParameterScope(registry);
  return { encoder: root.child('local_encoder'), hashEmbeddings: root.child('encoder_hash_tok_embedding') };
};

/** An encoder whose hash tables are trainable tensors (seed 1). */
function tensorEncoder(config: LocalEncoderConfig = CONFIG): { encoder: LocalEncoder; registry: ParameterRegistry } {
  const registry = new ParameterRegistry();
  return { encoder: new LocalEncoder(SCOPES(registry), config, seededUniform(1)), registry };
}

/** An encoder with host hash tables (seed 1: every other weight equals the tensor encoder's). */
function hostEncoder(
  hashTables: readonly HostEmbedding[],
  config: LocalEncoderConfig = CONFIG,
): { encoder: LocalEncoder; registry: ParameterRegistry } {
  const registry = new ParameterRegistry();
  return { encoder: new LocalEncoder(SCOPES(registry), config, seededUniform(1), { hashTables }), registry };
}

/** The hash tables of a tensor encoder as safetensors (F32, or rounded to BF16), parsed back. */
async function tablesSource(registry: ParameterRegistry, dtype: 'F32' | 'BF16' = 'F32'): Promise<TensorSource> {
  const dict = await referenceStateDict(registry);
  const tables: Record<string, SafetensorsTensor> = {};
  for (const [name, t] of dict) {
    if (!name.startsWith('encoder_hash_tok_embedding.')) continue;
    tables[name] =
      dtype === 'F32'
        ? t
        : { dtype: 'BF16', shape: t.shape, data: Uint16Array.from(t.data as Float32Array, (v) => float32ToBfloat16Bits(v)) };
  }
  return parseSafetensors(serializeSafetensors(tables), { description: 'tables.safetensors' });
}

function hostTables(source: TensorSource, count = TABLES, shape: [number, number] = [50, 16]): HostEmbedding[] {
  return Array.from({ length: count }, (_, t) => HostEmbedding.fromSource(source, `encoder_hash_tok_embedding.${t}.weight`, shape));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    return e as BltError;
  }
  throw new Error('expected an error');
}

const TOKENS = Int32Array.from([1, 76, 105, 2, 1, 120, 121, 3, 250, 259, 0, 17, 17, 17]);

describe('LocalEncoder with host hash tables', () => {
  let reference: { encoder: LocalEncoder; registry: ParameterRegistry };
  let host: { encoder: LocalEncoder; registry: ParameterRegistry };
  let source: TensorSource;

  beforeAll(async () => {
    reference = tensorEncoder();
    source = await tablesSource(reference.registry);
    host = hostEncoder(hostTables(source));
  });
  afterAll(() => {
    reference.registry.dispose();
    host.registry.dispose();
  });

  it('creates no hash weights: hashEmbeddings is empty, the registry has no encoder_hash_tok_embedding names', () => {
    expect(host.encoder.hashEmbeddings).toEqual([]);
    expect(host.encoder.hostHashTables).toHaveLength(TABLES);
    expect(reference.encoder.hostHashTables).toBeUndefined();
    expect(reference.encoder.hashEmbeddings).toHaveLength(TABLES);
    const names = host.registry.list().map((p) => p.name);
    expect(names.some((n) => n.startsWith('encoder_hash_tok_embedding'))).toBe(false);
    // Every other weight is there, with the same values (same seed, tables initialised last).
    const refNames = reference.registry
      .list()
      .map((p) => p.name)
      .filter((n) => !n.startsWith('encoder_hash_tok_embedding'));
    expect(names).toEqual(refNames);
    expect(host.registry.count()).toBe(reference.registry.count() - TABLES * 50 * 16);
    for (const name of names) {
      expect(maxAbsDiff(host.registry.get(name).variable.dataSync(), reference.registry.get(name).variable.dataSync()), name).toBe(0);
    }
  });

  it('keeps a copy of the table list (the caller can change its array)', () => {
    const list = hostTables(source);
    const { encoder, registry } = hostEncoder(list);
    list.pop();
    expect(encoder.hostHashTables).toHaveLength(TABLES);
    registry.dispose();
  });

  for (const [batch, seqLen] of [
    [1, 14],
    [2, 7],
    [7, 2],
    [14, 1],
  ] as const) {
    it(`embed() equals the tensor tables' (${batch} × ${seqLen}), without a tap`, () => {
      const a = host.encoder.embed(TOKENS, batch, seqLen);
      const b = reference.encoder.embed(TOKENS, batch, seqLen);
      expect(a.shape).toEqual([batch, seqLen, 16]);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBeLessThanOrEqual(1e-6);
      tf.dispose([a, b]);
    });
  }

  it('embed() with a tap: the same result, and every tap (tok_embeddings, each <hash>.{t}) equals the tensor path', () => {
    const collect = (encoder: LocalEncoder) => {
      const taps = new Map<string, Float32Array>();
      const out = encoder.embed(TOKENS, 2, 7, (p, v) => taps.set(p, v.dataSync() as Float32Array));
      const values = out.dataSync() as Float32Array;
      out.dispose();
      return { values, taps };
    };
    const a = collect(host.encoder);
    const b = collect(reference.encoder);
    expect([...a.taps.keys()]).toEqual([
      'local_encoder.tok_embeddings',
      ...Array.from({ length: TABLES }, (_, t) => `encoder_hash_tok_embedding.${t}`),
    ]);
    expect([...a.taps.keys()]).toEqual([...b.taps.keys()]);
    for (const [p, v] of a.taps) expect(maxAbsDiff(v, b.taps.get(p)!), p).toBeLessThanOrEqual(1e-6);
    // Tables are added in the same order as the tensor path: the sums agree exactly.
    expect(maxAbsDiff(a.values, b.values)).toBeLessThanOrEqual(1e-6);
    // And with a tap the result equals the one without.
    const plain = host.encoder.embed(TOKENS, 2, 7);
    expect(maxAbsDiff(plain.dataSync(), a.values)).toBeLessThanOrEqual(1e-6);
    plain.dispose();
  });

  it("embedRange equals the tensor tables' for every range of a row", () => {
    const row = Array.from(TOKENS);
    for (const [from, to] of [
      [0, 1],
      [0, 14],
      [3, 4],
      [5, 9],
      [13, 14],
    ]) {
      const a = host.encoder.embedRange(row, from!, to!);
      const b = reference.encoder.embedRange(row, from!, to!);
      expect(a.shape).toEqual([1, to! - from!, 16]);
      expect(maxAbsDiff(a.dataSync(), b.dataSync()), `${from}..${to}`).toBeLessThanOrEqual(1e-6);
      tf.dispose([a, b]);
    }
  });

  it("forward on host-table embeddings equals the tensor encoder's", () => {
    const tokens = Int32Array.from([1, 76, 105, 2, 1, 120, 121]);
    const patchIds = [Int32Array.from([0, 1, 1, 1, 3, 3, 4])];
    const mask = localSelfAttentionMask([tokens], tokens.length, { window: 4 });
    const run = (encoder: LocalEncoder) => {
      const embeds = encoder.embed(tokens, 1, tokens.length);
      const { h, patchEmbeds } = encoder.forward(embeds, mask, { patchIds, numPatches: 5 });
      const out = { h: h.dataSync() as Float32Array, pe: patchEmbeds.dataSync() as Float32Array };
      tf.dispose([embeds, h, patchEmbeds]);
      return out;
    };
    const a = run(host.encoder);
    const b = run(reference.encoder);
    expect(maxAbsDiff(a.h, b.h)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(a.pe, b.pe)).toBeLessThanOrEqual(1e-5);
    if (!('kind' in mask)) tf.dispose([mask.bias, ...(mask.rowValid ? [mask.rowValid] : [])]);
  });

  it('BF16 tables give the tensor path on the bf16-rounded values', async () => {
    const bf16 = await tablesSource(reference.registry, 'BF16');
    const { encoder, registry } = hostEncoder(hostTables(bf16));
    expect(encoder.hostHashTables!.every((t) => t.dtype === 'BF16')).toBe(true);
    // The same tables rounded, as tensors.
    const rounded = tensorEncoder();
    for (let t = 0; t < TABLES; t++) {
      const v = rounded.registry.get(`encoder_hash_tok_embedding.${t}.weight`).variable;
      v.assign(
        tf.tensor(
          Float32Array.from(v.dataSync(), (x) => bfloat16BitsToFloat32(float32ToBfloat16Bits(x))),
          v.shape,
        ),
      );
    }
    for (const tap of [undefined, () => undefined]) {
      const a = encoder.embed(TOKENS, 2, 7, tap);
      const b = rounded.encoder.embed(TOKENS, 2, 7, tap);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBeLessThanOrEqual(1e-6);
      tf.dispose([a, b]);
    }
    registry.dispose();
    rounded.registry.dispose();
  });

  it('reads only the rows the tokens hash to', () => {
    const reads: number[] = [];
    const counting: TensorSource = {
      description: source.description,
      names: () => source.names(),
      has: (n) => source.has(n),
      info: (n) => source.info(n),
      readBytes: (n, b, e) => {
        reads.push(b ?? -1);
        return source.readBytes(n, b, e);
      },
    };
    const { encoder, registry } = hostEncoder(hostTables(counting));
    const out = encoder.embed(TOKENS.subarray(0, 3), 1, 3);
    // One row per table per position.
    expect(reads).toHaveLength(TABLES * 3);
    tf.dispose(out);
    registry.dispose();
  });

  it('leaks no tensor (with and without a tap), and none when a row read fails', () => {
    const once = () => {
      tf.dispose(host.encoder.embed(TOKENS, 2, 7));
      tf.dispose(host.encoder.embed(TOKENS, 2, 7, () => undefined));
      tf.dispose(host.encoder.embedRange(Array.from(TOKENS), 4, 9));
    };
    once();
    const before = tf.memory().numTensors;
    once();
    once();
    expect(tf.memory().numTensors).toBe(before);
    // A table whose rows are all NaN: the read fails inside embed, leaving no tensor behind.
    const nan = parseSafetensors(
      serializeSafetensors(
        Object.fromEntries(
          Array.from({ length: TABLES }, (_, t) => [
            `encoder_hash_tok_embedding.${t}.weight`,
            { dtype: 'F32', shape: [50, 16], data: new Float32Array(800).fill(Number.NaN) } as SafetensorsTensor,
          ]),
        ),
      ),
    );
    const broken = hostEncoder(hostTables(nan));
    const beforeBroken = tf.memory().numTensors;
    for (const tap of [undefined, () => undefined]) {
      let caught: unknown;
      try {
        broken.encoder.embed(TOKENS, 2, 7, tap);
      } catch (e) {
        caught = e;
      }
      expect(caught, 'expected a throw').toBeInstanceOf(Error);
      expect((caught as { code?: string }).code).toBe('INVALID_CHECKPOINT');
      expect((caught as Error).message).toMatch(/non-finite/);
      expect(tf.memory().numTensors).toBe(beforeBroken);
    }
    broken.registry.dispose();
  });

  it('still checks token ids and sizes (INVALID_ARGUMENT)', () => {
    expect(errorOf(() => host.encoder.embed(Int32Array.of(1, 2, 260), 1, 3)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => host.encoder.embed(Int32Array.of(1, 2, 3), 2, 2)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => host.encoder.embedRange([1, 2, 3], 2, 1)).code).toBe('INVALID_ARGUMENT');
  });
});

describe('LocalEncoder host hash tables that do not fit', () => {
  let source: TensorSource;
  let registry: ParameterRegistry;
  beforeAll(async () => {
    const built = tensorEncoder();
    registry = built.registry;
    source = await tablesSource(built.registry);
  });
  afterAll(() => registry.dispose());

  it('a wrong number of tables is CONFIG_MISMATCH', () => {
    for (const count of [0, TABLES - 1, TABLES + 1]) {
      const tables = Array.from({ length: count }, (_, i) =>
        HostEmbedding.fromSource(source, `encoder_hash_tok_embedding.${i % TABLES}.weight`),
      );
      const e = errorOf(() => hostEncoder(tables));
      expect(e).toBeInstanceOf(BltError);
      expect(e.code).toBe('CONFIG_MISMATCH');
      expect(e.message).toContain(`${count} host hash tables given, the configuration has ${TABLES}`);
    }
  });

  it('tables with the wrong rows or width are CONFIG_MISMATCH naming the table', () => {
    const other = parseSafetensors(
      serializeSafetensors({
        rows: { dtype: 'F32', shape: [49, 16], data: new Float32Array(49 * 16) },
        width: { dtype: 'F32', shape: [50, 8], data: new Float32Array(50 * 8) },
      }),
    );
    for (const [name, shape] of [
      ['rows', '[49, 16]'],
      ['width', '[50, 8]'],
    ] as const) {
      const tables = hostTables(source);
      tables[2] = HostEmbedding.fromSource(other, name);
      const e = errorOf(() => hostEncoder(tables));
      expect(e).toBeInstanceOf(BltError);
      expect(e.code).toBe('CONFIG_MISMATCH');
      expect(e.message).toContain(`host hash table 2 is ${shape}, expected [50, 16]`);
    }
  });

  it('a configuration without hash tables takes an empty list and refuses any table', () => {
    const noHash = { ...CONFIG, hash: null };
    const { encoder, registry: r } = hostEncoder([], noHash);
    expect(encoder.hashEmbeddings).toEqual([]);
    const e1 = encoder.embed(Int32Array.of(1, 2, 3), 1, 3);
    const { encoder: plain, registry: r2 } = tensorEncoder(noHash);
    const e2 = plain.embed(Int32Array.of(1, 2, 3), 1, 3);
    expect(maxAbsDiff(e1.dataSync(), e2.dataSync())).toBe(0);
    tf.dispose([e1, e2]);
    r.dispose();
    r2.dispose();
    const e = errorOf(() => hostEncoder(hostTables(source, 1), noHash));
    expect(e.code).toBe('CONFIG_MISMATCH');
  });

  it('a refused set of host tables creates no hash weight in the registry', () => {
    const reg = new ParameterRegistry();
    expect(() => new LocalEncoder(SCOPES(reg), CONFIG, seededUniform(1), { hashTables: [] })).toThrow(BltError);
    expect(reg.list().some((p) => p.name.startsWith('encoder_hash_tok_embedding'))).toBe(false);
    reg.dispose();
  });
});
