/**
 * Node-only file helpers for safetensors (reading whole files, opening them for reads tensor by
 * tensor, sharded checkpoints, atomic writes). Kept out of the main entry (`index.ts`) so browser
 * bundles never see `node:fs`; import them from `@bytelatent/nn/node`.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { openFileReader } from './file-reader-node.js';
import {
  SafetensorsError,
  SafetensorsFile,
  SafetensorsReader,
  serializeSafetensors,
  type ParseOptions,
  type SafetensorsTensor,
} from './safetensors.js';
import { missingShardsError, parseShardIndex, shardedTensorSource } from './shards.js';
import type { TensorSource } from './tensor-source.js';

/** One read call is capped below 2 GiB by Node; larger files are read in chunks of this size. */
const READ_CHUNK_BYTES = 1 << 30;

/**
 * Reads and parses a safetensors file. The file is read into one `Uint8Array` in chunks, so files
 * over the 2 GiB limit of `fs.readFile` work as long as the runtime can allocate them.
 *
 * @param path - file path
 * @param options - parse options (header size limit)
 * @returns the parsed file
 * @throws the `fs` error (`ENOENT`, `EACCES`, ...) if the file cannot be read
 * @throws {SafetensorsError} if the contents are not a valid safetensors file
 */
export async function readSafetensorsFile(path: string, options?: ParseOptions): Promise<SafetensorsFile> {
  const handle = await open(path, 'r');
  let bytes: Uint8Array;
  try {
    const { size } = await handle.stat();
    bytes = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(bytes, filled, Math.min(READ_CHUNK_BYTES, size - filled), filled);
      // The file shrank since stat(): parse what is there, which reports the truncation.
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled < size) bytes = bytes.subarray(0, filled);
  } finally {
    await handle.close();
  }
  return SafetensorsFile.parse(bytes, options);
}

/** Errors of fsync on a directory that mean "not supported here", not "the data is at risk". */
const IGNORED_DIRECTORY_SYNC_ERRORS = new Set(['EISDIR', 'EPERM', 'EINVAL']);

async function syncDirectory(path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    await handle.sync();
  } catch (err) {
    // Windows cannot open a directory (EISDIR/EPERM) and some file systems refuse fsync (EINVAL).
    if (!IGNORED_DIRECTORY_SYNC_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await handle?.close();
  }
}

/**
 * Writes a file atomically: readers see either the old contents or the new ones, never a partial
 * file, even after a crash. The data goes to a temporary file in the same directory
 * (`${path}.tmp-${pid}-${random}`), which is flushed to disk, closed and renamed over `path`; then
 * the directory is flushed so the rename itself is durable. On failure the temporary file is
 * removed. The new file gets default permissions (0o666 minus the umask), not those of the file it
 * replaces.
 *
 * @param path - target path; its directory must exist
 * @param data - the complete contents
 * @throws {SafetensorsError} `INVALID_ARGUMENT` if `data` is not a Uint8Array
 * @throws the `fs` error (`ENOENT`, `EACCES`, `EISDIR`, `ENOSPC`, ...) if writing fails
 */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  if (!(data instanceof Uint8Array)) {
    throw new SafetensorsError('INVALID_ARGUMENT', `data must be a Uint8Array, got ${data === null ? 'null' : typeof data}`);
  }
  if (typeof path !== 'string' || path === '') {
    throw new SafetensorsError('INVALID_ARGUMENT', `path must be a non-empty string, got ${JSON.stringify(path)}`);
  }
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let handle: FileHandle | undefined;
  try {
    // 'wx' fails if the name exists: never write into someone else's file.
    handle = await open(tmp, 'wx');
    await handle.writeFile(data);
    await handle.sync();
    const closing = handle;
    handle = undefined;
    await closing.close();
    await rename(tmp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    // ENOENT here just means the temporary file was never created.
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dirname(path));
}

