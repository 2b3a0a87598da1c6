import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it, vi } from 'vitest';
import { BackendError, ensureBackend, initBackend, loadWasmKernelFixes, type InitBackendOptions } from './select-backend.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Whether the `webgpu` package gives a SwiftShader adapter here, probed in a child process so that
 * this worker's environment and GPU state stay untouched for the tests below.
 */
function probeSoftwareAdapter(): boolean {
  if (process.env['VK_ICD_FILENAMES'] === undefined && !existsSync(SWIFTSHADER_ICD)) return false;
  const script = `
    process.env.VK_ICD_FILENAMES ??= ${JSON.stringify(SWIFTSHADER_ICD)};
    const { create } = await import('webgpu');
    const adapter = await create([]).requestAdapter();
    console.log(adapter ? 'adapter' : 'none');`;
  try {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 60_000,
    });
    return out.trim().endsWith('adapter');
  } catch {
    return false;
  }
}
const softwareAdapter = probeSoftwareAdapter();

async function matMulValues(): Promise<Float32Array> {
  const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = tf.tensor2d([0.5, -1, 2, 0, 1, 3], [3, 2]);
  const c = tf.matMul(a, b);
  // Asynchronous readback: WebGPU tensors cannot be read synchronously in Node.
  const values = (await c.data()) as Float32Array;
  tf.dispose([a, b, c]);
  return values;
}
// [1 2 3; 4 5 6] @ [0.5 -1; 2 0; 1 3]
const EXPECTED = [7.5, 8, 18, 14];

