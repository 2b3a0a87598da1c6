import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';

/** `true` if `value` is a non-negative integer below `limit` (a usable segment id). */
function isSegment(value: number, limit: number): boolean {
  return value >= 0 && value < limit && Math.floor(value) === value;
}

/**
 * Validates the inputs of an `UnsortedSegmentSum` kernel call; returns the segment count and the
 * output shape `[numSegments, ...x.shape.slice(segmentIds.rank)]`.
 *
 * @param backendName - for messages
 * @param error - makes the backend's typed error from a message
 */
export function checkSegmentSum(
  x: TensorInfo | undefined,
  segmentIds: TensorInfo | undefined,
  numSegments: unknown,
  backendName: string,
  error: (message: string) => Error,
): { numSegments: number; outShape: number[] } {
  if (x === undefined || segmentIds === undefined) throw error('UnsortedSegmentSum needs the inputs x and segmentIds');
  if (typeof numSegments !== 'number' || !Number.isInteger(numSegments) || numSegments < 0) {
    throw error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${String(numSegments)}`);
  }
  const supported: DataType[] = ['float32', 'int32', 'bool'];
  if (!supported.includes(x.dtype)) throw error(`UnsortedSegmentSum on ${backendName} supports float32, int32 and bool x, got ${x.dtype}`);
  if (segmentIds.dtype !== 'int32' && segmentIds.dtype !== 'float32') {
    throw error(`UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  if (idRank < 1 || idRank > x.shape.length || segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw error(
      `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape.join(', ')}] must be a non-empty prefix of x shape [${x.shape.join(', ')}]`,
    );
  }
  return { numSegments, outShape: [numSegments, ...x.shape.slice(idRank)] };
}

/**
 * `out[s, ...] = Σ x[i, ...]` over the positions `i` whose id is `s`: the arithmetic of the
 * `UnsortedSegmentSum` kernels registered for wasm and cpu (`tf.gather`'s gradient, so every
 * embedding's). Linear in the input, where tfjs-backend-cpu's own kernel is O(segments × positions
 * × inner): 23 of the 28 s of a tiny BLT training step on cpu, with 1000-row hash tables.
 *
 * For the 1-D ids that tfjs itself produces the result is bit-identical to tfjs-backend-cpu's
 * kernel on finite inputs:
 *
 * - ids outside `[0, numSegments)` are ignored;
 * - the output is float32, also for int32 `x` (the cpu kernel multiplies by a float32 mask), and
 *   int32 values are rounded to float32 before summing, as that multiply does;
 * - each output element is accumulated in double precision in ascending position order and rounded
 *   to float32 once, as the cpu kernel's `Sum` does.
 *
 * Where that kernel is wrong this follows TensorFlow instead:
 *
 * - k-D ids (shape a prefix of `x`'s) sum over all k axes. The cpu kernel inserts the broadcast
 *   axes at the wrong place (after axis 0 instead of after axis k-1), so it throws or mixes up axes.
 * - A NaN or infinity in `x` reaches only its own segment. The cpu kernel computes `mask * x` for
 *   every segment, so it poisons that position of every segment (0 * NaN = NaN).
 *
 * @param out - `numSegments · inner` values, overwritten
 * @param x - `positions · inner` values
 * @param ids - `positions` segment ids
 * @param roundToFloat32 - round each value to float32 first (int32 and bool `x`)
 */
export function segmentSum(
  out: Float32Array,
  x: ArrayLike<number>,
  ids: ArrayLike<number>,
  numSegments: number,
  roundToFloat32: boolean,
): void {
  const positions = ids.length;
  const inner = positions === 0 ? 0 : x.length / positions;
  out.fill(0);
  // Positions are grouped by segment with linked lists (head[s] -> next[i] -> ...) rather than a
  // float64 accumulator of the whole output, which for a 500k-row hash embedding would be
  // gigabytes. The lists are built from the last position to the first so that each runs in
  // ascending order, the order in which the cpu kernel sums.
  const head = new Int32Array(numSegments).fill(-1);
  const next = new Int32Array(positions);
  const touched: number[] = [];
  for (let i = positions - 1; i >= 0; i--) {
    const s = ids[i]!;
    if (!isSegment(s, numSegments)) continue;
    if (head[s] === -1) touched.push(s);
    next[i] = head[s]!;
    head[s] = i;
  }
  const acc = new Float64Array(inner);
  for (const s of touched) {
    acc.fill(0);
    for (let i = head[s]!; i !== -1; i = next[i]!) {
      const base = i * inner;
      if (roundToFloat32) {
        for (let k = 0; k < inner; k++) acc[k]! += Math.fround(x[base + k]!);
      } else {
        for (let k = 0; k < inner; k++) acc[k]! += x[base + k]!;
      }
    }
    // Float64Array -> Float32Array rounds to nearest, as the cpu kernel's store of its double sum.
    out.set(acc, s * inner);
  }
}
