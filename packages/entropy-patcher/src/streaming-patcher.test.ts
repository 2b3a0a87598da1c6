import { seededUniform } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import { PatcherError } from './errors.js';
import { type PatchOptions, type PatchingMode, StreamingPatcher, findPatchBoundaries, patchingSignal } from './patching.js';

const BOS = 1;
const EOS = 2;
/** Token ids of a text: BOS then byte + 4 (ASCII only here). */
const ids = (text: string): number[] => [BOS, ...Array.from(text, (ch) => ch.charCodeAt(0) + 4)];

function expectCode(fn: () => unknown, code: PatcherError['code'], message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PatcherError);
  expect((caught as PatcherError).code).toBe(code);
  if (message) expect((caught as PatcherError).message).toMatch(message);
}

const usesEntropies = (mode: PatchingMode): boolean => patchingSignal(mode) !== undefined;

/** One patch as a pair, for readable comparisons. */
type Patch = [start: number, length: number];

function pairs(r: { starts: Int32Array; lengths: Int32Array }): Patch[] {
  if (!(r.starts instanceof Int32Array) || !(r.lengths instanceof Int32Array) || r.starts.length !== r.lengths.length) {
    throw new Error('a call returned no pair of equal-length Int32Arrays');
  }
  return Array.from(r.starts, (s, i): Patch => [s, r.lengths[i]!]);
}

function oneShot(tokens: ArrayLike<number>, h: ArrayLike<number> | undefined, options: PatchOptions): Patch[] {
  const b = findPatchBoundaries(tokens, h, options);
  return pairs({ starts: b.patchStarts, lengths: b.patchLengths });
}

function samePatches(a: readonly Patch[], b: readonly Patch[]): boolean {
  return a.length === b.length && a.every((p, i) => p[0] === b[i]![0] && p[1] === b[i]![1]);
}

/** Lengths returned by each push and by finish, for the readable cases. */
function lengthsPerCall(
  options: PatchOptions,
  pieces: ReadonlyArray<readonly number[]>,
  entropies?: ReadonlyArray<readonly number[]>,
): number[][] {
  const sp = new StreamingPatcher(options);
  const out = pieces.map((p, i) => Array.from(sp.push(p, entropies?.[i]).lengths));
  out.push(Array.from(sp.finish().lengths));
  return out;
}

/** Runs a whole row through `sp`, cut at `cuts` (piece lengths summing to N), checking `position`. */
function stream(sp: StreamingPatcher, tokens: number[], h: number[] | undefined, cuts: number[]): Patch[] {
  const out: Patch[] = [];
  let at = 0;
  for (const len of cuts) {
    out.push(...pairs(sp.push(tokens.slice(at, at + len), h?.slice(at, at + len))));
    at += len;
    expect(sp.position).toBe(at);
  }
  out.push(...pairs(sp.finish()));
  expect(sp.position).toBe(0);
  return out;
}

