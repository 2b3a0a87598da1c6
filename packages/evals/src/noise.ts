/**
 * Seeded noise transforms in the spirit of the BLT paper's robustness study (noised HellaSwag:
 * AntSpeak, Drop, RandomCase, Repeat, UpperCase). They act on characters (code points), so the
 * output stays valid UTF-8; the probabilities are ours and stated with each transform.
 */
import { type BitsPerByteOptions, type BitsPerByteResult, evaluateBitsPerByte } from './bits-per-byte.js';
import { EvalError, checkNumber } from './errors.js';
import { seededRandom } from './random.js';
import type { ScoringModel } from './scoring-model.js';

/** The transforms, in report order. */
export const NOISE_KINDS = ['random-case', 'char-drop', 'repeat', 'uppercase', 'ant-speak'] as const;

/** One of {@link NOISE_KINDS}. */
export type NoiseKind = (typeof NOISE_KINDS)[number];

/** Options of {@link applyNoise}. */
export interface NoiseOptions {
  readonly seed?: number;
  /**
   * Per-character probability: `random-case` flips a letter's case (default 0.5), `char-drop`
   * drops a non-space character (0.1), `repeat` repeats a character 1–3 more times (0.2). The
   * other two transforms are deterministic.
   */
  readonly probability?: number;
}

const DEFAULT_P: Record<NoiseKind, number> = { 'random-case': 0.5, 'char-drop': 0.1, repeat: 0.2, uppercase: 1, 'ant-speak': 1 };

/**
 * Applies a noise transform. The same text, kind and options always give the same output.
 *
 * - `random-case`: each letter's case is flipped with probability p;
 * - `char-drop`: each non-whitespace character is dropped with probability p;
 * - `repeat`: each character is followed by 1–3 copies of itself with probability p;
 * - `uppercase`: the whole text in upper case;
 * - `ant-speak`: a space after every character of each line ("cat" → "c a t").
 *
 * @param text - input text
 * @param kind - the transform
 * @param options - seed and probability
 * @returns the noised text
 * @throws {EvalError} `INVALID_ARGUMENT` for an unknown kind or a probability outside [0, 1]
 */
export function applyNoise(text: string, kind: NoiseKind, options: NoiseOptions = {}): string {
  if (!NOISE_KINDS.includes(kind)) throw new EvalError('INVALID_ARGUMENT', `unknown noise "${String(kind)}" (${NOISE_KINDS.join(', ')})`);
  const p = checkNumber('probability', options.probability ?? DEFAULT_P[kind], 0, 1);
  const r = seededRandom(options.seed ?? 0);
  switch (kind) {
    case 'uppercase':
      return text.toUpperCase();
    case 'ant-speak':
      return text
        .split('\n')
        .map((line) => [...line].join(' '))
        .join('\n');
    case 'random-case': {
      let out = '';
      for (const ch of text) {
        const up = ch.toUpperCase();
        const low = ch.toLowerCase();
        // Only characters with a one-character case pair flip, so lengths stay predictable.
        if (up !== low && [...up].length === 1 && [...low].length === 1 && r() < p) out += ch === up ? low : up;
        else out += ch;
      }
      return out;
    }
    case 'char-drop': {
      let out = '';
      for (const ch of text) if (/\s/u.test(ch) || r() >= p) out += ch;
      return out;
    }
    case 'repeat': {
      let out = '';
      for (const ch of text) {
        out += ch;
        if (r() < p) out += ch.repeat(1 + Math.floor(r() * 3));
      }
      return out;
    }
  }
}

/** BPB on clean text and under each noise. */
export interface NoiseRobustnessResult {
  readonly model: string;
  readonly clean: BitsPerByteResult;
  /** Per noise: BPB on the noised text, and its ratio to the clean BPB. */
  readonly noised: ReadonlyArray<{ readonly kind: NoiseKind; readonly result: BitsPerByteResult; readonly ratio: number }>;
}

/**
 * Bits per byte of a model on a text and on each noised version of it (the BPB of the noised
 * text, per byte of the noised text).
 *
 * @param model - any byte or token model
 * @param text - the clean text
 * @param options - noise kinds (default all), seed, and {@link evaluateBitsPerByte}'s options
 * @returns clean and noised figures
 */
export async function evaluateNoiseRobustness(
  model: ScoringModel,
  text: string,
  options: BitsPerByteOptions & { readonly kinds?: readonly NoiseKind[]; readonly seed?: number } = {},
): Promise<NoiseRobustnessResult> {
  const { kinds = NOISE_KINDS, seed = 0, ...bpb } = options;
  const clean = await evaluateBitsPerByte(model, text, bpb);
  const noised = [];
  for (const kind of kinds) {
    const result = await evaluateBitsPerByte(model, applyNoise(text, kind, { seed }), bpb);
    noised.push({ kind, result, ratio: result.bitsPerByte / clean.bitsPerByte });
  }
  return { model: model.name, clean, noised };
}
