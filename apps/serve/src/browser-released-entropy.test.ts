// Meta's released entropy model in a real browser: the blt-entropy checkpoint of the exact released
// shape (14 layers, dim 768, 99.5M parameters, bf16: 199 MB; random weights from
// @bytelatent/released-checkpoints) is served over HTTP, and browser-checks/released-entropy.ts —
// bundled here by vite — loads it in Debian's Chromium with EntropyPatcher.fromPretrained on the
// folder's URL and patches English text on wasm (threaded: the server sends COOP/COEP; a 302-byte
// paragraph) and on WebGPU (SwiftShader, a software adapter: ~0.3 s per byte for this model on
// 2 cores, so its first 22 bytes). The patches and entropies must equal those computed in Node by
// EntropyPatcher.fromPretrained on the same folder. The hub layout (`facebook/blt-entropy`:
// config.json + model.safetensors) runs on both backends; the consolidated layout (`entropy_model/`:
// params.json + consolidated.pth, the torch zip parsed in the page) on wasm. Load time and patch
// throughput per backend, and the WebGPU adapter's buffer limits, are printed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { EntropyPatcher, type PatchResult } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { writeReleasedCheckpoint } from '@bytelatent/released-checkpoints';
import { browserAvailable, bundleCheckPage, launchChromium, runCheckPage, serveFolder } from './test-helpers.js';

const CHECKS = fileURLToPath(new URL('../browser-checks', import.meta.url));
const available = browserAvailable();

// 302 bytes: the first sentence of Alice's Adventures in Wonderland (public domain).
const TEXT =
  'Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had ' +
  'peeped into the book her sister was reading, but it had no pictures or conversations in it, "and what is the use of a book," ' +
  'thought Alice "without pictures or conversations?"';
/** What WebGPU patches: SwiftShader is a CPU rasterizer (see shared/environment.md). */
const GPU_TEXT = TEXT.slice(0, 22);

interface Patches {
  readonly tokens: number;
  readonly patchLengths: number[];
  readonly patchStarts: number[];
  readonly entropies: number[];
  readonly segments: string[];
}

interface PageResult {
  readonly error?: string;
  readonly backend: string;
  readonly tfBackend: string;
  readonly adapter?: string;
  readonly software?: boolean;
  readonly reason: string;
  readonly crossOriginIsolated: boolean;
  readonly threads?: number;
  readonly hardwareConcurrency: number;
  readonly layout: string;
  readonly defaults: Record<string, unknown>;
  readonly bytes: number;
  readonly loadMs: number;
  readonly patchMs: number;
  readonly defaultsMs?: number;
  readonly weights: { tensors: number; bytes: number };
  readonly wasmHeapBytes?: number;
  readonly webgpu?: Record<string, unknown>;
  readonly withThreshold: Patches;
  readonly withDefaults?: Patches;
  readonly tensorsLeft: number;
}

let root = '';
let closeServer: (() => Promise<void>) | undefined;
let base = '';
let browser: Browser;
let threshold = 0;
/** Node's patches per layout: of TEXT with the folder's settings and at `threshold`, of GPU_TEXT at `threshold`. */
const expected = new Map<string, { defaults: Record<string, unknown>; withDefaults: Patches; withThreshold: Patches; gpuText: Patches }>();

function summary(r: PatchResult): Patches {
  return {
    tokens: r.tokens.length,
    patchLengths: Array.from(r.patchLengths),
    patchStarts: Array.from(r.patchStarts),
    entropies: Array.from(r.entropies),
    segments: r.segments().map((s) => s.text),
  };
}

/**
 * A threshold in the middle of the entropies that no entropy lies within 1e-4 of, so that patches
 * are a real test of agreement (not every byte alone, as the folder's threshold of 1.34 nats gives
 * with random weights, whose entropies are all near ln 260) and entropies that agree within 1e-4
 * give the same patches.
 */
