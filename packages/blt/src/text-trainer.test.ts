// TextTrainer: a small entropy model or BLT trained on one text in memory (what the serve app's
// page runs in a Web Worker). The held-out bits per byte fall, nothing leaks, and the saved files
// load with the loaders and the entropy-patcher CLI alone.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@bytelatent/nn/gradients';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { BltError, initBackend, parseSafetensors } from '@bytelatent/nn';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer } from './blt-model.js';
import type { BltArgs } from './blt-args.js';
import { patchingOfMetadata } from './patching.js';
import { MIN_TRAINING_BYTES, TextTrainer } from './text-trainer.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const patcherBin = join(dirname(require.resolve('@bytelatent/entropy-patcher/package.json')), 'dist', 'cli.js');

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
  it('trains an entropy model: the held-out bits per byte fall, nothing leaks; the file loads in the loader and the CLI', async () => {
    const trainer = new TextTrainer({ kind: 'entropy', text: TEXT, steps: 30, seqLen: 64, batchSize: 4, lr: 1e-2, evalEvery: 15 });
    try {
      expect(trainer.trainBytes + trainer.heldoutBytes).toBeLessThanOrEqual(new TextEncoder().encode(TEXT).length + 1);
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
      expect(saved).toMatchObject({ kind: 'entropy', fileName: 'entropy-model.safetensors', steps: 30, parameters: 140_096 });
      // The loader: arguments and a calibrated threshold from the file alone.
      const patcher = await EntropyPatcher.fromSafetensors(saved.file);
      try {
        expect(patcher.defaults.mode).toBe('entropy');
        expect(patcher.defaults.threshold).toBeGreaterThan(0);
        const patches = await patcher.patch('The cat sat on the mat.');
        expect(patches.patchLengths.length).toBeGreaterThan(2);
      } finally {
        patcher.dispose();
      }
      // The entropy-patcher CLI.
      const file = join(dir, saved.fileName);
      await writeFile(file, saved.file);
      const { stdout } = await run(process.execPath, [
        patcherBin,
        '--model',
        file,
        '--backend',
        'cpu',
        '--json',
        'The dog sat on the log.',
      ]);
      const segments = (JSON.parse(stdout) as { segments: Array<{ text: string }> }).segments;
      expect(segments.map((s) => s.text).join('')).toBe('The dog sat on the log.');
    } finally {
      trainer.dispose();
    }
  }, 240_000);

  it('trains a BLT patched at spaces; the file records its arguments and rule', async () => {
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
      expect(parsed.metadata['trained_steps']).toBe('12');
      const blt = ByteLatentTransformer.fromSafetensors(parsed, JSON.parse(parsed.metadata[BLT_ARGS_METADATA_KEY]!) as BltArgs);
      expect(blt.parameterCount()).toBe(saved.parameters);
      blt.dispose();
    } finally {
      trainer.dispose();
    }
  }, 240_000);

  it('trains a BLT patched every k bytes when asked', async () => {
    const trainer = new TextTrainer({
      kind: 'blt',
      text: TEXT,
      steps: 1,
      seqLen: 32,
      batchSize: 1,
      bltPatching: { mode: 'static', patchSize: 3 },
    });
    try {
      await trainer.trainStep();
      expect(patchingOfMetadata(parseSafetensors((await trainer.save()).file).metadata)).toEqual({ mode: 'static', patchSize: 3 });
    } finally {
      trainer.dispose();
    }
  });

  it('refuses too little text and bad settings with a BltError naming the problem', () => {
    const tooShort = () => new TextTrainer({ kind: 'entropy', text: 'abc', steps: 5 });
    expect(tooShort).toThrow(BltError);
    expect(tooShort).toThrow(new RegExp(`3 bytes; training needs at least ${MIN_TRAINING_BYTES}`));
    expect(() => new TextTrainer({ kind: 'entropy', text: TEXT, steps: 0 })).toThrow(/steps must be an integer >= 1/);
    expect(() => new TextTrainer({ kind: 'blt', text: TEXT, steps: 5, lr: 2 })).toThrow(/learning rate/);
    expect(() => new TextTrainer({ kind: 'blt', text: TEXT, steps: 5, bltPatching: { mode: 'static', patchSize: 0 } })).toThrow(
      /patch size >= 1/,
    );
    expect(() => new TextTrainer({ kind: 'token' as 'blt', text: TEXT, steps: 5 })).toThrow(/kind must be "entropy" or "blt"/);
  });
});
