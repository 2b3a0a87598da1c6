import '@bytelatent/nn/gradients';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseSafetensors } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluateBitsPerByte } from './bits-per-byte.js';
import { BytePairTokenizer, byteTokenizer } from './bpe.js';
import { expectCode } from './test-helpers.js';
import { TOKEN_MODEL_TOKENIZER_KEY, TokenTransformer, tokenTransformerScorer, type TokenTransformerArgs } from './token-transformer.js';
import { loadModelFile } from './load-model.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ARGS: TokenTransformerArgs = { dim: 16, n_layers: 2, n_heads: 2, vocab_size: 260, max_seqlen: 32, multiple_of: 16 };

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
});

describe('TokenTransformer', () => {
  it('gives each row of a padded batch what it gives alone', async () => {
    const m = new TokenTransformer(ARGS, 1);
    const a = [1, 80, 90, 100, 2, 77];
    const b = [1, 81];
    const both = m.logits([a, b]);
    const alone = m.logits([b]);
    expect(both.shape).toEqual([2, 6, 260]);
    const x = (await both.slice([1, 0, 0], [1, 2, 260]).data()) as Float32Array;
    const y = (await alone.data()) as Float32Array;
    for (let i = 0; i < y.length; i++) expect(x[i]).toBeCloseTo(y[i]!, 5);
    tf.dispose([both, alone]);
    m.dispose();
  });

  it('splits documents after EOS (block-causal): what follows an EOS ignores what precedes it', async () => {
    const m = new TokenTransformer(ARGS, 2);
    const l1 = m.logits([[1, 50, 60, 2, 70, 71]]);
    const l2 = m.logits([[1, 99, 98, 2, 70, 71]]);
    const tail = async (t: tf.Tensor3D) => Array.from((await t.slice([0, 4, 0], [1, 2, 260]).data()) as Float32Array);
    const [t1, t2] = [await tail(l1), await tail(l2)];
    t1.forEach((v, i) => expect(v).toBeCloseTo(t2[i]!, 5));
    tf.dispose([l1, l2]);
    m.dispose();
  });

  it('trains: the summed loss has a finite gradient for every weight', () => {
    const m = new TokenTransformer(ARGS, 3);
    const vars = m.registry.list().map((p) => p.variable);
    const { value, grads } = tf.variableGrads(
      () => m.sumLoss([{ tokens: Int32Array.of(1, 40, 41), targets: Int32Array.of(40, 41, 42) }]),
      vars,
    );
    expect(Object.keys(grads).length).toBe(vars.length);
    for (const g of Object.values(grads)) expect(Number.isFinite(tf.sum(tf.abs(g)).dataSync()[0]!)).toBe(true);
    expect(value.dataSync()[0]!).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    m.dispose();
  });

  it('scores with a tokenizer without leaking tensors, and round-trips through safetensors', async () => {
    const tokenizer = BytePairTokenizer.train(['hello hello hello world world'], { merges: 5 });
    const m = new TokenTransformer({ ...ARGS, vocab_size: tokenizer.vocabSize }, 4);
    const scorer = tokenTransformerScorer(m, tokenizer);
    const text = 'hello world, hello again. '.repeat(4);
    const first = await evaluateBitsPerByte(scorer, text);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await evaluateBitsPerByte(scorer, text);
    expect(tf.memory().numTensors).toBe(before);
    expect(first.targets).toBe(tokenizer.encode(new TextEncoder().encode(text)).length);
    const dir = mkdtempSync(join(tmpdir(), 'evals-token-'));
    const path = join(dir, 'model.safetensors');
    writeFileSync(path, await m.toSafetensors({ [TOKEN_MODEL_TOKENIZER_KEY]: JSON.stringify(tokenizer.toJSON()) }));
    const back = TokenTransformer.fromSafetensors(parseSafetensors(await m.toSafetensors()));
    expect(back.parameterCount()).toBe(m.parameterCount());
    back.dispose();
    const loaded = await loadModelFile(path);
    expect(loaded.kind).toBe('token');
    expect((await evaluateBitsPerByte(loaded.model, text)).bitsPerByte).toBeCloseTo(first.bitsPerByte, 5);
    loaded.dispose();
    scorer.dispose!();
  });

  it('throws typed errors for bad sizes, ids and vocabularies', async () => {
    await expectCode(() => new TokenTransformer({ ...ARGS, dim: 15 }), 'INVALID_ARGUMENT');
    await expectCode(() => new TokenTransformer({ ...ARGS, n_layers: 0 }), 'INVALID_ARGUMENT');
    const m = new TokenTransformer(ARGS);
    await expectCode(() => m.logits([[1, 260]]), 'INVALID_ARGUMENT');
    await expectCode(() => m.logits([new Array(33).fill(5)]), 'INVALID_ARGUMENT');
    await expectCode(() => m.logits([]), 'INVALID_ARGUMENT');
    await expectCode(() => tokenTransformerScorer(m, new BytePairTokenizer([[5, 6]])), 'INVALID_ARGUMENT');
    expect(tokenTransformerScorer(m, byteTokenizer()).kind).toBe('token');
    m.dispose();
  });
});
