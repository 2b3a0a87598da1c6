#!/usr/bin/env node
// Side by side with the reference PyTorch BLT (github.com/facebookresearch/blt) on this machine:
// forward and forward+backward bytes/s of the `blt` bench's configurations, ours and the
// reference's, run alternately (ours, reference, reference, ours, ...) in one invocation, each in
// its own process, for each thread count. Prints the medians over the rounds and the ratios
// ours / reference (> 1: we are faster) as one JSON line, and a table on stderr.
//
//   node tools/bench/dist/compare-reference.js --reference ~/blt [--golden ../shared/golden/tiny]
//
// The reference side is tools/reference-bench/reference_bench.py (see its README: torch 1.13 needs
// shims). Both sides get the same arguments and input: this script writes them to a file.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BLT_CONFIGS, type BltConfigName, bltInput } from './blt-configs.js';

const HELP = `usage: compare-reference.js --reference DIR [--python PATH] [--rounds N] [--threads 1,2]
       [--configs tiny,10m] [--backends wasm,wasm-nonative] [--modes forward,train] [--runs N] [--golden DIR]
  --reference DIR   a checkout of github.com/facebookresearch/blt (git clone https://github.com/facebookresearch/blt)
  --python PATH     a Python with torch (default /usr/bin/python3: Debian's python3-torch)
  --rounds N        alternations ours/reference per thread count (default 3); medians are reported
  --threads LIST    thread counts: torch.set_num_threads and OPENBLAS_NUM_THREADS for ours (default 1,2)
  --backends LIST   ours: cpu, wasm (OpenBLAS matmuls when built), wasm-nonative, webgpu (default wasm,wasm-nonative)
  --runs N          timed runs per figure inside each process, median (default 3)
  --golden DIR      first check that the shimmed reference reproduces these golden vectors`;
const { values: opts } = parseArgs({
  options: {
    reference: { type: 'string' },
    python: { type: 'string', default: existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1,2' },
    configs: { type: 'string', default: 'tiny,10m' },
    backends: { type: 'string', default: 'wasm,wasm-nonative' },
    modes: { type: 'string', default: 'forward,train' },
    runs: { type: 'string', default: '3' },
    budget: { type: 'string', default: '60' },
    golden: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help || opts.reference === undefined) {
  console.log(HELP);
  process.exit(opts.help ? 0 : 2);
}
const here = dirname(fileURLToPath(import.meta.url));
const script = resolve(here, '../../reference-bench/reference_bench.py');
const ourBench = join(here, 'benches', 'blt.js');
const reference = resolve(opts.reference);
const configs = opts.configs.split(',') as BltConfigName[];
const backends = opts.backends.split(',').map((b) => b.replace('-', '_'));
const modes = opts.modes.split(',');
const rounds = Number(opts.rounds);

const work = mkdtempSync(join(tmpdir(), 'blt-compare-'));
const inputFile = join(work, 'input.json');
const input = bltInput();
writeFileSync(
  inputFile,
  JSON.stringify({
    configs: BLT_CONFIGS,
    bytes: input.bytes,
    tokens: input.tokens,
    targets: input.targets,
    patch_lengths: input.patchLengths,
  }),
);

function lastJson(out: string): Record<string, unknown> {
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}
function runReference(threads: number): Record<string, unknown> {
  const args = [
    script,
    '--reference',
    reference,
    '--threads',
    String(threads),
    '--input',
    inputFile,
    '--configs',
    configs.join(','),
    '--modes',
    modes.join(','),
    '--runs',
    opts.runs,
  ];
  return lastJson(execFileSync(opts.python, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
}
function runOurs(threads: number): Record<string, unknown> {
  const args = [
    ourBench,
    '--backends',
    opts.backends,
    '--configs',
    configs.join(','),
    '--modes',
    modes.join(','),
    '--runs',
    opts.runs,
    '--budget',
    opts.budget,
  ];
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  return lastJson(execFileSync(process.execPath, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'] }));
}
const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const num = (r: Record<string, unknown>, k: string): number => (typeof r[k] === 'number' ? (r[k] as number) : Number.NaN);
const round4 = (x: number): number => Number(x.toPrecision(4));

const figures: Record<string, string | number | boolean> = {
  bench: 'compare-reference',
  bytes_per_step: input.bytes,
  rounds,
  runs_per_round: Number(opts.runs),
};
try {
  if (opts.golden !== undefined) {
    const g = lastJson(
      execFileSync(opts.python, [script, '--reference', reference, '--threads', '1', '--check-golden', resolve(opts.golden)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    figures['reference_golden_max_abs_diff'] = num(g, 'max_abs_diff');
    if (g['ok'] !== true) throw new Error(`the shimmed reference does not reproduce the golden vectors: ${JSON.stringify(g)}`);
  }
  const rows: string[] = [];
  for (const threads of opts.threads.split(',').map(Number)) {
    const ours: Array<Record<string, unknown>> = [];
    const refs: Array<Record<string, unknown>> = [];
    for (let r = 0; r < rounds; r++) {
      // Alternate which side goes first, so that a drift in the machine's load hits both.
      if (r % 2 === 0) {
        ours.push(runOurs(threads));
        refs.push(runReference(threads));
      } else {
        refs.push(runReference(threads));
        ours.push(runOurs(threads));
      }
      console.error(`threads ${threads}: round ${r + 1}/${rounds} done`);
    }
    figures[`t${threads}_torch`] = String(refs[0]!['torch']);
    figures[`t${threads}_torch_threads`] = num(refs[0]!, 'threads');
    if (ours[0]!['wasm_matmul'] !== undefined) figures[`t${threads}_wasm_matmul`] = String(ours[0]!['wasm_matmul']);
    for (const config of configs) {
      for (const mode of modes) {
        const refPerRound = refs.map((x) => num(x, `${config}_${mode}_bytes_s`));
        const ref = median(refPerRound);
        figures[`t${threads}_${config}_${mode}_reference_bytes_s`] = round4(ref);
        for (const backend of backends) {
          const oursPerRound = ours.map((x) => num(x, `${backend}_${config}_${mode}_bytes_s`));
          const o = median(oursPerRound);
          if (!Number.isFinite(o)) {
            const why = ours.map((x) => x[`${backend}_${config}`]).find((v) => typeof v === 'string');
            figures[`t${threads}_${backend}_${config}_${mode}`] = typeof why === 'string' ? why : 'no figure';
            continue;
          }
          figures[`t${threads}_${backend}_${config}_${mode}_bytes_s`] = round4(o);
          figures[`t${threads}_${backend}_${config}_${mode}_over_reference`] = round4(o / ref);
          // The same ratio per round (each round's pair ran back to back), as a spread.
          const perRound = oursPerRound
            .map((v, i) => v / refPerRound[i]!)
            .filter(Number.isFinite)
            .sort((a, b) => a - b);
          figures[`t${threads}_${backend}_${config}_${mode}_ratio_range`] =
            `${round4(perRound[0]!)}-${round4(perRound[perRound.length - 1]!)}`;
          rows.push(
            `${String(threads).padStart(7)}  ${config.padEnd(6)} ${mode.padEnd(8)} ${backend.padEnd(14)} ${o.toFixed(0).padStart(8)} ${ref.toFixed(0).padStart(9)}  ${(o / ref).toFixed(2).padStart(6)}x  (${figures[`t${threads}_${backend}_${config}_${mode}_ratio_range`]})`,
          );
        }
      }
    }
  }
  console.error(`\nthreads  config mode     ours           bytes/s  reference  ours/ref  (per-round range)\n${rows.join('\n')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(JSON.stringify(figures));
