import { describe, expect, it } from 'vitest';
import { CHARACTER_TASKS, evaluateCharacterTasks, generateCharacterTasks, type TaskItem } from './character-tasks.js';
import type { ByteScoringModel } from './scoring-model.js';
import { expectCode } from './test-helpers.js';
import { loadWords, splitWords } from './words.js';

const words = splitWords(loadWords());

/** A model that gives log-probability 0 to rows ending with the right answer and −1 to the others. */
function oracle(items: readonly TaskItem[], right: boolean): ByteScoringModel {
  const answers = new Set(items.map((i) => i.prompt + i.candidates[i.answer]));
  return {
    kind: 'byte',
    name: 'oracle',
    maxContext: 4096,
    bosId: 1,
    logProbs: async (rows) =>
      rows.map((r) => {
        const text = new TextDecoder().decode(Uint8Array.from([...r.tokens.subarray(1), r.targets.at(-1)!], (id) => id - 4));
        return new Float64Array(r.targets.length).fill(answers.has(text) === right ? 0 : -1);
      }),
  };
}

describe('word lists', () => {
  it('loads lowercase alphabetic words of tiers 10 and 20, split by word', () => {
    const all = loadWords();
    expect(all.length).toBeGreaterThan(5000);
    expect(all.every((w) => /^[a-z]{3,10}$/.test(w))).toBe(true);
    expect([...all].sort()).toEqual(all);
    expect(new Set(all).size).toBe(all.length);
    const inter = words.train.filter((w) => new Set(words.heldOut).has(w));
    expect(inter).toEqual([]);
    expect(words.train.length + words.heldOut.length).toBe(all.length);
    expect(splitWords(all).heldOut).toEqual(words.heldOut);
    expect(splitWords(all, { seed: 1 }).heldOut).not.toEqual(words.heldOut);
  });
});

describe('generateCharacterTasks', () => {
  const items = generateCharacterTasks({ perTask: 20, seed: 0, words });

  it('is deterministic, and a seed changes it', () => {
    expect(generateCharacterTasks({ perTask: 20, seed: 0, words })).toEqual(items);
    expect(generateCharacterTasks({ perTask: 20, seed: 1, words })).not.toEqual(items);
  });

  it('asks held-out words, with train-word examples, and right answers', () => {
    expect(items.length).toBe(20 * CHARACTER_TASKS.length);
    const held = new Set(words.heldOut);
    const train = new Set(words.train);
    for (const item of items) {
      expect(held.has(item.word)).toBe(true);
      const lines = item.prompt.split('\n');
      expect(lines.length).toBe(3); // two shots and the question
      // The example's word is its longest quoted string (the others are single letters).
      const wordOf = (line: string) => [...line.matchAll(/"([a-z]+)"/g)].map((m) => m[1]!).sort((a, b) => b.length - a.length)[0]!;
      for (const shot of lines.slice(0, 2)) expect(train.has(wordOf(shot))).toBe(true);
      expect(wordOf(lines[2]!)).toBe(item.word);
      expect(new Set(item.candidates).size).toBe(item.candidates.length);
      const answer = item.candidates[item.answer]!.slice(1);
      const w = item.word;
      const q = lines[2]!;
      switch (item.task) {
        case 'spelling':
          expect(answer).toBe([...w].join('-'));
          break;
        case 'reverse-spelling':
          expect(answer).toBe([...w].reverse().join(''));
          break;
        case 'insert-char': {
          const [, x, c] = /Insert "(.)" after "(.)"/.exec(q)!;
          expect(answer).toBe(w.replace(c!, c! + x!));
          break;
        }
        case 'delete-char':
          expect(answer).toBe(w.replace(/Delete "(.)"/.exec(q)![1]!, ''));
          break;
        case 'substitute-char': {
          const [, c, x] = /Replace "(.)" with "(.)"/.exec(q)!;
          expect(answer).toBe(w.replace(c!, x!));
          break;
        }
        case 'swap-char': {
          const [, a, b] = /Swap "(.)" and "(.)"/.exec(q)!;
          expect(answer).toBe([...w].map((ch) => (ch === a ? b : ch === b ? a : ch)).join(''));
          break;
        }
        case 'contains-char':
          expect(answer).toBe(w.includes(/contain "(.)"/.exec(q)![1]!) ? 'y' : 'n');
          break;
      }
      expect(item.candidates.length).toBe(item.task === 'contains-char' ? 2 : 4);
      expect(new Set(item.candidates.map((c) => c.length)).size).toBe(1);
    }
    const contains = items.filter((i) => i.task === 'contains-char').map((i) => i.candidates[i.answer]);
    expect(contains).toContain(' y');
    expect(contains).toContain(' n');
  });

  it('rejects bad counts and unknown tasks', async () => {
    await expectCode(() => generateCharacterTasks({ perTask: 0, words }), 'INVALID_ARGUMENT');
    await expectCode(() => generateCharacterTasks({ tasks: ['rhyme' as never], words }), 'INVALID_ARGUMENT');
    await expectCode(() => generateCharacterTasks({ perTask: 5, words: { train: words.train, heldOut: ['aaa'] } }), 'EMPTY_INPUT');
  });
});

describe('evaluateCharacterTasks', () => {
  const items = generateCharacterTasks({ perTask: 6, seed: 2, words });

  it('scores by likelihood ranking: an oracle gets everything right, an anti-oracle nothing', async () => {
    const good = await evaluateCharacterTasks(oracle(items, true), items);
    expect(good.accuracy).toBe(1);
    expect(good.tasks.map((t) => t.task)).toEqual([...CHARACTER_TASKS]);
    expect(good.tasks.find((t) => t.task === 'contains-char')!.chance).toBe(0.5);
    expect(good.tasks.find((t) => t.task === 'spelling')!.chance).toBe(0.25);
    const bad = await evaluateCharacterTasks(oracle(items, false), items);
    expect(bad.accuracy).toBe(0);
  });

  it('rejects no items and a bad answer index', async () => {
    await expectCode(() => evaluateCharacterTasks(oracle(items, true), []), 'EMPTY_INPUT');
    await expectCode(() => evaluateCharacterTasks(oracle(items, true), [{ ...items[0]!, answer: 9 }]), 'INVALID_ARGUMENT');
  });
});
