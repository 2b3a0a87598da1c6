import * as tf from '@tensorflow/tfjs-core';
import { BYTE_OFFSET, EOS_ID, decode, encode } from '@bytelatent/bytes';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { type GenerateEvent, type GenerateOptions, type GenerateResult, generate, streamGenerate } from './generate.js';
import { CachedEngine, type EngineStep, type ResolvedPatching, UncachedEngine } from './generation-engines.js';
import { bltPatchingFromSettings } from './patching.js';
import { BltError } from './index.js';
import { SMALL_ARGS } from './test-fixtures.js';

// A tiny entropy model with a short window and a short context, so that generation crosses both:
// the cached entropy model must slide its window and restart its context exactly as
// EntropyModel.entropies does (architecture §3.2).
const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 2,
  n_heads: 2,
  max_seqlen: 24,
  attn_bias_type: 'local_block_causal',
  sliding_window: 6,
};
// SMALL_ARGS has a local window of 5 bytes (so the byte caches slide) and cross-attention on every
// layer of both local models. A longer context for the prompt-in-pieces test.
const LONG_ARGS: BltArgs = { ...SMALL_ARGS, max_encoder_seq_length: 600, max_seqlen: 600 };

let model: ByteLatentTransformer;
let entropyModel: EntropyModel;
/** A threshold in the middle of the random model's entropies, so patches have varied lengths. */
let threshold: number;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  model = new ByteLatentTransformer(SMALL_ARGS, 5);
  entropyModel = new EntropyModel(ENTROPY_ARGS, 3);
  const [h] = await entropyModel.entropies([encode('The quick brown fox jumps over the lazy dog, twice.', { eos: false })]);
  const sorted = Array.from(h!.subarray(1)).sort((a, b) => a - b);
  threshold = sorted[Math.floor(sorted.length / 2)]!;
});

afterAll(() => {
  model.dispose();
  entropyModel.dispose();
});

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Feeds the same ids to both engines and compares every step. */
async function compareEngines(
  m: ByteLatentTransformer,
  patching: ResolvedPatching,
  prompt: Int32Array,
  feed: ArrayLike<number>,
): Promise<{ cached: CachedEngine; uncached: UncachedEngine; steps: number; starts: number }> {
  const cached = new CachedEngine(m, patching);
  const uncached = new UncachedEngine(m, patching);
  const check = (a: EngineStep | null, b: EngineStep | null) => {
    expect(a === null).toBe(b === null);
    if (!a || !b) return;
    expect(maxDiff(a.logits, b.logits)).toBeLessThan(1e-4);
    expect([a.nextStart, a.nextPatch]).toEqual([b.nextStart, b.nextPatch]);
    if (a.entropy === null) expect(b.entropy).toBeNull();
    else expect(Math.abs(a.entropy - b.entropy!)).toBeLessThan(1e-4);
  };
  let starts = 0;
  const first = await cached.prefill(prompt);
  check(first, await uncached.prefill(prompt));
  let steps = 0;
  for (const id of Array.from(feed)) {
    const a = await cached.step(id);
    check(a, await uncached.step(id));
    if (!a) break;
    if (a.nextStart) starts++;
    steps++;
  }
  cached.dispose();
  return { cached, uncached, steps, starts };
}

const entropyPatching = (): ResolvedPatching => ({ rule: { mode: 'entropy', threshold, includeNextToken: true }, entropyModel });

