/** Seeded randomness shared by the task generators and noise transforms. */
import { seededUniform } from '@bytelatent/nn';

/**
 * mulberry32 in [0, 1) from a 32-bit seed, reproducible on every platform: `@bytelatent/nn`'s
 * `seededUniform` (one implementation for the whole project), under the name this package exports.
 */
export const seededRandom: (seed: number) => () => number = seededUniform;

/** FNV-1a over a string's UTF-16 code units, mixed with a seed: a stable per-item hash. */
export function hashString(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche so nearby strings land far apart.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** A seeded Fisher–Yates shuffle (returns a new array). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
