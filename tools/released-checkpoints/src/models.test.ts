import { describe, expect, it } from 'vitest';
import { bltModelArgs, bltTensors, entropyModelArgs, entropyTensors, ffnHidden, numel, type Preset } from './models.js';
import { toPlainJson } from './pyjson.js';

type Args = Record<string, unknown>;
const blt = (model: 'blt-1b' | 'blt-7b', preset: Preset) => toPlainJson(bltModelArgs(model, preset)) as Args;
const entropy = (preset: Preset) => toPlainJson(entropyModelArgs(preset)) as Args;

/** The expected state dict written out from the spec's §10.4 patterns, without the generator's code. */
function expectedBlt(a: Args): Map<string, number[]> {
  const n = (k: string) => a[k] as number;
  const dE = n('dim_local_encoder');
  const dD = n('dim_local_decoder');
  const dG = n('dim_global');
  const k = n('cross_attn_k');
  const ffn = (d: number) => n('multiple_of') * Math.ceil(Math.floor((8 * d) / 3) / n('multiple_of'));
  const m = new Map<string, number[]>();
  const block = (p: string, d: number) => {
    for (const w of ['wq', 'wk', 'wv', 'wo']) m.set(`${p}.attention.${w}.weight`, [d, d]);
    m.set(`${p}.feed_forward.w1.weight`, [ffn(d), d]);
    m.set(`${p}.feed_forward.w3.weight`, [ffn(d), d]);
    m.set(`${p}.feed_forward.w2.weight`, [d, ffn(d)]);
    m.set(`${p}.attention_norm.weight`, [d]);
    m.set(`${p}.ffn_norm.weight`, [d]);
  };
  const cross = (p: string, d: number) => {
    for (const w of ['wq', 'wk', 'wv', 'wo']) m.set(`${p}.${w}.weight`, [d, d]);
    m.set(`${p}.cross_attn_norm_q.weight`, [d]);
    m.set(`${p}.cross_attn_norm_kv.weight`, [d]);
  };
  m.set('local_encoder.tok_embeddings.weight', [260, dE]);
  for (let i = 0; i < n('n_layers_local_encoder'); i++) block(`local_encoder.layers.${i}`, dE);
  m.set('local_encoder.patch_embedding_projection.weight', [k * dE, dE]);
  cross('local_encoder.cross_attn_layers.0', dE);
  for (let i = 0; i < n('n_layers_global'); i++) block(`global_transformer.layers.${i}`, dG);
  if (k * dE !== dG) m.set('global_transformer.token_embedding_projection.weight', [dG, k * dE]);
  for (let i = 0; i < n('n_layers_local_decoder'); i++) {
    block(`local_decoder.layers.${i}`, dD);
    cross(`local_decoder.cross_attn_layers.${i}`, dD);
  }
  m.set('local_decoder.patch_embedding_projection.weight', [k * dD, dG]);
  m.set('local_decoder.norm.weight', [dD]);
  m.set('local_decoder.output.weight', [260, dD]);
  for (let i = 0; i < 6; i++) m.set(`encoder_hash_tok_embedding.${i}.weight`, [n('encoder_hash_byte_group_vocab'), dE]);
  return m;
}

const asMap = (ts: ReturnType<typeof bltTensors>) => new Map(ts.map((t) => [t.name, [...t.shape]]));