describe('cached generation engine', () => {
  const text = encode('Hello, wörld! 日本 ok', { bos: false, eos: false });

  it('equals the full forward at every step with entropy patching (windows slide, the entropy context restarts)', async () => {
    const before = tf.memory().numTensors;
    // 40 positions: past the entropy model's 24-id context and the 5-byte local window.
    const feed = [...text, ...text].slice(0, 38);
    const { cached, uncached, steps, starts } = await compareEngines(model, entropyPatching(), encode('Hi', { eos: false }), feed);
    expect(steps).toBe(feed.length);
    expect(starts).toBeGreaterThan(5); // patches of varied lengths, not one per byte
    expect(starts).toBeLessThan(feed.length - 5);
    // The latent transformer ran once per completed patch in the cached engine, once per byte in the reference loop.
    expect(cached.counters.latentPatches).toBeLessThan(uncached.counters.latentPatches / 4);
    expect(uncached.counters.latentCalls).toBe(feed.length + 1);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('equals the full forward with space, static, byte, monotonic, combined and max-length patching', async () => {
    const before = tf.memory().numTensors;
    const rules: ResolvedPatching[] = [
      { rule: { mode: 'space', includeNextToken: true }, entropyModel: null },
      { rule: { mode: 'static', patchSize: 3, includeNextToken: true }, entropyModel: null },
      { rule: { mode: 'byte', includeNextToken: true }, entropyModel: null },
      { rule: { mode: 'monotonic', threshold: 0.01, includeNextToken: true }, entropyModel },
      { rule: { mode: 'combined', threshold, thresholdAdd: 0.01, includeNextToken: true }, entropyModel },
      { rule: { mode: 'entropy', threshold: 100, maxPatchLength: 4, includeNextToken: true }, entropyModel },
    ];
    for (const patching of rules) {
      const { steps } = await compareEngines(model, patching, encode('a b', { eos: false }), text.slice(0, 20));
      expect(steps).toBe(20);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('splits documents after EOS and handles special ids exactly as the full forward', async () => {
    const feed = [...text.slice(0, 6), EOS_ID, ...text.slice(6, 12), 1, EOS_ID, EOS_ID, ...text.slice(12, 18)];
    for (const patching of [entropyPatching(), { rule: { mode: 'space' as const, includeNextToken: true }, entropyModel: null }]) {
      const { steps } = await compareEngines(model, patching, encode('', { eos: false }), feed);
      expect(steps).toBe(feed.length);
    }
  });

  it('reads a long prompt in pieces, with cross-attention windows and a global projection', async () => {
    const m = new ByteLatentTransformer({ ...LONG_ARGS, cross_attn_window_encoder: 2, cross_attn_window_decoder: 3, dim_global: 40 }, 9);
    const prompt = encode('All work and no play makes Jack a dull boy. '.repeat(7), { eos: false });
    expect(prompt.length).toBeGreaterThan(300);
    const { steps } = await compareEngines(m, entropyPatching(), prompt, text.slice(0, 4));
    expect(steps).toBe(4);
    m.dispose();
  }, 60_000);

  it('reports a full context (bytes or patches) at the same step as the reference loop', async () => {
    // SMALL_ARGS: 64 bytes, 32 patches. Byte patching fills the patches first, space patching the bytes.
    for (const patching of [
      { rule: { mode: 'byte' as const, includeNextToken: true }, entropyModel: null },
      { rule: { mode: 'space' as const, includeNextToken: true }, entropyModel: null },
    ]) {
      const feed = Array.from({ length: 80 }, (_, i) => BYTE_OFFSET + 97 + (i % 5));
      const { steps } = await compareEngines(model, patching, encode('x', { eos: false }), feed);
      expect(steps).toBe(patching.rule.mode === 'byte' ? 29 : 62);
    }
  });
});

async function collect(stream: AsyncIterable<GenerateEvent>): Promise<{ events: GenerateEvent[]; result: GenerateResult }> {
  const events: GenerateEvent[] = [];
  for await (const e of stream) events.push(e);
  const last = events[events.length - 1]!;
  if (last.type !== 'finish') throw new Error('no finish event');
  return { events, result: last.result };
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

describe('generate', () => {
  const patchers = (): Array<GenerateOptions['patcher']> => [
    { mode: 'entropy', threshold, entropyModel },
    { mode: 'combined', threshold, thresholdAdd: 0.01, entropyModel },
    { mode: 'space' },
    { mode: 'static', patchSize: 3 },
  ];
  const samplings: Array<Partial<GenerateOptions>> = [
    {},
    { temperature: 1, seed: 7 },
    { temperature: 0.8, topK: 20, topP: 0.9, seed: 123 },
  ];

  it('gives exactly the bytes of the uncached reference loop: greedy and seeded sampling, entropy / combined / space / static patching', async () => {
    for (const patcher of patchers()) {
      for (const sampling of samplings) {
        const options: GenerateOptions = { patcher, maxBytes: 20, stopAtEos: false, ...sampling };
        const a = await generate(model, 'The ', options);
        const b = await generate(model, 'The ', { ...options, cache: false });
        expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
        expect(a.text).toBe(b.text);
        expect(Array.from(a.patchStarts)).toEqual(Array.from(b.patchStarts));
        expect([a.finishReason, a.stats.patches, a.stats.promptPatches]).toEqual([b.finishReason, b.stats.patches, b.stats.promptPatches]);
        expect(a.ids.length).toBe(20);
        // The latent transformer computed each completed patch once; the reference loop every patch for every byte.
        expect(a.stats.latentPatches).toBe(a.stats.patches - 1);
        expect(b.stats.latentCalls).toBe(20);
        expect(a.stats.patches).toBeGreaterThan(3);
        expect(a.stats.patches).toBeLessThan(a.stats.promptTokens + 18);
      }
    }
  }, 120_000);

  it('gives the bytes of the reference loop with the shipped pretrained entropy model and its calibrated threshold', async () => {
    const patcher = await EntropyPatcher.pretrained();
    try {
      for (const sampling of samplings) {
        const options: GenerateOptions = { patcher, maxBytes: 24, stopAtEos: false, ...sampling };
        const a = await generate(model, 'Once upon a time, ', options);
        const b = await generate(model, 'Once upon a time, ', { ...options, cache: false });
        expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
        expect(Array.from(a.patchStarts)).toEqual(Array.from(b.patchStarts));
        expect(a.stats.promptPatches).toBeGreaterThan(3);
      }
    } finally {
      patcher.dispose();
    }
  }, 60_000);

  it('starts from BOS for an empty prompt, and takes an EntropyPatcher as the patcher', async () => {
    const patcher = EntropyPatcher.fromModel(entropyModel, { threshold });
    const a = await generate(model, '', { patcher, maxBytes: 12 });
    const b = await generate(model, new Uint8Array(0), {
      patcher: { mode: 'entropy', threshold, entropyModel },
      maxBytes: 12,
      cache: false,
    });
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(a.stats.promptTokens).toBe(1);
    expect(a.stats.promptPatches).toBe(1);
    expect(a.stats.entropyCalls).toBeGreaterThan(0);
    expect(a.patchStarts[0]).toBe(0); // position 1 always starts a patch (architecture §3.3)
    // The model's own patching object (what the scorers use) generates the same bytes.
    const c = await generate(model, '', { patcher: bltPatchingFromSettings(patcher.defaults, patcher), maxBytes: 12 });
    expect(Array.from(c.ids)).toEqual(Array.from(a.ids));
  });

  it('is deterministic for a seed; top-k 1 is greedy', async () => {
    const base: GenerateOptions = { patcher: { mode: 'space' }, maxBytes: 16, temperature: 1.2 };
    const a = await generate(model, 'x', { ...base, seed: 42 });
    const b = await generate(model, 'x', { ...base, seed: 42 });
    const c = await generate(model, 'x', { ...base, seed: 43 });
    expect(a.seed).toBe(42);
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(Array.from(a.ids)).not.toEqual(Array.from(c.ids));
    const unseeded = await generate(model, 'x', base);
    expect(Number.isInteger(unseeded.seed)).toBe(true);
    const replay = await generate(model, 'x', { ...base, seed: unseeded.seed! });
    expect(Array.from(replay.ids)).toEqual(Array.from(unseeded.ids));
    const greedy = await generate(model, 'x', { patcher: { mode: 'space' }, maxBytes: 16 });
    const top1 = await generate(model, 'x', { ...base, topK: 1, seed: 5 });
    expect(greedy.seed).toBeNull();
    expect(Array.from(top1.ids)).toEqual(Array.from(greedy.ids));
  });

  it('streams UTF-8-safe text: chunks never split a character, and add up to the result', async () => {
    let heldBack = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const { events, result } = await collect(
        streamGenerate(model, 'é', { patcher: { mode: 'space' }, maxBytes: 40, temperature: 1, seed, stopAtEos: false }),
      );
      let text = '';
      for (const e of events) {
        text += e.text;
        // A chunk is never half a character: what is streamed so far is a prefix of the final text.
        expect(result.text.startsWith(text)).toBe(true);
        // No lone surrogate: a chunk is whole characters.
        expect(/[\uD800-\uDFFF]/.test(e.text.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))).toBe(false);
        if (e.type === 'byte' && e.byte !== null && e.byte >= 0xc2 && e.byte <= 0xf4 && e.text === '') heldBack++;
      }
      expect(text).toBe(result.text);
      expect(result.text).toBe(decode(Array.from(result.bytes, (b) => b + BYTE_OFFSET)));
      const byteEvents = events.filter((e) => e.type === 'byte');
      expect(byteEvents.map((e) => e.id)).toEqual(Array.from(result.ids));
      expect(byteEvents.filter((e) => e.patchStart).map((e) => e.index)).toEqual(Array.from(result.patchStarts));
      expect(byteEvents.map((e) => e.position)).toEqual(byteEvents.map((_, i) => 2 + i + 1));
    }
    expect(heldBack).toBeGreaterThan(0); // lead bytes of multi-byte characters were held back
  });

  it('stops at a stop sequence, which is neither returned nor streamed', async () => {
    const options: GenerateOptions = { patcher: { mode: 'space' }, maxBytes: 30, stopAtEos: false };
    const full = await generate(model, 'The ', options);
    const b = Array.from(full.bytes);
    const i = b.findIndex((x, j) => x >= 32 && x < 127 && b[j + 1]! >= 32 && b[j + 1]! < 127);
    expect(i).toBeGreaterThan(0);
    const stop = String.fromCharCode(b[i]!, b[i + 1]!);
    const { events, result } = await collect(streamGenerate(model, 'The ', { ...options, stop: ['\u0000never', stop] }));
    expect(result.finishReason).toBe('stop');
    expect(Array.from(result.bytes)).toEqual(b.slice(0, i));
    // Every id up to the stop sequence's last byte was generated, and no more.
    let bytesSeen = 0;
    const upTo = Array.from(full.ids).findIndex((id) => id >= BYTE_OFFSET && ++bytesSeen === i + 2) + 1;
    expect(Array.from(result.ids)).toEqual(Array.from(full.ids.subarray(0, upTo)));
    expect(events.map((e) => e.text).join('')).toBe(result.text);
    expect(result.text.includes(stop)).toBe(false);
  });

  it('stops at maxBytes, at EOS, and when the context is full', async () => {
    const none = await generate(model, 'abc', { patcher: { mode: 'space' }, maxBytes: 0 });
    expect([none.text, none.ids.length, none.finishReason, none.stats.latentCalls]).toEqual(['', 0, 'length', 0]);
    const some = await generate(model, 'abc', { patcher: { mode: 'space' }, maxBytes: 5 });
    expect([some.ids.length, some.finishReason]).toEqual([5, 'length']);
    // SMALL_ARGS reads at most 64 bytes: generation ends there, identically without caches.
    const a = await generate(model, 'x', { patcher: { mode: 'space' }, maxBytes: 500, stopAtEos: false });
    const b = await generate(model, 'x', { patcher: { mode: 'space' }, maxBytes: 500, stopAtEos: false, cache: false });
    expect(a.finishReason).toBe('context');
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(a.stats.promptTokens + a.ids.length).toBe(65); // 64 positions read, one more chosen
    // Sampling at a high temperature from a random model emits EOS sooner or later.
    let eos: GenerateResult | undefined;
    for (let seed = 0; !eos && seed < 40; seed++) {
      const r = await generate(model, '', { patcher: { mode: 'space' }, maxBytes: 60, temperature: 3, seed });
      if (r.finishReason === 'eos') eos = r;
    }
    expect(eos).toBeDefined();
    expect(eos!.ids[eos!.ids.length - 1]).toBe(EOS_ID);
    expect(eos!.bytes.length).toBeLessThan(eos!.ids.length);
  }, 60_000);

  it('stops on abort (before, during a stream, from a timer) and when the consumer breaks, freeing every tensor', async () => {
    const before = tf.memory().numTensors;
    const patcher = { mode: 'entropy' as const, threshold, entropyModel };
    const pre = new AbortController();
    pre.abort();
    expect(((await rejection(generate(model, 'a', { patcher, signal: pre.signal }))) as Error).name).toBe('AbortError');

    const during = new AbortController();
    const seen: GenerateEvent[] = [];
    const error = await rejection(async () => {
      for await (const e of streamGenerate(model, 'a', { patcher, maxBytes: 50, signal: during.signal, stopAtEos: false })) {
        seen.push(e);
        if (seen.length === 3) during.abort(new Error('client went away'));
      }
    });
    expect((error as Error).message).toBe('client went away');
    expect(seen.length).toBe(3);

    const timer = new AbortController();
    setTimeout(() => timer.abort(), 30);
    const started = performance.now();
    expect(
      ((await rejection(generate(model, 'a', { patcher, maxBytes: 60, signal: timer.signal, stopAtEos: false, cache: false }))) as Error)
        .name,
    ).toBe('AbortError');
    expect(performance.now() - started).toBeLessThan(2000);

    let count = 0;
    for await (const _ of streamGenerate(model, 'a', { patcher, maxBytes: 50 })) if (++count === 2) break;
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaks no tensor over repeated calls, cached or not', async () => {
    const patcher = { mode: 'entropy' as const, threshold, entropyModel };
    await generate(model, 'warm', { patcher, maxBytes: 4 });
    const before = tf.memory().numTensors;
    for (const cache of [true, false, true]) {
      await generate(model, 'Leak check', { patcher, maxBytes: 10, cache, temperature: 0.7, seed: 1 });
      await generate(model, '', { patcher: { mode: 'static', patchSize: 2 }, maxBytes: 6, cache });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options and prompts with BltError INVALID_ARGUMENT', async () => {
    const before = tf.memory().numTensors;
    const patcher = { mode: 'space' as const };
    const bad: unknown[] = [
      { patcher, maxBytes: -1 },
      { patcher, maxBytes: 1.5 },
      { patcher, temperature: -0.1 },
      { patcher, temperature: Number.NaN },
      { patcher, topP: 0 },
      { patcher, topP: 1.5 },
      { patcher, topK: 0 },
      { patcher, seed: -1 },
      { patcher, seed: 2 ** 32 },
      { patcher, stop: '' },
      { patcher, stop: [3] },
      { patcher, stopAtEos: 'yes' },
      { patcher, signal: {} },
      {},
      { patcher: { mode: 'entropy', threshold: 1 } }, // no entropy model
      { patcher: { mode: 'static' } }, // no patch size
      { patcher: { mode: 'sentencepiece' } },
      { patcher: { mode: 'space', includeNextToken: false } },
      // Rules generation cannot run: they decide over the whole row, or read the row without BOS.
      { patcher: { mode: 'entropy-top-k', patchSize: 4 } },
      { patcher: { mode: 'bpe' } },
      { patcher: { mode: 'bpe-patcher' } },
      null,
    ];
    for (const options of bad) {
      const e = (await rejection(() => generate(model, 'a', options as GenerateOptions))) as BltError;
      expect(e).toBeInstanceOf(BltError);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(() => streamGenerate(model, 'a', options as GenerateOptions)).toThrow(BltError);
    }
    for (const prompt of [42, null, ['a']]) {
      expect(((await rejection(() => generate(model, prompt as unknown as string, { patcher }))) as BltError).code).toBe(
        'INVALID_ARGUMENT',
      );
    }
    // Longer than max_encoder_seq_length (64 with BOS): refused, not truncated.
    for (const cache of [true, false]) {
      const e = (await rejection(generate(model, 'x'.repeat(64), { patcher, cache }))) as BltError;
      expect([e.code, e.message.includes('prompt does not fit')]).toEqual(['INVALID_ARGUMENT', true]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
