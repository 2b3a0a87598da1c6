import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend, parseSafetensors } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { GOLDEN, GOLDEN_WEIGHTS, SMALL_ARGS } from './test-fixtures.js';
import { BltError } from './index.js';
import { bitsPerByte, scoreBytes } from './metrics.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
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

async function rejection(p: Promise<unknown>): Promise<BltError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BltError);
    return e as BltError;
  }
  throw new Error('expected a rejection');
}

describe('bitsPerByte', () => {
  it('is nats / (ln 2 · bytes)', () => {
    expect(bitsPerByte(8 * Math.LN2, 8)).toBe(1);
    expect(bitsPerByte(0, 3)).toBe(0);
    expect(bitsPerByte(10, 4)).toBeCloseTo(3.6067376022224085, 14);
    // Uniform over 256 bytes: ln 256 nats per byte = 8 bits.
    expect(bitsPerByte(100 * Math.log(256), 100)).toBeCloseTo(8, 12);
  });

  it('rejects a non-finite loss and a non-positive or fractional byte count', () => {
    for (const [n, b] of [
      [Number.NaN, 1],
      [Number.POSITIVE_INFINITY, 1],
      [1, 0],
      [1, -2],
      [1, 1.5],
    ] as const) {
      expect(errorOf(() => bitsPerByte(n, b)).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('scoreBytes', () => {
  const rows = [
    [1, 20, 21, 2, 1, 22, 23, 24, 25, 26, 27],
    [1, 30, 31, 32, 33],
  ];
  const lengths = [
    [1, 3, 0, 4, 2, 2],
    [1, 2, 3],
  ];
  const targets = rows.map((r) => [...r.slice(1), 2]);

  it('sums token losses over every real target of a padded batch, and over the mask when given', async () => {
    const model = new ByteLatentTransformer(SMALL_ARGS, 5);
    const losses = model.tokenLosses(rows, lengths, targets);
    const values = await losses.data();
    losses.dispose();
    const n = 11;
    let sum = 0;
    for (let t = 0; t < 11; t++) sum += values[t]!;
    for (let t = 0; t < 5; t++) sum += values[n + t]!;

    const all = await scoreBytes(model, rows, lengths, targets);
    expect(all.bytes).toBe(16);
    expect(all.nats).toBeCloseTo(sum, 10);
    expect(all.bitsPerByte).toBe(bitsPerByte(all.nats, 16));
    const loss = model.loss(rows, lengths, targets);
    expect(all.nats / all.bytes).toBeCloseTo((await loss.data())[0]!, 5);
    loss.dispose();

    const mask = [rows[0]!.map((_, t) => t % 2 === 0), [0, 0, 1, 1, 0]];
    const masked = await scoreBytes(model, rows, lengths, targets, mask);
    let maskedSum = 0;
    for (let t = 0; t < 11; t += 2) maskedSum += values[t]!;
    maskedSum += values[n + 2]! + values[n + 3]!;
    expect(masked.bytes).toBe(8);
    expect(masked.nats).toBeCloseTo(maskedSum, 10);
    expect(masked.bitsPerByte).toBeCloseTo(maskedSum / (Math.LN2 * 8), 10);
    model.dispose();
  });

  it('rejects a bad mask or batch with INVALID_ARGUMENT', async () => {
    const model = new ByteLatentTransformer(SMALL_ARGS, 5);
    expect((await rejection(scoreBytes(model, rows, lengths, targets, [[1]]))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(scoreBytes(model, rows, lengths, targets, [rows[0]!.map(() => 0), [0, 0, 0, 0, 0]]))).message).toContain(
      'no byte',
    );
    expect((await rejection(scoreBytes(model, rows, lengths, [[1]]))).code).toBe('INVALID_ARGUMENT');
    model.dispose();
  });
});

describe.skipIf(!existsSync(GOLDEN_WEIGHTS))('scoreBytes on the golden tiny model', () => {
  it('gives loss / ln 2 bits per byte on the ascii case', async () => {
    const config = JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
    const model = ByteLatentTransformer.fromSafetensors(parseSafetensors(readFileSync(GOLDEN_WEIGHTS)), config.blt_args as BltArgs);
    const c = parseSafetensors(readFileSync(join(GOLDEN, 'cases', 'ascii.safetensors')));
    const tokens = c.toInt32('tokens');
    const loss = c.toFloat32('loss')[0]!;
    const score = await scoreBytes(model, [tokens], [c.toInt32('patch_lengths')], [c.toInt32('targets')]);
    expect(score.bytes).toBe(tokens.length);
    expect(Math.abs(score.nats - loss * tokens.length)).toBeLessThan(1e-4 * tokens.length);
    expect(Math.abs(score.bitsPerByte - loss / Math.LN2)).toBeLessThan(1e-4);
    const referenceNats = Array.from(c.toFloat32('token_losses')).reduce((s, v) => s + v, 0);
    expect(Math.abs(score.bitsPerByte - bitsPerByte(referenceNats, tokens.length))).toBeLessThan(1e-4);
    model.dispose();
  });
});
