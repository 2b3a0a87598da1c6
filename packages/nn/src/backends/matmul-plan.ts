/**
 * Matrix-product planning shared by the kernels that run tfjs's `BatchMatMul` / `_FusedMatMul`
 * through OpenBLAS (`./wasm-native-matmul.ts` on the wasm heap, `./cpu-native-matmul.ts` on the cpu
 * backend's arrays) and by the wasm kernel fixes: batch broadcasting (numpy rules) and one
 * product, or one batched product, by `sgemm` on operands where they are stored. No backend import.
 */

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/**
 * The products of `@bytelatent/native-sgemm` the native matmul kernels call (its `NativeSgemm`, declared here
 * structurally so that `@bytelatent/nn` has no type dependency on that optional package). Row-major,
 * offsets and leading dimensions in elements; see that package for the full contract.
 */
export interface NativeSgemmLike {
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    aOffset: number,
    lda: number,
    b: Float32Array,
    bOffset: number,
    ldb: number,
    beta: number,
    c: Float32Array,
    cOffset: number,
    ldc: number,
  ): void;
  sgemmBatched(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    aOffset: number,
    aStride: number | Int32Array,
    lda: number,
    b: Float32Array,
    bOffset: number,
    bStride: number | Int32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    cOffset: number,
    cStride: number,
    ldc: number,
    batch: number,
  ): void;
  /** The work per thread OpenBLAS needs before it splits a product (the addon's; optional here). */
  setMinWorkPerThread?(work: number): void;
  getMinWorkPerThread?(): number;
  /** SwiGLU's gate in C (the addon's; optional here: an older build lacks it). */
  swiglu?(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  /** Attention's masked softmax over rows in C (the addon's; optional here). */
  softmaxRows?(
    y: Float32Array,
    offset: number,
    rows: number,
    width: number,
    ld: number,
    scale: number,
    bias: Float32Array,
    biasOffsets: Int32Array,
    valid: Float32Array,
  ): void;
}

/**
 * The broadcast of two batch shapes (numpy rules), or `undefined` if they do not broadcast (then
 * the original kernel runs and reports the error in tfjs's words).
 */
export function broadcastBatch(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Per axis of `out`, the step of `operand`'s flat index (0 along broadcast axes; operand right-aligned). */
export function broadcastStrides(out: readonly number[], operand: readonly number[]): number[] {
  const rank = out.length;
  const strides = new Array<number>(rank).fill(0);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    const dim = operand[operand.length - rank + i] ?? 1;
    strides[i] = dim === 1 ? 0 : s;
    s *= dim;
  }
  return strides;
}

/**
 * For each flat index of the batch shape `out`, the flat index of the batch it reads in an operand
 * of batch shape `operand` (which broadcasts to `out`).
 */
export function broadcastIndices(out: readonly number[], operand: readonly number[]): Int32Array {
  const rank = out.length;
  const strides = broadcastStrides(out, operand);
  const indices = new Int32Array(sizeOf(out));
  for (let flat = 0; flat < indices.length; flat++) {
    let rest = flat;
    let index = 0;
    for (let i = rank - 1; i >= 0; i--) {
      index += (rest % out[i]!) * strides[i]!;
      rest = Math.floor(rest / out[i]!);
    }
    indices[flat] = index;
  }
  return indices;
}

/** Sizes of `op(a) · op(b)` with batch broadcasting. */
export interface ProductDims {
  /** The broadcast batch shape of the result. */
  readonly outBatch: readonly number[];
  /** Size of `outBatch`. */
  readonly batch: number;
  readonly rows: number;
  readonly inner: number;
  readonly columns: number;
  /** Batches of `a` and `b` (product of their batch dimensions). */
  readonly batchA: number;
  readonly batchB: number;
}

/**
 * The sizes of `op(a) · op(b)`, or `undefined` if the shapes do not match (the caller's fallback
 * then reports the error in tfjs's words).
 */