describe('StreamingPatcher: readable cases', () => {
  const h = [0, 0, 3, 0, 0, 3];
  const tokens = ids('abcde');

  it('returns each patch with the push that decides its end (entropy, with the next slot)', () => {
    const options: PatchOptions = { mode: 'entropy', threshold: 1 };
    expect(oneShot(tokens, h, options)).toEqual([
      [0, 1],
      [1, 2],
      [3, 3],
      [6, 1],
    ]);
    // Token t decides position t+1: the patch [1, 3) is final once token 2 (H = 3) is in.
    expect(
      lengthsPerCall(
        options,
        tokens.map((t) => [t]),
        h.map((x) => [x]),
      ),
    ).toEqual([[1], [], [2], [], [], [3], [1]]);
    expect(lengthsPerCall(options, [tokens], [h])).toEqual([[1, 2, 3], [1]]);
  });

  it('without the next slot, a start at N is the end: final at once, and no empty patch at finish', () => {
    const options: PatchOptions = { mode: 'entropy', threshold: 1, includeNextToken: false };
    expect(oneShot(tokens, h, options)).toEqual([
      [0, 1],
      [1, 2],
      [3, 3],
    ]);
    expect(
      lengthsPerCall(
        options,
        tokens.map((t) => [t]),
        h.map((x) => [x]),
      ),
    ).toEqual([[1], [], [2], [], [], [3], []]);
    // Cut before the last token, the last patch waits for the end.
    expect(lengthsPerCall(options, [tokens.slice(0, 5), tokens.slice(5)], [h.slice(0, 5), h.slice(5)])).toEqual([[1, 2], [3], []]);
  });

  it('returns an m-slot chunk as soon as the open patch reaches m slots', () => {
    const t = ids('abcdefg'); // N = 8, nothing passes θ: [1, 8] split by 3 is [1, 3, 3, 2]
    const zeros = t.map(() => 0);
    const options: PatchOptions = { mode: 'entropy', threshold: 10, maxPatchLength: 3 };
    expect(oneShot(t, zeros, options).map((p) => p[1])).toEqual([1, 3, 3, 2]);
    // With the next slot, token t makes slots up to t+1 known to belong to the open patch.
    expect(
      lengthsPerCall(
        options,
        t.map((x) => [x]),
        zeros.map((x) => [x]),
      ),
    ).toEqual([[1], [], [3], [], [], [3], [], [], [2]]);
    const noNext = { ...options, includeNextToken: false };
    expect(oneShot(t, zeros, noNext).map((p) => p[1])).toEqual([1, 3, 3, 1]);
    // Without it, a start at n is final once token n−1 is in (n ends the row if nothing follows).
    expect(
      lengthsPerCall(
        noNext,
        t.map((x) => [x]),
        zeros.map((x) => [x]),
      ),
    ).toEqual([[1], [], [], [3], [], [], [3], [], [1]]);
  });

  it("returns patches ahead of the data where the rule does not read it ('byte', 'static')", () => {
    // With the next slot, position N+1 ends a patch whatever token N is.
    expect(lengthsPerCall({ mode: 'byte' }, [[BOS, 100, 101]])).toEqual([[1, 1, 1, 1], []]);
    expect(lengthsPerCall({ mode: 'static', patchSize: 3 }, [[BOS], [100], [101], [102], [103]])).toEqual([[1], [2], [], [], [3], []]);
  });

  it('carries the previous space flag across pieces (space mode)', () => {
    const t = ids('ab  cd'); // the first space ends "ab ", the second joins "cd"
    const options: PatchOptions = { mode: 'space' };
    expect(oneShot(t, undefined, options).map((p) => p[1])).toEqual([1, 3, 4]);
    expect(lengthsPerCall(options, [t.slice(0, 4), t.slice(4)])).toEqual([[1, 3], [], [4]]);
    expect(lengthsPerCall(options, [t.slice(0, 3), t.slice(3, 4), [], t.slice(4)])).toEqual([[1], [3], [], [], [4]]);
  });

  it('carries the previous entropy across pieces (monotonic mode)', () => {
    const t = ids('abcd');
    const hm = [0, 0, 1, 2.5, 2.6]; // forced starts 0, 1, 2; the rise 1.5 at t = 3 starts 4
    const options: PatchOptions = { mode: 'monotonic', threshold: 1 };
    expect(oneShot(t, hm, options).map((p) => p[1])).toEqual([1, 1, 2, 2]);
    expect(lengthsPerCall(options, [t.slice(0, 3), t.slice(3)], [hm.slice(0, 3), hm.slice(3)])).toEqual([[1, 1], [2], [2]]);
  });

  it('finishing an empty row throws EMPTY_INPUT like the one-shot call, and the patcher stays usable', () => {
    const sp = new StreamingPatcher({ mode: 'entropy', threshold: 1 });
    expectCode(() => findPatchBoundaries([], [], { mode: 'entropy', threshold: 1 }), 'EMPTY_INPUT');
    expectCode(() => sp.finish(), 'EMPTY_INPUT');
    expect(pairs(sp.push([], []))).toEqual([]);
    expectCode(() => sp.finish(), 'EMPTY_INPUT');
    expect(stream(sp, tokens, h, [2, 0, 4])).toEqual(oneShot(tokens, h, { mode: 'entropy', threshold: 1 }));
  });

  it('is reset by finish: one instance patches row after row', () => {
    const options: PatchOptions = { mode: 'monotonic', threshold: 0.5, maxPatchLength: 2 };
    const sp = new StreamingPatcher(options);
    const rows: Array<[number[], number[]]> = [
      [ids('hello'), [0, 1, 2, 0, 3, 1]],
      [ids('x'), [5, 5]],
      [ids('again, longer'), [0, 2, 0, 1, 2, 3, 0, 0, 1, 3, 2, 1, 0, 4]],
    ];
    for (const [t, e] of rows) expect(stream(sp, t, e, [1, t.length - 1])).toEqual(oneShot(t, e, options));
  });

  it('accepts typed arrays and omitted entropies where the mode does not read them', () => {
    const sp = new StreamingPatcher({ mode: 'space', maxPatchLength: 2 });
    const t = Int32Array.from(ids('hi there'));
    const got = [...pairs(sp.push(t.subarray(0, 4))), ...pairs(sp.push(t.subarray(4), [1, 2, 3]))];
    got.push(...pairs(sp.finish()));
    expect(got).toEqual(oneShot(t, undefined, { mode: 'space', maxPatchLength: 2 }));
  });
});

