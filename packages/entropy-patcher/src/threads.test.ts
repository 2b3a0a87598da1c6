import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { EntropyPatcher } from './patcher.js';
import { PatcherError } from './errors.js';

// Worker threads (Node): a long input's contexts are shared between threads, each with a copy of
// the model on the same backend; the entropies and patches equal one thread's exactly.

const TEXT = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. '.repeat(40);

beforeAll(async () => {
  await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
});

describe('EntropyPatcher threads', () => {
  it('two threads give exactly the entropies and patches of one', async () => {
    const bytes = await EntropyPatcher.pretrainedBytes();
    const one = await EntropyPatcher.fromSafetensors(bytes, { threads: 1 });
    const two = await EntropyPatcher.fromSafetensors(bytes, { threads: 2 });
    expect([one.threads, two.threads]).toEqual([1, 2]);
    try {
      const want = await one.patch(TEXT);
      // The first long call starts the worker in the background; later calls share with it once it
      // is up (how long that takes depends on the machine's load: poll, up to a minute).
      const shared = () => (two as unknown as { workers: { computedGroups: number } }).workers.computedGroups;
      for (const started = performance.now(); shared() === 0 && performance.now() - started < 60_000;) {
        const got = await two.patch(TEXT);
        expect(Array.from(got.entropies)).toEqual(Array.from(want.entropies));
        expect(Array.from(got.patchLengths)).toEqual(Array.from(want.patchLengths));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // The worker did take part, and its groups gave the same values.
      expect(shared()).toBeGreaterThan(0);
      const got = await two.patch(TEXT);
      expect(Array.from(got.entropies)).toEqual(Array.from(want.entropies));
      const [a, b] = await two.patchBatch([TEXT, TEXT.slice(7)]);
      const [c, d] = await one.patchBatch([TEXT, TEXT.slice(7)]);
      expect(Array.from(a!.entropies)).toEqual(Array.from(c!.entropies));
      expect(Array.from(b!.entropies)).toEqual(Array.from(d!.entropies));
    } finally {
      one.dispose();
      two.dispose();
    }
  });

  it('refuses a bad thread count with INVALID_ARGUMENT', async () => {
    const bytes = await EntropyPatcher.pretrainedBytes();
    for (const threads of [0, 1.5, -1, 65]) {
      await expect(EntropyPatcher.fromSafetensors(bytes, { threads })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(EntropyPatcher.fromSafetensors(bytes, { threads: 0 })).rejects.toBeInstanceOf(PatcherError);
  });

  it('workers never keep the process alive, disposed or not', () => {
    const script = `
      import { initBackend } from '@bytelatent/nn';
      import { EntropyPatcher } from '@bytelatent/entropy-patcher';
      await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
      const patcher = await EntropyPatcher.pretrained({ threads: 2 });
      const text = ${JSON.stringify(TEXT)};
      await patcher.patch(text);
      await new Promise((r) => setTimeout(r, 1500));
      const { patchLengths } = await patcher.patch(text);
      console.log(patcher.threads, patchLengths.length > 0);`;
    const started = performance.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('2 true');
    expect(performance.now() - started).toBeLessThan(60_000);
  });
});
