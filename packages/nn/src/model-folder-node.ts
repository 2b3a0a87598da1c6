// A model folder on disk (Node). Loaded lazily by `openModelFolder`, so the browser build never
// reaches `node:fs`.
import { readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NnError } from './errors.js';
import { BytesModelFolder, type ModelFolder, checkpointError, tensorFileKind } from './model-folder.js';
import { openPthFile } from './pth-node.js';
import { openSafetensorsFile, openShardedSafetensors } from './safetensors-node.js';
import type { TensorSource } from './tensor-source.js';

/** @internal A folder on disk; see {@link ModelFolder}. */
export class NodeModelFolder extends BytesModelFolder {
  private constructor(readonly location: string) {
    super();
  }

  static open(location: string): NodeModelFolder {
    const path = location.startsWith('file:') ? fileURLToPath(location) : location;
    return new NodeModelFolder(resolve(path));
  }

  describe(name: string): string {
    const path = join(this.location, name);
    const shown = relative(process.cwd(), path);
    return shown.length > 0 && !shown.startsWith(`..${sep}..`) ? shown : path;
  }

  async exists(name: string): Promise<boolean> {
    try {
      return (await stat(join(this.location, name))).isFile();
    } catch {
      return false;
    }
  }

  protected async fileBytes(name: string): Promise<Uint8Array> {
    try {
      return await readFile(join(this.location, name));
    } catch (e) {
      throw new NnError(
        'INVALID_CHECKPOINT',
        `cannot read ${this.describe(name)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }

  /** Weights are read tensor by tensor with positioned reads: files of any size, no whole-file buffer. */
  override async openTensors(name: string): Promise<TensorSource> {
    const where = this.describe(name);
    const path = join(this.location, name);
    const kind = tensorFileKind(name);
    if (!(await this.exists(name))) throw new NnError('INVALID_CHECKPOINT', `${where} does not exist`);
    try {
      if (kind === 'index') return openShardedSafetensors(path, { description: where });
      return kind === 'safetensors' ? openSafetensorsFile(path, { description: where }) : openPthFile(path, { description: where });
    } catch (e) {
      throw checkpointError(e, where);
    }
  }

  folder(name: string): ModelFolder {
    return new NodeModelFolder(resolve(this.location, name));
  }
}
