#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { PatcherError } from './errors.js';
import { EntropyPatcher, type PatchResult } from './patcher.js';
import type { PatchingMode } from './patching.js';

// A command-line tool: silence tfjs's console advice ("install tfjs-node"), which would clutter
// the output and which cannot be followed here (tfjs-node downloads a binary at install).
tf.env().set('PROD', true);

const BIN = 'entropy-patcher';

const USAGE = `usage: entropy-patcher [--model FILE] [options] "text"
       entropy-patcher [--model FILE] [options] --file PATH
       ... | entropy-patcher [--model FILE] [options]
       entropy-patcher --help | --version

Splits text into BLT patches with an entropy model and shows the boundaries and a per-character
entropy sparkline (highest entropy of the character's bytes). Without a text argument or --file,
the bytes piped to stdin are patched, exactly as read (a trailing newline included).

options:
  --model FILE        entropy model weights (safetensors, reference state_dict names);
                      default: the pretrained model shipped in this package
  --config FILE       JSON with the model arguments: either the arguments themselves or an object
                      holding them under "entropy_model_args" (as a golden config.json); not needed
                      when the weights file carries them in its metadata
  --mode MODE         entropy (default) | monotonic | combined | entropy-top-k | space | static |
                      byte | bpe-patcher (a --model trained to predict BPE delimiters)
  --threshold X       global (or, for monotonic, relative) threshold in nats
  --threshold-add X   relative threshold of the combined mode
  --patch-size K      static mode: bytes per patch; entropy-top-k: the mean patch size aimed at
  --max-patch-length M  split longer patches
  --backend NAME      auto (default) | wasm | cpu | webgpu
  --json              print one JSON object instead of the picture (nothing else on stdout)
  -h, --help          this text
  --version           the name and version of this command

Exit status: 0 done, 1 error (model file, backend), 2 usage error.`;

// 'bpe' is not here: it reads BPE-delimiter tokens (encodeWithBpeDelimiters), not text.
const MODES: readonly PatchingMode[] = ['entropy', 'monotonic', 'combined', 'entropy-top-k', 'space', 'static', 'byte', 'bpe-patcher'];
const BACKENDS: ReadonlyArray<'auto' | BackendName> = ['auto', 'wasm', 'cpu', 'webgpu'];

/** A mistake in the command line: exit status 2 (other failures are 1), so scripts can tell them apart. */
class UsageError extends Error {}

function version(): string {
  // Relative to this module, so it is right wherever the package is installed (dist/ sits beside package.json).
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

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
      version: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(`${BIN} ${version()}`);
    return 0;
  }
  if (values.file !== undefined && positionals.length > 0) throw new UsageError('give either text or --file, not both');
  const number = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) throw new UsageError(`--${name} must be a number, got "${v}"`);
    return x;
  };
  // Every flag is checked before the model loads, so a typo costs no wait.
  const backend = values.backend as 'auto' | BackendName;
  if (!BACKENDS.includes(backend)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got "${values.backend}"`);
  if (values.mode !== undefined && !(MODES as readonly string[]).includes(values.mode))
    throw new UsageError(`--mode must be one of ${MODES.join(', ')}, got "${values.mode}"`);
  const options = Object.fromEntries(
    Object.entries({
      mode: values.mode as PatchingMode | undefined,
      threshold: number('threshold', values.threshold),
      thresholdAdd: number('threshold-add', values['threshold-add']),
      patchSize: number('patch-size', values['patch-size']),
      maxPatchLength: number('max-patch-length', values['max-patch-length']),
    }).filter(([, v]) => v !== undefined),
  );
  let input: string | Uint8Array;
  if (values.file !== undefined) input = new Uint8Array(await readFile(values.file));
  else if (positionals.length > 0) input = positionals.join(' ');
  else {
    // A terminal on stdin means nobody piped anything: waiting for typed text would look like a hang.
    input = process.stdin.isTTY ? new Uint8Array(0) : await readStdin();
    if (input.length === 0) throw new UsageError('no text: give it as an argument, with --file PATH, or on stdin');
  }
  await initBackend({ backend });
  let args;
  if (values.config) {
    const json = JSON.parse(await readFile(values.config, 'utf8')) as Record<string, unknown>;
    args = (json['entropy_model_args'] ?? json) as never;
  }
  const patcher = values.model
    ? await EntropyPatcher.fromSafetensors(values.model, args ? { args } : {})
    : await EntropyPatcher.pretrained();
  try {
    let result: PatchResult;
    try {
      result = await patcher.patch(input, options);
    } catch (e) {
      // The options came from flags (a missing threshold, a non-integer patch size): a usage error.
      if (e instanceof PatcherError && e.code === 'INVALID_ARGUMENT') throw new UsageError(e.message);
      throw e;
    }
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
    return 0;
  } finally {
    patcher.dispose();
  }
}

/** parseArgs' messages can run over several lines; a usage error is one line. */
const oneLine = (message: string): string => message.replace(/\s*\n\s*/g, ' ');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    // Usage errors (ours, and parseArgs' unknown or malformed options): one line and a pointer, exit 2.
    if (e instanceof UsageError || (e instanceof TypeError && err.code?.startsWith('ERR_PARSE_ARGS'))) {
      console.error(`${BIN}: ${oneLine(err.message)} (see ${BIN} --help)`);
      process.exitCode = 2;
      return;
    }
    // Node's own errors (ENOENT) already start with their code.
    console.error(`${BIN}: ${err.code && !err.message.startsWith(err.code) ? `${err.code}: ` : ''}${err.message}`);
    process.exitCode = 1;
  },
);
