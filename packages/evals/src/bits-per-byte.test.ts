import { bitsPerByte as bltBitsPerByte } from '@bytelatent/blt';
import { describe, expect, it } from 'vitest';
import { bitsPerByte, evaluateBitsPerByte } from './bits-per-byte.js';
import { BytePairTokenizer } from './bpe.js';
import { uniformByteModel, type TokenScoringModel } from './scoring-model.js';
import { expectCode, recordingModel } from './test-helpers.js';

const TEXT = 'It was the best of times, it was the worst of times. Ünïcödé too: 日本語, and emoji 🙂.\n'.repeat(7);

function* chunked(bytes: Uint8Array, sizes: number[]): Generator<Uint8Array> {
  let i = 0;
  let k = 0;
  while (i < bytes.length) {
    const n = sizes[k++ % sizes.length]!;
    yield bytes.subarray(i, i + n);
    i += n;
  }
}

describe('bitsPerByte', () => {
  it('is nats / (ln 2 · bytes)', () => {
    expect(bitsPerByte(8 * Math.LN2, 8)).toBe(1);
    expect(bitsPerByte(0, 5)).toBe(0);
    expect(bitsPerByte(3 * Math.log(260), 3)).toBeCloseTo(Math.log2(260), 14);
  });

  it("is the model package's definition, rejecting a negative or non-finite loss and a byte count below 1", async () => {
    expect(bitsPerByte).toBe(bltBitsPerByte);
    for (const [nats, bytes] of [
      [-1, 2],
      [Number.NaN, 2],
      [1, 0],
      [1, 1.5],
    ] as const) {
      expect(() => bitsPerByte(nats, bytes)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe('evaluateBitsPerByte', () => {
  it('gives log2(260) bits per byte for the uniform byte model, whatever the chunking', async () => {
    const bytes = new TextEncoder().encode(TEXT);
    const model = uniformByteModel(260, 64);
    for (const source of [TEXT, bytes, chunked(bytes, [1, 7, 300, 2])]) {
      const r = await evaluateBitsPerByte(model, source, { batchSize: 3 });
      expect(r.bitsPerByte).toBeCloseTo(Math.log2(260), 12);
      expect(r.bytes).toBe(bytes.length);
      expect(r.targets).toBe(bytes.length);
      expect(r.rows).toBe(Math.ceil(bytes.length / 64));
    }
  });

  it('predicts every byte exactly once, rows chained by their last target', async () => {
    const bytes = new TextEncoder().encode(TEXT);
    const model = recordingModel(50);
    await evaluateBitsPerByte(model, chunked(bytes, [13, 1, 99]), { contextLength: 50, batchSize: 4 });
    const targets = model.rows.flatMap((r) => Array.from(r.targets));
    expect(targets).toEqual(Array.from(bytes, (b) => b + 4));
    expect(model.rows[0]!.tokens[0]).toBe(1); // BOS
    for (let k = 1; k < model.rows.length; k++) {
      expect(model.rows[k]!.tokens[0]).toBe(model.rows[k - 1]!.targets.at(-1));
      expect(model.rows[k - 1]!.tokens.length).toBe(50);
    }
  });

  it('slides a window with a stride: every byte counted once, each after the first row with context - stride bytes before it', async () => {
    const bytes = new TextEncoder().encode(TEXT);
    const [context, stride] = [50, 20];
    const model = recordingModel(context);
    const r = await evaluateBitsPerByte(model, chunked(bytes, [13, 1, 99]), { contextLength: context, stride, batchSize: 3 });
    expect([r.bytes, r.targets]).toEqual([bytes.length, bytes.length]);
    expect(r.bitsPerByte).toBeCloseTo(1 / Math.LN2, 12);
    // Rows start `stride` ids apart; each scores the targets past the previous row's end.
    const scored = [...model.rows[0]!.targets, ...model.rows.slice(1).flatMap((row) => Array.from(row.targets.subarray(context - stride)))];
    expect(scored).toEqual(Array.from(bytes, (b) => b + 4));
    for (let k = 1; k < model.rows.length - 1; k++) expect(model.rows[k]!.tokens[0]).toBe(model.rows[k - 1]!.tokens[stride]);
    // A model that is poor on a row's first 10 positions pays for them once, not once per row.
    const coldStart = {
      ...uniformByteModel(260, context),
      logProbs: async (rows: readonly { targets: Int32Array }[]) =>
        rows.map((row) => Float64Array.from(row.targets, (_, t) => (t < 10 ? -5 : -1))),
    };
    const strided = await evaluateBitsPerByte(coldStart, TEXT, { contextLength: context, stride });
    expect(strided.nats).toBeCloseTo(5 * 10 + (bytes.length - 10), 9);
    const plain = await evaluateBitsPerByte(coldStart, TEXT, { contextLength: context });
    expect(plain.nats).toBeCloseTo(5 * 10 * Math.ceil(bytes.length / context) + (bytes.length - 10 * Math.ceil(bytes.length / context)), 9);
    await expectCode(() => evaluateBitsPerByte(model, TEXT, { contextLength: context, stride: context + 1 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(model, TEXT, { contextLength: context, stride: 0 }), 'INVALID_ARGUMENT');
  });

  it('stops after maxBytes', async () => {
    const r = await evaluateBitsPerByte(uniformByteModel(), TEXT, { maxBytes: 100 });
    expect(r.bytes).toBe(100);
    expect(r.targets).toBe(100);
  });

  it('converts a token model: total nats over its tokens / (ln 2 · bytes), streamed tokens equal one-shot tokens', async () => {
    const tokenizer = BytePairTokenizer.train([TEXT], { merges: 40 });
    const bytes = new TextEncoder().encode(TEXT);
    const oneShot = tokenizer.encode(bytes);
    expect(oneShot.length).toBeLessThan(bytes.length);
    const seen: number[] = [];
    const vocab = tokenizer.vocabSize;
    const model: TokenScoringModel = {
      kind: 'token',
      name: 'uniform-token',
      maxContext: 32,
      bosId: 1,
      tokenizer,
      logProbs: async (rows) =>
        rows.map((r) => {
          seen.push(...r.targets);
          return new Float64Array(r.targets.length).fill(-Math.log(vocab));
        }),
    };
    const r = await evaluateBitsPerByte(model, chunked(bytes, [5, 17, 2]));
    expect(seen).toEqual(Array.from(oneShot));
    expect(r.targets).toBe(oneShot.length);
    expect(r.bytesPerTarget).toBeCloseTo(bytes.length / oneShot.length, 12);
    expect(r.bitsPerByte).toBeCloseTo((oneShot.length * Math.log(vocab)) / (Math.LN2 * bytes.length), 12);
  });

  it('windowBytes: each window is one row from BOS, byte and token models see the same bytes, every byte counted once', async () => {
    const bytes = new TextEncoder().encode(TEXT);
    const window = 48;
    const byteModel = recordingModel(64);
    const r = await evaluateBitsPerByte(byteModel, chunked(bytes, [13, 1, 99]), { windowBytes: window, batchSize: 3 });
    expect([r.bytes, r.targets, r.rows]).toEqual([bytes.length, bytes.length, Math.ceil(bytes.length / window)]);
    expect(r.bitsPerByte).toBeCloseTo(1 / Math.LN2, 12);
    for (const [k, row] of byteModel.rows.entries()) {
      const w = bytes.subarray(k * window, (k + 1) * window);
      expect(Array.from(row.tokens)).toEqual([1, ...Array.from(w.subarray(0, -1), (b) => b + 4)]);
      expect(Array.from(row.targets)).toEqual(Array.from(w, (b) => b + 4));
    }
    // A token model encodes each window on its own: its rows spell the same windows.
    const tokenizer = BytePairTokenizer.train([TEXT], { merges: 40 });
    const rows: Int32Array[] = [];
    const tokenModel: TokenScoringModel = {
      kind: 'token',
      name: 'uniform-token',
      maxContext: 64,
      bosId: 1,
      tokenizer,
      logProbs: async (batch) => batch.map((row) => (rows.push(row.targets.slice()), new Float64Array(row.targets.length).fill(-1))),
    };
    const t = await evaluateBitsPerByte(tokenModel, bytes, { windowBytes: window });
    expect(t.rows).toBe(r.rows);
    for (const [k, targets] of rows.entries()) {
      expect(Array.from(targets)).toEqual(Array.from(tokenizer.encode(bytes.subarray(k * window, (k + 1) * window))));
    }
    expect(t.targets).toBe(rows.reduce((n, x) => n + x.length, 0));
    // A window that does not fit the context, or windows with a context or stride, are refused.
    await expectCode(() => evaluateBitsPerByte(recordingModel(16), TEXT, { windowBytes: 17 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(recordingModel(64), TEXT, { windowBytes: 16, stride: 8 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(recordingModel(64), TEXT, { windowBytes: 0 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(recordingModel(64), '', { windowBytes: 16 }), 'EMPTY_INPUT');
  });

  it('throws typed errors for empty input, bad options and malformed model output', async () => {
    await expectCode(() => evaluateBitsPerByte(uniformByteModel(), ''), 'EMPTY_INPUT');
    await expectCode(() => evaluateBitsPerByte(uniformByteModel(260, 16), TEXT, { contextLength: 17 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(uniformByteModel(), TEXT, { batchSize: 0 }), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(uniformByteModel(), 42 as never), 'INVALID_ARGUMENT');
    await expectCode(() => evaluateBitsPerByte(recordingModel(16, 0.5), TEXT), 'INVALID_MODEL_OUTPUT');
    const short = {
      ...uniformByteModel(),
      logProbs: async (rows: readonly { targets: Int32Array }[]) => rows.map((r) => new Float32Array(r.targets.length - 1)),
    };
    await expectCode(() => evaluateBitsPerByte(short, TEXT), 'INVALID_MODEL_OUTPUT');
  });
});
