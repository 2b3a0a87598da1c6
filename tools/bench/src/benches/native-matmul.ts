import * as tf from '@tensorflow/tfjs-core';
import { EntropyModel } from '@bytelatent/entropy-patcher';
import { initBackend, loadWasmKernelFixes, type WasmMatMulKind } from '@bytelatent/nn';
import { medianSeconds, report } from '../measure.js';

// float32 matmuls on the wasm backend with its three kernel sets, in one process on the same
// tensors: tfjs's own (`original`, XNNPACK, one thread), @bytelatent/nn's fixes (`fixed`, explicit
// transposes) and OpenBLAS through @bytelatent/native-sgemm (`native`, when it is built).
// Shapes: a 1024² product, and the three products of a transformer layer's projection in training
// ([4096 tokens, 128] x [128, 384] forward, the weight gradient aᵀ·dy, the input gradient dy·wᵀ).
// Then a small transformer's training step (the entropy model, Adam) with the fixed and native
// kernels: bytes (tokens) per second. GFLOP/s counts 2·m·n·k per product.
const TOKENS = 4096;
const [DIM, HIDDEN] = [128, 384];
const SHAPES: Array<{ name: string; a: number[]; b: number[]; transposeA: boolean; transposeB: boolean }> = [
  { name: 'square_1024', a: [1024, 1024], b: [1024, 1024], transposeA: false, transposeB: false },
  { name: 'forward_4096x128x384', a: [TOKENS, DIM], b: [DIM, HIDDEN], transposeA: false, transposeB: false },
  { name: 'weight_grad_tn_128x4096x384', a: [TOKENS, DIM], b: [TOKENS, HIDDEN], transposeA: true, transposeB: false },
  { name: 'input_grad_nt_4096x384x128', a: [TOKENS, HIDDEN], b: [DIM, HIDDEN], transposeA: false, transposeB: true },
];
// The training step: a 2-layer, dim-128 causal transformer on 8 rows of 512 bytes (4096 tokens, the
// shapes above), as in the train app's small configurations.
const MODEL = { dim: DIM, n_layers: 2, n_heads: 4, max_seqlen: 512, attn_bias_type: 'causal', multiple_of: 64 };
const [ROWS, SEQ, STEPS] = [8, 512, 5];

const info = await initBackend({ backend: 'wasm' });
const { withWasmMatMul } = await loadWasmKernelFixes();
const native = info.nativeMatMul?.active === true;
const kinds: WasmMatMulKind[] = native ? ['original', 'fixed', 'native'] : ['original', 'fixed'];

const figures: Record<string, string | number | boolean> = {
  bench: 'native-matmul',
  backend: info.name,
  native,
  native_detail: info.nativeMatMul?.reason ?? 'n/a',
};

for (const shape of SHAPES) {
  const a = tf.randomUniform(shape.a, -1, 1, 'float32', 1);
  const b = tf.randomUniform(shape.b, -1, 1, 'float32', 2);
  const m = shape.a[shape.transposeA ? 1 : 0]!;
  const k = shape.a[shape.transposeA ? 0 : 1]!;
  const n = shape.b[shape.transposeB ? 0 : 1]!;
  const flop = 2 * m * n * k;
  const gflops: Partial<Record<WasmMatMulKind, number>> = {};
  for (const kind of kinds) {
    // The original's transposed path is ~10x slower: fewer runs keep the bench short.
    const runs = kind === 'original' && (shape.transposeA || shape.transposeB) ? 3 : 7;
    // The wasm kernels run synchronously, so the product is complete when matMul returns.
    const seconds = withWasmMatMul(kind, () => medianSeconds(() => tf.dispose(tf.matMul(a, b, shape.transposeA, shape.transposeB)), runs));
    gflops[kind] = flop / seconds / 1e9;
    figures[`${shape.name}_${kind}_gflop_s`] = gflops[kind];
  }
  if (gflops.native !== undefined) {
    figures[`${shape.name}_native_over_fixed`] = gflops.native / gflops.fixed!;
    figures[`${shape.name}_native_over_original`] = gflops.native / gflops.original!;
  }
  tf.dispose([a, b]);
}

// Training: everything on the wasm backend is synchronous, so a step can run inside withWasmMatMul.
const model = new EntropyModel(MODEL, 1);
const variables = model.registry.list().map((p) => p.variable);
const optimizer = tf.train.adam(1e-3);
let seed = 7;
const rows = Array.from({ length: ROWS }, () =>
  Array.from({ length: SEQ }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return 4 + (seed % 256);
  }),
);
const targets = tf.tensor2d(
  rows.map((r) => [...r.slice(1), 4]),
  [ROWS, SEQ],
  'int32',
);
const step = () => {
  const loss = optimizer.minimize(
    () => tf.tidy(() => tf.losses.softmaxCrossEntropy(tf.oneHot(targets, 260), model.logits(rows))),
    true,
    variables,
  )!;
  loss.dataSync();
  loss.dispose();
};
const trainKinds: WasmMatMulKind[] = native ? ['fixed', 'native'] : ['fixed'];
const stepSeconds: Partial<Record<WasmMatMulKind, number>> = {};
for (const kind of trainKinds) {
  stepSeconds[kind] = withWasmMatMul(kind, () => medianSeconds(step, STEPS));
  figures[`train_step_${kind}_ms`] = stepSeconds[kind] * 1000;
  figures[`train_${kind}_bytes_s`] = (ROWS * SEQ) / stepSeconds[kind];
}
if (stepSeconds.native !== undefined) figures['train_native_speedup'] = stepSeconds.fixed! / stepSeconds.native;
figures['train_config'] =
  `entropy model dim ${DIM}, ${MODEL.n_layers} layers, ${ROWS}x${SEQ} bytes a step, Adam; ${model.registry.count()} parameters`;
tf.dispose(targets);
model.dispose();

report(figures);
