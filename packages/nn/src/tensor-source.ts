import { SafetensorsError, type SafetensorsDtype, dtypeByteSize, getFloat16Table } from './safetensors.js';

/**
 * Where a checkpoint's tensors come from, read one tensor (or one row range) at a time: a parsed
 * safetensors file in memory, a safetensors file on disk read with positioned reads, a torch `.pth`
 * zip, several shards, or a renamed view of another source. Weights are read when a model asks for
 * them, so a loader never holds a whole checkpoint and its float32 copy at once.
 */
export interface TensorSource {
  /** What the tensors come from (a path, URL or file name), for error messages. */
  readonly description: string;
  /** Tensor names, in file order. */
  names(): string[];
  has(name: string): boolean;
  /** @throws when `name` is not in the source */
  info(name: string): TensorSourceInfo;
  /**
   * Row-major little-endian bytes of elements `[begin, end)` of the flattened tensor (default: all).
   * May be a view of the source's memory: do not modify it.
   */
  readBytes(name: string, begin?: number, end?: number): Uint8Array;
  /** Releases files held open (a no-op for sources in memory). */
  close?(): void;
}

/** Name, element type and shape of one tensor of a {@link TensorSource}. */
export interface TensorSourceInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** `product(shape) × bytes per element`. */
  readonly byteLength: number;
}

/**
 * Random access to the bytes of one file, whatever holds them: a `Uint8Array` in memory
 * ({@link bytesReader}) or a file on disk read with positioned reads (`openFileReader` of
 * `@bytelatent/nn/node`). The readers of large checkpoints (`SafetensorsReader`, `parsePth` /
 * `openPth`) read only what they need through it.
 */
export interface ByteReader {
  /** Size of the file in bytes. */
  readonly byteLength: number;
  /**
   * `length` bytes at `offset`. Callers keep `0 <= offset` and `offset + length <= byteLength`.
   * May be a view of the reader's memory: do not modify it.
   */
  read(offset: number, length: number): Uint8Array;
  /** Releases the file (a no-op in memory). */
  close?(): void;
}

/**
 * A {@link ByteReader} over bytes in memory: every read is a view (no copy).
 *
 * @param bytes - the whole file
 * @returns the reader
 * @throws {SafetensorsError} `INVALID_ARGUMENT` if `bytes` is not a Uint8Array; its `read` throws
 *   `INVALID_ARGUMENT` for a range outside the bytes
 */
export function bytesReader(bytes: Uint8Array): ByteReader {
  if (!(bytes instanceof Uint8Array) && Object.prototype.toString.call(bytes) !== '[object Uint8Array]') {
    throw new SafetensorsError('INVALID_ARGUMENT', `bytes must be a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`);
  }
  // A plain view: subarrays of a Node Buffer would otherwise be Buffers.
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    byteLength: view.byteLength,
    read(offset: number, length: number): Uint8Array {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > view.byteLength) {
        throw new SafetensorsError(
          'INVALID_ARGUMENT',
          `read of ${length} bytes at offset ${offset} is outside the ${view.byteLength} bytes in memory`,
        );
      }
      return view.subarray(offset, offset + length);
    },
  };
}

/**
 * Elements `[begin, end)` of a floating-point tensor of a source, widened to float32 (F32 copied,
 * F16 and BF16 converted, F64 narrowed).
 *
 * @throws {SafetensorsError} `UNSUPPORTED_CONVERSION` for an integer or boolean tensor
 */
export function readFloat32(source: TensorSource, name: string, begin?: number, end?: number): Float32Array {
  const { dtype } = source.info(name);
  const bytes = source.readBytes(name, begin, end);
  return bytesToFloat32(bytes, dtype, `${source.description}: tensor "${name}"`);
}

/**
 * Little-endian bytes of a floating-point dtype as float32 values (always a fresh array).
 *
 * @param bytes - whole elements of `dtype`
 * @param dtype - F32, F16, BF16 or F64
 * @param what - names the tensor in errors
 * @throws {SafetensorsError} `UNSUPPORTED_CONVERSION` for any other dtype; `INVALID_ARGUMENT` if
 *   `bytes` is not a whole number of elements
 */
