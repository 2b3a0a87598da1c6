/** How the next byte is chosen from the model's logits. */
export interface SamplingOptions {
  /** 0 = greedy (argmax, the reference demo's default); > 0 samples from `softmax(logits / temperature)`. */
  readonly temperature: number;
  /** Keep only the k most likely ids (ties with the k-th kept, as the reference). Undefined = all. */
  readonly topK?: number;
  /** Nucleus sampling: keep the most likely ids until their mass reaches p, in (0, 1]. Undefined = 1. */
  readonly topP?: number;
}

/**
 * Picks the next token id (architecture §9.1). Greedy: the first index of the largest logit. Sampling:
 * `softmax(logits / temperature)`, then top-k (probabilities below the k-th largest zeroed), then
 * top-p (the reference's rule: sorted by decreasing probability, an id is dropped when the mass
 * before it already exceeds p), renormalised, and one uniform draw walked over the ids in decreasing
 * probability (ties by index). Computed in float64 on the CPU: 260 values, deterministic for a given
 * generator, whatever the backend.
 *
 * @param logits - one position's logits
 * @param options - temperature, top-k, top-p (validated by the caller)
 * @param random - uniform generator in [0, 1) (only read when sampling)
 * @returns the chosen id
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, random: () => number): number {
  const v = logits.length;
  if (options.temperature === 0) {
    let best = 0;
    for (let i = 1; i < v; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < v; i++) max = Math.max(max, logits[i]! / options.temperature);
  const probs = new Float64Array(v);
  for (let i = 0; i < v; i++) probs[i] = Math.exp(logits[i]! / options.temperature - max);
  const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
  if (options.topK !== undefined && options.topK < v) {
    const kth = probs[order[options.topK - 1]!]!;
    for (let i = 0; i < v; i++) if (probs[i]! < kth) probs[i] = 0;
  }
  let total = 0;
  for (let i = 0; i < v; i++) total += probs[i]!;
  if (options.topP !== undefined && options.topP < 1) {
    let before = 0;
    for (const i of order) {
      const p = probs[i]!;
      if (before / total > options.topP) probs[i] = 0;
      before += p;
    }
    total = 0;
    for (let i = 0; i < v; i++) total += probs[i]!;
  }
  let u = random() * total;
  let last = order[0]!;
  for (const i of order) {
    if (probs[i] === 0) continue;
    last = i;
    u -= probs[i]!;
    if (u < 0) return i;
  }
  return last; // rounding left u >= 0 after the last id
}

/**
 * Finds stop sequences in a stream of bytes and holds back the bytes that may still begin one, so
 * that streamed text never contains (a part of) a stop sequence that then matches.
 */
export class StopMatcher {
  private held: number[] = [];

  /** @param stops - the stop sequences as bytes, each non-empty */
  constructor(private readonly stops: readonly Uint8Array[]) {}

  /**
   * Adds one byte.
   *
   * @returns the bytes now known not to belong to a stop sequence, and whether one just matched
   *   (its bytes are then dropped, never released)
   */
  push(byte: number): { released: number[]; matched: boolean } {
    this.held.push(byte);
    const h = this.held;
    for (const s of this.stops) {
      if (s.length <= h.length && s.every((b, i) => h[h.length - s.length + i] === b)) {
        const released = h.slice(0, h.length - s.length);
        this.held = [];
        return { released, matched: true };
      }
    }
    // Keep the longest suffix that is a proper prefix of some stop sequence: a later match must start there.
    let keep = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, h.length); len > keep; len--) {
        let ok = true;
        for (let i = 0; i < len && ok; i++) ok = h[h.length - len + i] === s[i];
        if (ok) {
          keep = len;
          break;
        }
      }
    }
    const released = h.slice(0, h.length - keep);
    this.held = h.slice(h.length - keep);
    return { released, matched: false };
  }

  /** Ends the stream: the held bytes did not become a stop sequence. */
  flush(): number[] {
    const out = this.held;
    this.held = [];
    return out;
  }
}
