import { describe, expect, it } from 'vitest';
import { PatchStatistics, patchStatistics, scriptOf } from './patch-stats.js';
import { expectCode } from './test-helpers.js';

const enc = (s: string) => new TextEncoder().encode(s);

describe('patchStatistics', () => {
  it('counts sizes, percentiles and word alignment (hand-worked)', () => {
    // "the |cat |sat": starts 4 ('c') and 8 ('s') are both word starts, and both word starts are cut.
    const good = patchStatistics(enc('the cat sat'), [4, 4, 3]);
    expect(good).toMatchObject({
      patches: 3,
      bytes: 11,
      p50: 4,
      p90: 4,
      maxPatchSize: 4,
      startsOnWordStart: 1,
      wordStartsCovered: 1,
      startsInsideCharacter: 0,
    });
    expect(good.meanPatchSize).toBeCloseTo(11 / 3, 12);
    // "th|e c|at sat": starts 2 ('e') and 5 ('a') are inside words; word starts 4 and 8 are not cut.
    const bad = patchStatistics(enc('the cat sat'), [2, 3, 6]);
    expect(bad).toMatchObject({ p50: 3, p90: 6, p99: 6, startsOnWordStart: 0, wordStartsCovered: 0 });
  });

  it('flags starts inside a UTF-8 character and groups patches by script', () => {
    const bytes = enc('éa мир');
    // é = c3 a9: a start at byte 1 is inside it.
    const r = patchStatistics(bytes, [1, 2, 1, 6]);
    expect(r.startsInsideCharacter).toBeCloseTo(1 / 3, 12);
    const scripts = Object.fromEntries(r.byScript.map((s) => [s.script, s]));
    expect(scripts['Latin']!.patches).toBe(2); // "\xc3" (é, decoded through its patch end) and "\xa9a" (inside é)
    expect(scripts['Common']!.patches).toBe(1); // " "
    expect(scripts['Cyrillic']!.bytes).toBe(6);
    // A patch of continuation bytes only belongs to the script of the character it is inside.
    expect(patchStatistics(enc('мир'), [1, 1, 4]).byScript.map((x) => [x.script, x.patches])).toEqual([['Cyrillic', 3]]);
  });

  it('gives the same figures fed piece by piece', () => {
    const text = enc('The cat, the hat. Кошка и шляпа! 猫和帽子。');
    const lengths = [4, 4, 1, 4, 5, 6, 4, 4, 3, 9, 6, 6, 3];
    expect(lengths.reduce((a, b) => a + b)).toBe(text.length);
    const one = patchStatistics(text, lengths);
    const s = new PatchStatistics();
    s.add(text.subarray(0, 13), lengths.slice(0, 4));
    s.add(text.subarray(13), lengths.slice(4));
    expect(s.summary()).toEqual(one);
  });

  it('rejects lengths that do not tile the bytes, and an empty summary', async () => {
    await expectCode(() => patchStatistics(enc('abc'), [1, 1]), 'INVALID_ARGUMENT');
    await expectCode(() => patchStatistics(enc('abc'), [3, 0]), 'INVALID_ARGUMENT');
    await expectCode(() => new PatchStatistics().summary(), 'EMPTY_INPUT');
  });
});

describe('scriptOf', () => {
  it('names the script of letters, null for the rest', () => {
    expect(['a', 'ж', 'λ', '中', 'ש', 'ب', 'क', '가', 'ก', '1', ' ', '!'].map((c) => scriptOf(c.codePointAt(0)!))).toEqual([
      'Latin',
      'Cyrillic',
      'Greek',
      'Han',
      'Hebrew',
      'Arabic',
      'Devanagari',
      'Hangul',
      'Thai',
      null,
      null,
      null,
    ]);
  });
});
