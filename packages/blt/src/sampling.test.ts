import { seededUniform } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import { StopMatcher, sampleToken } from './sampling.js';

function frequencies(logits: number[], options: Parameters<typeof sampleToken>[1], draws = 20000): number[] {
  const random = seededUniform(9);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, options, random)]!++;
  return counts.map((c) => c / draws);
}

describe('sampleToken', () => {
  const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];

  it('is greedy at temperature 0 (first index of the maximum) and reads no random number', () => {
    const random = () => {
      throw new Error('greedy decoding must not draw');
    };
    expect(sampleToken([1, 3, 3, -1], { temperature: 0 }, random)).toBe(1);
    expect(sampleToken(Float32Array.of(-5, -2, -9), { temperature: 0, topK: 1, topP: 0.1 }, random)).toBe(1);
  });

  it('samples softmax(logits / temperature)', () => {
    const f = frequencies(logits, { temperature: 1 });
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(Math.abs(f[i]! - p)).toBeLessThan(0.015));
    // Temperature 2 flattens: p ∝ sqrt(p).
    const s = [0.5, 0.3, 0.15, 0.05].map(Math.sqrt);
    const total = s.reduce((a, b) => a + b, 0);
    frequencies(logits, { temperature: 2 }).forEach((p, i) => expect(Math.abs(p - s[i]! / total)).toBeLessThan(0.015));
  });

  it('keeps the k most likely ids with top-k, and the reference nucleus with top-p', () => {
    const k2 = frequencies(logits, { temperature: 1, topK: 2 });
    expect(Math.abs(k2[0]! - 0.625)).toBeLessThan(0.015);
    expect(k2[2]! + k2[3]!).toBe(0);
    // p = 0.7: 0.5 kept (0 before it), 0.3 kept (0.5 before), 0.15 dropped (0.8 before > 0.7).
    const p7 = frequencies(logits, { temperature: 1, topP: 0.7 });
    expect(Math.abs(p7[1]! - 0.375)).toBeLessThan(0.015);
    expect(p7[2]! + p7[3]!).toBe(0);
    // The most likely id always stays.
    expect(frequencies(logits, { temperature: 1, topP: 1e-9 }, 100)[0]).toBe(1);
    // top-k then top-p on the renormalised top-k mass: {0.625, 0.375}, p = 0.6 keeps only the first.
    expect(frequencies(logits, { temperature: 1, topK: 2, topP: 0.6 }, 100)[0]).toBe(1);
  });

  it('is deterministic for a generator state', () => {
    const a = seededUniform(3);
    const b = seededUniform(3);
    const draws = (r: () => number) => Array.from({ length: 50 }, () => sampleToken(logits, { temperature: 1.5, topP: 0.95 }, r));
    expect(draws(a)).toEqual(draws(b));
  });
});

describe('StopMatcher', () => {
  const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
  function run(stops: string[], input: string): { out: string; matched: boolean; releasedAt: number[] } {
    const m = new StopMatcher(stops.map((s) => new TextEncoder().encode(s)));
    const out: number[] = [];
    const releasedAt: number[] = [];
    for (const b of bytes(input)) {
      const r = m.push(b);
      out.push(...r.released);
      releasedAt.push(r.released.length);
      if (r.matched) return { out: new TextDecoder().decode(Uint8Array.from(out)), matched: true, releasedAt };
    }
    out.push(...m.flush());
    return { out: new TextDecoder().decode(Uint8Array.from(out)), matched: false, releasedAt };
  }

  it('drops the stop sequence and everything after it', () => {
    expect(run(['\n\n'], 'one\ntwo\n\nthree')).toMatchObject({ out: 'one\ntwo', matched: true });
    expect(run(['abcx', 'bcd'], 'zabcd!')).toMatchObject({ out: 'za', matched: true });
    expect(run(['END'], 'no stop here')).toMatchObject({ out: 'no stop here', matched: false });
    expect(run(['aab'], 'aaab')).toMatchObject({ out: 'a', matched: true });
    expect(run(['€'], 'price: 5€')).toMatchObject({ out: 'price: 5', matched: true });
  });

  it('holds back only bytes that may begin a stop sequence', () => {
    // 'x' is released at once; 'a' and 'b' are held until 'y' shows they are not "abc".
    expect(run(['abc'], 'xaby').releasedAt).toEqual([1, 0, 0, 3]);
  });
});
