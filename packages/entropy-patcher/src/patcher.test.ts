import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseSafetensors, serializeSafetensors, type SafetensorsTensor } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import type { EntropyModelArgs } from './entropy-model.js';
import { PatcherError } from './errors.js';
import { ARGS_METADATA_KEY, EntropyPatcher } from './patcher.js';

const here = dirname(fileURLToPath(import.meta.url));
const GOLDEN = process.env['BYTELATENT_GOLDEN_DIR'] ?? resolve(here, '../../../../shared/golden/tiny');
const WEIGHTS = join(GOLDEN, 'entropy_model.safetensors');
const config = existsSync(GOLDEN) ? JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8')) : {};
const args = config.entropy_model_args as EntropyModelArgs;
const caseJson = (name: string) => JSON.parse(readFileSync(join(GOLDEN, 'cases', `${name}.json`), 'utf8'));

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<PatcherError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as PatcherError;
  }
  throw new Error('expected an error');
}

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

describe.skipIf(!existsSync(WEIGHTS))('EntropyPatcher on the golden entropy model', () => {
  it('reproduces the reference patches of every golden case from raw text', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, {
      args,
      threshold: 5.1,
      maxPatchLength: config.blt_args.max_patch_length,
    });
    for (const name of ['ascii', 'utf8', 'code']) {
      const c = caseJson(name);
      const result = await patcher.patch(c.texts[0]);
      expect(Array.from(result.tokens)).toEqual(c.tokens);
      expect(Array.from(result.patchLengths)).toEqual(c.patch_lengths);
      expect(Array.from(result.patchIds)).toEqual(c.patch_ids);
      expect(Array.from(result.decoderPatchIds)).toEqual(c.decoder_patch_ids);
      const maxDiff = Math.max(...c.entropies.map((h: number, i: number) => Math.abs(h - result.entropies[i]!)));
      expect(maxDiff).toBeLessThan(1e-4);
    }
    patcher.dispose();
  });

  it('returns segments that cover the input bytes exactly, without BOS or the next-byte slot', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1 });
    const text = 'naïve café — 日本';
    const segments = (await patcher.patch(text)).segments();
    expect(segments.map((s) => s.text).join('')).toBe(text);
    expect(segments[0]!.start).toBe(0);
    segments.slice(1).forEach((s, i) => expect(s.start).toBe(segments[i]!.end));
    expect(segments.at(-1)!.end).toBe(new TextEncoder().encode(text).length);
    patcher.dispose();
  });

  it('computes every row of a batch on its own', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1 });
    const inputs = ['short', 'a much longer second row of text, padded against the first'];
    const batch = await patcher.patchBatch(inputs);
    for (const [i, input] of inputs.entries()) {
      const alone = await patcher.patch(input);
      expect(Array.from(batch[i]!.patchLengths)).toEqual(Array.from(alone.patchLengths));
      alone.entropies.forEach((h, t) => expect(Math.abs(h - batch[i]!.entropies[t]!)).toBeLessThan(1e-5));
    }
    patcher.dispose();
  });

  it('handles empty input, a single byte and invalid UTF-8', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1 });
    expect(Array.from((await patcher.patch('')).patchLengths)).toEqual([1, 1]);
    expect((await patcher.patch('')).segments()).toEqual([]);
    const one = await patcher.patch('x');
    expect(one.patchLengths.reduce((a, b) => a + b, 0)).toBe(3);
    const bytes = new Uint8Array([0xff, 0xfe, 0x80, 0x41]);
    const r = await patcher.patch(bytes);
    expect(r.tokens).toHaveLength(5);
    expect(r.segments().reduce((n, s) => n + s.end - s.start, 0)).toBe(4);
    patcher.dispose();
  });

  it('cuts inputs longer than the context into fresh contexts, as the reference does', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args: { ...args, max_seqlen: 16 }, threshold: 5.1 });
    const text = 'a text of forty bytes, longer than 16..';
    const whole = await patcher.patch(text);
    const tokens = Array.from(whole.tokens);
    const chunks = await patcher.model.entropies([tokens.slice(0, 16), tokens.slice(16, 32), tokens.slice(32)]);
    const expected = chunks.flatMap((c) => Array.from(c));
    whole.entropies.forEach((h, t) => expect(Math.abs(h - expected[t]!)).toBeLessThan(1e-6));
    patcher.dispose();
  });

  it('refuses inputs over maxBytes with a typed error', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1, maxBytes: 10 });
    const e = await errorOf(patcher.patch('x'.repeat(11)));
    expect(e.code).toBe('INPUT_TOO_LONG');
    expect(e.message).toContain('11 bytes, more than');
    expect((await patcher.patch('x'.repeat(10))).tokens).toHaveLength(11);
    patcher.dispose();
  });

  it('computes long windowed rows block by block, depending only on the receptive field', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1 });
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(14); // 630 bytes: 10 blocks of 64 queries (window 16)
    const ids = [1, ...Array.from(new TextEncoder().encode(text), (b) => b + 4)];
    const [full] = await patcher.model.entropies([ids]);
    // 2 layers with window 16 see 2·15 = 30 positions back: from t >= 280 a row starting at 250
    // has the same context, at other absolute positions and another block alignment.
    const [tail] = await patcher.model.entropies([ids.slice(250)]);
    for (let t = 280; t < ids.length; t++) expect(Math.abs(full![t]! - tail![t - 250]!)).toBeLessThan(1e-4);
    patcher.dispose();
  });

  it('runs the rule-based modes without the model', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args });
    // [BOS] [a b ␠] [c d + next-byte slot]: lengths sum to N + 1 = 7
    expect(Array.from((await patcher.patch('ab cd', { mode: 'space' })).patchLengths)).toEqual([1, 3, 3]);
    expect(Array.from((await patcher.patch('abcdefg', { mode: 'static', patchSize: 3 })).patchLengths)).toEqual([1, 2, 3, 3]);
    expect(Array.from((await patcher.patch('abc', { mode: 'byte' })).patchLengths)).toEqual([1, 1, 1, 1, 1]);
    patcher.dispose();
  });

  it('calibrates a threshold that yields the returned mean patch size', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args });
    const text = caseJson('ascii').texts[0] as string;
    const cal = await patcher.calibrate([text], 3);
    const r = await patcher.patch(text, { threshold: cal.threshold, includeNextToken: false });
    expect(r.tokens.length / r.patchLengths.length).toBeCloseTo(cal.meanPatchSize, 10);
    expect(Math.abs(cal.meanPatchSize - 3)).toBeLessThan(0.5);
    patcher.dispose();
  });

  it('leaks no tensor over repeated calls', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args, threshold: 5.1 });
    await patcher.patch('warm up');
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await patcher.patchBatch(['one row', 'and another']);
    expect(tf.memory().numTensors).toBe(before);
    patcher.dispose();
    expect(tf.memory().numTensors).toBeLessThan(before);
  });

  it('reads model arguments and defaults from the file metadata', async () => {
    const file = parseSafetensors(readFileSync(WEIGHTS));
    const tensors = new Map<string, SafetensorsTensor>(file.names().map((n) => [n, file.get(n)]));
    const bytes = serializeSafetensors(tensors, {
      [ARGS_METADATA_KEY]: JSON.stringify(args),
      patcher_defaults: JSON.stringify({ threshold: 5.1, maxPatchLength: 6 }),
    });
    const patcher = await EntropyPatcher.fromSafetensors(bytes);
    expect(Array.from((await patcher.patch(caseJson('ascii').texts[0])).patchLengths)).toEqual(caseJson('ascii').patch_lengths);
    patcher.dispose();
  });
});

