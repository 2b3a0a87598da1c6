/**
 * Named configurations. A preset fixes the model and sensible hyper-parameters; a config file and
 * flags override any field.
 */
import { bltArgsOfSize, type BltArgs } from '@bytelatent/blt';
import { entropyModelArgsOfSize, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import type { RowPatchingOptions } from './row-patcher.js';
import type { TrainingHyperparameters } from './trainer.js';

/** Everything a run needs, as read from presets, a config file and flags. */
export interface RunConfig extends TrainingHyperparameters {
  readonly kind: 'entropy' | 'blt';
  readonly model: EntropyModelArgs | BltArgs;
  /**
   * BLT only: how rows are patched; `entropyModel` is a file, a folder, or a shipped model:
   * `"pretrained"` / `"pretrained:small"` (the one the demo BLT was trained with), `"pretrained:fast"`.
   */
  readonly patching?: RowPatchingOptions & { readonly entropyModel?: string };
}

const COMMON = {
  gradAccumulation: 1,
  minLrRatio: 0.1,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  clipNorm: 1.0,
  seed: 0,
  evalBytesPerFile: 16_384,
} as const;

/** An entropy model of width `dim` and `layers` layers over rows of `seqLen` bytes (the presets' family). */
export const entropyArgs = entropyModelArgsOfSize;

/** A BLT of the presets' family: hash tables of `hashVocab` rows, entropy patching recorded in the arguments. */
function bltArgs(o: {
  global: number;
  local: number;
  layersGlobal: number;
  layersEncoder: number;
  layersDecoder: number;
  seqLen: number;
  window: number;
  hashVocab: number;
}): BltArgs {
  return bltArgsOfSize({
    dimGlobal: o.global,
    dimLocal: o.local,
    layersGlobal: o.layersGlobal,
    layersEncoder: o.layersEncoder,
    layersDecoder: o.layersDecoder,
    seqLen: o.seqLen,
    window: o.window,
    hashVocab: o.hashVocab,
    patchingMode: 'entropy',
  });
}

const PRETRAINED_ENTROPY = { mode: 'entropy', entropyModel: 'pretrained' } as const;

export const PRESETS: Readonly<Record<string, RunConfig & { readonly description: string }>> = {
  'entropy-tiny': {
    description: 'entropy model, dim 32 x 1 layer (smoke tests, seconds)',
    kind: 'entropy',
    model: entropyArgs(32, 1, 64),
    ...COMMON,
    seqLen: 64,
    batchSize: 4,
    steps: 50,
    lr: 3e-3,
    warmupSteps: 5,
    evalEvery: 25,
    evalBytesPerFile: 2048,
    checkpointEvery: 25,
  },
  'entropy-fast': {
    description: 'the shipped default entropy model: dim 64 x 2 layers, context 256 (~0.14M parameters)',
    kind: 'entropy',
    model: { ...entropyArgs(64, 2, 256), n_heads: 2 },
    ...COMMON,
    seqLen: 256,
    batchSize: 16,
    steps: 9000,
    lr: 3e-3,
    warmupSteps: 100,
    evalEvery: 250,
    checkpointEvery: 100,
  },
  'entropy-small': {
    description: 'the shipped entropy model the demo BLT was trained with: dim 128 x 2 layers, context 256 (~0.5M parameters)',
    kind: 'entropy',
    model: entropyArgs(128, 2, 256),
    ...COMMON,
    seqLen: 256,
    batchSize: 16,
    steps: 3000,
    lr: 3e-3,
    warmupSteps: 100,
    evalEvery: 250,
    checkpointEvery: 100,
  },
  tiny: {
    description: 'BLT, global dim 64, local dim 32, entropy patching by the shipped patcher (a few minutes)',
    kind: 'blt',
    model: bltArgs({
      global: 64,
      local: 32,
      layersGlobal: 2,
      layersEncoder: 1,
      layersDecoder: 1,
      seqLen: 128,
      window: 128,
      hashVocab: 1024,
    }),
    patching: { ...PRETRAINED_ENTROPY, maxPatchLength: 16 },
    ...COMMON,
    seqLen: 128,
    batchSize: 4,
    steps: 200,
    lr: 3e-3,
    warmupSteps: 10,
    evalEvery: 50,
    evalBytesPerFile: 2048,
    checkpointEvery: 50,
  },
  demo: {
    description: 'the BLT shipped with the serve app: global dim 192 x 4, local dim 96, entropy patching',
    kind: 'blt',
    model: bltArgs({
      global: 192,
      local: 96,
      layersGlobal: 4,
      layersEncoder: 1,
      layersDecoder: 2,
      seqLen: 256,
      window: 256,
      hashVocab: 512,
    }),
    patching: { ...PRETRAINED_ENTROPY, maxPatchLength: 16 },
    ...COMMON,
    seqLen: 256,
    batchSize: 8,
    steps: 1500,
    lr: 2e-3,
    warmupSteps: 100,
    evalEvery: 250,
    checkpointEvery: 50,
  },
};
