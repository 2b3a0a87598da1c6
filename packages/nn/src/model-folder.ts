import { NnError } from './errors.js';
import { parsePth } from './pth.js';
import { parseSafetensors } from './safetensors.js';
import { missingShardsError, parseShardIndex, shardedTensorSource } from './shards.js';
import type { TensorSource } from './tensor-source.js';

/**
 * A folder of model files — on disk in Node, or under a base URL over HTTP (Node and the browser) —
 * that checkpoint loaders read without caring which. Names are relative paths with `/`
 * (`entropy_model/params.json`); `..` reaches a sibling folder, as the reference's layout puts the
 * entropy model beside the BLT's folder.
 */
export interface ModelFolder {
  /** The folder's path or URL, as given. */
  readonly location: string;
  /** The path or URL of a file of the folder, for messages. */
  describe(name: string): string;
  /** Whether the file exists (and is a file). */
  exists(name: string): Promise<boolean>;
  /** @throws {NnError} `INVALID_CHECKPOINT` naming the file when it cannot be read */
  readText(name: string): Promise<string>;
  /** @throws {NnError} `INVALID_CHECKPOINT` naming the file when it is missing or not JSON */
  readJson(name: string): Promise<unknown>;
  /**
   * The tensors of a weights file: `*.safetensors`, a torch `*.pth`/`*.pt`/`*.bin` zip (its state dict,
   * also when it sits under a `model` or `state_dict` key), or a shard index `*.index.json`.
   * In Node, files on disk are read tensor by tensor with positioned reads (files of any size).
   *
   * @throws {NnError} `INVALID_CHECKPOINT` naming the file when it is missing or corrupt
   */
  openTensors(name: string): Promise<TensorSource>;
  /** A sub-folder (or, with `..`, a sibling). */
  folder(name: string): ModelFolder;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** Options of {@link openModelFolder}. */
export interface OpenModelFolderOptions {
  /**
   * Reads the files of an `http(s):` folder (default: the global `fetch`): e.g. a page's fetch that
   * keeps weights in IndexedDB and only revalidates them with the server.
   */
  readonly fetch?: typeof fetch;
}

/**
 * Opens a model folder: an `http(s):` URL (the base of the files, e.g. a hub mirror or a static
 * server), a `file:` URL, or — in Node — a path.
 *
 * @param location - path or URL of the folder
 * @returns the folder (nothing is read yet)
 * @throws {NnError} `INVALID_ARGUMENT` for a path outside Node
 */
export async function openModelFolder(location: string | URL, options: OpenModelFolderOptions = {}): Promise<ModelFolder> {
  const text = typeof location === 'string' ? location : location.href;
  if (typeof text !== 'string' || text.length === 0)
    throw new NnError('INVALID_ARGUMENT', 'a model folder must be a non-empty path or URL');
  const get = options.fetch ?? ((input, init) => fetch(input, init));
  if (/^https?:\/\//i.test(text)) return new HttpModelFolder(text.replace(/\/+$/, ''), get);
  if (!isNode) {
    if (typeof location !== 'string' || /^[a-z]+:/i.test(text))
      throw new NnError('INVALID_ARGUMENT', `cannot open ${text} here: use an http(s) URL`);
    // A relative URL in a page: resolve against the page.
    const base = typeof globalThis.location === 'object' ? (globalThis.location as { href: string }).href : undefined;
    if (!base) throw new NnError('INVALID_ARGUMENT', `cannot open ${text} outside Node: give an http(s) URL`);
    return new HttpModelFolder(new URL(text, base).href.replace(/\/+$/, ''), get);
  }
  const { NodeModelFolder } = await import('./model-folder-node.js');
  return NodeModelFolder.open(text);
}

/**
 * A reader's error (`SafetensorsError`, `PthError`, a file system error) as `INVALID_CHECKPOINT`
 * naming the file once.
 */
export function checkpointError(e: unknown, where: string): NnError {
  if (e instanceof NnError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new NnError('INVALID_CHECKPOINT', message.includes(where) ? message : `${where}: ${message}`);
}

/** The kind of a weights file, from its name. */
export function tensorFileKind(name: string): 'safetensors' | 'pth' | 'index' {
  if (/\.index\.json$/i.test(name)) return 'index';
  if (/\.safetensors$/i.test(name)) return 'safetensors';
  if (/\.(pth|pt|bin|ckpt)$/i.test(name)) return 'pth';
  throw new NnError('INVALID_ARGUMENT', `${name}: not a weights file (expected .safetensors, .pth, .pt, .bin or .index.json)`);
}

/**
 * @internal A folder whose files are read whole (over HTTP, from memory): JSON and weights parsed from
 * bytes. The Node folder overrides `openTensors` to read weights tensor by tensor.
 */
export abstract class BytesModelFolder implements ModelFolder {
  abstract readonly location: string;
  abstract describe(name: string): string;
  abstract exists(name: string): Promise<boolean>;
  abstract folder(name: string): ModelFolder;
  /** The whole file. @throws {NnError} `INVALID_CHECKPOINT` naming it when it cannot be read */
  protected abstract fileBytes(name: string): Promise<Uint8Array>;

  async readText(name: string): Promise<string> {
    return new TextDecoder().decode(await this.fileBytes(name));
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
    const kind = tensorFileKind(name);
    if (kind === 'index') {
      const dir = name.includes('/') ? name.slice(0, name.lastIndexOf('/') + 1) : '';
      try {
        const index = parseShardIndex(await this.readJson(name), where);
        const missing: string[] = [];
        for (const file of index.files) if (!(await this.exists(dir + file))) missing.push(file);
        if (missing.length > 0) throw missingShardsError(index, missing, where, (file) => this.describe(dir + file));
        const shards = new Map<string, TensorSource>();
        for (const file of index.files) shards.set(file, await this.openTensors(dir + file));
        return shardedTensorSource(index, shards, where);
      } catch (e) {
        throw checkpointError(e, where);
      }
    }
    const bytes = await this.fileBytes(name);
    try {
      return kind === 'safetensors' ? parseSafetensors(bytes, { description: where }) : parsePth(bytes, { description: where });
    } catch (e) {
      throw checkpointError(e, where);
    }
  }
}

class HttpModelFolder extends BytesModelFolder {
  constructor(
    readonly location: string,
    private readonly get: typeof fetch,
  ) {
    super();
  }

  describe(name: string): string {
    return `${this.location}/${name}`;
  }

  async exists(name: string): Promise<boolean> {
    try {
      const response = await this.get(this.describe(name), { method: 'HEAD' });
      return response.ok;
    } catch {
      return false;
    }
  }

  protected async fileBytes(name: string): Promise<Uint8Array> {
    let response: Response;
    try {
      response = await this.get(this.describe(name));
    } catch (e) {
      throw new NnError('INVALID_CHECKPOINT', `cannot read ${this.describe(name)}: ${(e as Error).message}`);
    }
    if (!response.ok) throw new NnError('INVALID_CHECKPOINT', `cannot read ${this.describe(name)}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  folder(name: string): ModelFolder {
    const url = new URL(`${name.replace(/\/+$/, '')}/`, `${this.location}/`);
    return new HttpModelFolder(url.href.replace(/\/+$/, ''), this.get);
  }
}

/**
 * A model folder held in memory — files a user picked in a page (read into bytes), files fetched by
 * other means, or a test's: relative path → bytes. Sub-folders are path prefixes (`entropy_model/`).
 *
 * @param files - the folder's files by relative path (`config.json`, `entropy_model/params.json`)
 * @param location - a name for messages
 */
export function modelFolderFromFiles(files: ReadonlyMap<string, Uint8Array>, location = 'memory'): ModelFolder {
  return new MemoryModelFolder(files, '', location);
}

class MemoryModelFolder extends BytesModelFolder {
  constructor(
    private readonly files: ReadonlyMap<string, Uint8Array>,
    private readonly prefix: string,
    private readonly root: string,
  ) {
    super();
  }

  get location(): string {
    return this.prefix === '' ? this.root : `${this.root}/${this.prefix.replace(/\/$/, '')}`;
  }

  describe(name: string): string {
    return `${this.root}/${this.key(name)}`;
  }

  /** The file's key: the prefix and name joined, `.` and `..` resolved. */
  private key(name: string): string {
    const parts: string[] = [];
    for (const seg of `${this.prefix}${name}`.split('/')) {
      if (seg === '' || seg === '.') continue;
      if (seg === '..') parts.pop();
      else parts.push(seg);
    }
    return parts.join('/');
  }

  async exists(name: string): Promise<boolean> {
    return this.files.has(this.key(name));
  }

  protected async fileBytes(name: string): Promise<Uint8Array> {
    const b = this.files.get(this.key(name));
    if (!b) throw new NnError('INVALID_CHECKPOINT', `${this.describe(name)} does not exist`);
    return b;
  }

  folder(name: string): ModelFolder {
    const key = this.key(name);
    return new MemoryModelFolder(this.files, key === '' ? '' : `${key}/`, this.root);
  }
}
