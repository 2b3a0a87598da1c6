import type { SafetensorsDtype } from '../safetensors.js';
import { type TensorSource, bytesToFloat32, firstNonFinite } from '../tensor-source.js';
import { NnError } from '../errors.js';

/**
 * An embedding table that is never a tensor: its rows stay where the checkpoint keeps them, in the
 * checkpoint's precision (a tensor of a {@link TensorSource}: a file read with positioned reads, or
 * bytes in memory), and the rows a batch needs are read and summed in float32 on the host.
 *
 * Why: a released BLT's hash n-gram tables (the reference's `encoder_hash_tok_embedding`, 6 tables of
 * 500,002 × 1,024 in blt-1b) are two thirds of its parameters, yet each byte reads one row of each.
 * As float32 tensors they need 12 GB; left in a bf16 file read with positioned reads they cost no
 * process memory at all (the operating system's page cache keeps the rows that are read often), and
 * a row costs one small read. See docs/architecture.md, "Weights at released size".
 *
 * Reads are synchronous, so an encoder can use the table inside its forward pass.
 */
export class HostEmbedding {
  /** Rows of the table. */
  readonly numEmbeddings: number;
  /** Width of a row. */
  readonly dim: number;
  /** Element type the rows are stored in. */
  readonly dtype: SafetensorsDtype;

  private constructor(
    private readonly source: TensorSource | { readonly unreadable: string },
    /** Name of the table in its source. */
    readonly name: string,
    numEmbeddings: number,
    dim: number,
    dtype: SafetensorsDtype,
  ) {
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.dtype = dtype;
  }

  /**
   * The table `name` of a source, read row by row when used. The source must stay open while the
   * table is used (its owner closes it).
   *
   * @param source - where the table is stored
   * @param name - the tensor's name in the source
   * @param expectedShape - `[rows, dim]` the model needs, checked against the stored shape
   * @throws {NnError} `INVALID_CHECKPOINT` when the tensor is missing, not 2-D of that shape, or not
   *   F32, F16 or BF16
   */
  static fromSource(source: TensorSource, name: string, expectedShape?: readonly [number, number]): HostEmbedding {
    if (!source.has(name))
      throw new NnError(
        'INVALID_CHECKPOINT',
        `${source.description}: missing "${name}"${expectedShape ? ` (expected shape [${expectedShape.join(', ')}])` : ''}`,
      );
    const info = source.info(name);
    if (info.shape.length !== 2 || (expectedShape !== undefined && info.shape.join() !== expectedShape.join())) {
      throw new NnError(
        'INVALID_CHECKPOINT',
        `${source.description}: "${name}" has shape [${info.shape.join(', ')}], expected ${expectedShape ? `[${expectedShape.join(', ')}]` : 'a 2-D table'}`,
      );
    }
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
      throw new NnError('INVALID_CHECKPOINT', `${source.description}: "${name}" has dtype ${info.dtype}, expected F32, F16 or BF16`);
    }
    return new HostEmbedding(source, name, info.shape[0]!, info.shape[1]!, info.dtype);
  }

  /**
   * A table of that name and shape whose every read fails with `reason` (`INVALID_CHECKPOINT`): the
   * stand-in for a table that does not fit its checkpoint, so that a loader can finish building a
   * model to list every problem before failing.
   *
   * @param name - the table's name
   * @param shape - `[rows, dim]`
   * @param reason - the error message of a read
   */
  static unreadable(name: string, shape: readonly [number, number], reason: string): HostEmbedding {
    return new HostEmbedding({ unreadable: reason }, name, shape[0], shape[1], 'F32');
  }

  /**
   * Adds row `ids[i]` of the table to `out[i·dim .. (i+1)·dim)` for every i, widening the stored
   * values to float32 (exact for BF16 and F16).
   *
   * @param ids - row ids, each in `[0, numEmbeddings)`
   * @param out - `ids.length · dim` float32 values to add to
   * @throws {NnError} `INVALID_ARGUMENT` for a bad id or size; `INVALID_CHECKPOINT` when a row read
   *   holds a non-finite value (a corrupt file: the rows are checked as they are read, not at load)
   */
  addRows(ids: ArrayLike<number>, out: Float32Array): void {
    const dim = this.dim;
    const source = this.source;
    if ('unreadable' in source) throw new NnError('INVALID_CHECKPOINT', source.unreadable);
    if (out.length !== ids.length * dim)
      throw new NnError('INVALID_ARGUMENT', `${this.name}: ${out.length} outputs for ${ids.length} rows of ${dim}`);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.numEmbeddings)
        throw new NnError('INVALID_ARGUMENT', `${this.name}: row ${id} is not in [0, ${this.numEmbeddings})`);
      const bytes = source.readBytes(this.name, id * dim, (id + 1) * dim);
      if (firstNonFinite(bytes, this.dtype) >= 0) {
        throw new NnError('INVALID_CHECKPOINT', `${source.description}: "${this.name}" row ${id} holds a non-finite value`);
      }
      const row = bytesToFloat32(bytes, this.dtype, `${source.description}: "${this.name}" row ${id}`);
      const base = i * dim;
      for (let j = 0; j < dim; j++) out[base + j]! += row[j]!;
    }
  }

  /**
   * Rows `ids` as float32, `[ids.length, dim]` row-major.
   *
   * @throws as {@link addRows}
   */
  rows(ids: ArrayLike<number>): Float32Array {
    const out = new Float32Array(ids.length * this.dim);
    this.addRows(ids, out);
    return out;
  }
}
