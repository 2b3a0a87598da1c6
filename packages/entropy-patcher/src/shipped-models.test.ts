import { initBackend } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { EntropyPatcher, PRETRAINED_MODELS, pretrainedModelNamed } from './patcher.js';

// The two shipped entropy models and the names configurations use for them.

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

describe('the shipped entropy models', () => {
  it('pretrained() loads fast; pretrained({ model }) either one, each with its calibrated threshold', async () => {
    const expected = { fast: { parameters: 140_096, dim: 64 }, small: { parameters: 493_184, dim: 128 } } as const;
    for (const model of [undefined, 'fast', 'small'] as const) {
      const patcher = await EntropyPatcher.pretrained(model === undefined ? { threads: 1 } : { model, threads: 1 });
      try {
        const want = expected[model ?? 'fast'];
        expect(patcher.model.registry.count()).toBe(want.parameters);
        expect(patcher.model.args.dim).toBe(want.dim);
        expect(patcher.defaults.mode).toBe('entropy');
        expect(patcher.defaults.threshold).toBeGreaterThan(2);
      } finally {
        patcher.dispose();
      }
    }
    expect(EntropyPatcher.pretrainedUrl().pathname.endsWith(`/models/${PRETRAINED_MODELS.fast}`)).toBe(true);
    expect(EntropyPatcher.pretrainedUrl('small').pathname.endsWith(`/models/${PRETRAINED_MODELS.small}`)).toBe(true);
  });

  it('refuses an unknown model name with INVALID_ARGUMENT', async () => {
    await expect(EntropyPatcher.pretrained({ model: 'huge' as 'fast' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(EntropyPatcher.pretrainedBytes('huge' as 'fast')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('reads the names configurations give: pretrained (as the caller says), pretrained:fast, pretrained:small; anything else is a path', () => {
    expect(pretrainedModelNamed('pretrained', 'small')).toBe('small');
    expect(pretrainedModelNamed('pretrained', 'fast')).toBe('fast');
    expect(pretrainedModelNamed('pretrained:fast', 'small')).toBe('fast');
    expect(pretrainedModelNamed('pretrained:small', 'fast')).toBe('small');
    expect(pretrainedModelNamed('models/pretrained.safetensors', 'fast')).toBeUndefined();
    expect(pretrainedModelNamed('pretrained-model', 'fast')).toBeUndefined();
    expect(() => pretrainedModelNamed('pretrained:huge', 'fast')).toThrow(
      /no shipped entropy model named "huge" \(pretrained:fast, pretrained:small\)/,
    );
  });
});
