import * as tf from '@tensorflow/tfjs-core';
import { initBackend, loadWasmKernelFixes } from '@bytelatent/nn';
import { medianSeconds, report } from '../measure.js';

// [512, 512] float32 matmuls on the wasm backend: the two transposed products that backprop runs
// (aᵀ·b for weight gradients, a·bᵀ for input gradients) with @bytelatent/nn's kernel fixes
// (explicit transpose, then a plain product) and with tfjs-backend-wasm's original kernels, against
// the plain product a·b. Measured in the same process on the same tensors.
// Plus attention's batched products ([batch, queries, dim] x [batch, keys, dim]ᵀ for the scores,
// [batch, queries, keys] x [batch, keys, dim] for the context), which the fixes run as one batch-1
// product per batch element where the original runs its naive batched loop.
const SIZE = 512;
const [HEADS, QUERIES, KEYS, DIM] = [4, 256, 767, 32];
const FAST_RUNS = 21;
const ORIGINAL_RUNS = 7;

// The wasm kernels only: the OpenBLAS ones (@bytelatent/native-sgemm) have their own bench,
// native-matmul, and would otherwise stand in for the fixes measured here.
const info = await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
const { withOriginalWasmKernels } = await loadWasmKernelFixes();
const a = tf.randomUniform([SIZE, SIZE], -1, 1, 'float32', 1);
const b = tf.randomUniform([SIZE, SIZE], -1, 1, 'float32', 2);

// The wasm kernels run synchronously, so the product is complete when matMul returns.
const seconds = (transposeA: boolean, transposeB: boolean, runs: number) =>
  medianSeconds(() => tf.dispose(tf.matMul(a, b, transposeA, transposeB)), runs);

const plain = seconds(false, false, FAST_RUNS);
const fixedTN = seconds(true, false, FAST_RUNS);
const fixedNT = seconds(false, true, FAST_RUNS);
const originalTN = withOriginalWasmKernels(() => seconds(true, false, ORIGINAL_RUNS));
const originalNT = withOriginalWasmKernels(() => seconds(false, true, ORIGINAL_RUNS));
tf.dispose([a, b]);

const q = tf.randomUniform([HEADS, QUERIES, DIM], -1, 1, 'float32', 3);
const k = tf.randomUniform([HEADS, KEYS, DIM], -1, 1, 'float32', 4);
const p = tf.randomUniform([HEADS, QUERIES, KEYS], -1, 1, 'float32', 5);
const scores = () => tf.dispose(tf.matMul(q, k, false, true));
const context = () => tf.dispose(tf.matMul(p, k));
const fixedScores = medianSeconds(scores, FAST_RUNS);
const fixedContext = medianSeconds(context, FAST_RUNS);
const originalScores = withOriginalWasmKernels(() => medianSeconds(scores, ORIGINAL_RUNS));
const originalContext = withOriginalWasmKernels(() => medianSeconds(context, ORIGINAL_RUNS));
tf.dispose([q, k, p]);

const ms = (s: number) => s * 1000;
report({
  bench: 'wasm-matmul',
  config: `${SIZE}x${SIZE} float32, backend ${info.name}`,
  plain_ms: ms(plain),
  fixed_tn_ms: ms(fixedTN),
  fixed_nt_ms: ms(fixedNT),
  original_tn_ms: ms(originalTN),
  original_nt_ms: ms(originalNT),
  speedup_tn: originalTN / fixedTN,
  speedup_nt: originalNT / fixedNT,
  fixed_tn_over_plain: fixedTN / plain,
  fixed_nt_over_plain: fixedNT / plain,
  plain_gflop_s: (2 * SIZE ** 3) / plain / 1e9,
  attention_config: `scores [${HEADS},${QUERIES},${DIM}]x[${HEADS},${KEYS},${DIM}]T, context [${HEADS},${QUERIES},${KEYS}]x[${HEADS},${KEYS},${DIM}]`,
  fixed_scores_ms: ms(fixedScores),
  original_scores_ms: ms(originalScores),
  speedup_scores: originalScores / fixedScores,
  fixed_context_ms: ms(fixedContext),
  original_context_ms: ms(originalContext),
  speedup_context: originalContext / fixedContext,
  fixed_scores_gflop_s: (2 * HEADS * QUERIES * KEYS * DIM) / fixedScores / 1e9,
});