function splittingThreshold(entropies: readonly number[]): number {
  const sorted = [...entropies].sort((a, b) => a - b);
  let best = { gap: -1, at: 0 };
  for (let i = Math.floor(sorted.length * 0.3); i < Math.ceil(sorted.length * 0.7); i++) {
    const gap = sorted[i + 1]! - sorted[i]!;
    if (gap > best.gap) best = { gap, at: (sorted[i]! + sorted[i + 1]!) / 2 };
  }
  expect(best.gap, 'a gap of 2e-4 between the middle entropies').toBeGreaterThan(2e-4);
  return best.at;
}

beforeAll(async () => {
  if (!available) return;
  root = await mkdtemp(join(tmpdir(), 'blt-browser-released-entropy-'));
  await bundleCheckPage(CHECKS, 'released-entropy.html', root);

  // The released shapes and dtype (bf16), seed 0: ~199 MB per layout, written in about a second each.
  for (const layout of ['hub', 'consolidated'] as const) {
    await writeReleasedCheckpoint({ model: 'blt-entropy', layout, out: join(root, 'models', layout), fsync: false, progress: false });
  }
  await initBackend({ backend: 'wasm' });
  for (const [layout, folder] of [
    ['hub', 'hub'],
    ['consolidated', 'consolidated/entropy_model'],
  ] as const) {
    const patcher = await EntropyPatcher.fromPretrained(join(root, 'models', folder));
    try {
      expect(patcher.layout).toBe(layout);
      const withDefaults = summary(await patcher.patch(TEXT));
      if (layout === 'hub') threshold = splittingThreshold(withDefaults.entropies);
      const at = (text: string) => patcher.patch(text, { mode: 'entropy', threshold }).then(summary);
      expected.set(layout, { defaults: { ...patcher.defaults }, withDefaults, withThreshold: await at(TEXT), gpuText: await at(GPU_TEXT) });
    } finally {
      patcher.dispose();
    }
  }
  ({ base, close: closeServer } = await serveFolder(root));
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await closeServer?.();
  if (root) await rm(root, { recursive: true, force: true });
});

async function runPage(backend: 'webgpu' | 'wasm', folder: string, text: string, defaults: boolean): Promise<PageResult> {
  const query = new URLSearchParams({
    backend,
    model: `models/${folder}/`,
    text,
    threshold: String(threshold),
    defaults: defaults ? '1' : '0',
  });
  return runCheckPage<PageResult>(browser, `${base}released-entropy.html?${query.toString()}`);
}

/** The largest difference between the page's entropies and Node's. */
function entropyDiff(got: Patches, want: Patches): number {
  return got.entropies.length === want.entropies.length
    ? Math.max(...got.entropies.map((e, i) => Math.abs(e - want.entropies[i]!)))
    : Infinity;
}

/** The page's patches of `text` equal Node's: lengths, starts and text exactly, entropies within 1e-4. */
function expectSamePatches(got: Patches, want: Patches, text: string): void {
  const bytes = new TextEncoder().encode(text).length;
  expect(got.tokens).toBe(bytes + 1); // BOS, then one id per byte
  // The reference's conventions: BOS is a patch of its own and the next-byte slot is counted, so the
  // lengths sum to the bytes + 2; the byte ranges of the segments cover the text exactly.
  expect(got.patchLengths.reduce((a, b) => a + b, 0)).toBe(bytes + 2);
  expect(got.patchLengths[0]).toBe(1);
  expect(got.segments.join('')).toBe(text);
  expect(got.patchLengths).toEqual(want.patchLengths);
  expect(got.patchStarts).toEqual(want.patchStarts);
  expect(got.segments).toEqual(want.segments);
  expect(got.entropies).toHaveLength(want.entropies.length);
  expect(entropyDiff(got, want)).toBeLessThan(1e-4);
}

