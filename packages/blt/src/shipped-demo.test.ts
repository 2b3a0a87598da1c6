import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BltError } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, streamGenerate } from './generate.js';
import { PRETRAINED_BLTS, loadPretrained, pretrainedBltUrl, type PretrainedBlt } from './pretrained.js';

let demo: PretrainedBlt;

beforeAll(async () => {
  await tf.setBackend('cpu');
  demo = await loadPretrained('pretrained:demo');
});
afterAll(() => demo?.dispose());

describe('the shipped demo BLT', () => {
  it('loads by name from the package folder, with its own entropy model and patching settings', () => {
    expect(Object.keys(PRETRAINED_BLTS)).toEqual(['demo']);
    expect(demo.layout).toBe('hub');
    expect(demo.location).toBe(fileURLToPath(pretrainedBltUrl('demo')).replace(/\/$/, ''));
    expect(demo.model.parameterCount()).toBeGreaterThan(1_000_000);
    expect(demo.patching).toMatchObject({ mode: 'entropy', maxPatchLength: 16 });
    expect(demo.patcher!.defaults.threshold).toBe(demo.patching.threshold);
  });

  it('generates from the loaded object as from the model with its patcher', async () => {
    const options = { maxBytes: 24, temperature: 0.8, seed: 5 };
    const loaded = await generate(demo, 'Alice was', options);
    const bare = await generate(demo.model, 'Alice was', { ...options, patcher: demo.patcher! });
    expect(loaded.text).toBe(bare.text);
    expect(loaded.bytes).toHaveLength(24);
    let streamed = '';
    for await (const e of streamGenerate(demo, 'Alice was', options)) if (e.type === 'byte') streamed += e.text;
    expect(streamed).toBe(loaded.text);
  });

  it('refuses an unknown shipped name and a bare BLT without a patcher', async () => {
    await expect(loadPretrained('pretrained:huge')).rejects.toThrow(/no shipped BLT named "huge" \(pretrained:demo\)/);
    await expect(loadPretrained('pretrained:huge')).rejects.toBeInstanceOf(BltError);
    await expect(generate(demo.model, 'x', undefined as never)).rejects.toThrow(/patcher/);
  });
});