describe.skipIf(!existsSync(WEIGHTS))('EntropyPatcher errors', () => {
  it('rejects a corrupt file, a missing file, missing arguments and weights that do not fit', async () => {
    expect((await errorOf(EntropyPatcher.fromSafetensors(new Uint8Array([1, 2, 3])))).code).toBe('INVALID_CHECKPOINT');
    expect(await errorOf(EntropyPatcher.fromSafetensors('/no/such/file.safetensors', { args }))).toMatchObject({
      code: 'INVALID_CHECKPOINT',
    });
    expect((await errorOf(EntropyPatcher.fromSafetensors(WEIGHTS))).code).toBe('CONFIG_MISMATCH');
    const wrong = await errorOf(EntropyPatcher.fromSafetensors(WEIGHTS, { args: { ...args, dim: 16 } }));
    expect(wrong.code).toBe('INVALID_CHECKPOINT');
    expect(wrong.message).toContain('"tok_embeddings.weight" has shape [260, 32], expected [260, 16]');
    const layers = await errorOf(EntropyPatcher.fromSafetensors(WEIGHTS, { args: { ...args, n_layers: 3 } }));
    expect(layers.message).toContain('missing "layers.2.attention.wq.weight"');
    const bad = await errorOf(
      EntropyPatcher.fromSafetensors(WEIGHTS, { args: { ...args, attn_bias_type: 'local_block_causal', sliding_window: null } }),
    );
    expect(bad.code).toBe('CONFIG_MISMATCH');
  });

  it('rejects bad patching options with a typed error', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args });
    expect((await errorOf(patcher.patch('abc'))).code).toBe('INVALID_ARGUMENT'); // entropy mode needs a threshold
    expect((await errorOf(patcher.patch('abc', { mode: 'nope' as 'byte' }))).code).toBe('INVALID_ARGUMENT');
    patcher.dispose();
  });
});

