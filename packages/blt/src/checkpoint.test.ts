import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseSafetensors } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { GOLDEN, GOLDEN_WEIGHTS, SMALL_ARGS } from './test-fixtures.js';
import { BLT_CHECKPOINT_FORMAT, fromBltArtifacts, loadBlt, saveBlt, toBltArtifacts } from './checkpoint.js';
import { BltError } from './index.js';

/** The small model of blt-model.test.ts. */

const ROW = [1, 20, 21, 2, 1, 22, 23, 24, 25, 26, 27];
const LENGTHS = [1, 3, 0, 4, 2, 2];

let tmp = '';
let model: ByteLatentTransformer;
let expected: Float32Array;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'blt-checkpoint-'));
  model = new ByteLatentTransformer(SMALL_ARGS, 7);
  expected = await logitsOf(model);
});

afterAll(async () => {
  model?.dispose();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function logitsOf(
  m: ByteLatentTransformer,
  row: ArrayLike<number> = ROW,
  lengths: ArrayLike<number> = LENGTHS,
): Promise<Float32Array> {
  const t = m.forward([row], [lengths]);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

/** Bitwise equality of two float32 arrays (NaN-safe, distinguishes −0). */
function expectBitIdentical(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
}

async function rejection(p: Promise<unknown>): Promise<BltError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BltError);
    return e as BltError;
  }
  throw new Error('expected a rejection');
}

