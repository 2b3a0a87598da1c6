import { describe, expect, it } from 'vitest';
import { NOISE_KINDS, applyNoise, evaluateNoiseRobustness } from './noise.js';
import { uniformByteModel } from './scoring-model.js';
import { expectCode } from './test-helpers.js';

const TEXT = 'The quick brown fox jumps over the lazy dog.\nÉlan vital, naïve café: 42!';

describe('applyNoise', () => {
  it('is deterministic per seed and differs across seeds', () => {
    for (const kind of ['random-case', 'char-drop', 'repeat'] as const) {
      expect(applyNoise(TEXT, kind, { seed: 1 })).toBe(applyNoise(TEXT, kind, { seed: 1 }));
      expect(applyNoise(TEXT, kind, { seed: 1 })).not.toBe(applyNoise(TEXT, kind, { seed: 2 }));
    }
  });

  it('does what each transform says', () => {
    expect(applyNoise('ab c\nde', 'ant-speak')).toBe('a b   c\nd e');
    expect(applyNoise(TEXT, 'uppercase')).toBe(TEXT.toUpperCase());
    const rc = applyNoise(TEXT, 'random-case', { seed: 3 });
    expect(rc.toLowerCase()).toBe(TEXT.toLowerCase());
    expect(rc).not.toBe(TEXT);
    expect(applyNoise(TEXT, 'char-drop', { probability: 0 })).toBe(TEXT);
    expect(applyNoise(TEXT, 'char-drop', { probability: 1 })).toBe(TEXT.replace(/\S/gu, ''));
    const dropped = applyNoise(TEXT, 'char-drop', { seed: 4 });
    expect(dropped.length).toBeLessThan(TEXT.length);
    expect(applyNoise(TEXT, 'repeat', { probability: 0 })).toBe(TEXT);
    const rep = applyNoise(TEXT, 'repeat', { seed: 5 });
    expect(rep.replace(/(.)\1+/gsu, '$1')).toBe(TEXT.replace(/(.)\1+/gsu, '$1'));
    expect(rep.length).toBeGreaterThan(TEXT.length);
  });

  it('rejects an unknown kind and a probability outside [0, 1]', async () => {
    await expectCode(() => applyNoise(TEXT, 'shout' as never), 'INVALID_ARGUMENT');
    await expectCode(() => applyNoise(TEXT, 'repeat', { probability: 1.5 }), 'INVALID_ARGUMENT');
  });
});

describe('evaluateNoiseRobustness', () => {
  it('scores the clean text and every noise (a uniform model is unaffected)', async () => {
    const r = await evaluateNoiseRobustness(uniformByteModel(), TEXT.repeat(3));
    expect(r.noised.map((n) => n.kind)).toEqual([...NOISE_KINDS]);
    for (const n of r.noised) {
      expect(n.ratio).toBeCloseTo(1, 12);
      expect(n.result.bytes).toBe(new TextEncoder().encode(applyNoise(TEXT.repeat(3), n.kind)).length);
    }
  });
});