export function bytesToFloat32(bytes: Uint8Array, dtype: SafetensorsDtype, what: string): Float32Array {
  const size = dtypeByteSize(dtype);
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
    throw new SafetensorsError('UNSUPPORTED_CONVERSION', `${what} has dtype ${dtype}, not a floating-point type`);
  }
  if (bytes.byteLength % size !== 0) {
    throw new SafetensorsError('INVALID_ARGUMENT', `${what}: ${bytes.byteLength} bytes are not a whole number of ${dtype} elements`);
  }
  const n = bytes.byteLength / size;
  // Aligned copies: a view into a file buffer may start at any offset.
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case 'F32':
      return new Float32Array(new Float32Array(b.buffer, b.byteOffset, n));
    case 'BF16': {
      const bits = new Uint16Array(b.buffer, b.byteOffset, n);
      // bf16 is the top half of a float32: widening is a 16-bit shift, no rounding.
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = bits[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16': {
      const bits = new Uint16Array(b.buffer, b.byteOffset, n);
      const table = getFloat16Table();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[bits[i]!]!;
      return out;
    }
    case 'F64': {
      // set() rounds to float32 as an assignment does, without an iterator.
      const out = new Float32Array(n);
      out.set(new Float64Array(b.buffer, b.byteOffset, n));
      return out;
    }
  }
}

/** Side of the square blocks the transposes walk, so that reads and writes both stay in cache. */
const TRANSPOSE_BLOCK = 64;

/**
 * A row-major `[rows, cols]` matrix of a floating-point dtype, widened to float32 and transposed to
 * `[cols, rows]` in one pass (one output allocation, no float32 copy in the stored order): how a
 * checkpoint's `[out, in]` Linear weight becomes the `[in, out]` matrix the model multiplies by.
 *
 * @param bytes - `rows · cols` elements of `dtype`, little-endian
 * @param dtype - F32, F16, BF16 or F64
 * @param rows - rows of the stored matrix
 * @param cols - columns of the stored matrix
 * @param what - names the tensor in errors
 * @throws {SafetensorsError} `UNSUPPORTED_CONVERSION` for another dtype, `INVALID_ARGUMENT` for a size mismatch
 */
export function bytesToFloat32Transposed(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  rows: number,
  cols: number,
  what: string,
): Float32Array {
  const size = dtypeByteSize(dtype);
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
    throw new SafetensorsError('UNSUPPORTED_CONVERSION', `${what} has dtype ${dtype}, not a floating-point type`);
  }
  const n = rows * cols;
  if (bytes.byteLength !== n * size)
    throw new SafetensorsError('INVALID_ARGUMENT', `${what}: ${bytes.byteLength} bytes for a [${rows}, ${cols}] ${dtype} matrix`);
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const out = new Float32Array(n);
  // One loop per element type keeps each loop monomorphic (fast) in V8.
  if (dtype === 'BF16') {
    const src = new Uint16Array(b.buffer, b.byteOffset, n);
    const dst = new Uint32Array(out.buffer);
    for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_BLOCK) {
      const i1 = Math.min(rows, i0 + TRANSPOSE_BLOCK);
      for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
        const j1 = Math.min(cols, j0 + TRANSPOSE_BLOCK);
        for (let i = i0; i < i1; i++) for (let j = j0, k = i * cols + j0; j < j1; j++, k++) dst[j * rows + i] = src[k]! << 16;
      }
    }
    return out;
  }
  if (dtype === 'F16') {
    const src = new Uint16Array(b.buffer, b.byteOffset, n);
    const table = getFloat16Table();
    for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_BLOCK) {
      const i1 = Math.min(rows, i0 + TRANSPOSE_BLOCK);
      for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
        const j1 = Math.min(cols, j0 + TRANSPOSE_BLOCK);
        for (let i = i0; i < i1; i++) for (let j = j0, k = i * cols + j0; j < j1; j++, k++) out[j * rows + i] = table[src[k]!]!;
      }
    }
    return out;
  }
  const src = dtype === 'F32' ? new Float32Array(b.buffer, b.byteOffset, n) : new Float64Array(b.buffer, b.byteOffset, n);
  transposeInto(src, out, rows, cols);
  return out;
}