describe('initBackend', () => {
  // Runs first: vitest gives each test file a fresh worker, and nothing has called initBackend yet.
  it('importing the module registers only the cpu default (the others are loaded on demand)', () => {
    expect(tf.findBackendFactory('cpu')).not.toBeNull();
    for (const name of ['wasm', 'webgpu']) expect(tf.findBackendFactory(name)).toBeNull();
  });

  it('rejects unknown backends and malformed options with INVALID_ARGUMENT', async () => {
    const bad: unknown[] = [
      { backend: 'gpu' },
      { backend: 'WASM' },
      { backend: 3 },
      { allowSoftwareGpu: 'yes' },
      { wasmPaths: 1 },
      { nativeMatMul: 'on' },
      { nativeMatMul: false },
      'wasm',
      [1],
    ];
    for (const options of bad) {
      const result = initBackend(options as InitBackendOptions);
      await expect(result).rejects.toBeInstanceOf(BackendError);
      await expect(result).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });

  it('forced cpu works and reports its name', async () => {
    const info = await initBackend({ backend: 'cpu' });
    expect(info).toMatchObject({ name: 'cpu' });
    expect(info.reason).toMatch(/forced/);
    expect(tf.getBackend()).toBe('cpu');
    expect(Array.from(await matMulValues())).toEqual(EXPECTED);
  });

  it('forced wasm works, reports its name and has the kernel fixes', async () => {
    const info = await initBackend({ backend: 'wasm' });
    expect(info).toMatchObject({ name: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
    expect(tf.getKernel('UnsortedSegmentSum', 'wasm')).toBeDefined();
    expect(Array.from(await matMulValues())).toEqual(EXPECTED);
    const { withOriginalWasmKernels } = await loadWasmKernelFixes();
    expect(withOriginalWasmKernels(() => tf.getKernel('BatchMatMul', 'wasm'))).not.toBe(tf.getKernel('BatchMatMul', 'wasm'));
  });

  it("reports whether wasm's matmuls run natively; nativeMatMul: 'off' restores the wasm kernels", async () => {
    const { activeWasmMatMul, withWasmMatMul } = await loadWasmKernelFixes();
    let available = false;
    try {
      available = (await import('@bytelatent/native-sgemm')).loadNativeSgemm() !== undefined;
    } catch {
      // Not installed: the info must say so.
    }
    const info = await initBackend({ backend: 'wasm' });
    expect(info.nativeMatMul?.active).toBe(available);
    expect(info.nativeMatMul?.reason).toMatch(available ? /OpenBLAS/ : /native-sgemm/);
    expect(activeWasmMatMul()).toBe(available ? 'native' : 'fixed');
    if (!available) console.warn(`native matmul not checked here: ${info.nativeMatMul?.reason}`);

    const off = await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
    expect(off.nativeMatMul).toEqual({ active: false, reason: "off (nativeMatMul: 'off')" });
    expect(activeWasmMatMul()).toBe('fixed');
    expect(Array.from(await matMulValues())).toEqual(EXPECTED);
    expect(() => withWasmMatMul('native', () => 1)).toThrow(/not enabled/);

    const again = await initBackend({ backend: 'wasm', nativeMatMul: 'auto' });
    expect(again.nativeMatMul?.active).toBe(available);
    expect(Array.from(await matMulValues())).toEqual(EXPECTED);
    // The cpu backend's matmuls run natively too, and 'off' restores its own kernel.
    const cpu = await initBackend({ backend: 'cpu' });
    expect(cpu.nativeMatMul?.active).toBe(available);
    const { nativeCpuMatMulActive } = await import('./cpu-native-matmul.js');
    expect(nativeCpuMatMulActive()).toBe(available);
    const native = Array.from(await matMulValues());
    expect(native).toEqual(EXPECTED);
    const cpuOff = await initBackend({ backend: 'cpu', nativeMatMul: 'off' });
    expect(cpuOff.nativeMatMul).toEqual({ active: false, reason: "off (nativeMatMul: 'off')" });
    expect(nativeCpuMatMulActive()).toBe(false);
    expect(Array.from(await matMulValues())).toEqual(EXPECTED);
  });

  it('returns the same info for the same choice, and switches for another', async () => {
    const first = await initBackend({ backend: 'wasm' });
    const again = await initBackend({ backend: 'wasm' });
    expect(again).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    const cpu = await initBackend({ backend: 'cpu' });
    expect(cpu.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const back = await initBackend({ backend: 'wasm' });
    expect(back.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    // Switched behind initBackend's back: the next call notices and selects again.
    await tf.setBackend('cpu');
    expect((await initBackend({ backend: 'wasm' })).name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('serialises concurrent calls: the last one wins', async () => {
    const [a, b] = await Promise.all([initBackend({ backend: 'cpu' }), initBackend({ backend: 'wasm' })]);
    expect(a.name).toBe('cpu');
    expect(b.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  // This machine has no hardware GPU (see shared/environment.md): auto must pass over WebGPU.
  it("'auto' without a hardware GPU selects wasm and says why webgpu was not used", async () => {
    const info = await initBackend();
    expect(info.name).toBe('wasm');
    expect(info.reason).toMatch(/^webgpu (unavailable|skipped): .+; wasm$/);
    expect(tf.getBackend()).toBe('wasm');
    expect(await initBackend({ backend: 'auto' })).toBe(info);
  });

  it('forced webgpu without a usable adapter throws BACKEND_UNAVAILABLE and keeps the current backend', async () => {
    await initBackend({ backend: 'cpu' });
    const result = initBackend({ backend: 'webgpu' });
    await expect(result).rejects.toBeInstanceOf(BackendError);
    await expect(result).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(result).rejects.toThrow(/webgpu (unavailable|skipped)/);
    expect(tf.getBackend()).toBe('cpu');
  });

  it.skipIf(!softwareAdapter)(
    'forced webgpu with allowSoftwareGpu runs a matmul equal to cpu (SwiftShader)',
    async () => {
      const info = await initBackend({ backend: 'webgpu', allowSoftwareGpu: true });
      expect(info.name).toBe('webgpu');
      expect(info.software).toBe(true);
      expect(info.adapter).toMatch(/swiftshader/i);
      expect(tf.getBackend()).toBe('webgpu');
      const gpu = Array.from(await matMulValues());
      await initBackend({ backend: 'cpu' });
      const cpu = Array.from(await matMulValues());
      expect(cpu).toEqual(EXPECTED);
      gpu.forEach((v, i) => expect(v).toBeCloseTo(cpu[i]!, 5));

      // With a software adapter now installed as navigator.gpu, 'auto' still skips it...
      const auto = await initBackend({ backend: 'auto' });
      expect(auto.name).toBe('wasm');
      expect(auto.reason).toMatch(/^webgpu skipped: software adapter .*swiftshader.*; wasm$/i);
      // ...unless told otherwise.
      const allowed = await initBackend({ backend: 'auto', allowSoftwareGpu: true });
      expect(allowed).toMatchObject({ name: 'webgpu', software: true });
      // And forcing it without allowSoftwareGpu fails rather than running ~70x slower than wasm.
      await expect(initBackend({ backend: 'webgpu' })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      await initBackend({ backend: 'cpu' });
    },
    120_000,
  );
});

// The fresh-process behaviour (nothing chosen yet: the automatic choice, no banner, no Dawn
// warnings) is tested through the loaders in @bytelatent/entropy-patcher (default-backend.test.ts).
describe('ensureBackend', () => {
  it('keeps the backend already running and returns its info', async () => {
    const cpu = await initBackend({ backend: 'cpu' });
    expect(await ensureBackend({ quiet: true })).toBe(cpu);
    expect(tf.getBackend()).toBe('cpu');
  });

  it('says in one console line, unless quiet, that it runs on the pure-JavaScript cpu backend', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      await initBackend({ backend: 'cpu', nativeMatMul: 'off' });
      await ensureBackend();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]![0])).toMatch(
        /^bytelatent: running on TensorFlow\.js's pure-JavaScript cpu backend \(forced \(backend: 'cpu'\)\)/,
      );
      await ensureBackend({ quiet: true });
      await initBackend({ backend: 'wasm' });
      await ensureBackend();
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
      await initBackend({ backend: 'cpu' });
    }
  });

  it('rejects malformed options with INVALID_ARGUMENT', async () => {
    await expect(ensureBackend({ quiet: 'yes' } as unknown as { quiet: boolean })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(ensureBackend(null as unknown as object)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('a model built before any backend was chosen', () => {
  it("says once, in one line, that tfjs's cpu backend runs it, instead of tfjs's banner", () => {
    const script = `
      import { ParameterRegistry, ParameterScope, RMSNorm } from '@bytelatent/nn';
      const registry = new ParameterRegistry();
      new RMSNorm(new ParameterScope(registry), 8);
      new ParameterRegistry();
      console.log(registry.count());`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('8');
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^bytelatent: no backend was chosen, so TensorFlow\.js runs this model on its pure-JavaScript cpu backend/),
    ]);
  });
});
