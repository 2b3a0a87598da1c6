import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { NnError } from '../errors.js';
import { seededUniform } from './init.js';
import { ParameterRegistry, ParameterScope } from './parameters.js';
import { TransformerBlock } from './transformer-block.js';
import { type TransformerStackConfig, createTransformerStack } from './transformer-stack.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const CONFIG: TransformerStackConfig = {
  dim: 16,
  nLayers: 3,
  nHeads: 4,
  nKvHeads: 2,
  multipleOf: 8,
  normEps: 1e-6,
  ropeTheta: 500000,
  maxSeqLen: 32,
  initStdFactor: 'current_depth',
};

async function weights(reg: ParameterRegistry): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of reg.list()) out.set(p.name, (await p.variable.data()) as Float32Array);
  return out;
}

describe('createTransformerStack', () => {
  it('builds layers.{i} in order with the depth-scaled init of hand-built blocks, drawing the same random numbers', async () => {
    const stackReg = new ParameterRegistry();
    const stackRandom = seededUniform(11);
    const { layers, rope } = createTransformerStack(new ParameterScope(stackReg, 'm'), CONFIG, stackRandom);
    const handReg = new ParameterRegistry();
    const handRandom = seededUniform(11);
    for (let i = 0; i < CONFIG.nLayers; i++) {
      new TransformerBlock(new ParameterScope(handReg, `m.layers.${i}`), CONFIG, {
        random: handRandom,
        layerIndex: i,
        nLayers: CONFIG.nLayers,
        factor: 'current_depth',
      });
    }
    expect(layers).toHaveLength(3);
    expect(stackReg.list().map((p) => p.name)).toEqual(handReg.list().map((p) => p.name));
    expect(stackReg.list()[0]!.name).toBe('m.layers.0.attention_norm.weight');
    expect(await weights(stackReg)).toEqual(await weights(handReg));
    // The generator is left where hand-built blocks leave it: weights created next keep their values.
    expect(stackRandom()).toBe(handRandom());
    expect(layers[0]!.attention.nKvHeads).toBe(2);
    expect([rope.headDim, rope.theta, rope.maxSeqLen]).toEqual([4, 500000, 32]);
    stackReg.dispose();
    handReg.dispose();
  });

  it('defaults initStdFactor to disabled and takes headDim for the RoPE table', async () => {
    const a = new ParameterRegistry();
    const b = new ParameterRegistry();
    const config = { ...CONFIG, headDim: 6, initStdFactor: undefined };
    const { rope } = createTransformerStack(new ParameterScope(a), config, seededUniform(2));
    createTransformerStack(new ParameterScope(b), { ...config, initStdFactor: 'disabled' }, seededUniform(2));
    expect(rope.headDim).toBe(6);
    expect(a.get('layers.0.attention.wq.weight').referenceShape).toEqual([24, 16]);
    expect(await weights(a)).toEqual(await weights(b));
    a.dispose();
    b.dispose();
  });

  it('rejects a stack without layers and an odd head size for RoPE', () => {
    const reg = new ParameterRegistry();
    for (const nLayers of [0, 1.5, Number.NaN]) {
      expect(() => createTransformerStack(new ParameterScope(reg), { ...CONFIG, nLayers }, seededUniform(1))).toThrow(NnError);
    }
    expect(() => createTransformerStack(new ParameterScope(reg, 'odd'), { ...CONFIG, headDim: 3 }, seededUniform(1))).toThrow(
      /headDim must be even/,
    );
    reg.dispose();
  });
});
