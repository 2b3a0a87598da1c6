import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BytePairTokenizer, byteTokenizer, evaluateBitsPerByte, loadModelFile } from '@bytelatent/evals';
import { initBackend } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from './checkpoint.js';
import { resolveDataFiles } from './dataset.js';
import { TrainError } from './errors.js';
import { makeTextFolder, trainerOptions } from './test-helpers.js';
import { TokenTrainable, tokenRow } from './token-model.js';
import { CHECKPOINT_FILE, Trainer } from './trainer.js';

const folder = makeTextFolder();
const files = { train: resolveDataFiles([folder.train]), heldout: resolveDataFiles([folder.heldout]) };
const enc = (s: string) => Array.from(new TextEncoder().encode(s), (b) => b + 4);
const tokenizer = BytePairTokenizer.train(['the cat sat on the mat. '.repeat(20), 'a dog ran in the park! '.repeat(20)], { merges: 30 });
const ARGS = { dim: 16, n_layers: 1, n_heads: 2, vocab_size: tokenizer.vocabSize, max_seqlen: 33, multiple_of: 16 };

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
});

describe('tokenRow', () => {
  it('re-tokenizes a byte row: same bytes predicted, specials kept, BOE context mid-document', () => {
    const seq = [...enc('the cat'), 2, 1, ...enc('the mat')];
    const row = { tokens: Int32Array.from(seq.slice(0, -1)), targets: Int32Array.from(seq.slice(1)) };
    const t = tokenRow(row, tokenizer);
    expect(t.tokens[0]).toBe(0); // the row starts inside a document
    const all = [...t.tokens, t.targets.at(-1)!];
    expect(Array.from(t.tokens.subarray(1))).toEqual(Array.from(t.targets.subarray(0, -1)));
    // The targets spell exactly the byte row's targets.
    const spelled = Array.from(t.targets).flatMap((id) => (id < 4 ? [id] : Array.from(tokenizer.decode([id]), (b) => b + 4)));
    expect(spelled).toEqual(Array.from(row.targets));
    expect(all).toContain(2);
    expect(t.targets.length).toBeLessThan(row.targets.length);
    // A document start keeps its BOS as the context.
    const start = tokenRow(
      { tokens: Int32Array.from([1, ...enc('the')]), targets: Int32Array.from([...enc('the'), 4 + 32]) },
      byteTokenizer(),
    );
    expect(Array.from(start.tokens)).toEqual([1, ...enc('the')]);
  });
});

describe('TokenTrainable', () => {
  it('trains with the Trainer, resumes from a token checkpoint, and loads in @bytelatent/evals', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bytelatent-token-'));
    const runConfig = { kind: 'token', model: ARGS, patching: null, tokenizer: tokenizer.toJSON() };
    const run = async (resume: boolean, stopAfter?: number) => {
      const model = new TokenTrainable(ARGS, 1, tokenizer);
      const trainer = new Trainer(
        model,
        trainerOptions(out, files, { steps: 6, lr: 3e-2, ...(stopAfter ? { stopAfter } : {}) }),
        runConfig,
      );
      try {
        return await trainer.run(resume);
      } finally {
        trainer.dispose();
        model.dispose();
      }
    };
    const first = await run(false, 3);
    expect(first.endStep).toBe(3);
    expect((await readCheckpoint(join(out, CHECKPOINT_FILE))).state.kind).toBe('token');
    const second = await run(true);
    expect(second.endStep).toBe(6);
    expect(second.lastEvalBpb).toBeGreaterThan(0);
    const loaded = await loadModelFile(join(out, CHECKPOINT_FILE));
    expect(loaded.kind).toBe('token');
    const r = await evaluateBitsPerByte(loaded.model, 'the dog sat in the park. ');
    expect(r.bitsPerByte).toBeGreaterThan(0);
    loaded.dispose();
  });

  it("refuses a vocabulary that is not the tokenizer's and rows longer than the context", async () => {
    expect(() => new TokenTrainable({ ...ARGS, vocab_size: 260 }, 1, tokenizer)).toThrow(TrainError);
    const small = new TokenTrainable({ ...ARGS, vocab_size: 260, max_seqlen: 4 }, 1, byteTokenizer());
    await expect(small.prepare([{ tokens: Int32Array.from(enc('abcdef')), targets: Int32Array.from(enc('bcdefg')) }])).rejects.toThrow(
      /max_seqlen/,
    );
    small.dispose();
  });
});
