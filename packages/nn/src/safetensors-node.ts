/**
 * Node-only file helpers for safetensors (reading whole files, opening them for reads tensor by
 * tensor, sharded checkpoints, atomic writes). Kept out of the main entry (`index.ts`) so browser
 * bundles never see `node:fs`; import them from `@bytelatent/nn/node`.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { openFileReader } from './file-reader-node.js';
import {
  SafetensorsError,
  SafetensorsFile,
  SafetensorsReader,
  serializeSafetensors,
  type ParseOptions,
  type SafetensorsTensor,
} from './safetensors.js';
import { type TensorSource, listSome, mergeTensorSources } from './tensor-source.js';

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
  const bad = (why: string) => new SafetensorsError('INVALID_INDEX', `${description}: ${why}`);
  const indexReader = openFileReader(indexPath);
  let text: string;
  try {
    if (indexReader.byteLength > maxIndexBytes) throw bad(`the index has ${indexReader.byteLength} bytes, over the limit of ${maxIndexBytes} (maxIndexBytes)`);
    text = new TextDecoder().decode(indexReader.read(0, indexReader.byteLength));
  } finally {
    indexReader.close();
  }
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw bad('must be a JSON object with a "weight_map"');
  const map = (index as Record<string, unknown>)['weight_map'];
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw bad('"weight_map" must be an object mapping tensor names to shard files');
  const meta = (index as Record<string, unknown>)['metadata'] ?? {};
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw bad('"metadata" must be an object');
  const weightMap = new Map<string, string>();
  for (const [tensor, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file === '' || isAbsolute(file) || file.split(/[\\/]/).some((part) => part === '..' || part === '') || file.includes('\0')) {
      throw bad(`"weight_map"[${JSON.stringify(tensor)}] must be a relative file path inside the index's folder, got ${JSON.stringify(file)}`);
    }
    weightMap.set(tensor, file);
  }
  if (weightMap.size === 0) throw bad('"weight_map" is empty');

  const folder = dirname(indexPath);
  const files = [...new Set(weightMap.values())];
  const shards = new Map<string, SafetensorsReader>();
  const closeAll = () => {
    for (const shard of shards.values()) shard.close();
  };
  try {
    const missing: string[] = [];
    for (const file of files) {
      const path = join(folder, file);
      try {
        shards.set(file, openSafetensorsFile(path, { maxHeaderBytes: options.maxHeaderBytes, description: path }));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        const listed = [...weightMap.values()].filter((f) => f === file).length;
        missing.push(`${path} (index lists ${listed} tensor${listed === 1 ? '' : 's'} in it)`);
      }
    }
    if (missing.length > 0) {
      throw new SafetensorsError('MISSING_SHARD', `${description}: ${missing.length} of ${files.length} shard file(s) missing:\n  ${listSome(missing)}`);
    }
    const merged = mergeTensorSources([...shards.values()], description);
    const mismatches: string[] = [];
    for (const [tensor, file] of weightMap) {
      if (!shards.get(file)!.has(tensor)) mismatches.push(`the index puts "${tensor}" in ${file}, which does not hold it`);
    }
    for (const [file, shard] of shards) {
      for (const tensor of shard.names()) {
        const listed = weightMap.get(tensor);
        if (listed !== file) mismatches.push(`${file} holds "${tensor}", which the index ${listed === undefined ? 'does not list' : `puts in ${listed}`}`);
      }
    }
    if (mismatches.length > 0) {
      throw new SafetensorsError('INDEX_MISMATCH', `${description} does not match its shards (${mismatches.length} problem(s)):\n  ${listSome(mismatches)}`);
    }
    return {
      description,
      metadata: Object.freeze({ ...(meta as Record<string, unknown>) }),
      shards: Object.freeze(files.map((file) => join(folder, file))),
      weightMap,
      names: () => merged.names(),
      has: (name) => merged.has(name),
      info: (name) => merged.info(name),
      readBytes: (name, begin, end) => merged.readBytes(name, begin, end),
      close: closeAll,
    };
  } catch (e) {
    closeAll();
    throw e;
  }
}
