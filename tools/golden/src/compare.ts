/** The result of comparing one group of tensors with their golden values. */
export interface Comparison {
  /** Group name printed in the report, e.g. `tokens` or `hash_ids`. */
  readonly group: string;
  /** Tensor names covered (JSON-only items are named `json:<key>`). */
  readonly items: readonly string[];
  /** Number of values compared. */
  readonly values: number;
  /** Largest absolute difference (integers: 0 when equal). */
  readonly maxAbsDiff: number;
  /** Allowed absolute difference: 0 for integers, 1e-4 for floats (the largest, when merged). */
  readonly tolerance: number;
  /** Every compared value within its tolerance (NaN fails). */
  readonly ok: boolean;
  /** First mismatch, for the report: `name[index]: expected X, got Y`. */
  readonly firstMismatch?: string;
}

/** Float tolerance of the golden vectors (shared/golden/README.md): 1e-4 absolute. */
export const FLOAT_TOLERANCE = 1e-4;

type Numeric = ArrayLike<number> | ArrayLike<bigint>;

/**
 * Compares arrays element by element.
 *
 * @param item - name of the compared tensor
 * @param expected - golden values
 * @param actual - our values
 * @param tolerance - 0 for exact integer comparison
 * @returns a one-item comparison; a length mismatch counts as an infinite difference
 */
export function compareArrays(group: string, item: string, expected: Numeric, actual: Numeric, tolerance: number): Comparison {
  if (expected.length !== actual.length) {
    return {
      group,
      items: [item],
      values: expected.length,
      maxAbsDiff: Number.POSITIVE_INFINITY,
      tolerance,
      ok: false,
      firstMismatch: `${item}: expected ${expected.length} values, got ${actual.length}`,
    };
  }
  let maxAbsDiff = 0;
  let firstMismatch: string | undefined;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    const diff = typeof e === 'bigint' || typeof a === 'bigint' ? Math.abs(Number(BigInt(e) - BigInt(a))) : Math.abs(e - a);
    const bad = Number.isNaN(diff) || diff > tolerance;
    if (bad && firstMismatch === undefined) firstMismatch = `${item}[${i}]: expected ${e}, got ${a}`;
    if (Number.isNaN(diff) || diff > maxAbsDiff) maxAbsDiff = Number.isNaN(diff) ? Number.NaN : diff;
    if (Number.isNaN(maxAbsDiff)) break;
  }
  const base = { group, items: [item], values: expected.length, maxAbsDiff, tolerance, ok: firstMismatch === undefined };
  return firstMismatch === undefined ? base : { ...base, firstMismatch };
}

/**
 * Merges comparisons of one group into one report line.
 *
 * @param group - the group name
 * @param parts - comparisons to merge (at least one)
 * @returns the merged comparison: items and values summed, the largest difference kept
 */
export function mergeComparisons(group: string, parts: readonly Comparison[]): Comparison {
  let maxAbsDiff = 0;
  let firstMismatch: string | undefined;
  for (const p of parts) {
    if (Number.isNaN(p.maxAbsDiff) || p.maxAbsDiff > maxAbsDiff) maxAbsDiff = p.maxAbsDiff;
    if (firstMismatch === undefined && p.firstMismatch !== undefined) firstMismatch = p.firstMismatch;
  }
  const merged = {
    group,
    items: parts.flatMap((p) => p.items),
    values: parts.reduce((s, p) => s + p.values, 0),
    maxAbsDiff,
    tolerance: Math.max(...parts.map((p) => p.tolerance)),
    ok: parts.every((p) => p.ok),
  };
  return firstMismatch === undefined ? merged : { ...merged, firstMismatch };
}
