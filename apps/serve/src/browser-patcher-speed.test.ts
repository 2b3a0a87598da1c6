// The shipped entropy patcher's speed in a real browser: browser-checks/pretrained-speed.ts — bundled
// here by vite, served with COOP/COEP (threaded wasm) — loads EntropyPatcher.pretrained() (the
// shipped default model, which vite emits as an asset of the bundle) in Debian's Chromium, on wasm
// and on WebGPU (SwiftShader, a software adapter), and times patch(text) on held-out English:
// 1 KiB, 16 KiB and, where one call fits in 20 s, 1 MiB on wasm; 1 KiB on WebGPU, whose CPU
// rasterizer is far slower (the page leaves out whatever its 60 s limit would not fit). Its patches
// of a fixed paragraph must equal Node's. The figures are printed as one JSON line, never asserted
// (timings belong in `npm run bench`; a loaded CI machine would fail them).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { browserAvailable, bundleCheckPage, launchChromium, runCheckPage, serveFolder } from './test-helpers.js';

const CHECKS = fileURLToPath(new URL('../browser-checks', import.meta.url));
/** Held-out English of the training corpus (not committed: `.cache/` is filled by the corpus tools). */
const HELDOUT = fileURLToPath(new URL('../../../.cache/corpus/heldout/books/carroll-alice.txt', import.meta.url));
const available = browserAvailable();

const KIB = 1024;
/** What each backend times, smallest first, and the longest its timed calls of one size may take. */
const PLAN = {
  wasm: { sizes: [KIB, 16 * KIB, KIB * KIB], limitMs: 20_000 },
  // SwiftShader runs WebGPU on the CPU (shared/environment.md): 1 KiB only.
  webgpu: { sizes: [KIB], limitMs: 60_000 },
} as const;

// 302 bytes: the first sentence of Alice's Adventures in Wonderland (public domain).
const PARAGRAPH =
  'Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had ' +
  'peeped into the book her sister was reading, but it had no pictures or conversations in it, "and what is the use of a book," ' +
  'thought Alice "without pictures or conversations?"';

interface Timing {
  readonly bytes: number;
  readonly calls: number;
  readonly warmupMs?: number;
  readonly medianMs?: number;
  readonly allMs?: number[];
  readonly kbPerS?: number;
  readonly note?: string;
}

interface PageResult {
  readonly error?: string;
  readonly unavailable?: string;
  readonly backend: string;
  readonly tfBackend: string;
  readonly reason: string;
  readonly adapter?: string;
  readonly software?: boolean;
  readonly adapterInfo?: Record<string, unknown>;
  readonly crossOriginIsolated: boolean;
  readonly threads?: number;
  readonly hardwareConcurrency: number;
  readonly userAgent: string;
  readonly pretrainedUrl: string;
  readonly patcherBackend: string;
  readonly patcherThreads: number;
  readonly defaults: Record<string, unknown>;
  readonly loadMs: number;
  readonly paragraph: { bytes: number; firstCallMs: number; tokens: number; patchLengths: number[]; entropies: number[] };
  readonly timings: Timing[];
  readonly tensorsLeft: number;
}

let root = '';
let closeServer: (() => Promise<void>) | undefined;
let base = '';
let browser: Browser;
let corpusName = '';
/** Node's patches of PARAGRAPH with the shipped model on wasm, and its settings. */
let expected: { patchLengths: number[]; entropies: number[]; defaults: Record<string, unknown>; thresholdMargin: number };
const figures: Record<string, unknown> = {};

/**
 * 1 MiB of English: the held-out book repeated (it is shorter), or, where the corpus is absent,
 * deterministic pseudo-English from a fixed list of words — the figures say which.
 */
function english(bytes: number): string {
  if (existsSync(HELDOUT)) {
    const book = readFileSync(HELDOUT, 'latin1');
    // ASCII only, so that the page's string slices are byte counts.
    expect(/^[\x00-\x7f]*$/.test(book)).toBe(true);
    corpusName = `heldout carroll-alice.txt (${book.length} bytes, repeated)`;
    return book.repeat(Math.ceil(bytes / book.length)).slice(0, bytes);
  }
  corpusName = 'pseudo-English (held-out corpus absent)';
  const words = PARAGRAPH.replace(/[^A-Za-z ]/g, '').split(' ');
  let s = 1;
  let out = '';
  while (out.length < bytes) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out += words[s % words.length]! + (s % 13 === 0 ? '.\n' : ' ');
  }
  return out.slice(0, bytes);
}

