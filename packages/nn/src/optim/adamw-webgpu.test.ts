// AdamW on tfjs's WebGPU backend (Dawn in Node, on SwiftShader here). A WebGPU device binds at most
// 8 storage buffers per shader stage unless more are asked for, as on a real GPU: the gradient norm
// of a model's dozens of weights must not go through one AddN of all of them (its pipeline fails
// validation and the norm reads as garbage).
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../backends/select-backend.js';
import { AdamW } from './adamw.js';

const swiftShader = process.env['VK_ICD_FILENAMES'] !== undefined || existsSync('/usr/lib/chromium/vk_swiftshader_icd.json');

/** One update of 40 two-element weights: the norm it reports and the weights after it. */
async function update(): Promise<{ gradNorm: number; weights: number[] }> {
  const params = Array.from({ length: 40 }, (_, i) => ({ name: `w${i}`, variable: tf.variable(tf.tensor1d([i / 10, -i / 20])) }));
  const grads = params.map((_, i) => tf.tensor1d([Math.sin(i), Math.cos(i) / 2]));
  const optimizer = new AdamW(params, { clipNorm: 1 });
  try {
    const { gradNorm } = await optimizer.apply(grads, 0.01);
    const weights: number[] = [];
    for (const p of params) weights.push(...(await p.variable.data()));
    return { gradNorm, weights };
  } finally {
    optimizer.dispose();
    tf.dispose([...grads, ...params.map((p) => p.variable)]);
  }
}

describe.skipIf(!swiftShader)('AdamW on WebGPU', () => {
  it('gives the norm and the update of the cpu backend for 40 gradients', async () => {
    const expectedNorm = Math.sqrt(Array.from({ length: 40 }, (_, i) => Math.sin(i) ** 2 + (Math.cos(i) / 2) ** 2).reduce((a, b) => a + b));
    await initBackend({ backend: 'webgpu', allowSoftwareGpu: true });
    const gpu = await update();
    await initBackend({ backend: 'cpu' });
    const cpu = await update();
    expect(cpu.gradNorm).toBeCloseTo(expectedNorm, 4);
    expect(gpu.gradNorm).toBeCloseTo(expectedNorm, 4);
    gpu.weights.forEach((w, i) => expect(w).toBeCloseTo(cpu.weights[i]!, 5));
  }, 120_000);
});
