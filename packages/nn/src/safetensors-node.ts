/**
 * Node-only file helpers for safetensors. Kept out of the main entry (`index.ts`) so browser
 * bundles never see `node:fs`; import them from `@bytelatent/nn/node`.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  SafetensorsError,
  SafetensorsFile,
  serializeSafetensors,
  type ParseOptions,
  type SafetensorsTensor,
} from './safetensors.js';

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