/**
 * Transposes a row-major `[rows, cols]` float matrix into `[cols, rows]` (cache-blocked).
 *
 * @returns a new array
 */
export function transposeFloat32(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  transposeInto(data, out, rows, cols);
  return out;
}

function transposeInto(src: Float32Array | Float64Array, out: Float32Array, rows: number, cols: number): void {
  for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_BLOCK) {
    const i1 = Math.min(rows, i0 + TRANSPOSE_BLOCK);
    for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
      const j1 = Math.min(cols, j0 + TRANSPOSE_BLOCK);
      for (let i = i0; i < i1; i++) for (let j = j0, k = i * cols + j0; j < j1; j++, k++) out[j * rows + i] = src[k]!;
    }
  }
}

/**
 * One source over the tensors of several (the shards of a checkpoint, say): names in the order of
 * `sources`, then each source's order; reads go to the source holding the tensor; `close()` closes
 * every source.
 *
 * @param sources - the sources; they must not share a tensor name
 * @param description - names the merged source in errors (default: the descriptions joined by " + ")
 * @returns the merged source
 * @throws {SafetensorsError} `DUPLICATE_TENSOR` listing every name held by more than one source
 *   (and which sources); `INVALID_ARGUMENT` if `sources` is not an array
 */
export function mergeTensorSources(sources: readonly TensorSource[], description?: string): TensorSource {
  if (!Array.isArray(sources)) {
    throw new SafetensorsError(
      'INVALID_ARGUMENT',
      `sources must be an array of TensorSource, got ${sources === null ? 'null' : typeof sources}`,
    );
  }
  const owners = new Map<string, TensorSource>();
  const duplicates: string[] = [];
  for (const source of sources) {
    for (const name of source.names()) {
      const owner = owners.get(name);
      if (owner === undefined) owners.set(name, source);
      else duplicates.push(`"${name}" is in both ${owner.description} and ${source.description}`);
    }
  }
  const what = description ?? sources.map((s) => s.description).join(' + ');
  if (duplicates.length > 0) {
    throw new SafetensorsError(
      'DUPLICATE_TENSOR',
      `${what}: ${duplicates.length} tensor name(s) appear more than once:\n  ${listSome(duplicates)}`,
    );
  }
  const names = Object.freeze([...owners.keys()]);
  const ownerOf = (name: string): TensorSource => {
    const owner = owners.get(name);
    if (owner === undefined) {
      throw new SafetensorsError(
        'UNKNOWN_TENSOR',
        `${what}: unknown tensor ${JSON.stringify(name)}: the sources have ${names.length} tensor(s)`,
      );
    }
    return owner;
  };
  return {
    description: what,
    names: () => [...names],
    has: (name) => owners.has(name),
    info: (name) => ownerOf(name).info(name),
    readBytes: (name, begin, end) => ownerOf(name).readBytes(name, begin, end),
    close: () => {
      for (const source of sources) source.close?.();
    },
  };
}

/** @internal The first `limit` lines joined for an error message, with a count of the rest. */
export function listSome(lines: readonly string[], limit = 20): string {
  const shown = lines.slice(0, limit).join('\n  ');
  return lines.length > limit ? `${shown}\n  ... and ${lines.length - limit} more` : shown;
}

/**
 * Index of the first NaN or ±Infinity among F32, F16 or BF16 elements, from their bit patterns
 * (all exponent bits set), or -1.
 */
export function firstNonFinite(bytes: Uint8Array, dtype: SafetensorsDtype): number {
  const size = dtype === 'F32' ? 4 : 2;
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  if (dtype === 'F32') {
    const bits = new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const mask = dtype === 'F16' ? 0x7c00 : 0x7f80;
  const bits = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & mask) === mask) return i;
  return -1;
}