/**
 * Serializes tensors (see `serializeSafetensors`) and writes them with {@link writeFileAtomic}.
 * The arguments are validated before any file is touched.
 *
 * @param path - target path; its directory must exist
 * @param tensors - tensors by name
 * @param metadata - optional `__metadata__` strings
 * @throws {SafetensorsError} for invalid tensors or metadata
 * @throws the `fs` error if writing fails
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: Readonly<Record<string, SafetensorsTensor>> | ReadonlyMap<string, SafetensorsTensor>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

/**
 * Opens a safetensors file on disk for reading tensor by tensor: only the header is read and
 * validated now (against the file size); `readBytes` then reads one tensor, or one element range,
 * with positioned reads. Files of any size work, with no whole-file buffer. Close it when done.
 *
 * @param path - file path
 * @param options - header size limit; `description` defaults to `path`
 * @returns the open file
 * @throws the `fs` error (`ENOENT`, `EACCES`, ...) if the file cannot be opened
 * @throws {SafetensorsError} if the header is not valid (the message starts with the description);
 *   the file is closed
 */
export function openSafetensorsFile(path: string, options: ParseOptions = {}): SafetensorsReader {
  const reader = openFileReader(path);
  try {
    return SafetensorsReader.open(reader, { ...options, description: options.description ?? path });
  } catch (e) {
    reader.close();
    throw e;
  }
}

/** Options of {@link openShardedSafetensors}. */
export interface ShardedOptions extends ParseOptions {
  /** Largest accepted index file, in bytes. Default 100 MB. */
  readonly maxIndexBytes?: number;
}

/** The shards of a sharded safetensors checkpoint as one {@link TensorSource}. */
export interface ShardedSafetensors extends TensorSource {
  /** The index's `metadata` object (`{ total_size }` usually; empty if absent). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The shard files, in the order of first appearance in `weight_map`, resolved against the index's folder. */
  readonly shards: readonly string[];
  /** The index's `weight_map`: tensor name → shard file as written in the index. */
  readonly weightMap: ReadonlyMap<string, string>;
  close(): void;
}

/**
 * Opens a sharded safetensors checkpoint from its `model.safetensors.index.json`: every shard of
 * its `weight_map` (tensor name → shard file in the index's folder) is opened with
 * {@link openSafetensorsFile} (headers only) and checked against the index, then served as one
 * source: names in shard order, reads go to the shard holding the tensor, `close()` closes every
 * shard.
 *
 * @param indexPath - path of the index JSON
 * @param options - header limit of each shard, index size limit; `description` names the index in
 *   errors (default `indexPath`)
 * @returns the merged source
 * @throws {SafetensorsError} `INVALID_INDEX` for an index that is not JSON with a `weight_map` of
 *   file names in its folder; `MISSING_SHARD` listing every shard file that does not exist;
 *   `DUPLICATE_TENSOR` listing every tensor held by two shards; `INDEX_MISMATCH` listing every
 *   tensor the index puts in a shard that lacks it, and every tensor a shard holds that the index
 *   does not put there; a shard's own header error. Every opened shard is closed on failure.
 * @throws the `fs` error if the index or a shard cannot be read (other than a missing shard)
 */
export function openShardedSafetensors(indexPath: string, options: ShardedOptions = {}): ShardedSafetensors {
  const description = options.description ?? indexPath;
  const maxIndexBytes = options.maxIndexBytes ?? 100_000_000;
  const indexReader = openFileReader(indexPath);
  let text: string;
  try {
    if (indexReader.byteLength > maxIndexBytes) {
      throw new SafetensorsError(
        'INVALID_INDEX',
        `${description}: the index has ${indexReader.byteLength} bytes, over the limit of ${maxIndexBytes} (maxIndexBytes)`,
      );
    }
    text = new TextDecoder().decode(indexReader.read(0, indexReader.byteLength));
  } finally {
    indexReader.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError('INVALID_INDEX', `${description}: not valid JSON: ${(e as Error).message}`);
  }
  const index = parseShardIndex(json, description);
  const folder = dirname(indexPath);
  const shards = new Map<string, SafetensorsReader>();
  const missing: string[] = [];
  try {
    for (const file of index.files) {
      const path = join(folder, file);
      try {
        shards.set(file, openSafetensorsFile(path, { maxHeaderBytes: options.maxHeaderBytes, description: path }));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        missing.push(file);
      }
    }
    if (missing.length > 0) throw missingShardsError(index, missing, description, (file) => join(folder, file));
  } catch (e) {
    for (const shard of shards.values()) shard.close();
    throw e;
  }
  const merged = shardedTensorSource(index, shards, description);
  return {
    ...merged,
    metadata: index.metadata,
    shards: Object.freeze(index.files.map((file) => join(folder, file))),
    weightMap: index.weightMap,
    close: () => merged.close?.(),
  };
}
