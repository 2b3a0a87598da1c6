// Seeded fuzzing, the model part: a bounded subset of the tools/fuzz byte strings (short
// ones: the model is slow on CPU) through the composed BLT — patched by the shipped entropy patcher in
// every mode — forward, per-byte losses and generation from the raw bytes as prompts. No crash,
// logits of the right shape and finite, inputs past the context refused with a typed error, no leak.
import { decodeUtf8, encode, EOS_ID, VOCAB_SIZE } from '@bytelatent/bytes';
import { EntropyPatcher, type PatchingMode } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzInputs, mulberry32, type FuzzInput } from '../../../tools/fuzz/seeded-bytes.js';
import { BltError } from '@bytelatent/nn';
import { ByteLatentTransformer } from './blt-model.js';
import { generate } from './generate.js';
import { SMALL_ARGS } from './test-fixtures.js';

/** SMALL_ARGS with room for 96-byte rows even under byte patching. */
const ARGS = { ...SMALL_ARGS, max_seqlen: 128, max_encoder_seq_length: 128 };
const CONTEXT = 128;
const inputs: FuzzInput[] = [...fuzzInputs({ count: 10_000 })];
/** Every 50th input of at most 96 bytes (about 150, empty ones included). */
const subset = inputs.filter((x) => x.bytes.length <= 96).filter((_, i) => i % 50 === 0);
const MODES: ReadonlyArray<{ mode: PatchingMode; patchSize?: number; maxPatchLength?: number }> = [
  { mode: 'entropy' },
  { mode: 'entropy', maxPatchLength: 4 },
  { mode: 'space' },
  { mode: 'static', patchSize: 3 },
  { mode: 'byte' },
];

let model: ByteLatentTransformer;
let patcher: EntropyPatcher;

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  model = new ByteLatentTransformer(ARGS, 9);
  patcher = await EntropyPatcher.pretrained();
});
afterAll(() => {
  model.dispose();
  patcher.dispose();
});

describe('fuzz: the BLT on seeded byte strings', () => {
  it('forward and per-byte losses on batches of 8, every patching mode: right shapes, finite, no leak', async () => {
    expect(subset.length).toBeGreaterThan(100);
    const before = tf.memory().numTensors;
    let rows = 0;
    for (let i = 0; i < subset.length; i += 8) {
      const group = subset.slice(i, i + 8);
      const options = MODES[(i / 8) % MODES.length]!;
      const patched = await patcher.patchBatch(
        group.map((x) => x.bytes),
        options,
      );
      const tokens = patched.map((p) => p.tokens);
      const lengths = patched.map((p) => p.patchLengths);
      const targets = group.map((x) => Int32Array.from([...encode(x.bytes, { bos: false, eos: false }), EOS_ID]));
      const longest = Math.max(...tokens.map((t) => t.length));
      const logits = model.forward(tokens, lengths);
      const losses = model.tokenLosses(tokens, lengths, targets);
      const where = `inputs ${group.map((x) => x.index).join(',')} (${JSON.stringify(options)})`;
      expect(logits.shape, where).toEqual([group.length, longest, VOCAB_SIZE]);
      expect(losses.shape, where).toEqual([group.length, longest]);
      const [l, s] = [(await logits.data()) as Float32Array, (await losses.data()) as Float32Array];
      tf.dispose([logits, losses]);
      if (!l.every(Number.isFinite)) expect.fail(`${where}: non-finite logits`);
      group.forEach((_, b) => {
        for (let t = 0; t < tokens[b]!.length; t++) {
          const v = s[b * longest + t]!;
          if (!(Number.isFinite(v) && v >= 0)) expect.fail(`${where}: loss ${v} at row ${b}, position ${t}`);
        }
      });
      rows += group.length;
    }
    expect(rows).toBe(subset.length);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a row gives the same logits alone as in a padded batch', async () => {
    const group = subset.slice(8, 12);
    const patched = await patcher.patchBatch(group.map((x) => x.bytes));
    const batch = model.forward(
      patched.map((p) => p.tokens),
      patched.map((p) => p.patchLengths),
    );
    const all = (await batch.array()) as number[][][];
    batch.dispose();
    for (const [b, p] of patched.entries()) {
      const alone = model.forward([p.tokens], [p.patchLengths]);
      const one = ((await alone.array()) as number[][][])[0]!;
      alone.dispose();
      const diff = Math.max(0, ...one.flatMap((row, t) => row.map((v, k) => Math.abs(v - all[b]![t]![k]!))));
      expect(diff, `input ${group[b]!.index}`).toBeLessThan(1e-4);
    }
  });

  it('refuses rows past the context with a typed error, never a crash', async () => {
    const long = inputs.filter((x) => x.bytes.length >= CONTEXT).slice(0, 3);
    expect(long).toHaveLength(3);
    const before = tf.memory().numTensors;
    for (const x of long) {
      const p = await patcher.patch(x.bytes, { mode: 'space' });
      let caught: unknown;
      try {
        model.forward([p.tokens], [p.patchLengths]).dispose();
      } catch (e) {
        caught = e;
      }
      expect(caught, `input ${x.index}`).toBeInstanceOf(BltError);
      expect((caught as BltError).code).toBe('INVALID_ARGUMENT');
      expect((caught as BltError).message).toMatch(/exceed max_(encoder_seq_length|seqlen)/);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('generates from raw-byte prompts (invalid UTF-8, NUL, empty): at most maxBytes bytes, text = those bytes decoded, no leak', async () => {
    const random = mulberry32(5);
    const prompts = subset.filter((x) => x.bytes.length <= 40).filter((_, i) => i % 6 === 0);
    expect(prompts.length).toBeGreaterThan(10);
    const before = tf.memory().numTensors;
    for (const x of prompts) {
      const maxBytes = 1 + Math.floor(random() * 6);
      const r = await generate(model, x.bytes, { patcher, maxBytes, temperature: 1, seed: x.index });
      expect(r.bytes.length, `input ${x.index}`).toBeLessThanOrEqual(maxBytes);
      expect(['length', 'stop', 'eos', 'context']).toContain(r.finishReason);
      // The text is the generated bytes decoded (U+FFFD for invalid UTF-8), nothing more or less.
      expect(r.text, `input ${x.index}`).toBe(decodeUtf8(r.bytes));
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
