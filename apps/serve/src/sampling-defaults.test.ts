// The sampling a request gets when it names none must not loop on the shipped demo BLT, as greedy
// decoding of a small model does ("the string the string …").
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, loadPretrained, type PretrainedBlt } from '@bytelatent/blt';
import { DEFAULT_SAMPLING } from './sampling-defaults.js';

let demo: PretrainedBlt;

beforeAll(async () => {
  demo = await loadPretrained('pretrained:demo', { backend: 'wasm' });
}, 60_000);
afterAll(() => demo?.dispose());

/**
 * The most times any 16-character piece of `text` with at least 8 visible characters occurs in it
 * (1 when nothing repeats); whitespace runs, such as code's indentation, do not count.
 */
function mostRepeats(text: string): number {
  const counts = new Map<string, number>();
  for (let i = 0; i + 16 <= text.length; i++) {
    const piece = text.slice(i, i + 16);
    if (piece.replace(/\s/g, '').length >= 8) counts.set(piece, (counts.get(piece) ?? 0) + 1);
  }
  return Math.max(1, ...counts.values());
}

describe('default sampling on the demo BLT', () => {
  it('writes text that does not loop', async () => {
    for (const [prompt, seed] of [
      ['Alice was beginning to', 1],
      ['The King said', 2],
      ['It was a bright cold day', 3],
    ] as const) {
      const { text } = await generate(demo, prompt, { maxBytes: 240, ...DEFAULT_SAMPLING, seed });
      expect(text.length, text).toBeGreaterThan(200);
      // A loop repeats its phrase many times; prose may repeat a 16-byte piece twice, not four times.
      expect(mostRepeats(text), text).toBeLessThan(4);
    }
    expect(tf.getBackend()).toBe('wasm');
  }, 120_000);
});