describe('StreamingPatcher: errors', () => {
  it('validates its options like findPatchBoundaries', () => {
    const bad: PatchOptions[] = [
      { mode: 'entropy' },
      { mode: 'entropy', threshold: NaN },
      { mode: 'combined', threshold: 1 },
      { mode: 'entropy', threshold: 1, thresholdAdd: 1 },
      { mode: 'static' },
      { mode: 'static', patchSize: 2.5 },
      { mode: 'wordpiece' as PatchingMode },
      { mode: 'byte', maxPatchLength: 0 },
      { mode: 'byte', includeNextToken: 'yes' as unknown as boolean },
      undefined as unknown as PatchOptions,
    ];
    for (const options of bad) {
      expectCode(() => findPatchBoundaries([BOS], [0], options), 'INVALID_ARGUMENT');
      expectCode(() => new StreamingPatcher(options), 'INVALID_ARGUMENT');
    }
    // Rules that decide over the whole row are refused here, with the reason.
    for (const options of [{ mode: 'bpe' }, { mode: 'entropy-top-k', patchSize: 4 }] as const) {
      expect(findPatchBoundaries([BOS, 10, 11], [0, 1, 2], options).patchLengths.length).toBeGreaterThan(0);
      expectCode(() => new StreamingPatcher(options), 'INVALID_ARGUMENT', /cannot be streamed/);
    }
  });

  it('rejects bad entropies with the one-shot codes, naming the row position, and keeps its state', () => {
    const options: PatchOptions = { mode: 'combined', threshold: 1, thresholdAdd: 0.5 };
    const t = ids('abcdefgh');
    const e = [0, 2, 0.5, 3, 1, 2, 2.7, 0.1, 3];
    const sp = new StreamingPatcher(options);
    const got = pairs(sp.push(t.slice(0, 4), e.slice(0, 4)));
    expectCode(() => findPatchBoundaries(t, undefined, options), 'INVALID_ENTROPIES');
    expectCode(() => sp.push(t.slice(4), undefined), 'INVALID_ENTROPIES', /required/);
    expectCode(() => sp.push(t.slice(4), e.slice(4, 6)), 'INVALID_ENTROPIES', /2 entropies for 5 tokens/);
    expectCode(() => sp.push(t.slice(4), [1, 2, NaN, 3, 4]), 'INVALID_ENTROPIES', /position 6\b/);
    expectCode(() => sp.push(t.slice(4), [1, 2, 3, 4, Infinity]), 'INVALID_ENTROPIES', /position 8\b/);
    expectCode(() => sp.push(t.slice(4), [1, 2, 3, 4, -1e39]), 'INVALID_ENTROPIES', /position 8\b/);
    expectCode(() => sp.push([], undefined), 'INVALID_ENTROPIES');
    expectCode(() => sp.push(null as unknown as number[], []), 'INVALID_ARGUMENT', /tokens/);
    expect(sp.position).toBe(4);
    got.push(...pairs(sp.push(t.slice(4), e.slice(4))), ...pairs(sp.finish()));
    expect(got).toEqual(oneShot(t, e, options));
  });

  it('rejects a non-integer token in space mode, naming the row position', () => {
    const sp = new StreamingPatcher({ mode: 'space' });
    sp.push(ids('ab'));
    expectCode(() => findPatchBoundaries([BOS, 1.5], undefined, { mode: 'space' }), 'INVALID_ARGUMENT', /tokens\[1\]/);
    expectCode(() => sp.push([100, 36.5]), 'INVALID_ARGUMENT', /tokens\[1\] \(position 4\)/);
    expect(sp.position).toBe(3);
  });

  it('refuses a row past the Int32 positions with INPUT_TOO_LONG', () => {
    const sp = new StreamingPatcher({ mode: 'byte' });
    const got = pairs(sp.push([BOS, 100]));
    expectCode(() => sp.push({ length: 2 ** 31 - 3 }), 'INPUT_TOO_LONG');
    expect(sp.position).toBe(2);
    got.push(...pairs(sp.push({ length: 0 })), ...pairs(sp.finish()));
    expect(got).toEqual([
      [0, 1],
      [1, 1],
      [2, 1],
    ]);
  });
});

