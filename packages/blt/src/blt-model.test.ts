import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseSafetensors } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer } from './blt-model.js';
import { BltError } from './index.js';
import { GOLDEN, GOLDEN_WEIGHTS, SMALL_ARGS } from './test-fixtures.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

/** A small model in the released layout, with a short window and two hash functions. */

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    return e as BltError;
  }
  throw new Error('expected an error');
}

async function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): Promise<number> {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.skipIf(!existsSync(GOLDEN_WEIGHTS))('ByteLatentTransformer on the golden tiny model', () => {
  const config = existsSync(GOLDEN) ? JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8')) : {};
  const index = existsSync(GOLDEN) ? JSON.parse(readFileSync(join(GOLDEN, 'index.json'), 'utf8')) : { cases: [] };

  it('loads the reference checkpoint by name and reproduces logits, token losses and loss of every case', async () => {
    const model = ByteLatentTransformer.fromSafetensors(parseSafetensors(readFileSync(GOLDEN_WEIGHTS)), config.blt_args as BltArgs);
    expect(model.registry.list().length).toBe(parseSafetensors(readFileSync(GOLDEN_WEIGHTS)).names().length);
    for (const ref of index.cases as Array<{ name: string }>) {
      const c = parseSafetensors(readFileSync(join(GOLDEN, 'cases', `${ref.name}.safetensors`)));
      const tokens = c.toInt32('tokens');
      const lengths = c.toInt32('patch_lengths');
      const targets = c.toInt32('targets');
      const logits = model.forward([tokens], [lengths]);
      expect(await maxDiff(await logits.data(), c.toFloat32('logits'))).toBeLessThan(1e-4);
      const losses = model.tokenLosses([tokens], [lengths], [targets]);
      expect(await maxDiff(await losses.data(), c.toFloat32('token_losses'))).toBeLessThan(1e-4);
      const loss = model.loss([tokens], [lengths], [targets]);
      expect(Math.abs((await loss.data())[0]! - c.toFloat32('loss')[0]!)).toBeLessThan(1e-4);
      tf.dispose([logits, losses, loss]);
    }
    model.dispose();
  });

  it('reports a checkpoint that does not fit, listing every problem', () => {
    const file = parseSafetensors(readFileSync(GOLDEN_WEIGHTS));
    const e = errorOf(() =>
      ByteLatentTransformer.fromSafetensors(file, { ...config.blt_args, n_layers_global: 3, encoder_hash_byte_group_vocab: 999 }),
    );
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('missing "global_transformer.layers.2.attention.wq.weight"');
    expect(e.message).toContain('"encoder_hash_tok_embedding.0.weight" has shape [1000, 32], expected [999, 32]');
  });
});

describe('ByteLatentTransformer', () => {
  const rows = [
    [1, 20, 21, 2, 1, 22, 23, 24, 25, 26, 27],
    [1, 30, 31, 32, 33],
    [1, 40, 41, 42, 2, 43, 44],
  ];
  // Zero-length patches in the middle of a row are allowed (empty patch → 0 embedding).
  const lengths = [
    [1, 3, 0, 4, 2, 2],
    [1, 2, 3],
    [1, 1, 1, 1, 1, 1, 1, 1],
  ];
  const targets = rows.map((r) => [...r.slice(1), 5]);

  it('gives, for a padded batch, what each row gives alone (logits, losses, global states)', async () => {
    const model = new ByteLatentTransformer(SMALL_ARGS, 11);
    const batchTaps = new Map<string, tf.Tensor>();
    const logits = model.forward(rows, lengths, (p, v) => {
      if (p === 'global.output') batchTaps.set(p, tf.keep(tf.clone(v)));
    });
    const n = Math.max(...rows.map((r) => r.length));
    const numPatches = Math.max(...lengths.map((l) => l.length));
    expect(logits.shape).toEqual([3, n, 260]);
    const batchData = await logits.data();
    const batchGlobal = await batchTaps.get('global.output')!.data();
    const batchLosses = await model.tokenLosses(rows, lengths, targets).data();
    let sum = 0;
    let count = 0;
    for (let b = 0; b < rows.length; b++) {
      const len = rows[b]!.length;
      let single: tf.Tensor | undefined;
      const alone = model.forward([rows[b]!], [lengths[b]!], (p, v) => {
        if (p === 'global.output') single = tf.keep(tf.clone(v));
      });
      const aloneData = await alone.data();
      expect(await maxDiff(batchData.subarray(b * n * 260, (b * n + len) * 260), aloneData)).toBeLessThan(1e-5);
      const p = lengths[b]!.length;
      const d = 48;
      expect(await maxDiff(batchGlobal.subarray(b * numPatches * d, (b * numPatches + p) * d), await single!.data())).toBeLessThan(1e-5);
      const losses = await model.tokenLosses([rows[b]!], [lengths[b]!], [targets[b]!]).data();
      expect(await maxDiff(batchLosses.subarray(b * n, b * n + len), losses)).toBeLessThan(1e-5);
      expect(Array.from(batchLosses.subarray(b * n + len, (b + 1) * n)).every((v) => v === 0)).toBe(true);
      sum += Array.from(losses).reduce((s, v) => s + v, 0);
      count += len;
      tf.dispose([alone, single!]);
    }
    const loss = (await model.loss(rows, lengths, targets).data())[0]!;
    expect(Math.abs(loss - sum / count)).toBeLessThan(1e-5);
    // A mask drops positions from the mean.
    const masked = (await model.loss([rows[1]!], [lengths[1]!], [targets[1]!], [[1, 1, 0, 0, 0]]).data())[0]!;
    const first = await model.tokenLosses([rows[1]!], [lengths[1]!], [targets[1]!]).data();
    expect(Math.abs(masked - (first[0]! + first[1]!) / 2)).toBeLessThan(1e-5);
    tf.dispose([logits, ...batchTaps.values()]);
    model.dispose();
  });

  it('saves and reloads its weights with reference names, bit for bit', async () => {
    const model = new ByteLatentTransformer(SMALL_ARGS, 3);
    const file = parseSafetensors(await model.toSafetensors());
    expect(file.names()).toContain('encoder_hash_tok_embedding.5.weight');
    expect(file.names()).toContain('local_encoder.cross_attn_layers.1.wq.weight');
    expect(JSON.parse(file.metadata[BLT_ARGS_METADATA_KEY]!)).toEqual(SMALL_ARGS);
    const copy = ByteLatentTransformer.fromSafetensors(file, SMALL_ARGS);
    const a = await model.forward([rows[0]!], [lengths[0]!]).data();
    const b = await copy.forward([rows[0]!], [lengths[0]!]).data();
    expect(Array.from(b)).toEqual(Array.from(a));
    model.dispose();
    copy.dispose();
  });

  it('creates a token_embedding_projection in the global transformer when k·d_E differs from dim_global', () => {
    const model = new ByteLatentTransformer({ ...SMALL_ARGS, dim_global: 40 });
    expect(model.registry.get('global_transformer.token_embedding_projection.weight').referenceShape).toEqual([40, 32]);
    const logits = model.forward([rows[1]!], [lengths[1]!]);
    expect(logits.shape).toEqual([1, 5, 260]);
    logits.dispose();
    model.dispose();
  });

  it('rejects invalid or unsupported arguments with CONFIG_MISMATCH', () => {
    for (const bad of [
      { cross_attn_encoder: false },
      { downsampling_by_pooling: 'avg' },
      { dim_local_decoder: 24 },
      { max_encoder_seq_length: null },
      { attn_bias_type: 'local_block_causal' },
      { init_std_factor: 'nope' },
      { vocab_size: undefined },
    ]) {
      expect(errorOf(() => new ByteLatentTransformer({ ...SMALL_ARGS, ...bad })).code).toBe('CONFIG_MISMATCH');
    }
  });

  it('rejects bad batches with INVALID_ARGUMENT', () => {
    const model = new ByteLatentTransformer(SMALL_ARGS);
    const cases: Array<[number[][], number[][]]> = [
      [[], []],
      [[[1, 2]], []],
      [[[]], [[1]]],
      [[[1, 300]], [[1, 2]]],
      [[[1, 5, 6]], [[2, 2]]],
      [[[1, 5, 6]], [[1, 1]]],
      [[[1, 5, 6]], [[1, -1, 4]]],
      [[new Array(65).fill(5)], [[1, 65]]],
    ];
    for (const [t, l] of cases) expect(errorOf(() => model.forward(t, l)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => model.tokenLosses([[1, 5]], [[1, 2]], [[5]])).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => model.loss([[1, 5]], [[1, 2]], [[5, 6]], [[0, 0]])).code).toBe('INVALID_ARGUMENT');
    model.dispose();
  });
});
