// Runs in Chromium under src/browser-patcher-speed.test.ts: the entropy patcher's shipped default
// model, loaded as a user's page loads it — `initBackend`, then `EntropyPatcher.pretrained()`, whose
// weights vite emits as an asset of this bundle (pretrainedUrl() is `new URL('../models/…',
// import.meta.url)`) — on the backend named in the query. Patches a fixed paragraph (the test
// compares it with Node's patches), then times `patch(text)` on held-out English of growing sizes.
// Writes one JSON object into #result (and window.checkResult).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';

const params = new URLSearchParams(location.search);
const backend = params.get('backend') as BackendName;
const paragraph = params.get('paragraph')!;
/** Bytes of English to time, smallest first. */
const sizes = params.get('sizes')!.split(',').map(Number);
/**
 * Longest the timed calls of one size may take (estimated from the previous size's rate): fewer
 * calls, or none, past it. Keeps the page's time bounded on a slow machine or a software GPU.
 */
const limitMs = Number(params.get('limitMs'));

interface GpuAdapterLike {
  readonly info?: Record<string, unknown>;
  readonly isFallbackAdapter?: boolean;
}

/** What the adapter (requested as tfjs-backend-webgpu requests it) says it is. */
async function adapterInfo(): Promise<Record<string, unknown> | undefined> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(o?: object): Promise<GpuAdapterLike | null> } }).gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return undefined;
  const info = adapter.info ?? {};
  return {
    vendor: info['vendor'],
    architecture: info['architecture'],
    device: info['device'],
    description: info['description'],
    isFallbackAdapter: adapter.isFallbackAdapter ?? info['isFallbackAdapter'],
  };
}

/** Held-out English (ASCII, so one character per byte), written beside the page by the test. */
async function corpus(): Promise<string> {
  const res = await fetch('text.txt');
  if (!res.ok) throw new Error(`GET text.txt: ${res.status}`);
  return res.text();
}

interface Timing {
  readonly bytes: number;
  /** Timed calls (after the warm-up), or 0 when the size was left out. */
  readonly calls: number;
  readonly warmupMs?: number;
  readonly medianMs?: number;
  readonly allMs?: number[];
  /** 1 KB = 1000 bytes, of the median call. */
  readonly kbPerS?: number;
  readonly note?: string;
}

async function timeSizes(patcher: EntropyPatcher, english: string): Promise<Timing[]> {
  const out: Timing[] = [];
  /** Bytes per ms of the last size timed: how long the next size's calls are estimated to take. */
  let rate: number | undefined;
  for (const bytes of sizes) {
    const text = english.slice(0, bytes);
    if (text.length !== bytes) throw new Error(`the corpus has ${english.length} bytes, fewer than ${bytes}`);
    const estimate = rate === undefined ? undefined : bytes / rate;
    if (estimate !== undefined && estimate > limitMs) {
      out.push({
        bytes,
        calls: 0,
        note: `left out: one call estimated at ${(estimate / 1000).toFixed(1)} s, over the ${limitMs / 1000} s limit`,
      });
      continue;
    }
    // One warm-up call at this size (its context groups' shapes and, on WebGPU, their pipelines), then
    // the median of 3 — unless 4 calls would not fit the limit: a size that large has the same shapes
    // as the smaller ones (contexts are batched 4 at a time), which have warmed them, so it goes
    // without a warm-up and with as many of 3 calls as fit.
    let warmupMs: number | undefined;
    let calls = 3;
    if (estimate === undefined || estimate * 4 <= limitMs) {
      const started = performance.now();
      await patcher.patch(text);
      warmupMs = performance.now() - started;
      if (estimate === undefined && warmupMs * 3 > limitMs) calls = 1;
    } else if (estimate * 3 > limitMs) {
      calls = 1;
    }
    const allMs: number[] = [];
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      await patcher.patch(text);
      allMs.push(performance.now() - started);
    }
    const medianMs = [...allMs].sort((a, b) => a - b)[Math.floor(allMs.length / 2)]!;
    rate = bytes / medianMs;
    const note =
      calls < 3
        ? `${calls} timed call${warmupMs === undefined ? ', no warm-up (the smaller sizes warmed the same shapes)' : ''}: 3 would pass the ${limitMs / 1000} s limit`
        : undefined;
    out.push({ bytes, calls, warmupMs, medianMs, allMs, kbPerS: bytes / medianMs, ...(note ? { note } : {}) });
  }
  return out;
}

async function run(): Promise<Record<string, unknown>> {
  tf.env().set('PROD', true); // as the shipped web page (web/engines.ts) runs tfjs
  let info;
  try {
    info = await initBackend({ backend, wasmPaths: new URL('wasm/', location.href).href, allowSoftwareGpu: backend === 'webgpu' });
  } catch (e) {
    // No WebGPU adapter, not even a software one: the test skips this backend.
    if ((e as { code?: unknown }).code === 'BACKEND_UNAVAILABLE') return { unavailable: (e as Error).message };
    throw e;
  }
  const english = await corpus();
  const pretrainedUrl = EntropyPatcher.pretrainedUrl().href;
  let started = performance.now();
  const patcher = await EntropyPatcher.pretrained();
  const loadMs = performance.now() - started;
  const threads = backend === 'wasm' ? (await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount() : undefined;
  try {
    // The model's first call: the paragraph the test compares with Node's patches.
    started = performance.now();
    const r = await patcher.patch(paragraph);
    const paragraphMs = performance.now() - started;
    const timings = await timeSizes(patcher, english);
    return {
      backend: info.name,
      tfBackend: tf.getBackend(),
      reason: info.reason,
      adapter: info.adapter,
      software: info.software,
      adapterInfo: backend === 'webgpu' ? await adapterInfo() : undefined,
      crossOriginIsolated,
      threads,
      hardwareConcurrency: navigator.hardwareConcurrency,
      userAgent: navigator.userAgent,
      pretrainedUrl,
      patcherBackend: patcher.backend.name,
      patcherThreads: patcher.threads,
      defaults: patcher.defaults,
      loadMs,
      paragraph: {
        bytes: new TextEncoder().encode(paragraph).length,
        firstCallMs: paragraphMs,
        tokens: r.tokens.length,
        patchLengths: Array.from(r.patchLengths),
        entropies: Array.from(r.entropies),
      },
      timings,
    };
  } finally {
    patcher.dispose();
  }
}

run()
  // Tensors still held once the patcher is disposed: none, unless the backend never started.
  .then(
    (r) => ('unavailable' in r ? r : { ...r, tensorsLeft: tf.memory().numTensors }),
    (e: unknown) => ({ error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e) }),
  )
  .then((r) => {
    (window as unknown as { checkResult: unknown }).checkResult = r;
    document.getElementById('result')!.textContent = JSON.stringify(r);
  });
