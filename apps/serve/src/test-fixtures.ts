// Shared by the API tests (not part of the build: tsconfig.json excludes it).
import type { BltArgs } from '@bytelatent/blt';

/** A tiny random BLT (context 64, hash n-grams 3-4) for API tests that need a model, not a good one. */
export const TINY_BLT_ARGS = {
  vocab_size: 260,
  dim_global: 32,
  dim_local_encoder: 16,
  dim_local_decoder: 16,
  n_layers_global: 1,
  n_layers_local_encoder: 1,
  n_layers_local_decoder: 1,
  n_heads_global: 2,
  n_heads_local_encoder: 2,
  n_heads_local_decoder: 2,
  multiple_of: 16,
  max_seqlen: 64,
  max_encoder_seq_length: 64,
  local_attention_window_len: 64,
  attn_bias_type: 'block_causal',
  patching_mode: 'entropy',
  use_local_encoder_transformer: true,
  cross_attn_encoder: true,
  cross_attn_decoder: true,
  cross_attn_init_by_pooling: true,
  cross_attn_k: 2,
  cross_attn_nheads: 2,
  cross_attn_all_layers_decoder: true,
  downsampling_by_pooling: 'max',
  encoder_hash_byte_group_size: [3, 4],
  encoder_hash_byte_group_vocab: 64,
  encoder_hash_byte_group_nb_functions: 1,
} as BltArgs;

const { multiple_of: _multipleOf, ...TINY_WITHOUT_MULTIPLE_OF } = TINY_BLT_ARGS;

/** The same model with its feed-forward width from `ffn_dim_multiplier: 1.0` instead of `multiple_of` (the folder tests' model). */
export const TINY_FOLDER_BLT_ARGS = { ...TINY_WITHOUT_MULTIPLE_OF, ffn_dim_multiplier: 1.0 } as BltArgs;
