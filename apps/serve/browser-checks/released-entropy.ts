// Runs in Chromium under src/browser-released-entropy.test.ts: Meta's released entropy model (the
// blt-entropy shape, ~100M parameters) loaded over HTTP with EntropyPatcher.fromPretrained on the
// folder's URL — the library's loader, as a user's page calls it — then one text patched at a given
// threshold and (with `defaults=1`) with the folder's own settings, on the backend named in the
// query. Writes one JSON object into #result (and window.checkResult): what ran where, the times,
// the patches and entropies, and what the WebGPU adapter allows.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { EntropyPatcher, type PatchResult } from '@bytelatent/entropy-patcher';

const params = new URLSearchParams(location.search);
const backend = params.get('backend') as BackendName;
const model = new URL(params.get('model')!, location.href).href;
const text = params.get('text')!;
const threshold = Number(params.get('threshold'));
const withDefaults = params.get('defaults') === '1';

interface GpuAdapterLike {
  readonly info?: Record<string, unknown>;
  readonly limits: Record<string, number>;
  readonly isFallbackAdapter?: boolean;
}

/** What the adapter (as tfjs-backend-webgpu requests it) reports, and what tfjs's device got. */
async function webgpuLimits(): Promise<Record<string, unknown> | undefined> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(o?: object): Promise<GpuAdapterLike | null> } }).gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return undefined;
  const pick = (limits: Record<string, number>) => ({
    maxBufferSize: limits['maxBufferSize'],
    maxStorageBufferBindingSize: limits['maxStorageBufferBindingSize'],
    maxComputeWorkgroupStorageSize: limits['maxComputeWorkgroupStorageSize'],
    maxComputeWorkgroupsPerDimension: limits['maxComputeWorkgroupsPerDimension'],
  });
  const info = adapter.info ?? {};
  const device = (tf.backend() as unknown as { device?: { limits: Record<string, number> } }).device;
  return {
    adapter: { vendor: info['vendor'], architecture: info['architecture'], device: info['device'], description: info['description'] },
    isFallbackAdapter: adapter.isFallbackAdapter,
    adapterLimits: pick(adapter.limits),
    deviceLimits: device ? pick(device.limits) : undefined,
  };
}

function summary(r: PatchResult) {
  return {
    tokens: r.tokens.length,
    patchLengths: Array.from(r.patchLengths),
    patchStarts: Array.from(r.patchStarts),
    entropies: Array.from(r.entropies),
    segments: r.segments().map((s) => s.text),
  };
}

async function run(): Promise<Record<string, unknown>> {
  tf.env().set('PROD', true);
  const info = await initBackend({ backend, wasmPaths: new URL('wasm/', location.href).href, allowSoftwareGpu: backend === 'webgpu' });
  let started = performance.now();
  const patcher = await EntropyPatcher.fromPretrained(model);
  const loadMs = performance.now() - started;
  const memory = tf.memory();
  const wasmModule = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  const threads = backend === 'wasm' ? (await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount() : undefined;
  // The first model call (kernels compiled, WebGPU pipelines built), then the folder's settings.
  started = performance.now();
  const atThreshold = await patcher.patch(text, { mode: 'entropy', threshold });
  const patchMs = performance.now() - started;
  started = performance.now();
  const byDefaults = withDefaults ? await patcher.patch(text) : undefined;
  const defaultsMs = performance.now() - started;
  const result = {
    backend: info.name,
    tfBackend: tf.getBackend(),
    adapter: info.adapter,
    software: info.software,
    reason: info.reason,
    crossOriginIsolated,
    threads,
    hardwareConcurrency: navigator.hardwareConcurrency,
    layout: patcher.layout,
    defaults: patcher.defaults,
    bytes: new TextEncoder().encode(text).length,
    loadMs,
    patchMs,
    defaultsMs: byDefaults ? defaultsMs : undefined,
    weights: { tensors: memory.numTensors, bytes: memory.numBytes },
    wasmHeapBytes: wasmModule?.HEAPU8?.length,
    webgpu: backend === 'webgpu' ? await webgpuLimits() : undefined,
    withThreshold: summary(atThreshold),
    withDefaults: byDefaults ? summary(byDefaults) : undefined,
  };
  patcher.dispose();
  return { ...result, tensorsLeft: tf.memory().numTensors };
}

run()
  .then(
    (r) => r,
    (e: unknown) => ({ error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e) }),
  )
  .then((r) => {
    (window as unknown as { checkResult: unknown }).checkResult = r;
    document.getElementById('result')!.textContent = JSON.stringify(r);
  });
