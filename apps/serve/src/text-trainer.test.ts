// The page's training core in Node (the page runs the same module in a Web Worker): the held-out
// bits per byte fall, nothing leaks, and the saved files load where `bytelatent-train`'s do — the
// loaders, the entropy-patcher and eval CLIs, and this server.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@bytelatent/nn/gradients';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer, patchingOfMetadata, type BltArgs } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { initBackend, parseSafetensors } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { modelKindOfFile, serviceWithModelFile } from './service-from-bytes.js';
import { MIN_TRAINING_BYTES, TextTrainer, TextTrainerError } from './text-trainer.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const binOf = (pkg: string) => join(dirname(require.resolve(`${pkg}/package.json`)), 'dist', 'cli.js');

const TEXT = Array.from(
  { length: 40 },
  (_, i) => `The cat sat on the mat number ${i % 7}. The dog sat on the log, and the bird sat in the tree.`,
).join('\n');

let dir: string;
beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'text-trainer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('TextTrainer', () => {
  it('trains an entropy model: the held-out bits per byte fall; the file loads in the loader, the CLI and the server', async () => {
    const trainer = new TextTrainer({ kind: 'entropy', text: TEXT, steps: 30, seqLen: 64, batchSize: 4, lr: 1e-2, evalEvery: 15 });
    try {
      const first = await trainer.trainStep();
      const before = trainer.heldoutBitsPerByte;
      expect(before).toBeGreaterThan(6); // about log2(260) at random initialisation
      expect(first.step).toBe(1);
      expect(first.heldoutBitsPerByte).toBeUndefined();
      const tensors = tf.memory().numTensors;
      const records = [];
      while (!trainer.done) records.push(await trainer.trainStep());
      expect(tf.memory().numTensors).toBe(tensors);
      expect(records.filter((r) => r.heldoutBitsPerByte !== undefined).map((r) => r.step)).toEqual([15, 30]);
      expect(trainer.heldoutBitsPerByte).toBeLessThan(before - 1.5);
      const saved = await trainer.save();
      expect(saved).toMatchObject({ kind: 'entropy', fileName: 'entropy-model.safetensors', steps: 30 });
      const file = join(dir, saved.fileName);
      await writeFile(file, saved.file);
      // The loader: arguments and a calibrated threshold from the file alone.
      const patcher = await EntropyPatcher.fromSafetensors(saved.file);
      expect(modelKindOfFile(saved.file)).toBe('entropy');
      expect(patcher.defaults.mode).toBe('entropy');
      expect(patcher.defaults.threshold).toBeGreaterThan(0);
      const patches = await patcher.patch('The cat sat on the mat.');
      expect(patches.patchLengths.length).toBeGreaterThan(2);
      // The entropy-patcher CLI.
      const { stdout } = await run(process.execPath, [
        binOf('@bytelatent/entropy-patcher'),
        '--model',
        file,
        '--json',
        'The dog sat on the log.',
      ]);
      expect((JSON.parse(stdout) as { segments: Array<{ text: string }> }).segments.map((s) => s.text).join('')).toBe(
        'The dog sat on the log.',
      );
      // The server, with its demo BLT.
      const { service } = await loadServeModels({ patcher: file, backend: 'cpu' });
      expect((await service.patch('The bird sat in the tree.', {})).patches.length).toBeGreaterThan(1);
      // The page's swap: the demo BLT now patches with this entropy model, at its own threshold.
      const swapped = await serviceWithModelFile(service, saved.file, 'mine.safetensors');
      expect(swapped.info.patcherModel).toBe('mine.safetensors');
      expect(swapped.patching).toMatchObject({ mode: 'entropy', threshold: patcher.defaults.threshold });
      expect((await swapped.score('The cat sat.', new AbortController().signal)).bytes).toBe(12);
      patcher.dispose();
    } finally {
      trainer.dispose();
    }
  }, 240_000);

  it('trains a BLT with space patching; the file records it and loads in the loader, the eval CLI and the server', async () => {
    const trainer = new TextTrainer({ kind: 'blt', text: TEXT, steps: 12, seqLen: 64, batchSize: 2, lr: 1e-2, evalEvery: 6 });
    try {
      await trainer.trainStep();
      const before = trainer.heldoutBitsPerByte;
      while (!trainer.done) await trainer.trainStep();
      expect(trainer.heldoutBitsPerByte).toBeLessThan(before - 1);
      const saved = await trainer.save();
      expect(saved).toMatchObject({ kind: 'blt', fileName: 'blt.safetensors', steps: 12 });
      const parsed = parseSafetensors(saved.file);
      expect(patchingOfMetadata(parsed.metadata)).toEqual({ mode: 'space' });
      const blt = ByteLatentTransformer.fromSafetensors(parsed, JSON.parse(parsed.metadata[BLT_ARGS_METADATA_KEY]!) as BltArgs);
      expect(blt.parameterCount()).toBe(saved.parameters);
      blt.dispose();
      const file = join(dir, saved.fileName);
      await writeFile(file, saved.file);
      await writeFile(join(dir, 'sample.txt'), TEXT.slice(0, 400));
      const { stdout } = await run(process.execPath, [
        binOf('@bytelatent/evals'),
        'bpb',
        '--model',
        file,
        '--file',
        join(dir, 'sample.txt'),
        '--backend',
        'cpu',
      ]);
      expect(stdout).toMatch(/bits/);
      const { service } = await loadServeModels({ blt: file, backend: 'cpu' });
      const scored = await service.score('The cat sat on the mat.', new AbortController().signal);
      expect(scored.bitsPerByte).toBeLessThan(before);
      // The page's swap: the demo's entropy model stays, the BLT is this one, patching as it trained.
      const demo = (await loadServeModels({ backend: 'cpu' })).service;
      const swapped = await serviceWithModelFile(demo, saved.file, 'mine.safetensors');
      expect(swapped.info).toMatchObject({ bltModel: 'mine.safetensors', bltLayout: 'safetensors' });
      expect(swapped.patching.mode).toBe('space');
      // /v1/patch with no rule named patches as this BLT does; a named rule still gets the patcher's defaults.
      expect((await swapped.patch('The cat sat.', {})).mode).toBe('space');
      expect((await swapped.patch('The cat sat.', { mode: 'entropy' })).threshold).toBe(swapped.patcher.defaults.threshold);
      expect(swapped.describe()).toMatchObject({ models: { patcher: { patching: { mode: 'space' } } } });
      expect((await swapped.score('The cat sat on the mat.', new AbortController().signal)).bitsPerByte).toBeCloseTo(scored.bitsPerByte, 4);
      expect(modelKindOfFile(saved.file)).toBe('blt');
      expect(() => modelKindOfFile(new Uint8Array(3))).toThrow(/not a safetensors model file/);
    } finally {
      trainer.dispose();
    }
  }, 240_000);

  it('refuses too little text and bad settings with typed errors', () => {
    const tooShort = () => new TextTrainer({ kind: 'entropy', text: 'abc', steps: 5 });
    expect(tooShort).toThrow(TextTrainerError);
    expect(tooShort).toThrow(new RegExp(`3 bytes; training needs at least ${MIN_TRAINING_BYTES}`));
    expect(() => new TextTrainer({ kind: 'entropy', text: TEXT, steps: 0 })).toThrow(/steps must be an integer >= 1/);
    expect(() => new TextTrainer({ kind: 'blt', text: TEXT, steps: 5, lr: 2 })).toThrow(/learning rate/);
    expect(() => new TextTrainer({ kind: 'blt', text: TEXT, steps: 5, bltPatching: { mode: 'static', patchSize: 0 } })).toThrow(
      /patch size >= 1/,
    );
  });
});
