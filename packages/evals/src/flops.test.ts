import { ffnHiddenDim } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import {
  attentionFlops,
  bltFlopsPerByte,
  bltFlopsShape,
  crossAttentionFlops,
  deEmbeddingFlops,
  feedForwardFlops,
  qkvoFlops,
  tokenModelFlopsPerByte,
  trainingFlops,
  transformerFlops,
  transformerShape,
  type BltFlopsShape,
} from './flops.js';
import { expectCode } from './test-helpers.js';

// Worked by hand: 2 layers, width 64, 4 heads of 16, d_ff 4.
const SHAPE = { layers: 2, dim: 64, heads: 4, ffnRatio: 4 };

describe('table 11 primitives', () => {
  it('match hand-computed values', () => {
    expect(attentionFlops(2, 16, 4, 127)).toBe(4 * 2 * 16 * 4 * 64); // (m+1)/2 = 64
    expect(qkvoFlops(2, 64, 1)).toBe(8 * 2 * 64 * 64);
    expect(qkvoFlops(1, 32, 0.5)).toBe(3 * 2 * 1024);
    expect(feedForwardFlops(2, 64, 4)).toBe(2 * 2 * 2 * 64 * 256);
    expect(deEmbeddingFlops(64, 256)).toBe(32768);
    expect(crossAttentionFlops(1, 16, 2, 4, 2)).toBe(320 + 12288);
  });

  it('sum to the transformer FLOPs of eq. 13', () => {
    // FF 131072 + QKVO 65536 + attention 32768 + de-embedding 32768.
    expect(transformerFlops(SHAPE, 127, 256)).toBe(262144);
    expect(transformerFlops(SHAPE, 127, 0)).toBe(229376);
  });

  it('count a SwiGLU as d_ff = 1.5 F / h: the same FLOPs as its three matmuls', () => {
    const s = transformerShape({ dim: 64, n_layers: 1, n_heads: 2, multiple_of: 64 });
    const hidden = ffnHiddenDim(64, 64);
    expect(hidden).toBe(192);
    expect(s.ffnRatio).toBe(4.5);
    expect(feedForwardFlops(1, 64, s.ffnRatio)).toBe(3 * 2 * 64 * hidden);
  });
});

describe('bltFlopsPerByte', () => {
  const shape: BltFlopsShape = {
    encoder: { layers: 1, dim: 32, heads: 2, ffnRatio: 4, window: 64 },
    global: SHAPE,
    decoder: { layers: 1, dim: 32, heads: 2, ffnRatio: 4, window: 64 },
    crossAttnK: 2,
    crossAttnHeads: 2,
    encoderCrossLayers: 1,
    decoderCrossLayers: 1,
    vocab: 256,
  };

  it('matches a hand-worked example (patch size 4, 64-byte context)', () => {
    const f = bltFlopsPerByte(shape, 4, 64);
    // global: (131072 + 65536 + 4·2·16·4·17/2) / 4 over m = 64/4 = 16 patches.
    expect(f.global).toBe(200960 / 4);
    // encoder: 16384 + 8192 + 4·16·2·65/2 = 28736; decoder adds 2·32·256.
    expect(f.encoder).toBe(28736);
    expect(f.decoder).toBe(28736 + 16384);
    // encoder cross-attention: (attention m=4: 320 + QKVO r=2: 12288) · k/n_p = 0.5
    expect(f.encoderCrossAttention).toBe(6304);
    // decoder cross-attention: attention m=k=2: 192 + QKVO r=k/n_p=0.5: 6144
    expect(f.decoderCrossAttention).toBe(6336);
    expect(f.total).toBe(50240 + 28736 + 45120 + 6304 + 6336);
  });

  it('spends fewer global FLOPs per byte with larger patches, the local ones unchanged', () => {
    const small = bltFlopsPerByte(shape, 2, 64);
    const large = bltFlopsPerByte(shape, 8, 64);
    expect(large.global).toBeLessThan(small.global / 3);
    expect(large.encoder).toBe(small.encoder);
    expect(large.decoder).toBe(small.decoder);
  });

  it('reads the shape from BltArgs', () => {
    const s = bltFlopsShape({
      vocab_size: 260,
      dim_global: 64,
      dim_local_encoder: 32,
      dim_local_decoder: 32,
      n_layers_global: 2,
      n_layers_local_encoder: 1,
      n_layers_local_decoder: 2,
      n_heads_global: 2,
      n_heads_local_encoder: 1,
      n_heads_local_decoder: 1,
      multiple_of: 64,
      max_seqlen: 64,
      max_encoder_seq_length: 128,
      local_attention_window_len: 96,
      cross_attn_encoder: true,
      cross_attn_decoder: true,
      cross_attn_init_by_pooling: true,
      cross_attn_k: 2,
      cross_attn_nheads: 1,
      cross_attn_all_layers_decoder: true,
      downsampling_by_pooling: 'max',
      use_local_encoder_transformer: true,
      encoder_hash_byte_group_size: [3, 4],
      encoder_hash_byte_group_vocab: 64,
      encoder_hash_byte_group_nb_functions: 1,
    });
    expect(s.encoder).toMatchObject({ layers: 1, dim: 32, heads: 1, window: 96 });
    expect(s.global).toMatchObject({ layers: 2, dim: 64, heads: 2, ffnRatio: (1.5 * ffnHiddenDim(64, 64)) / 64 });
    expect(s.decoder.layers).toBe(2);
    expect([s.crossAttnK, s.crossAttnHeads, s.encoderCrossLayers, s.decoderCrossLayers, s.vocab]).toEqual([2, 1, 1, 2, 260]);
  });

  it('rejects a patch size below one byte and a malformed shape', async () => {
    await expectCode(() => bltFlopsPerByte(shape, 0.5, 64), 'INVALID_ARGUMENT');
    await expectCode(() => bltFlopsPerByte({ ...shape, crossAttnK: 0 }, 4, 64), 'INVALID_ARGUMENT');
    await expectCode(() => transformerFlops({ ...SHAPE, dim: 0 }, 10, 10), 'INVALID_ARGUMENT');
  });
});

describe('token models and training', () => {
  it('divide per-token FLOPs by bytes per token, the context counted in tokens', () => {
    // m = 512 / 4 = 128 tokens: 131072 + 65536 + 4·2·16·4·129/2 + 2·64·1000 = 357632.
    expect(tokenModelFlopsPerByte(SHAPE, 4, 512, 1000)).toBe(357632 / 4);
    expect(tokenModelFlopsPerByte(SHAPE, 1, 127, 256)).toBe(262144);
  });

  it('count training as three forwards', async () => {
    expect(trainingFlops(100, 10)).toBe(3000);
    await expectCode(() => tokenModelFlopsPerByte(SHAPE, 0.9, 512, 10), 'INVALID_ARGUMENT');
    await expectCode(() => trainingFlops(-1, 10), 'INVALID_ARGUMENT');
  });
});