export function productDims(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): ProductDims | undefined {
  const ra = aShape.length;
  const rb = bShape.length;
  const rows = aShape[ra - (transposeA ? 1 : 2)]!;
  const inner = aShape[ra - (transposeA ? 2 : 1)]!;
  const innerB = bShape[rb - (transposeB ? 1 : 2)]!;
  const columns = bShape[rb - (transposeB ? 2 : 1)]!;
  const outBatch = broadcastBatch(aShape.slice(0, -2), bShape.slice(0, -2));
  if (inner !== innerB || outBatch === undefined) return undefined;
  return {
    outBatch,
    batch: sizeOf(outBatch),
    rows,
    inner,
    columns,
    batchA: sizeOf(aShape.slice(0, -2)),
    batchB: sizeOf(bShape.slice(0, -2)),
  };
}

/** A matrix operand: the array holding it, where it starts (in elements) and its tensor shape. */
export interface StoredOperand {
  readonly data: Float32Array;
  readonly offset: number;
  readonly shape: readonly number[];
}

/**
 * How an operand's batch elements are found for a batched product: a stride of one matrix when it
 * has every batch, 0 when it has one (broadcast), else one offset per output batch element (batch
 * shapes that broadcast on both sides, e.g. `[2, 1]` against `[1, 3]`).
 */
function batchStride(dims: ProductDims, shape: readonly number[], batches: number, matrix: number): number | Int32Array {
  if (batches === dims.batch) return matrix;
  if (batches === 1) return 0;
  const offsets = broadcastIndices(dims.outBatch, shape.slice(0, -2));
  for (let i = 0; i < offsets.length; i++) offsets[i]! *= matrix;
  return offsets;
}

/**
 * `C = op(a) · op(b)` by OpenBLAS, where the operands and the result are stored (row-major, the
 * result `[...outBatch, rows, columns]` at `c.offset`): one product when there is one batch or `b`
 * has none (the batches of `a` are then its rows), else one batched call. The transposes are BLAS
 * flags, never materialised.
 */
export function sgemmProduct(
  sgemm: NativeSgemmLike,
  dims: ProductDims,
  a: StoredOperand,
  b: StoredOperand,
  transposeA: boolean,
  transposeB: boolean,
  c: { readonly data: Float32Array; readonly offset: number },
): void {
  const { batch, rows, inner, columns, batchA, batchB } = dims;
  if (batch * rows * columns === 0) return;
  // Leading dimensions are the stored last axes; BLAS wants at least 1 even for empty ones.
  const lda = Math.max(1, a.shape[a.shape.length - 1]!);
  const ldb = Math.max(1, b.shape[b.shape.length - 1]!);
  const ldc = Math.max(1, columns);
  if (batch === 1) {
    sgemm.sgemm(transposeA, transposeB, rows, columns, inner, 1, a.data, a.offset, lda, b.data, b.offset, ldb, 0, c.data, c.offset, ldc);
  } else if (batchB === 1 && !transposeA) {
    // `[...batch, rows, inner]` rows are contiguous: one product of `batch · rows` rows.
    sgemm.sgemm(
      false,
      transposeB,
      batchA * rows,
      columns,
      inner,
      1,
      a.data,
      a.offset,
      lda,
      b.data,
      b.offset,
      ldb,
      0,
      c.data,
      c.offset,
      ldc,
    );
  } else {
    const strideA = batchStride(dims, a.shape, batchA, rows * inner);
    const strideB = batchStride(dims, b.shape, batchB, inner * columns);
    sgemm.sgemmBatched(
      transposeA,
      transposeB,
      rows,
      columns,
      inner,
      1,
      a.data,
      a.offset,
      strideA,
      lda,
      b.data,
      b.offset,
      strideB,
      ldb,
      0,
      c.data,
      c.offset,
      rows * columns,
      ldc,
      batch,
    );
  }
}