describe('released models', () => {
  it('has the FFN sizes of architecture §5.1', () => {
    expect([768, 1024, 1280, 2048, 4096].map((d) => ffnHidden(d, 256, 1))).toEqual([2048, 2816, 3584, 5632, 11008]);
    expect(ffnHidden(768, 256, null)).toBe(2048);
  });

  it('builds BLT-1B with the keys and shapes of architecture §10.4', () => {
    const ts = bltTensors(blt('blt-1b', 'full'));
    // 6 hash tables + encoder (1 layer × 9 + projection + embedding + 6 cross) + global (25 × 9)
    // + decoder (9 layers × (9 + 6 cross) + projection + norm + output).
    expect(ts.length).toBe(6 + (9 + 1 + 1 + 6) + 25 * 9 + (9 * 15 + 3));
    expect(asMap(ts)).toEqual(expectedBlt(blt('blt-1b', 'full')));
    const shape = (name: string) => ts.find((t) => t.name === name)?.shape;
    expect(shape('local_encoder.patch_embedding_projection.weight')).toEqual([2048, 1024]);
    expect(shape('local_decoder.patch_embedding_projection.weight')).toEqual([2048, 2048]);
    expect(shape('global_transformer.layers.24.feed_forward.w2.weight')).toEqual([2048, 5632]);
    expect(shape('encoder_hash_tok_embedding.5.weight')).toEqual([500002, 1024]);
    expect(shape('global_transformer.token_embedding_projection.weight')).toBeUndefined();
    const params = ts.reduce((a, t) => a + numel(t.shape), 0);
    const hash = 6 * 500002 * 1024;
    expect(hash).toBe(3_072_012_288);
    // Spec §10.1: ≈ 1.46 B non-hash + 3.07 B hash = 4.53 B stored.
    expect(Math.abs((params - hash) / 1e9 - 1.46)).toBeLessThan(0.01);
  });

  it('builds BLT-7B with its global input projection (5120 → 4096)', () => {
    const ts = bltTensors(blt('blt-7b', 'full'));
    expect(ts.length).toBe(6 + 17 + 32 * 9 + 1 + (6 * 15 + 3));
    expect(asMap(ts)).toEqual(expectedBlt(blt('blt-7b', 'full')));
    const shape = (name: string) => ts.find((t) => t.name === name)?.shape;
    expect(shape('global_transformer.token_embedding_projection.weight')).toEqual([4096, 5120]);
    expect(shape('local_decoder.patch_embedding_projection.weight')).toEqual([5120, 4096]);
    expect(shape('local_encoder.layers.0.feed_forward.w1.weight')).toEqual([3584, 1280]);
    const params = ts.reduce((a, t) => a + numel(t.shape), 0);
    // Spec §10.1: ≈ 6.71 B non-hash + 3.84 B hash = 10.55 B.
    expect(Math.abs(params / 1e9 - 10.55)).toBeLessThan(0.01);
  });

  it('builds the entropy model of architecture §4.1 (≈ 99.5 M parameters)', () => {
    const ts = entropyTensors(entropy('full'));
    const m = new Map<string, number[]>();
    for (let i = 0; i < 14; i++) {
      for (const w of ['wq', 'wk', 'wv', 'wo']) m.set(`layers.${i}.attention.${w}.weight`, [768, 768]);
      m.set(`layers.${i}.feed_forward.w1.weight`, [2048, 768]);
      m.set(`layers.${i}.feed_forward.w3.weight`, [2048, 768]);
      m.set(`layers.${i}.feed_forward.w2.weight`, [768, 2048]);
      m.set(`layers.${i}.attention_norm.weight`, [768]);
      m.set(`layers.${i}.ffn_norm.weight`, [768]);
    }
    m.set('tok_embeddings.weight', [260, 768]);
    m.set('norm.weight', [768]);
    m.set('output.weight', [260, 768]);
    expect(asMap(ts)).toEqual(m);
    expect(ts.reduce((a, t) => a + numel(t.shape), 0)).toBe(99_512_064);
  });

  it('keeps state_dict() order: modules in registration order', () => {
    const names = bltTensors(blt('blt-1b', 'tiny')).map((t) => t.name);
    expect(names.slice(0, 12)).toEqual([
      'local_encoder.layers.0.attention.wq.weight',
      'local_encoder.layers.0.attention.wk.weight',
      'local_encoder.layers.0.attention.wv.weight',
      'local_encoder.layers.0.attention.wo.weight',
      'local_encoder.layers.0.feed_forward.w1.weight',
      'local_encoder.layers.0.feed_forward.w3.weight',
      'local_encoder.layers.0.feed_forward.w2.weight',
      'local_encoder.layers.0.attention_norm.weight',
      'local_encoder.layers.0.ffn_norm.weight',
      'local_encoder.patch_embedding_projection.weight',
      'local_encoder.tok_embeddings.weight',
      'local_encoder.cross_attn_layers.0.cross_attn_norm_q.weight',
    ]);
    expect(names.at(-7)).toBe('local_decoder.output.weight');
    expect(names.at(-1)).toBe('encoder_hash_tok_embedding.5.weight');
    expect(
      entropyTensors(entropy('tiny'))
        .map((t) => t.name)
        .slice(-3),
    ).toEqual(['tok_embeddings.weight', 'norm.weight', 'output.weight']);
  });

  it('gives the tiny presets the structure of the released models', () => {
    const pattern = (names: string[]) => new Set(names.map((n) => n.replace(/\.\d+\./g, '.N.')));
    for (const model of ['blt-1b', 'blt-7b'] as const) {
      const tiny = bltTensors(blt(model, 'tiny'));
      expect(asMap(tiny)).toEqual(expectedBlt(blt(model, 'tiny')));
      expect(pattern(tiny.map((t) => t.name))).toEqual(pattern(bltTensors(blt(model, 'full')).map((t) => t.name)));
      expect(tiny.reduce((a, t) => a + numel(t.shape), 0)).toBeLessThan(1_000_000);
    }
    expect(pattern(entropyTensors(entropy('tiny')).map((t) => t.name))).toEqual(
      pattern(entropyTensors(entropy('full')).map((t) => t.name)),
    );
  });

  it('initialises Linear weights with 1/sqrt(fan_in), embeddings with 1/sqrt(dim), norms with ones', () => {
    const ts = bltTensors(blt('blt-1b', 'full'));
    const init = (name: string) => ts.find((t) => t.name === name)?.init;
    expect(init('global_transformer.layers.0.feed_forward.w2.weight')).toEqual({ kind: 'uniform', std: 1 / Math.sqrt(5632) });
    expect(init('encoder_hash_tok_embedding.0.weight')).toEqual({ kind: 'uniform', std: 1 / Math.sqrt(1024) });
    expect(init('local_decoder.norm.weight')).toEqual({ kind: 'ones' });
    expect(init('local_decoder.cross_attn_layers.3.cross_attn_norm_kv.weight')).toEqual({ kind: 'ones' });
  });
});
