#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { writeReleasedCheckpoint } from './generate.js';
import { LAYOUTS, type Layout } from './layouts.js';
import { parseSize } from './units.js';
import { PRESETS, RELEASED_MODELS, type Preset, type ReleasedModelName } from './models.js';
import type { PthFlavor } from './pth-writer.js';
import { DTYPES, type Dtype } from './values.js';

const USAGE = `usage: node tools/released-checkpoints/dist/cli.js --model M --layout L --out DIR [options]

Writes a random-weight checkpoint with the exact files, tensor names, shapes and dtypes of a released
BLT model in one of its published layouts (GBs for the full models: pick a folder with room, not /tmp).

  --model blt-1b|blt-7b|blt-entropy
  --layout consolidated|hub|transformers
                      consolidated: <out>/blt_1b/{params.json,consolidated.pth} + <out>/entropy_model/...
                      hub: <out>/{config.json,model.safetensors,train_args.json,entropy_model/...}
                      transformers: <out>/{config.json,model*.safetensors[,model.safetensors.index.json],tokenizer_config.json}
  --out DIR           output folder (created; same-named files replaced atomically)
  --preset full|tiny  full = released sizes (default); tiny = same structure, toy sizes (KBs)
  --dtype bf16|f16|f32  element type (default bf16, as released)
  --seed N            value seed (default 0); same seed, same bytes
  --shard-size S      transformers layout: largest shard, e.g. 5GB (default), 500MB, 2GiB, 123456
  --no-entropy        consolidated/hub: skip the entropy_model/ folder next to a BLT
  --pth-flavor torch2|torch1  .pth records of torch >= 2.1 (default) or older (no byteorder / id)
  --no-fsync          do not fsync files before renaming them into place
  --quiet             no progress lines on stderr

Prints progress to stderr and one JSON line of figures to stdout (files, bytes, seconds, MB/s,
parameters). Exit status 0 done, 1 failed, 2 bad arguments.`;

function oneOf<T extends string>(what: string, value: string | undefined, allowed: readonly T[], dflt?: T): T {
  if (value === undefined) {
    if (dflt !== undefined) return dflt;
    throw new Error(`--${what} is required (${allowed.join('|')})`);
  }
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`--${what} must be one of ${allowed.join(', ')}, got ${value}`);
  return value as T;
}

async function main(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' },
        layout: { type: 'string' },
        out: { type: 'string' },
        preset: { type: 'string' },
        dtype: { type: 'string' },
        seed: { type: 'string' },
        'shard-size': { type: 'string' },
        'no-entropy': { type: 'boolean' },
        'pth-flavor': { type: 'string' },
        'no-fsync': { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`released-checkpoints: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  let parsed;
  try {
    if (!opts.out) throw new Error('--out is required');
    const seed = opts.seed === undefined ? 0 : Number(opts.seed);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${opts.seed}`);
    parsed = {
      model: oneOf<ReleasedModelName>('model', opts.model, RELEASED_MODELS),
      layout: oneOf<Layout>('layout', opts.layout, LAYOUTS),
      preset: oneOf<Preset>('preset', opts.preset, PRESETS, 'full'),
      dtype: oneOf<Dtype>('dtype', opts.dtype, DTYPES, 'bf16'),
      pthFlavor: oneOf<PthFlavor>('pth-flavor', opts['pth-flavor'], ['torch2', 'torch1'], 'torch2'),
      seed,
      out: opts.out,
      ...(opts['shard-size'] !== undefined ? { shardBytes: parseSize(opts['shard-size']) } : {}),
    };
  } catch (e) {
    console.error(`released-checkpoints: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  try {
    const summary = await writeReleasedCheckpoint({
      ...parsed,
      withEntropy: !opts['no-entropy'],
      fsync: !opts['no-fsync'],
      progress: !opts.quiet,
    });
    console.log(JSON.stringify(summary));
    return 0;
  } catch (e) {
    console.error(`released-checkpoints: ${(e as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
