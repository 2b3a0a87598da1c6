// Models trained on a text with @bytelatent/blt's TextTrainer (the page's training tab) in this
// server and the eval CLI: the files load with --patcher / --blt, and serviceWithModelFile swaps
// them into a running service as the page does.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import '@bytelatent/nn/gradients';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TextTrainer, type TrainedModelFile } from '@bytelatent/blt';
import { initBackend } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { modelKindOfFile, serviceWithModelFile } from './service-from-bytes.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const evalBin = join(dirname(require.resolve('@bytelatent/evals/package.json')), 'dist', 'cli.js');
const never = new AbortController().signal;

const TEXT = Array.from({ length: 30 }, (_, i) => `The cat sat on the mat number ${i % 7}. The dog sat on the log.`).join('\n');

let dir: string;
beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'trained-files-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function trained(kind: 'entropy' | 'blt'): Promise<{ saved: TrainedModelFile; path: string }> {
  const trainer = new TextTrainer({ kind, text: TEXT, steps: 6, seqLen: 48, batchSize: 2, lr: 1e-2 });
  try {
    while (!trainer.done) await trainer.trainStep();
    const saved = await trainer.save();
    const path = join(dir, saved.fileName);
    await writeFile(path, saved.file);
    return { saved, path };
  } finally {
    trainer.dispose();
  }
}

describe('trained model files in the server', () => {
  it('an entropy model: --patcher FILE, and swapped into the demo (which then patches at its threshold)', async () => {
    const { saved, path } = await trained('entropy');
    expect(modelKindOfFile(saved.file)).toBe('entropy');
    const { service } = await loadServeModels({ patcher: path, backend: 'cpu' });
    expect((await service.patch('The bird sat in the tree.', {})).patches.length).toBeGreaterThan(1);
    const swapped = await serviceWithModelFile(service, saved.file, 'mine.safetensors');
    expect(swapped.info.patcherModel).toBe('mine.safetensors');
    expect(swapped.patching).toMatchObject({ mode: 'entropy', threshold: swapped.patcher.defaults.threshold });
    expect((await swapped.score('The cat sat.', never)).bytes).toBe(12);
  }, 120_000);

  it('a BLT: --blt FILE and bytelatent-eval bpb --model FILE; swapped in, /v1/patch with no rule patches at spaces as it trained', async () => {
    const { saved, path } = await trained('blt');
    expect(modelKindOfFile(saved.file)).toBe('blt');
    expect(() => modelKindOfFile(new Uint8Array(3))).toThrow(/not a safetensors model file/);
    const { service } = await loadServeModels({ blt: path, backend: 'cpu' });
    expect(service.patching.mode).toBe('space');
    const scored = await service.score('The cat sat on the mat.', never);
    await writeFile(join(dir, 'sample.txt'), TEXT.slice(0, 400));
    const { stdout } = await run(process.execPath, [
      evalBin,
      'bpb',
      '--model',
      path,
      '--file',
      join(dir, 'sample.txt'),
      '--backend',
      'cpu',
    ]);
    expect(stdout).toMatch(/bits/);
    // The page's swap: the demo's entropy model stays, the BLT is this one, patching as it trained.
    const demo = (await loadServeModels({ backend: 'cpu' })).service;
    const swapped = await serviceWithModelFile(demo, saved.file, 'mine.safetensors');
    expect(swapped.info).toMatchObject({ bltModel: 'mine.safetensors', bltLayout: 'safetensors' });
    expect(swapped.patching.mode).toBe('space');
    expect((await swapped.score('The cat sat on the mat.', never)).bitsPerByte).toBeCloseTo(scored.bitsPerByte, 4);
    expect((await swapped.patch('The cat sat.', {})).mode).toBe('space');
    expect((await swapped.patch('The cat sat.', { mode: 'entropy' })).threshold).toBe(swapped.patcher.defaults.threshold);
    expect(swapped.describe()).toMatchObject({ models: { patcher: { patching: { mode: 'space' } } } });
  }, 120_000);
});
