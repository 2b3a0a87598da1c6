import * as tf from '@tensorflow/tfjs-core';
import { encode } from '@bytelatent/bytes';
import { type BltArgs, ByteLatentTransformer } from '@bytelatent/blt';
import { findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { report, syntheticText } from '../measure.js';

// BLT forward and forward+backward throughput (bytes/s) per backend, for the tiny golden
// configuration and a ~10M-parameter one. Static 4-byte patches, so no entropy model cost.
const COMMON: BltArgs = {
  vocab_size: 260, ffn_dim_multiplier: 1.0, multiple_of: 256, rope_theta: 500000, max_seqlen: 4096, max_encoder_seq_length: 4096,
  attn_bias_type: 'block_causal', init_std_factor: 'current_depth', cross_attn_encoder: true, cross_attn_decoder: true,
  cross_attn_init_by_pooling: true, cross_attn_k: 2, cross_attn_all_layers_encoder: false, cross_attn_all_layers_decoder: true,
  downsampling_by_pooling: 'max', encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8], encoder_hash_byte_group_nb_functions: 1,
  use_rope: true, use_local_encoder_transformer: true, patching_mode: 'static',
} as BltArgs;
const CONFIGS: Record<string, BltArgs> = {
  // The golden tiny configuration (shared/golden/README.md).
  tiny: { ...COMMON, dim_global: 64, dim_local_encoder: 32, dim_local_decoder: 32, n_layers_global: 2, n_layers_local_encoder: 1, n_layers_local_decoder: 2, n_heads_global: 4, n_heads_local_encoder: 2, n_heads_local_decoder: 2, cross_attn_nheads: 2, local_attention_window_len: 24, encoder_hash_byte_group_vocab: 1000 } as BltArgs,
  '10m': { ...COMMON, dim_global: 384, dim_local_encoder: 128, dim_local_decoder: 128, n_layers_global: 4, n_layers_local_encoder: 1, n_layers_local_decoder: 2, n_heads_global: 6, n_heads_local_encoder: 4, n_heads_local_decoder: 4, cross_attn_nheads: 4, local_attention_window_len: 512, encoder_hash_byte_group_vocab: 2048 } as BltArgs,
};
const BYTES = 512;
// Seconds a backend × configuration may take before it is skipped (software WebGPU, cpu on 10M).
const BUDGET_S = 20;

const ids = encode(syntheticText(BYTES), { bos: true, eos: true });
const tokens = [ids.subarray(0, -1)];
const targets = [ids.subarray(1)];
const lengths = [findPatchBoundaries(tokens[0]!, undefined, { mode: 'static', patchSize: 4 }).patchLengths];

const figures: Record<string, number | string> = { bench: 'blt', bytes_per_step: BYTES, patches: 'static 4 bytes' };
for (const backend of ['cpu', 'wasm', 'webgpu'] as const) {
  try {
    const info = await initBackend({ backend, allowSoftwareGpu: true });
    // wasm runs its matmuls on OpenBLAS when @bytelatent/native-sgemm is built: say which ran.
    if (info.nativeMatMul !== undefined) figures[`${backend}_matmul`] = info.nativeMatMul.active ? 'OpenBLAS' : 'wasm';
  } catch {
    figures[`${backend}`] = 'unavailable';
    continue;
  }
  for (const [name, args] of Object.entries(CONFIGS)) {
    const model = new ByteLatentTransformer(args, 1);
    figures[`${name}_params`] = model.parameterCount();
    const forward = async () => {
      const logits = model.forward(tokens, lengths);
      await logits.data();
      logits.dispose();
    };
    const train = async () => {
      const { value, grads } = tf.variableGrads(() => model.loss(tokens, lengths, targets));
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    };
    const start = performance.now();
    await forward(); // warm-up (kernel compilation, weight packing)
    if ((performance.now() - start) / 1000 > BUDGET_S / 4) {
      figures[`${backend}_${name}`] = `skipped: warm-up forward took ${((performance.now() - start) / 1000).toFixed(1)} s`;
      model.dispose();
      continue;
    }
    let t = performance.now();
    await forward();
    figures[`${backend}_${name}_forward_bytes_s`] = BYTES / ((performance.now() - t) / 1000);
    await train();
    t = performance.now();
    await train();
    figures[`${backend}_${name}_train_bytes_s`] = BYTES / ((performance.now() - t) / 1000);
    model.dispose();
  }
}
report(figures);
