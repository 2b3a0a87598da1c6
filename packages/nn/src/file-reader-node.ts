/**
 * Positioned reads of a file (Node): the {@link ByteReader} under `openSafetensorsFile` and
 * `openPthFile`. Only the bytes asked for are read, so files of any size work (a Node Buffer or
 * `fs.readFile` cannot hold more than a few GiB).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { SafetensorsError } from './safetensors.js';
import type { ByteReader } from './tensor-source.js';

/** One `read` call is capped below 2 GiB by Node; longer reads are split. */
const READ_CHUNK_BYTES = 1 << 30;

/** A {@link ByteReader} over a file on disk, open until {@link FileReader.close}. */
export interface FileReader extends ByteReader {
  /** The path it was opened with. */
  readonly path: string;
  /** Whether {@link FileReader.close} was called. */
  readonly closed: boolean;
  /**
   * Reads `length` bytes at `offset` into a new buffer (positioned `fs.readSync` calls).
   *
   * @throws {SafetensorsError} `INVALID_ARGUMENT` for a range outside the file or after `close()`;
   *   `TRUNCATED` if the file ended early (it shrank since it was opened)
   * @throws the `fs` error (`EIO`, ...) of a failed read
   */
  read(offset: number, length: number): Uint8Array;
  /** Closes the file descriptor; idempotent. */
  close(): void;
}

/**
 * Opens a file for positioned reads. The size is taken once, at opening.
 *
 * @param path - file path
 * @returns the reader; close it when done
 * @throws the `fs` error (`ENOENT`, `EACCES`, ...) if the file cannot be opened
 * @throws {SafetensorsError} `INVALID_ARGUMENT` if `path` is not a regular file
 */
export function openFileReader(path: string): FileReader {
  if (typeof path !== 'string' || path === '') {
    throw new SafetensorsError('INVALID_ARGUMENT', `path must be a non-empty string, got ${JSON.stringify(path)}`);
  }
  const fd = openSync(path, 'r');
  let byteLength: number;
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new SafetensorsError('INVALID_ARGUMENT', `${path} is not a regular file`);
    byteLength = stat.size;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let closed = false;
  return {
    path,
    byteLength,
    get closed() {
      return closed;
    },
    read(offset: number, length: number): Uint8Array {
      if (closed) throw new SafetensorsError('INVALID_ARGUMENT', `${path}: read after close()`);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > byteLength) {
        throw new SafetensorsError(
          'INVALID_ARGUMENT',
          `${path}: read of ${length} bytes at offset ${offset} is outside the file's ${byteLength} bytes`,
        );
      }
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const n = readSync(fd, out, filled, Math.min(READ_CHUNK_BYTES, length - filled), offset + filled);
        if (n === 0) {
          throw new SafetensorsError(
            'TRUNCATED',
            `${path}: the file ended at byte ${offset + filled} while reading ${length} bytes at offset ${offset} (it had ${byteLength} bytes when opened)`,
          );
        }
        filled += n;
      }
      return out;
    },
    close(): void {
      if (closed) return;
      closed = true;
      closeSync(fd);
    },
  };
}
