#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bytelatent/nn';
import { PatcherError } from './errors.js';
import { EntropyPatcher, type PatchResult } from './patcher.js';
import type { PatchingMode } from './patching.js';

// A command-line tool: silence tfjs's console advice ("install tfjs-node"), which would clutter
// the output and which cannot be followed here (tfjs-node downloads a binary at install).
tf.env().set('PROD', true);

const USAGE = `usage: entropy-patcher [--model FILE] [options] "text"
       entropy-patcher [--model FILE] [options] --file PATH

Splits text into BLT patches with an entropy model and shows the boundaries and a per-character
entropy sparkline (highest entropy of the character's bytes).

options:
  --model FILE        entropy model weights (safetensors, reference state_dict names);
                      default: the pretrained model shipped in this package
  --config FILE       JSON with the model arguments: either the arguments themselves or an object
                      holding them under "entropy_model_args" (as a golden config.json); not needed
                      when the weights file carries them in its metadata
  --mode MODE         entropy (default) | monotonic | combined | space | static | byte
  --threshold X       global (or, for monotonic, relative) threshold in nats
  --threshold-add X   relative threshold of the combined mode
  --patch-size K      static mode: bytes per patch
  --max-patch-length M  split longer patches
  --backend NAME      auto (default) | wasm | cpu | webgpu
  --json              print one JSON object instead of the picture
  -h, --help          this text`;

const SPARK = '▁▂▃▄▅▆▇█';

function picture(result: PatchResult, color: boolean): string {
  const segments = result.segments();
  const offset = result.tokens.length - segments.reduce((s, g) => s + g.end - g.start, 0);
  // Scaled between the row's lowest and highest entropy, so contrast shows whatever the model.
  const min = Math.min(...result.entropies);
  const max = Math.max(...result.entropies);
  const span = Math.max(max - min, 1e-9);
  let text = '';
  let spark = '';
  segments.forEach((seg, i) => {
    const shown = seg.text.replace(/\n/g, '⏎').replace(/\t/g, '⇥');
    text += color ? `\x1b[${i % 2 ? 46 : 43}m\x1b[30m${shown}\x1b[0m` : `${i > 0 ? '|' : ''}${shown}`;
    if (!color && i > 0) spark += ' ';
    // One sparkline cell per character: the entropy that decided the boundary after it.
    let byte = seg.start;
    for (const ch of seg.text) {
      const width = new TextEncoder().encode(ch).length;
      let h = 0;
      for (let b = byte; b < Math.min(byte + width, seg.end); b++) h = Math.max(h, result.entropies[b + offset] ?? 0);
      spark += SPARK[Math.min(SPARK.length - 1, Math.floor(((h - min) / span) * SPARK.length))];
      byte += width;
    }
  });
  const bytes = segments.length > 0 ? segments.at(-1)!.end : 0;
  const mean = segments.length > 0 ? bytes / segments.length : 0;
  return `${text}\n${spark}\n${segments.length} patches over ${bytes} bytes (mean ${mean.toFixed(2)} bytes/patch), mode ${result.options.mode}${
    result.options.threshold !== undefined ? `, threshold ${result.options.threshold}` : ''
  }; entropy ${min.toFixed(3)}..${max.toFixed(3)} nats`;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      config: { type: 'string' },
      file: { type: 'string' },
      mode: { type: 'string' },
      threshold: { type: 'string' },
      'threshold-add': { type: 'string' },
      'patch-size': { type: 'string' },
      'max-patch-length': { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if ((values.file === undefined) === (positionals.length === 0)) {
    console.error(`entropy-patcher: give either text or --file\n\n${USAGE}`);
    return 2;
  }
  const number = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x)) throw new PatcherError('INVALID_ARGUMENT', `--${name} must be a number, got ${v}`);
    return x;
  };
  await initBackend({ backend: values.backend as 'auto' });
  let args;
  if (values.config) {
    const json = JSON.parse(await readFile(values.config, 'utf8')) as Record<string, unknown>;
    args = (json['entropy_model_args'] ?? json) as never;
  }
  const patcher = values.model ? await EntropyPatcher.fromSafetensors(values.model, args ? { args } : {}) : await EntropyPatcher.pretrained();
  const input = values.file !== undefined ? new Uint8Array(await readFile(values.file)) : positionals.join(' ');
  const options = Object.fromEntries(
    Object.entries({
      mode: values.mode as PatchingMode | undefined,
      threshold: number('threshold', values.threshold),
      thresholdAdd: number('threshold-add', values['threshold-add']),
      patchSize: number('patch-size', values['patch-size']),
      maxPatchLength: number('max-patch-length', values['max-patch-length']),
    }).filter(([, v]) => v !== undefined),
  );
  const result = await patcher.patch(input, options);
  if (values.json) {
    console.log(
      JSON.stringify({
        patchLengths: Array.from(result.patchLengths),
        patchStarts: Array.from(result.patchStarts),
        entropies: Array.from(result.entropies, (h) => Number(h.toFixed(5))),
        segments: result.segments(),
        options: result.options,
      }),
    );
  } else {
    console.log(picture(result, process.stdout.isTTY === true && !process.env['NO_COLOR']));
  }
  patcher.dispose();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    console.error(`entropy-patcher: ${err.code ? `${err.code}: ` : ''}${err.message}`);
    process.exitCode = 1;
  },
);
