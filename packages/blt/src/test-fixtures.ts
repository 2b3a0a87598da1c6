// Shared by the blt tests (not part of the build: see tsconfig.json "exclude").
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BltArgs } from './blt-args.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The reference test vectors (shared/golden/tiny), or `$BYTELATENT_GOLDEN_DIR`. */
export const GOLDEN = process.env['BYTELATENT_GOLDEN_DIR'] ?? resolve(here, '../../../../shared/golden/tiny');
export const GOLDEN_WEIGHTS = join(GOLDEN, 'blt_model.safetensors');

/** A small configuration for fast tests, with reference argument names. */
export const SMALL_ARGS: BltArgs = {
  vocab_size: 260,
  dim_global: 48,
  dim_local_encoder: 16,
  dim_local_decoder: 16,
  n_layers_global: 2,
  n_layers_local_encoder: 2,
  n_layers_local_decoder: 2,
  n_heads_global: 4,
  n_heads_local_encoder: 2,
  n_heads_local_decoder: 2,
  ffn_dim_multiplier: 1.0,
  rope_theta: 500000,
  max_seqlen: 32,
  max_encoder_seq_length: 64,
  local_attention_window_len: 5,
  attn_bias_type: 'block_causal',
  init_std_factor: 'current_depth',
  patching_mode: 'entropy',
  use_local_encoder_transformer: true,
  cross_attn_encoder: true,
  cross_attn_decoder: true,
  cross_attn_init_by_pooling: true,
  cross_attn_k: 2,
  cross_attn_nheads: 2,
  cross_attn_all_layers_encoder: true,
  cross_attn_all_layers_decoder: true,
  downsampling_by_pooling: 'max',
  encoder_hash_byte_group_size: [3, 4, 5],
  encoder_hash_byte_group_vocab: 97,
  encoder_hash_byte_group_nb_functions: 2,
};