describe('StreamingPatcher: properties over seeded random rows', () => {
  const modes: PatchingMode[] = ['entropy', 'monotonic', 'combined', 'space', 'static', 'byte', 'bpe-patcher'];
  const levels = [0, 0.5, 1, 1.5, 2, 2.5, 3];

  /** Float32 neighbours of x, so values right at and around a threshold occur. */
  function near(x: number, r: () => number): number {
    const f = Math.fround(x);
    const ulp = f === 0 ? 1.401298464324817e-45 : Math.abs(f) * 2 ** -23;
    return r() < 0.5 ? Math.fround(f + (Math.floor(r() * 5) - 2) * ulp) : f + (r() - 0.5) * 1e-7;
  }

  function randomToken(r: () => number, i: number): number {
    if (i === 0 && r() < 0.8) return BOS;
    const u = r();
    if (u < 0.08) return Math.floor(r() * 4); // special ids 0..3
    if (u < 0.3) return 32 + 4; // space
    if (u < 0.4) return 128 + 4 + Math.floor(r() * 64); // UTF-8 continuation bytes
    if (u < 0.5) return 192 + 4 + Math.floor(r() * 64); // UTF-8 lead bytes
    if (u < 0.6) return 48 + 4 + Math.floor(r() * 10); // digits
    if (u < 0.85) return 97 + 4 + Math.floor(r() * 26); // letters
    return 4 + Math.floor(r() * 256);
  }

  function randomOptions(r: () => number, mode: PatchingMode): PatchOptions {
    const pick = (): number => (r() < 0.6 ? levels[Math.floor(r() * levels.length)]! : r() * 3);
    const include = r();
    const m = r();
    return {
      mode,
      ...(include < 0.4 ? { includeNextToken: true } : include < 0.8 ? { includeNextToken: false } : {}),
      ...(m < 0.4 ? { maxPatchLength: 1 + Math.floor(r() * 6) } : m < 0.5 ? { maxPatchLength: 1 + Math.floor(r() * 60) } : {}),
      ...(mode === 'entropy' || mode === 'combined' ? { threshold: pick() } : {}),
      ...(mode === 'monotonic' ? { threshold: pick() - 1.5 } : {}),
      ...(mode === 'combined' ? { thresholdAdd: pick() - 1.5 } : {}),
      ...(mode === 'static' ? { patchSize: 1 + Math.floor(r() * 8) } : {}),
    };
  }

  /** Entropies on a few levels, at and around the thresholds, and rises equal to the thresholds. */
  function randomEntropies(r: () => number, n: number, o: PatchOptions): number[] {
    // 'bpe-patcher' reads predicted ids: the delimiter (3) at about a third of the positions.
    if (o.mode === 'bpe-patcher') return Array.from({ length: n }, () => (r() < 0.35 ? 3 : 4 + Math.floor(r() * 256)));
    const h: number[] = [];
    for (let i = 0; i < n; i++) {
      const u = r();
      const prev = h[i - 1] ?? 0;
      if (u < 0.35) h.push(levels[Math.floor(r() * levels.length)]!);
      else if (u < 0.5 && o.threshold !== undefined) h.push(near(o.threshold, r));
      else if (u < 0.6 && o.threshold !== undefined)
        h.push(Math.fround(prev + o.threshold)); // rise = θ (monotonic)
      else if (u < 0.7 && o.thresholdAdd !== undefined) h.push(near(prev + o.thresholdAdd, r));
      else if (u < 0.8)
        h.push(prev); // ties
      else h.push(r() * 4 - 0.5);
    }
    return h;
  }

  /** Piece lengths summing to n: one piece, all single tokens, or a random mix with empty pieces. */
  function randomCuts(r: () => number, n: number): number[] {
    const style = r();
    if (style < 0.1) return [n];
    if (style < 0.2) return Array.from({ length: n }, () => 1);
    const cuts: number[] = [];
    let left = n;
    const big = 1 + Math.floor(r() * 40);
    while (left > 0) {
      const u = r();
      const len = u < 0.15 ? 0 : u < 0.45 ? 1 : Math.min(left, 1 + Math.floor(r() * big));
      cuts.push(len);
      left -= len;
    }
    if (r() < 0.3) cuts.splice(Math.floor(r() * (cuts.length + 1)), 0, 0);
    return cuts;
  }

  /**
   * The patches of a row of n tokens that are final whatever comes next: the common prefix of the
   * one-shot patches of the row ending now and of the row going on with tokens that start no patch
   * except where the rule starts one whatever the token (entropies far below every threshold and
   * falling, letters).
   */
  function finalPrefix(tokens: number[], h: number[], n: number, o: PatchOptions): Patch[] {
    if (n === 0) return [];
    const now = oneShot(tokens.slice(0, n), h.slice(0, n), o);
    const more = 3;
    const tail = Array.from({ length: more }, () => 97 + 4);
    const tailH = Array.from({ length: more }, (_, j) => -1e6 * (j + 1));
    const later = oneShot([...tokens.slice(0, n), ...tail], [...h.slice(0, n), ...tailH], o);
    let k = 0;
    while (k < now.length && k < later.length && now[k]![0] === later[k]![0] && now[k]![1] === later[k]![1]) k++;
    return now.slice(0, k);
  }

  it('equals the one-shot call for every mode, option set and cut, returning patches as soon as final', () => {
    const r = seededUniform(20250611);
    const trials = 6000;
    const counts = new Map<string, number>();
    let rejected = 0;
    let finality = 0;
    const failures: string[] = [];
    for (let trial = 0; trial < trials; trial++) {
      const mode = modes[trial % modes.length]!;
      const options = randomOptions(r, mode);
      const n = r() < 0.05 ? 0 : Math.floor(r() * (r() < 0.5 ? 16 : 201));
      const tokens = Array.from({ length: n }, (_, i) => randomToken(r, i));
      const h = randomEntropies(r, n, options);
      const cuts = randomCuts(r, n);
      const ctx = (): string => JSON.stringify({ trial, options, tokens, h, cuts });
      const key = `${mode}/${String(options.includeNextToken ?? true)}/${options.maxPatchLength === undefined ? 'nocap' : 'cap'}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      const typed = r() < 0.3; // sometimes typed arrays and subarray views
      const omit = !usesEntropies(mode) && r() < 0.5; // modes that do not read them

      const sp = new StreamingPatcher(options);
      const got: Patch[] = [];
      const checkFinality = n <= 40 || trial % 20 === 0;
      if (checkFinality) finality++;
      let at = 0;
      for (const len of cuts) {
        const pt = typed ? Int32Array.from(tokens).subarray(at, at + len) : tokens.slice(at, at + len);
        const ph = omit ? undefined : typed ? Float32Array.from(h).subarray(at, at + len) : h.slice(at, at + len);
        // Sometimes a failing push first: it must throw the one-shot's code and change nothing.
        if (r() < 0.1) {
          if (usesEntropies(mode)) {
            const u = r();
            const piece = h.slice(at, at + len);
            const bad = Math.floor(r() * len);
            const value = [NaN, Infinity, -1e39][Math.floor(r() * 3)]!;
            const badH =
              len > 0 && u < 0.4
                ? piece.map((x, i) => (i === bad ? value : x)) // not finite in float32
                : u < 0.7
                  ? undefined // missing
                  : u < 0.85 || len === 0
                    ? [...piece, 0] // one too many
                    : piece.slice(1); // one too few
            expectCode(() => sp.push(pt, badH), 'INVALID_ENTROPIES');
            rejected++;
          } else if (mode === 'space' && len > 0) {
            const bad = Math.floor(r() * len);
            expectCode(() => sp.push(tokens.slice(at, at + len).map((x, i) => (i === bad ? x + 0.5 : x))), 'INVALID_ARGUMENT');
            rejected++;
          }
          if (sp.position !== at) failures.push(`a failing push moved the position: ${ctx()}`);
        }
        got.push(...pairs(sp.push(pt, ph)));
        at += len;
        if (sp.position !== at) failures.push(`position ${sp.position} after ${at} tokens: ${ctx()}`);
        if (checkFinality && !samePatches(got, finalPrefix(tokens, h, at, options))) {
          failures.push(`not exactly the final patches after ${at} tokens: ${ctx()}`);
        }
      }
      if (n === 0) {
        expectCode(() => findPatchBoundaries(tokens, h, options), 'EMPTY_INPUT');
        expectCode(() => sp.finish(), 'EMPTY_INPUT');
        continue;
      }
      got.push(...pairs(sp.finish()));
      expect(sp.position).toBe(0);
      if (!samePatches(got, oneShot(tokens, omit ? undefined : h, options))) failures.push(`differs from the one-shot call: ${ctx()}`);
      // The instance is reset: the same row, cut differently, gives the same patches again.
      if (trial % 7 === 0) expect(stream(sp, tokens, h, [n])).toEqual(got);
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(finality).toBeGreaterThan(trials / 2);
    // Every mode × includeNextToken × cap combination was exercised many times.
    expect(counts.size).toBe(modes.length * 2 * 2);
    for (const c of counts.values()) expect(c).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(300);
  });

  it('keeps O(1) state: no array grows with the history', () => {
    const sp = new StreamingPatcher({ mode: 'monotonic', threshold: 0.2, maxPatchLength: 5 });
    const r = seededUniform(7);
    const sizes: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(r() * 50);
      sp.push(
        Array.from({ length: len }, () => 100),
        Array.from({ length: len }, () => r() * 3),
      );
      for (const v of Object.values(sp) as unknown[]) {
        expect(Array.isArray(v) || ArrayBuffer.isView(v)).toBe(false);
      }
      sizes.push(JSON.stringify(sp).length);
    }
    expect(sp.position).toBeGreaterThan(40000);
    expect(Math.max(...sizes)).toBeLessThan(400);
    sp.finish();
  });

  it('stays linear on a long row fed in pieces, and equals the one-shot call', () => {
    const n = 1 << 20;
    const r = seededUniform(3);
    const h = Float32Array.from({ length: n }, () => r() * 3);
    const tokens = new Int32Array(n).fill(100);
    const options: PatchOptions = { mode: 'entropy', threshold: 1.5, maxPatchLength: 8 };
    const t0 = performance.now();
    const sp = new StreamingPatcher(options);
    const startParts: Int32Array[] = [];
    const lengthParts: Int32Array[] = [];
    for (let at = 0; at < n;) {
      const len = Math.min(n - at, 1 + Math.floor(r() * 8192));
      const out = sp.push(tokens.subarray(at, at + len), h.subarray(at, at + len));
      startParts.push(out.starts);
      lengthParts.push(out.lengths);
      at += len;
    }
    const last = sp.finish();
    startParts.push(last.starts);
    lengthParts.push(last.lengths);
    const ms = performance.now() - t0;
    const concat = (parts: Int32Array[]): Int32Array => {
      const all = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      return all;
    };
    const b = findPatchBoundaries(tokens, h, options);
    const same = (x: Int32Array, y: Int32Array): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
    expect(same(concat(startParts), b.patchStarts)).toBe(true);
    expect(same(concat(lengthParts), b.patchLengths)).toBe(true);
    expect(b.patchLengths.length).toBeGreaterThan(n / 8);
    expect(ms).toBeLessThan(2000);
  });
});
