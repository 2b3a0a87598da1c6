/**
 * Node-only opening and writing of torch checkpoints on disk. Kept out of the main entry (`index.ts`) so browser
 * bundles never see `node:fs`; import it from `@bytelatent/nn/node`.
 */
import { basename } from 'node:path';
import { openFileReader } from './file-reader-node.js';
import { PthFile, openPth, type PthOptions } from './pth.js';
import { serializePth, type PthWriteOptions } from './pth-writer.js';
import type { SafetensorsTensor } from './safetensors.js';
import { writeFileAtomic } from './safetensors-node.js';

/**
 * Opens a torch checkpoint (`torch.save` zip: `.pth`, `.pt`, `.bin`) on disk. Only the zip central
 * directory, the small records and `data.pkl` are read now; tensors are read later with positioned
 * reads, one at a time, so files of any size work. Close the file when done.
 *
 * @param path - file path
 * @param options - limits; `description` defaults to `path`
 * @returns the parsed checkpoint, a `TensorSource` over its state dict
 * @throws the `fs` error (`ENOENT`, `EACCES`, ...) if the file cannot be opened
 * @throws {PthError} if it is not a readable torch checkpoint (see `openPth`); the file is closed
 */
export function openPthFile(path: string, options: PthOptions = {}): PthFile {
  const reader = openFileReader(path);
  try {
    return openPth(reader, { ...options, description: options.description ?? path });
  } catch (e) {
    reader.close();
    throw e;
  }
}

/**
 * The archive name torch gives a file it saves: the file name without its last extension
 * (`consolidated.pth` → `consolidated`), or `archive` when that leaves nothing.
 */
function torchArchiveName(path: string): string {
  // torch splits at '\\' as well as '/', on every platform.
  const base = basename(path).split('\\').pop() ?? '';
  const dot = base.lastIndexOf('.');
  const stem = dot >= 0 ? base.slice(0, dot) : base;
  return stem === '' ? 'archive' : stem;
}

/**
 * Writes tensors as a torch checkpoint (`serializePth`: by default `torch.save({"model": state_dict},
 * path)`) atomically: a temporary file in the same folder, fsynced, then renamed, so a crash never
 * leaves a half-written file under the name. The archive is named after the file, as torch names it
 * (`consolidated.pth` → `consolidated/...`), unless `options.archiveName` says otherwise. The
 * arguments are checked before any file is touched.
 *
 * @param path - target path; its folder must exist
 * @param tensors - tensors by name, in state-dict order
 * @param options - see `serializePth`
 * @throws {PthError} for invalid tensors or options
 * @throws the `fs` error if writing fails
 */
export async function writePthFile(
  path: string,
  tensors: ReadonlyMap<string, SafetensorsTensor> | Readonly<Record<string, SafetensorsTensor>>,
  options: PthWriteOptions = {},
): Promise<void> {
  const bytes = serializePth(tensors, { ...options, archiveName: options.archiveName ?? torchArchiveName(String(path)) });
  await writeFileAtomic(path, bytes);
}
