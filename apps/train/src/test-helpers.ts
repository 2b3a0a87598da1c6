// Shared by the train tests (not part of the build: see tsconfig.json "exclude").
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EntropyModelArgs } from '@bytelatent/entropy-patcher';
import type { TrainerOptions } from './trainer.js';

/** A temporary folder with a few small training and held-out text files. */
export function makeTextFolder(): { dir: string; train: string; heldout: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bytelatent-train-'));
  const train = join(dir, 'train');
  const heldout = join(dir, 'heldout');
  mkdirSync(train);
  mkdirSync(heldout);
  const lines = [
    'the cat sat on the mat. ',
    'a dog ran in the park! ',
    'def f(x):\n    return x + 1\n',
    'héllo wörld ünïcode ',
    'to be or not to be. ',
  ];
  for (let i = 0; i < 6; i++) writeFileSync(join(train, `doc-${i}.txt`), lines[i % lines.length]!.repeat(3 + i));
  writeFileSync(join(heldout, 'book.txt'), 'the dog sat in the park. '.repeat(6));
  return { dir, train, heldout };
}

export const TINY_ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 1,
  n_heads: 2,
  max_seqlen: 32,
  vocab_size: 260,
  attn_bias_type: 'local_block_causal',
  sliding_window: 32,
  multiple_of: 16,
};

export function trainerOptions(
  outDir: string,
  files: { train: string[]; heldout: string[] },
  overrides: Partial<TrainerOptions> = {},
): TrainerOptions {
  return {
    outDir,
    trainFiles: files.train,
    heldoutFiles: files.heldout,
    seqLen: 32,
    batchSize: 2,
    gradAccumulation: 2,
    steps: 6,
    lr: 1e-2,
    warmupSteps: 2,
    minLrRatio: 0.1,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    clipNorm: 1.0,
    seed: 3,
    evalEvery: 2,
    evalBytesPerFile: 64,
    checkpointEvery: 2,
    ...overrides,
  };
}
