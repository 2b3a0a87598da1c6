/**
 * Node-only opening of torch checkpoints on disk. Kept out of the main entry (`index.ts`) so browser
 * bundles never see `node:fs`; import it from `@bytelatent/nn/node`.
 */
import { openFileReader } from './file-reader-node.js';
import { PthFile, openPth, type PthOptions } from './pth.js';

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
