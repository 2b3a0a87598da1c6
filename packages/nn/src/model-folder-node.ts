// A model folder on disk (Node). Loaded lazily by `openModelFolder`, so the browser build never
// reaches `node:fs`.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NnError } from './layers/errors.js';
import { type ModelFolder, checkedShardSource, checkpointError, shardFilesOfIndex, tensorFileKind } from './model-folder.js';
import { openPthFile } from './pth-node.js';
import { openSafetensorsFile } from './safetensors-node.js';
import type { TensorSource } from './tensor-source.js';

/** @internal A folder on disk; see {@link ModelFolder}. */
export class NodeModelFolder implements ModelFolder {
  private constructor(readonly location: string) {}

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

  async readText(name: string): Promise<string> {
    try {
      return await readFile(join(this.location, name), 'utf8');
    } catch (e) {
      throw new NnError('INVALID_CHECKPOINT', `cannot read ${this.describe(name)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }

  async readJson(name: string): Promise<unknown> {
    const text = await this.readText(name);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new NnError('INVALID_CHECKPOINT', `${this.describe(name)} is not valid JSON: ${(e as Error).message}`);
    }
  }

  async openTensors(name: string): Promise<TensorSource> {
    const where = this.describe(name);
    const path = join(this.location, name);
    const kind = tensorFileKind(name);
    if (!(await this.exists(name))) throw new NnError('INVALID_CHECKPOINT', `${where} does not exist`);
    if (kind === 'index') {
      const { files, weightMap } = shardFilesOfIndex(await this.readJson(name), where);
      const shards = new Map<string, TensorSource>();
      try {
        for (const file of files) {
          const shardName = join(dirname(name), file);
          if (!(await this.exists(shardName))) throw new NnError('INVALID_CHECKPOINT', `${where} names the shard ${file}, which is missing (${this.describe(shardName)})`);
          shards.set(file, await this.openTensors(shardName));
        }
      } catch (e) {
        for (const s of shards.values()) s.close?.();
        throw e;
      }
      return checkedShardSource(shards, weightMap, where);
    }
    try {
      return kind === 'safetensors' ? openSafetensorsFile(path, { description: where }) : openPthFile(path, { description: where });
    } catch (e) {
      throw checkpointError(e, where);
    }
  }

  folder(name: string): ModelFolder {
    return new NodeModelFolder(resolve(this.location, name));
  }
}
