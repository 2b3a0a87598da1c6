import { closeSync, openSync, readSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
// Several benches train (gradients): the tfjs umbrella's gradient functions, as apps/train loads them.
import '@bytelatent/nn/gradients';
import { type BackendInfo, initBackend } from '@bytelatent/nn';

// Benches print one JSON line: keep tfjs's console advice out of the output.
tf.env().set('PROD', true);

/** The backends a bench can run on: `wasm-nonative` is wasm with its own matmul kernels, not OpenBLAS's. */
export type BenchBackend = 'cpu' | 'wasm' | 'wasm-nonative' | 'webgpu';

/** Selects a bench backend (software WebGPU allowed: these benches measure it on purpose). */
export function initBenchBackend(backend: BenchBackend): Promise<BackendInfo> {
  return initBackend({
    backend: backend === 'wasm-nonative' ? 'wasm' : backend,
    allowSoftwareGpu: true,
    ...(backend === 'wasm-nonative' ? { nativeMatMul: 'off' as const } : {}),
  });
}

/** Median of `runs` timings of `fn`, in seconds, after one warm-up call. */
export function medianSeconds(fn: () => unknown, runs: number): number {
  fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    fn();
    times.push((performance.now() - start) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Deterministic pseudo-text: mostly ASCII words with some multi-byte UTF-8, like real corpora. */
export function syntheticText(bytes: number, seed = 1): Uint8Array {
  const words = [
    'the',
    'byte',
    'latent',
    'transformer',
    'patch',
    'entropy',
    'of',
    'and',
    'naïve',
    'größe',
    '日本語',
    'model',
    'a',
    'to',
    'in',
  ];
  const enc = new TextEncoder();
  const out = new Uint8Array(bytes);
  let s = seed >>> 0;
  let n = 0;
  while (n < bytes) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const w = enc.encode(`${words[s % words.length]}${s % 11 === 0 ? '.\n' : ' '}`);
    out.set(w.subarray(0, Math.min(w.length, bytes - n)), n);
    n += w.length;
  }
  return out;
}

/** Prints the bench's single JSON line; numbers rounded to 4 significant digits. */
export function report(figures: Record<string, string | number | boolean>): void {
  const rounded = Object.fromEntries(
    Object.entries(figures).map(([k, v]) => [k, typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v]),
  );
  console.log(JSON.stringify(rounded));
}

/**
 * Reads every file once into one reused 16 MiB buffer: the page-cache read baseline of the load
 * benches (run it twice and keep the second for a warm cache).
 */
export function readFiles(paths: readonly string[]): { seconds: number; bytes: number } {
  const buffer = Buffer.allocUnsafe(16 << 20);
  let bytes = 0;
  const start = performance.now();
  for (const path of paths) {
    const fd = openSync(path, 'r');
    try {
      for (let n = readSync(fd, buffer, 0, buffer.length, null); n > 0; n = readSync(fd, buffer, 0, buffer.length, null)) bytes += n;
    } finally {
      closeSync(fd);
    }
  }
  return { seconds: (performance.now() - start) / 1000, bytes };
}
