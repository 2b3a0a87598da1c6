import { encode } from '@bytelatent/bytes';
import { EntropyModel, EntropyPatcher, findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { type BackendName, initBackend } from '@bytelatent/nn';
import { medianSeconds, report, syntheticText } from '../measure.js';

// Patching throughput per backend, with a randomly initialised entropy model of a plausible small
// size (weights do not change the cost), and the rule-only modes for scale. Bytes per second.
const ARGS = { dim: 128, n_layers: 4, n_heads: 4, max_seqlen: 8192, attn_bias_type: 'local_block_causal', sliding_window: 512 };
// The cpu backend is ~30x slower than wasm: give it less text so the bench stays short.
// WebGPU here is SwiftShader, a CPU rasterizer: it proves the path, not GPU speed (environment.md).
const BYTES: Record<BackendName, number> = { cpu: 512, wasm: 8192, webgpu: 512 };

async function timeAsync(fn: () => Promise<unknown>, runs: number): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push((performance.now() - start) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

const figures: Record<string, number | string> = { bench: 'entropy-patcher', model: 'dim128 x4 layers, window 512, random init' };
for (const backend of ['cpu', 'wasm', 'webgpu'] as const) {
  let info;
  try {
    info = await initBackend({ backend, allowSoftwareGpu: true });
  } catch {
    figures[`${backend}_bytes_s`] = 'unavailable';
    continue;
  }
  const patcher = EntropyPatcher.fromModel(new EntropyModel(ARGS, 1), { threshold: 5.4 });
  const text = syntheticText(BYTES[backend]);
  const seconds = await timeAsync(() => patcher.patch(text), 3);
  figures[`${backend}_bytes_s`] = text.length / seconds;
  if (info.software) figures[`${backend}_adapter`] = `${info.adapter ?? ''} (software)`;
  // wasm runs its matmuls on OpenBLAS when @bytelatent/native-sgemm is built: say which ran.
  if (info.nativeMatMul !== undefined) figures[`${backend}_matmul`] = info.nativeMatMul.active ? 'OpenBLAS' : 'wasm';
  patcher.dispose();
}
if (typeof figures['wasm_bytes_s'] === 'number' && typeof figures['cpu_bytes_s'] === 'number') {
  figures['wasm_over_cpu'] = figures['wasm_bytes_s'] / figures['cpu_bytes_s'];
}

// The rules alone, given entropies (what a precomputed-entropy pipeline pays).
const big = encode(syntheticText(4 << 20), { eos: false });
const entropies = Float32Array.from(big, (_, i) => ((i * 2654435761) >>> 0) / 2 ** 32 * 3);
figures['entropy_rule_mb_s'] = big.length / 1e6 / medianSeconds(() => findPatchBoundaries(big, entropies, { mode: 'entropy', threshold: 1.5, maxPatchLength: 16 }), 3);
figures['space_rule_mb_s'] = big.length / 1e6 / medianSeconds(() => findPatchBoundaries(big, undefined, { mode: 'space' }), 3);
report(figures);