function memoryHandler(): tf.io.IOHandler & { stored?: tf.io.ModelArtifacts } {
  const h: tf.io.IOHandler & { stored?: tf.io.ModelArtifacts } = {
    save: async (artifacts) => {
      h.stored = artifacts;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    load: async () => h.stored!,
  };
  return h;
}

/** Fresh artifacts of the shared model, the weight data as one ArrayBuffer. */
async function artifacts(): Promise<
  Omit<tf.io.ModelArtifacts, 'weightSpecs' | 'weightData'> & { weightSpecs: tf.io.WeightsManifestEntry[]; weightData: ArrayBuffer }
> {
  const a = await toBltArtifacts(model);
  return { ...a, weightSpecs: a.weightSpecs!, weightData: tf.io.CompositeArrayBuffer.join(a.weightData!) };
}

let dirCounter = 0;
async function savedDir(): Promise<string> {
  const dir = join(tmp, `ckpt-${dirCounter++}`, 'nested');
  await saveBlt(model, dir);
  return dir;
}

describe('saveBlt / loadBlt (Node directory)', () => {
  it('writes model.json and weights.bin into a new directory and loads back bit for bit', async () => {
    const dir = join(tmp, 'new', 'deeper');
    const result = await saveBlt(model, dir);
    expect(result.modelArtifactsInfo.weightDataBytes).toBe(model.parameterCount() * 4);
    expect((await readdir(dir)).sort()).toEqual(['model.json', 'weights.bin']);

    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    expect(json.format).toBe(BLT_CHECKPOINT_FORMAT);
    expect(json.generatedBy).toBe('@bytelatent/blt');
    expect(json.modelTopology).toEqual({ format: 'bytelatent-blt', version: 1, blt_args: SMALL_ARGS });
    expect(json.weightsManifest).toHaveLength(1);
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    const specs = json.weightsManifest[0].weights as tf.io.WeightsManifestEntry[];
    expect(specs.map((s) => s.name)).toEqual(model.registry.list().map((p) => p.name));
    expect(specs.every((s) => s.dtype === 'float32')).toBe(true);
    // Reference layout: Linear weights [out, in].
    const wq = specs.find((s) => s.name === 'global_transformer.layers.0.feed_forward.w1.weight')!;
    expect(wq.shape).toEqual(model.registry.get('global_transformer.layers.0.feed_forward.w1.weight').referenceShape);
    expect(wq.shape[1]).toBe(48);
    expect((await readFile(join(dir, 'weights.bin'))).byteLength).toBe(model.parameterCount() * 4);

    const copy = await loadBlt(dir);
    expect(copy.referenceArgs).toEqual(SMALL_ARGS);
    expectBitIdentical(await logitsOf(copy), expected);
    copy.dispose();
  });

  it('overwrites an existing checkpoint and leaves no temporary files; file:// URLs work too', async () => {
    const dir = join(tmp, 'overwrite');
    await saveBlt(model, dir);
    const other = new ByteLatentTransformer(SMALL_ARGS, 99);
    await saveBlt(other, pathToFileURL(dir).href);
    expect((await readdir(dir)).sort()).toEqual(['model.json', 'weights.bin']);
    const copy = await loadBlt(pathToFileURL(dir).href);
    expectBitIdentical(await logitsOf(copy), await logitsOf(other));
    copy.dispose();
    other.dispose();
  });

  it("loads over HTTP (tf.io.http, also where a bundler dropped tfjs's router registration); a 404 is INVALID_CHECKPOINT", async () => {
    const dir = join(tmp, 'http');
    await saveBlt(model, dir);
    const server = createServer((req, res) => {
      readFile(join(dir, (req.url ?? '/').replace(/^\/ckpt\//, ''))).then(
        (body) => res.writeHead(200).end(body),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ckpt/`;
      const copy = await loadBlt(`${base}model.json`);
      expectBitIdentical(await logitsOf(copy), expected);
      copy.dispose();
      const e = await rejection(loadBlt(`${base}missing/model.json`));
      expect(e.code).toBe('INVALID_CHECKPOINT');
      expect(e.message).toMatch(/missing\/model\.json/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('turns a plain error of an IOHandler into INVALID_CHECKPOINT', async () => {
    const e = await rejection(loadBlt({ load: async () => Promise.reject(new Error('Cannot find model with path x')) }));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/IOHandler: Cannot find model with path x/);
  });

  it('writes model.json only after weights.bin: a failed weights write leaves no model.json and no temporary file', async () => {
    const dir = join(tmp, 'blocked');
    await mkdir(join(dir, 'weights.bin'), { recursive: true });
    await expect(saveBlt(model, dir)).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['weights.bin']);
  });

  it('reports a missing model.json, missing weights, a truncated weights.bin and bad JSON as INVALID_CHECKPOINT', async () => {
    const empty = join(tmp, 'empty');
    let e = await rejection(loadBlt(empty));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('model.json');
    expect(e.message).toContain('missing');

    const noWeights = await savedDir();
    await unlink(join(noWeights, 'weights.bin'));
    e = await rejection(loadBlt(noWeights));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('weights.bin');

    const truncated = await savedDir();
    const size = model.parameterCount() * 4;
    await truncate(join(truncated, 'weights.bin'), size - 10);
    e = await rejection(loadBlt(truncated));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain(`the weight data has ${size - 10} bytes but the weight specs describe ${size}`);

    const badJson = await savedDir();
    await writeFile(join(badJson, 'model.json'), '{"modelTopology": ');
    e = await rejection(loadBlt(badJson));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('not valid JSON');

    const escape = await savedDir();
    const json = JSON.parse(await readFile(join(escape, 'model.json'), 'utf8'));
    json.weightsManifest[0].paths = ['../../weights.bin'];
    await writeFile(join(escape, 'model.json'), JSON.stringify(json));
    e = await rejection(loadBlt(escape));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('leaves the checkpoint directory');
  });

  it('reports blt_args that do not match the weights, listing every problem', async () => {
    const dir = await savedDir();
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    json.modelTopology.blt_args = { ...SMALL_ARGS, n_layers_global: 3, encoder_hash_byte_group_vocab: 98 };
    await writeFile(join(dir, 'model.json'), JSON.stringify(json));
    const e = await rejection(loadBlt(dir));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('missing "global_transformer.layers.2.attention.wq.weight"');
    expect(e.message).toContain('"encoder_hash_tok_embedding.0.weight" has shape [97, 16], expected [98, 16]');

    json.modelTopology.blt_args = { ...SMALL_ARGS, downsampling_by_pooling: 'avg' };
    await writeFile(join(dir, 'model.json'), JSON.stringify(json));
    expect((await rejection(loadBlt(dir))).code).toBe('CONFIG_MISMATCH');
  });

  it('rejects destinations no handler takes', async () => {
    expect((await rejection(saveBlt(model, 'nosuchscheme://x'))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(loadBlt('nosuchscheme://x'))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(loadBlt(''))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(saveBlt(model, { load: async () => ({}) }))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('saveBlt / loadBlt (IOHandler)', () => {
  it('round-trips through a custom in-memory handler bit for bit', async () => {
    const handler = memoryHandler();
    await saveBlt(model, handler);
    expect(handler.stored?.modelTopology).toEqual({ format: 'bytelatent-blt', version: 1, blt_args: SMALL_ARGS });
    const copy = await loadBlt(handler);
    expectBitIdentical(await logitsOf(copy), expected);
    copy.dispose();
  });

  it('round-trips through tf.io.fromMemory and split weight buffers', async () => {
    const a = await artifacts();
    const half = Math.floor(a.weightData.byteLength / 8) * 4;
    const copy = await loadBlt(tf.io.fromMemory({ ...a, weightData: [a.weightData.slice(0, half), a.weightData.slice(half)] }));
    expectBitIdentical(await logitsOf(copy), expected);
    copy.dispose();
  });

  it('rejects a wrong format, a wrong version and missing weights', () => {
    const base = { weightSpecs: [], weightData: new ArrayBuffer(0) };
    for (const [topology, text] of [
      [{ format: 'layers-model', version: 1, blt_args: SMALL_ARGS }, 'not a BLT checkpoint'],
      [{ version: 1, blt_args: SMALL_ARGS }, 'not a BLT checkpoint'],
      [{ format: 'bytelatent-blt', version: 2, blt_args: SMALL_ARGS }, 'unsupported BLT checkpoint version 2'],
      [{ format: 'bytelatent-blt', version: 1 }, 'blt_args'],
      [new ArrayBuffer(4), 'not a BLT checkpoint'],
    ] as const) {
      const e = errorOf(() => fromBltArtifacts({ ...base, modelTopology: topology as never }));
      expect(e.code).toBe('INVALID_CHECKPOINT');
      expect(e.message).toContain(text);
    }
    const topology = { format: 'bytelatent-blt', version: 1, blt_args: SMALL_ARGS };
    expect(errorOf(() => fromBltArtifacts({ modelTopology: topology })).message).toContain('no weight specs');
    expect(errorOf(() => fromBltArtifacts({ modelTopology: topology, weightSpecs: [] })).message).toContain('no weight data');
  });

  it('reports weight specs that do not match the data, and lists every bad weight at once', async () => {
    const a = await artifacts();
    // One spec fewer: the data is longer than the specs describe.
    let e = errorOf(() => fromBltArtifacts({ ...a, weightSpecs: a.weightSpecs.slice(1) }));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/the weight data has \d+ bytes but the weight specs describe \d+/);
    // Truncated data.
    e = errorOf(() => fromBltArtifacts({ ...a, weightData: a.weightData.slice(0, a.weightData.byteLength - 4) }));
    expect(e.message).toContain('bytes but the weight specs describe');

    // Same byte count, several problems: transposed shape, renamed key, NaN value, int32 dtype.
    const specs = a.weightSpecs.map((s) => ({ ...s, shape: [...s.shape] }));
    const data = new Float32Array(a.weightData.slice(0));
    const w1 = specs.findIndex((s) => s.name === 'global_transformer.layers.0.feed_forward.w1.weight');
    specs[w1]!.shape.reverse();
    const renamed = specs.findIndex((s) => s.name === 'local_decoder.norm.weight');
    specs[renamed]!.name = 'local_decoder.norm.bogus';
    const nanAt = specs.findIndex((s) => s.name === 'local_encoder.tok_embeddings.weight');
    let offset = 0;
    for (let i = 0; i < nanAt; i++) offset += specs[i]!.shape.reduce((x, y) => x * y, 1);
    data[offset + 3] = Number.NaN;
    const intAt = specs.findIndex((s) => s.name === 'global_transformer.layers.0.ffn_norm.weight');
    specs[intAt]!.dtype = 'int32';
    e = errorOf(() => fromBltArtifacts({ ...a, weightSpecs: specs, weightData: data.buffer }));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('"global_transformer.layers.0.feed_forward.w1.weight" has shape');
    expect(e.message).toContain('missing "local_decoder.norm.weight"');
    expect(e.message).toContain('unexpected "local_decoder.norm.bogus"');
    expect(e.message).toContain('"local_encoder.tok_embeddings.weight" holds a non-finite value (NaN) at flat index 3');
    expect(e.message).toContain('"global_transformer.layers.0.ffn_norm.weight" has dtype I32');

    // Duplicate and unreadable specs.
    e = errorOf(() =>
      fromBltArtifacts({ ...a, weightSpecs: [...a.weightSpecs, a.weightSpecs[0]!, { name: 's', shape: [1], dtype: 'string' }] }),
    );
    expect(e.message).toContain(`"${a.weightSpecs[0]!.name}" is listed twice`);
    expect(e.message).toContain('unsupported dtype "string"');
  });

  it('reads float16-quantized weights', async () => {
    const a = await artifacts();
    const f32 = new Float32Array(a.weightData);
    const f16 = new Uint16Array(f32.length);
    const { float32ToFloat16Bits } = await import('@bytelatent/nn');
    for (let i = 0; i < f32.length; i++) f16[i] = float32ToFloat16Bits(f32[i]!);
    const copy = fromBltArtifacts({
      ...a,
      weightSpecs: a.weightSpecs.map((s) => ({ ...s, quantization: { dtype: 'float16' as const } })),
      weightData: f16.buffer,
    });
    const logits = await logitsOf(copy);
    let diff = 0;
    for (let i = 0; i < logits.length; i++) diff = Math.max(diff, Math.abs(logits[i]! - expected[i]!));
    expect(diff).toBeLessThan(5e-2);
    copy.dispose();
  });
});

describe.skipIf(!existsSync(GOLDEN_WEIGHTS))('BLT checkpoint of the golden tiny model', () => {
  it('converts the reference safetensors to our format and back with identical logits', async () => {
    const config = JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
    const reference = ByteLatentTransformer.fromSafetensors(parseSafetensors(readFileSync(GOLDEN_WEIGHTS)), config.blt_args as BltArgs);
    const c = parseSafetensors(readFileSync(join(GOLDEN, 'cases', 'ascii.safetensors')));
    const tokens = c.toInt32('tokens');
    const lengths = c.toInt32('patch_lengths');
    const before = await logitsOf(reference, tokens, lengths);
    const dir = join(tmp, 'golden');
    await saveBlt(reference, dir);
    reference.dispose();
    expect((await readdir(dir)).sort()).toEqual(['model.json', 'weights.bin']);
    const copy = await loadBlt(dir);
    expect(copy.referenceArgs).toEqual(config.blt_args);
    expectBitIdentical(await logitsOf(copy, tokens, lengths), before);
    copy.dispose();
  });
});

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(BltError);
    return e as BltError;
  }
  throw new Error('expected an error');
}