describe.skipIf(!existsSync(WEIGHTS))('entropy-patcher CLI', () => {
  const cli = resolve(here, '../dist/cli.js');
  it('prints patches as JSON and as a picture', () => {
    const json = JSON.parse(
      execFileSync(
        process.execPath,
        [
          cli,
          '--model',
          WEIGHTS,
          '--config',
          join(GOLDEN, 'config.json'),
          '--threshold',
          '5.1',
          '--max-patch-length',
          '6',
          '--json',
          caseJson('ascii').texts[0],
        ],
        {
          encoding: 'utf8',
        },
      ),
    );
    expect(json.patchLengths).toEqual(caseJson('ascii').patch_lengths);
    const picture = execFileSync(
      process.execPath,
      [cli, '--model', WEIGHTS, '--config', join(GOLDEN, 'config.json'), '--threshold', '5.1', 'Hello world'],
      {
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1' },
      },
    );
    expect(picture).toMatch(/^H.*\|.*\n[▁▂▃▄▅▆▇█ ]+\n\d+ patches over 11 bytes/);
  });

  it('exits with a usage error without input, and patches with the shipped model by default', () => {
    const status = (args: string[]) => {
      try {
        execFileSync(process.execPath, [cli, ...args], { stdio: 'pipe' });
        return 0;
      } catch (e) {
        return (e as { status: number }).status;
      }
    };
    expect(status([])).toBe(2);
    expect(status(['--model', WEIGHTS])).toBe(2);
    const json = JSON.parse(execFileSync(process.execPath, [cli, '--json', 'Hello there, world.'], { encoding: 'utf8' })) as {
      segments?: unknown;
      patches?: unknown;
    };
    expect(JSON.stringify(json)).toContain('Hello');
    expect(status(['--model', WEIGHTS, '--threshold', 'abc', 'x'])).toBe(2); // a bad flag value is a usage error
  }, 60_000);
});

describe('EntropyPatcher without a reference checkpoint', () => {
  it('round-trips a model through toSafetensors and patches the same', async () => {
    const small: EntropyModelArgs = {
      dim: 16,
      n_layers: 1,
      n_heads: 2,
      max_seqlen: 64,
      attn_bias_type: 'local_block_causal',
      sliding_window: 8,
      multiple_of: 16,
    };
    const { EntropyModel } = await import('./entropy-model.js');
    const model = new EntropyModel(small, 42);
    const direct = EntropyPatcher.fromModel(model, { threshold: 5.5 });
    const bytes = await model.toSafetensors({ patcher_defaults: JSON.stringify({ threshold: 5.5 }) });
    const loaded = await EntropyPatcher.fromSafetensors(bytes);
    const a = await direct.patch('round trip through safetensors');
    const b = await loaded.patch('round trip through safetensors');
    expect(Array.from(b.entropies)).toEqual(Array.from(a.entropies));
    expect(Array.from(b.patchLengths)).toEqual(Array.from(a.patchLengths));
    direct.dispose();
    loaded.dispose();
  });
});

describe.skipIf(!existsSync(WEIGHTS))('EntropyPatcher.patchStream', () => {
  it('equals the one-shot call for any chunking, across model contexts, in every mode', async () => {
    const patcher = await EntropyPatcher.fromSafetensors(WEIGHTS, { args: { ...args, max_seqlen: 16 }, threshold: 5.1, maxPatchLength: 6 });
    const text = 'Streams cross context boundaries: naïve café, 日本語 text and emoji 😀 split anywhere.';
    let seed = 3;
    const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    for (const mode of ['entropy', 'monotonic', 'space'] as const) {
      const threshold = mode === 'monotonic' ? 0.05 : 5.1;
      const whole = await patcher.patch(text, { mode, threshold });
      for (let trial = 0; trial < 4; trial++) {
        const chunks: string[] = [];
        for (let i = 0; i < text.length;) {
          const n = Math.floor(rand() * 9);
          chunks.push(text.slice(i, i + n)); // may cut a surrogate pair, may be empty
          i += n;
        }
        const starts: number[] = [];
        const lengths: number[] = [];
        const entropies: number[] = [];
        for await (const batch of patcher.patchStream(chunks, { mode, threshold })) {
          starts.push(...batch.starts);
          lengths.push(...batch.lengths);
          expect(batch.entropyOffset).toBe(entropies.length);
          entropies.push(...batch.entropies);
        }
        expect(starts).toEqual(Array.from(whole.patchStarts));
        expect(lengths).toEqual(Array.from(whole.patchLengths));
        if (mode !== 'space') entropies.forEach((h, t) => expect(Math.abs(h - whole.entropies[t]!)).toBeLessThan(1e-5));
      }
    }
    patcher.dispose();
  });
});

describe('EntropyPatcher.pretrained', () => {
  it('loads the shipped model with its calibrated threshold and patches prose into ~4.5-byte patches', async () => {
    const patcher = await EntropyPatcher.pretrained();
    expect(patcher.defaults.mode).toBe('entropy');
    expect(patcher.defaults.threshold).toBeGreaterThan(0);
    const text =
      'Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had peeped into the book her sister was reading.';
    const before = tf.memory().numTensors;
    const result = await patcher.patch(text);
    const segments = result.segments();
    expect(segments.map((s) => s.text).join('')).toBe(text);
    const mean = text.length / segments.length;
    expect(mean).toBeGreaterThan(3);
    expect(mean).toBeLessThan(7);
    // A trained model is far from uniform: its mean entropy is well below ln 260 = 5.56 nats.
    const meanEntropy = result.entropies.reduce((s, h) => s + h, 0) / result.entropies.length;
    expect(meanEntropy).toBeLessThan(3);
    expect(tf.memory().numTensors).toBe(before);
    patcher.dispose();
  });
});
