#!/usr/bin/env node
import { resolve } from 'node:path';
import type { GoldenBackend } from './backend.js';
import { runGoldenCheck } from './run-golden.js';

const USAGE = `usage: npm run golden -- [DIR] [--backend cpu|wasm|webgpu] [--allow-skipped]

Checks every implemented piece of bytelatent against a folder of reference test vectors in the
layout of shared/golden/tiny (config.json, index.json, cases/<name>.{json,safetensors}).
DIR defaults to $BYTELATENT_GOLDEN_DIR, else ../shared/golden/tiny. --backend picks the TensorFlow.js
backend for the model pieces (default cpu; webgpu may use a software adapter).
Every tensor of every case is compared or reported as skipped, by name and with the reason.
--allow-skipped: exit 0 even when tensors were skipped (by default a skipped tensor fails the run).
Exit status: 0 all checked groups match and nothing was skipped (or --allow-skipped), 1 a mismatch,
an unreadable case or a skipped tensor, 2 the folder cannot be read or bad arguments.`;

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const args = [...argv];
  let backend: GoldenBackend = 'cpu';
  const at = args.indexOf('--backend');
  if (at >= 0) {
    const value = args[at + 1];
    if (value !== 'cpu' && value !== 'wasm' && value !== 'webgpu') {
      console.error(`golden: --backend must be cpu, wasm or webgpu, got ${value ?? 'nothing'}\n\n${USAGE}`);
      return 2;
    }
    backend = value;
    args.splice(at, 2);
  }
  const allowSkipped = args.includes('--allow-skipped');
  if (allowSkipped) args.splice(args.indexOf('--allow-skipped'), 1);
  const unknown = args.filter((a) => a.startsWith('-'));
  if (unknown.length > 0 || args.length > 1) {
    console.error(`golden: unexpected argument(s): ${argv.join(' ')}\n\n${USAGE}`);
    return 2;
  }
  const dir = resolve(args[0] ?? process.env['BYTELATENT_GOLDEN_DIR'] ?? '../shared/golden/tiny');
  try {
    const report = await runGoldenCheck(dir, { backend });
    if (report.failed > 0) return 1;
    if (report.skipped > 0 && !allowSkipped) {
      console.error(`golden: ${report.skipped} tensor(s) skipped (named above); pass --allow-skipped to accept that`);
      return 1;
    }
    return 0;
  } catch (e) {
    console.error(`golden: ${(e as Error).message}`);
    return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