function report(r: PageResult, folder: string, diff: number): void {
  const rate = (ms: number) => `${(r.bytes / (ms / 1000)).toFixed(1)} bytes/s = ${(r.bytes / 1000 / (ms / 1000)).toFixed(4)} KB/s`;
  const where =
    r.backend === 'webgpu'
      ? `${r.software ? 'software' : 'hardware'} adapter ${JSON.stringify(r.adapter)}`
      : `${r.threads} thread(s) of ${r.hardwareConcurrency}, crossOriginIsolated ${r.crossOriginIsolated}`;
  const warm =
    r.defaultsMs !== undefined && r.defaults['mode'] === 'entropy'
      ? `; again with the folder's settings ${(r.defaultsMs / 1000).toFixed(2)} s = ${rate(r.defaultsMs)}`
      : '';
  console.log(
    `[released entropy in Chromium] ${r.backend} (${where}), ${r.layout} folder ${folder}: loaded over HTTP in ${(r.loadMs / 1000).toFixed(2)} s ` +
      `(${r.weights.tensors} tensors, ${(r.weights.bytes / 1e6).toFixed(0)} MB float32${r.wasmHeapBytes ? `, wasm heap ${(r.wasmHeapBytes / 2 ** 20).toFixed(0)} MiB` : ''}); ` +
      `patched ${r.bytes} bytes, first call ${(r.patchMs / 1000).toFixed(2)} s = ${rate(r.patchMs)}${warm}; ` +
      `${r.withThreshold.patchLengths.length - 1} patches at threshold ${threshold.toFixed(4)}, entropies within ${diff.toExponential(1)} of Node's`,
  );
  if (r.webgpu) console.log(`[released entropy in Chromium] WebGPU adapter: ${JSON.stringify(r.webgpu)}`);
}

describe.skipIf(!available)('the released entropy model (blt-entropy shape, 99.5M parameters) in Chromium, over HTTP', () => {
  it('patches on WebGPU (software adapter) from the hub folder as Node does', async () => {
    const r = await runPage('webgpu', 'hub', GPU_TEXT, false);
    const want = expected.get('hub')!;
    report(r, 'hub', entropyDiff(r.withThreshold, want.gpuText));
    expect(r.backend).toBe('webgpu');
    expect(r.tfBackend).toBe('webgpu');
    expect(r.adapter).toBeTruthy();
    expect(r.layout).toBe('hub');
    expect(r.weights.tensors).toBe(129);
    expect(r.defaults).toEqual(want.defaults);
    expectSamePatches(r.withThreshold, want.gpuText, GPU_TEXT);
    expect(r.withThreshold.patchLengths.length).toBeGreaterThan(3);
    // tfjs asks the device for the adapter's own buffer limits.
    const limits = r.webgpu as { adapterLimits: Record<string, number>; deviceLimits: Record<string, number> };
    expect(limits.adapterLimits.maxBufferSize).toBeGreaterThan(0);
    expect(limits.deviceLimits.maxBufferSize).toBe(limits.adapterLimits.maxBufferSize);
    expect(limits.deviceLimits.maxStorageBufferBindingSize).toBe(limits.adapterLimits.maxStorageBufferBindingSize);
    expect(r.tensorsLeft).toBe(0);
  }, 180_000);

  it.each([
    ['hub', 'hub'],
    ['consolidated', 'consolidated/entropy_model'],
  ])(
    'patches on wasm from the %s folder as Node does',
    async (layout, folder) => {
      const r = await runPage('wasm', folder, TEXT, true);
      const want = expected.get(layout)!;
      report(r, folder, entropyDiff(r.withThreshold, want.withThreshold));
      expect(r.backend).toBe('wasm');
      expect(r.tfBackend).toBe('wasm');
      expect(r.crossOriginIsolated).toBe(true);
      expect(r.layout).toBe(layout);
      expect(r.weights.tensors).toBe(129);
      expect(r.defaults).toEqual(want.defaults);
      expectSamePatches(r.withThreshold, want.withThreshold, TEXT);
      expect(r.withThreshold.patchLengths.length).toBeGreaterThan(30);
      expect(r.withThreshold.patchLengths.length).toBeLessThan(250);
      expectSamePatches(r.withDefaults!, want.withDefaults, TEXT);
      expect(r.tensorsLeft).toBe(0);
    },
    180_000,
  );
});
