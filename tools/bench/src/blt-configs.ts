import { encode } from '@bytelatent/bytes';
import type { BltArgs } from '@bytelatent/blt';
import { findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { syntheticText } from './measure.js';

// The BLT configurations of the `blt` bench and of the side-by-side comparison with the reference
// PyTorch code (compare-reference.ts hands these exact arguments and input to
// tools/reference-bench/reference_bench.py).
const COMMON: BltArgs = {
  vocab_size: 260,
  ffn_dim_multiplier: 1.0,
  multiple_of: 256,
  rope_theta: 500000,
  max_seqlen: 4096,
  max_encoder_seq_length: 4096,
  attn_bias_type: 'block_causal',
  init_std_factor: 'current_depth',
  cross_attn_encoder: true,
  cross_attn_decoder: true,
  cross_attn_init_by_pooling: true,
  cross_attn_k: 2,
  cross_attn_all_layers_encoder: false,
  cross_attn_all_layers_decoder: true,
  downsampling_by_pooling: 'max',
  encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
  encoder_hash_byte_group_nb_functions: 1,
  use_rope: true,
  use_local_encoder_transformer: true,
  patching_mode: 'static',
} as BltArgs;

export const BLT_CONFIGS: Readonly<Record<'tiny' | '10m', BltArgs>> = {
  // The golden tiny configuration (shared/golden/README.md).
  tiny: {
    ...COMMON,
    dim_global: 64,
    dim_local_encoder: 32,
    dim_local_decoder: 32,
    n_layers_global: 2,
    n_layers_local_encoder: 1,
    n_layers_local_decoder: 2,
    n_heads_global: 4,
    n_heads_local_encoder: 2,
    n_heads_local_decoder: 2,
    cross_attn_nheads: 2,
    local_attention_window_len: 24,
    encoder_hash_byte_group_vocab: 1000,
  } as BltArgs,
  '10m': {
    ...COMMON,
    dim_global: 384,
    dim_local_encoder: 128,
    dim_local_decoder: 128,
    n_layers_global: 4,
    n_layers_local_encoder: 1,
    n_layers_local_decoder: 2,
    n_heads_global: 6,
    n_heads_local_encoder: 4,
    n_heads_local_decoder: 4,
    cross_attn_nheads: 4,
    local_attention_window_len: 512,
    encoder_hash_byte_group_vocab: 2048,
  } as BltArgs,
};
export type BltConfigName = keyof typeof BLT_CONFIGS;

/** Bytes of text per step. */
export const BLT_BYTES = 512;

export interface BltInput {
  readonly bytes: number;
  /** BOS, the text's bytes (+4), EOS; tokens = ids[:-1], targets = ids[1:]. */
  readonly tokens: number[];
  readonly targets: number[];
  /** Static 4-byte patches (the first forced to one token, the remainder last). */
  readonly patchLengths: number[];
}

/** The one-row input both sides run: synthetic text, static 4-byte patches. */
export function bltInput(bytes = BLT_BYTES): BltInput {
  const ids = encode(syntheticText(bytes), { bos: true, eos: true });
  const tokens = Array.from(ids.subarray(0, -1));
  const targets = Array.from(ids.subarray(1));
  const patchLengths = Array.from(findPatchBoundaries(tokens, undefined, { mode: 'static', patchSize: 4 }).patchLengths);
  return { bytes, tokens, targets, patchLengths };
}