beforeAll(async () => {
  if (!available) return;
  root = await mkdtemp(join(tmpdir(), 'blt-browser-patcher-speed-'));
  await bundleCheckPage(CHECKS, 'pretrained-speed.html', root);
  await writeFile(join(root, 'text.txt'), english(Math.max(...PLAN.wasm.sizes, ...PLAN.webgpu.sizes)));

  await initBackend({ backend: 'wasm' });
  const patcher = await EntropyPatcher.pretrained();
  try {
    const r = await patcher.patch(PARAGRAPH);
    const threshold = patcher.defaults.threshold!;
    expected = {
      patchLengths: Array.from(r.patchLengths),
      entropies: Array.from(r.entropies),
      defaults: { ...patcher.defaults },
      // Entropies agreeing within 1e-4 give the same patches only if none lies that close to the threshold.
      thresholdMargin: Math.min(...Array.from(r.entropies, (e) => Math.abs(e - threshold))),
    };
  } finally {
    patcher.dispose();
  }
  expect(expected.thresholdMargin).toBeGreaterThan(1e-4);
  ({ base, close: closeServer } = await serveFolder(root));
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  if (Object.keys(figures).length > 0) {
    console.log(JSON.stringify({ check: 'entropy-patcher pretrained() in Chromium', text: corpusName, kb: 1000, ...figures }));
  }
  await browser?.close();
  await closeServer?.();
  if (root) await rm(root, { recursive: true, force: true });
});

async function runPage(backend: keyof typeof PLAN): Promise<PageResult> {
  const plan = PLAN[backend];
  const query = new URLSearchParams({ backend, paragraph: PARAGRAPH, sizes: plan.sizes.join(','), limitMs: String(plan.limitMs) });
  return runCheckPage<PageResult>(browser, `${base}pretrained-speed.html?${query.toString()}`);
}

/** The figures of one backend for the printed line (ms and KB/s rounded). */
function record(r: PageResult, entropyDiff: number): void {
  const round = (x: number | undefined, digits = 1) => (x === undefined ? undefined : Number(x.toFixed(digits)));
  figures[r.backend] = {
    adapter: r.adapter,
    adapterInfo: r.adapterInfo,
    software: r.software,
    crossOriginIsolated: r.crossOriginIsolated,
    threads: r.threads,
    hardwareConcurrency: r.hardwareConcurrency,
    loadMs: round(r.loadMs),
    paragraphFirstCallMs: round(r.paragraph.firstCallMs),
    sizes: r.timings.map((t) => ({
      bytes: t.bytes,
      calls: t.calls,
      warmupMs: round(t.warmupMs),
      medianMs: round(t.medianMs),
      kbPerS: round(t.kbPerS, 2),
      ...(t.note ? { note: t.note } : {}),
    })),
    paragraphPatches: r.paragraph.patchLengths.length,
    maxEntropyDiffVsNode: Number(entropyDiff.toExponential(2)),
  };
  figures['chromium'] = /Chrome\/[\d.]+/.exec(r.userAgent)?.[0];
  figures['pretrainedUrl'] = r.pretrainedUrl.replace(base, './');
}

/** The page's patches of PARAGRAPH equal Node's: lengths exactly, entropies within 1e-4; returns the largest difference. */
function expectNodePatches(r: PageResult): number {
  const bytes = new TextEncoder().encode(PARAGRAPH).length;
  expect(r.paragraph.bytes).toBe(bytes);
  expect(r.paragraph.tokens).toBe(bytes + 1); // BOS, then one id per byte
  expect(r.defaults).toEqual(expected.defaults);
  expect(r.paragraph.entropies).toHaveLength(expected.entropies.length);
  const diff = Math.max(...r.paragraph.entropies.map((e, i) => Math.abs(e - expected.entropies[i]!)));
  expect(diff).toBeLessThan(1e-4);
  expect(r.paragraph.patchLengths).toEqual(expected.patchLengths);
  return diff;
}

function expectTimed(r: PageResult, backend: keyof typeof PLAN): void {
  // Every planned size is reported; the smallest is always timed (the others may be left out past the limit).
  expect(r.timings.map((t) => t.bytes)).toEqual(PLAN[backend].sizes);
  expect(r.timings[0]!.calls).toBeGreaterThan(0);
  for (const t of r.timings.filter((x) => x.calls > 0)) expect(t.kbPerS).toBeGreaterThan(0);
  expect(r.tensorsLeft).toBe(0);
}

describe.skipIf(!available)("the shipped entropy patcher in Chromium: speed, and patches equal to Node's", () => {
  it('on wasm (threaded: the page is cross-origin isolated)', async () => {
    const r = await runPage('wasm');
    const diff = expectNodePatches(r);
    record(r, diff);
    expect(r.backend).toBe('wasm');
    expect(r.tfBackend).toBe('wasm');
    expect(r.patcherBackend).toBe('wasm');
    expect(r.crossOriginIsolated).toBe(true);
    // pretrained() read the file vite emitted from the package's `new URL('../models/…', import.meta.url)`.
    expect(new URL(r.pretrainedUrl).origin).toBe(new URL(base).origin);
    expectTimed(r, 'wasm');
  }, 150_000);

  it('on WebGPU (a software adapter here; skipped where there is no adapter)', async (ctx) => {
    const r = await runPage('webgpu');
    if (r.unavailable !== undefined) {
      figures['webgpu'] = { unavailable: r.unavailable };
      ctx.skip();
    }
    const diff = expectNodePatches(r);
    record(r, diff);
    expect(r.backend).toBe('webgpu');
    expect(r.tfBackend).toBe('webgpu');
    expect(r.adapter).toBeTruthy();
    expectTimed(r, 'webgpu');
  }, 150_000);
});
