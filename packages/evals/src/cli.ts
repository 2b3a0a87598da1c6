#!/usr/bin/env node
/**
 * `bytelatent-eval`: bits-per-byte, FLOPs, patch statistics, character tasks, noise robustness and
 * tokenizer compression of this project's models (or Meta's released ones, from a folder of any
 * published layout) on any text. Prints a table; with `--json`, stdout holds exactly one JSON document
 * of figures and the table goes to stderr.
 */
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pretrainedBltUrl, type PretrainedBltName } from '@bytelatent/blt';
import * as tf from '@tensorflow/tfjs-core';
import { EntropyPatcher, pretrainedModelNamed, type PatchingMode } from '@bytelatent/entropy-patcher';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { measurePatching } from './adapters.js';
import { evaluateBitsPerByte } from './bits-per-byte.js';
import { BytePairTokenizer } from './bpe.js';
import { CHARACTER_TASKS, evaluateCharacterTasks, generateCharacterTasks } from './character-tasks.js';
import { EvalError } from './errors.js';
import { bltFlopsPerByte, tokenModelFlopsPerByte, transformerFlops, transformerShape } from './flops.js';
import { gpt2TokenCount } from './gpt2.js';
import { type LoadedModel, loadModel as loadModelAt, loadPretrainedEntropyModel } from './load-model.js';
import { NOISE_KINDS, evaluateNoiseRobustness } from './noise.js';
import { PatchStatistics } from './patch-stats.js';
import { formatNumber, formatTable } from './table.js';
import { UDHR_DEFAULT_CODES, loadUdhr } from './udhr.js';

// A command-line tool: tfjs's console advice ("install tfjs-node") cannot be followed here.
tf.env().set('PROD', true);

const BIN = 'bytelatent-eval';

const USAGE = `usage: bytelatent-eval <command> [options]
       bytelatent-eval --help | --version

commands:
  bpb       bits per byte of a model on texts (streamed), with FLOPs per byte
  flops     inference and training FLOPs per byte (the BLT paper's formulas)
  patches   patch statistics of a patching rule on texts, overall and per script
  cute      CUTE-style character tasks (likelihood ranking of candidates)
  noise     bits per byte on clean and noised text
  bpe       train (or load) a byte-level BPE; bytes per token of it and of GPT-2

texts (bpb, flops, patches, noise, bpe):
  --file PATH             a text file (repeatable)
  --udhr CODES            UDHR translations: comma-separated codes, or "default" (${UDHR_DEFAULT_CODES.join(',')})

model (bpb, flops, cute, noise):
  --model PATH            pretrained:demo (the demo BLT of @bytelatent/blt), a model folder of any published layout (Meta's released BLTs and entropy
                          model: consolidated params.json + consolidated.pth, hub config.json +
                          model.safetensors, transformers model_type "blt"; or an http(s) URL of
                          one), patched with the patching settings in its files; or a model file: a
                          BLT (blt_args), an entropy model, a token model, or an apps/train
                          checkpoint; default: the pretrained entropy model of
                          @bytelatent/entropy-patcher (a byte-level transformer)
  --patcher PATH          BLT (and patches): entropy model to patch with, instead of the model's
                          own: a folder of any layout, a safetensors file, or a shipped one:
                          "pretrained:fast", "pretrained:small" ("pretrained": small for a BLT,
                          the model BLTs were trained with; fast for patches)

options:
  --context N             positions per row (default: the model's context)
  --stride N              bpb: positions between row starts (default: the context, rows that do
                          not overlap); smaller slides the window, so every byte after the first
                          row is predicted with at least context - N bytes before it
  --window-bytes N        bpb: score windows of N bytes, each a row of its own from BOS (every
                          model then sees the same bytes before each byte, whatever its unit;
                          excludes --context and --stride)
  --progress              progress on stderr (rate, ETA; bpb, noise, cute, patches) even when stderr
                          is not a terminal
  --max-bytes N           score only the first N bytes of each text (noise: default 16384)
  --batch-size N          rows per model call (default 8)
  --mean-patch X          flops: BLT mean patch size, instead of measuring it on texts
  --bytes-per-token X     flops: token model bytes per token, instead of measuring it
  --mode MODE             patches: entropy | monotonic | combined | space | static | byte
                          (default: the patcher's own, else entropy)
  --threshold X           patches: entropy threshold (default: the patcher's)
  --patch-size K          patches: static patch size
  --max-patch-length M    patches: split longer patches
  --per-task N            cute: questions per task (default 50)
  --shots N               cute: solved examples before each question (default 2)
  --seed N                cute, noise: seed (default 0)
  --train PATH            bpe: training text, a file or a folder (repeatable)
  --merges N              bpe: merges to learn (default 1024)
  --max-train-bytes N     bpe: bytes of training text read (default 4000000)
  --bpe FILE              bpe: load this tokenizer (JSON) instead of training one
  --out FILE              bpe: write the trained tokenizer (JSON)
  --backend NAME          auto (default) | wasm | cpu | webgpu
  --json                  print exactly one JSON document of figures on stdout (the table goes to stderr)
  -h, --help              this text
  --version               the name and version of this command

Exit status: 0 done, 1 error (model or data file, backend), 2 usage error.

examples:
  npm run eval -- bpb --file .cache/corpus/heldout/books/carroll-alice.txt
  npm run eval -- bpb --udhr default --model pretrained:demo --max-bytes 4096
  npm run eval -- bpb --udhr eng --model hf-weights/blt_1b --max-bytes 4096 --json
  npm run eval -- patches --udhr eng,rus,cmn_hans --json`;

const OPTIONS = {
  file: { type: 'string', multiple: true },
  udhr: { type: 'string' },
  model: { type: 'string' },
  patcher: { type: 'string' },
  context: { type: 'string' },
  stride: { type: 'string' },
  'window-bytes': { type: 'string' },
  progress: { type: 'boolean' },
  'max-bytes': { type: 'string' },
  'batch-size': { type: 'string' },
  'mean-patch': { type: 'string' },
  'bytes-per-token': { type: 'string' },
  mode: { type: 'string' },
  threshold: { type: 'string' },
  'patch-size': { type: 'string' },
  'max-patch-length': { type: 'string' },
  'per-task': { type: 'string' },
  shots: { type: 'string' },
  seed: { type: 'string' },
  train: { type: 'string', multiple: true },
  merges: { type: 'string' },
  'max-train-bytes': { type: 'string' },
  bpe: { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function version(): string {
  // Relative to this module, so it is right wherever the package is installed (dist/ sits beside package.json).
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The directory the user ran the command from (npm scripts change cwd to the package root). */
const userCwd = process.env['INIT_CWD'] ?? process.cwd();

function num(values: Values, name: keyof Values, integer: boolean, min: number): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    throw new EvalError(
      'INVALID_ARGUMENT',
      `--${String(name)} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got "${String(v)}"`,
    );
  }
  return n;
}

interface Source {
  readonly name: string;
  /** Bytes, read lazily (files are streamed by bpb). */
  bytes(): Uint8Array;
  path?: string;
}

function sources(values: Values, required: boolean): Source[] {
  const out: Source[] = [];
  for (const f of values.file ?? []) {
    const path = resolve(userCwd, f);
    try {
      if (!statSync(path).isFile()) throw new Error('not a file');
    } catch (e) {
      throw new EvalError('DATA_UNAVAILABLE', `--file ${f}: ${(e as Error).message}`);
    }
    out.push({ name: f, path, bytes: () => new Uint8Array(readFileSync(path)) });
  }
  if (values.udhr !== undefined) {
    const codes = values.udhr === 'default' ? UDHR_DEFAULT_CODES : values.udhr.split(',').filter((c) => c.length > 0);
    for (const code of codes) {
      const text = loadUdhr(code);
      out.push({ name: `udhr:${code}`, bytes: () => new TextEncoder().encode(text) });
    }
  }
  if (required && out.length === 0) throw new EvalError('INVALID_ARGUMENT', 'give texts with --file PATH or --udhr CODES');
  return out;
}

/** The backend is initialised on first need, so argument errors come back at once. */
let backendReady: Promise<unknown> | undefined;
let backendName: 'auto' | BackendName = 'auto';
function ensureBackend(): Promise<unknown> {
  backendReady ??= initBackend({ backend: backendName });
  return backendReady;
}

async function loadModel(values: Values): Promise<LoadedModel> {
  if (values.model === undefined) {
    await ensureBackend();
    return loadPretrainedEntropyModel();
  }
  // A BLT shipped in @bytelatent/blt (`pretrained:demo`): its folder inside that package.
  const shipped = /^pretrained:(.*)$/.exec(values.model);
  const path = shipped ? shippedBltFolder(shipped[1]!) : userPath(values.model);
  if (!isUrl(path) && !existsSync(path)) throw new EvalError('DATA_UNAVAILABLE', `--model ${values.model}: no such file or folder`);
  await ensureBackend();
  return loadModelAt(
    path,
    values.patcher !== undefined ? { patcher: /^pretrained(:\w+)?$/.test(values.patcher) ? values.patcher : userPath(values.patcher) } : {},
  );
}

const isUrl = (p: string) => /^https?:\/\//i.test(p);

function shippedBltFolder(name: string): string {
  let url: URL;
  try {
    url = pretrainedBltUrl(name as PretrainedBltName);
  } catch (e) {
    // An unknown name (the message lists the shipped ones) is a mistake on the command line.
    throw new EvalError('INVALID_ARGUMENT', `--model pretrained:${name}: ${(e as Error).message}`);
  }
  return fileURLToPath(url).replace(/[\\/]+$/, '');
}

/** A path the user gave, resolved against where they ran the command; URLs as they are. */
function userPath(p: string): string {
  return isUrl(p) ? p : resolve(userCwd, p);
}

function describe(m: LoadedModel): string {
  const patching = m.kind === 'blt' ? `; patching ${describePatching(m.patching)}` : '';
  return `${m.model.name}: ${m.kind} model${m.layout ? ` (${m.layout} layout)` : ''}, ${m.parameters.toLocaleString('en-US')} parameters, context ${m.model.maxContext}${patching}`;
}

/** A BLT's patching rule in words: mode, thresholds, patch size and cap. */
function describePatching(p: Extract<LoadedModel, { kind: 'blt' }>['patching']): string {
  const threshold = p.threshold ?? p.patcher?.defaults.threshold;
  return [
    p.mode,
    ...(p.patcher && threshold !== undefined ? [`threshold ${threshold}`] : []),
    ...(p.thresholdAdd !== undefined ? [`threshold_add ${p.thresholdAdd}`] : []),
    ...(p.mode === 'static' && p.patchSize !== undefined ? [`size ${p.patchSize}`] : []),
    ...(p.maxPatchLength !== undefined ? [`max length ${p.maxPatchLength}`] : []),
  ].join(', ');
}

/** The figures every model command reports about its model. */
function modelFigures(m: LoadedModel): Record<string, unknown> {
  return {
    model: m.model.name,
    kind: m.kind,
    ...(m.layout ? { layout: m.layout } : {}),
    parameters: m.parameters,
    ...(m.kind === 'blt'
      ? {
          patching: {
            mode: m.patching.mode,
            threshold: m.patching.threshold ?? m.patching.patcher?.defaults.threshold ?? null,
            thresholdAdd: m.patching.thresholdAdd ?? null,
            patchSize: m.patching.patchSize ?? null,
            maxPatchLength: m.patching.maxPatchLength ?? null,
          },
        }
      : {}),
  };
}

/** Inference FLOPs per byte of a loaded model given the measured unit size. */
function flopsPerByte(
  m: LoadedModel,
  unit: number,
  context: number,
): { total: number; parts: Record<string, number>; entropyModel?: number } {
  if (m.kind === 'blt') {
    const b = bltFlopsPerByte(m.shape, unit, context);
    const em = m.patching.patcher?.model;
    const entropyModel = em
      ? transformerFlops(transformerShape(em.referenceArgs), Math.min(em.args.window ?? em.maxSeqLen, context), em.args.vocabSize)
      : undefined;
    const { total, ...parts } = b;
    return { total, parts, ...(entropyModel !== undefined ? { entropyModel } : {}) };
  }
  const total = tokenModelFlopsPerByte(m.shape, unit, Math.min(context, m.contextTokens) * unit, m.vocab);
  return { total, parts: {} };
}

/** What a progress line counts: bytes (shown in KB) or named units (candidates, texts). */
type ProgressUnit = 'bytes' | { readonly plural: string };

/**
 * A progress line on stderr for a long evaluation — done of total, rate, ETA — rewritten in place,
 * at most a few times a second. Only when stderr is a terminal, unless `--progress` asks for it
 * (then each update is its own line, for logs); stdout is never touched.
 */
function progressLine(
  values: Values,
  name: string,
  total: number,
  unit: ProgressUnit = 'bytes',
): { update: (done: number) => void; done: () => void } | undefined {
  const tty = process.stderr.isTTY === true;
  if (!tty && !values.progress) return undefined;
  const started = performance.now();
  let last = 0;
  const amount = (n: number) => (unit === 'bytes' ? `${(n / 1000).toFixed(1)} KB` : `${n}`);
  const per = unit === 'bytes' ? 'bytes/s' : `${unit.plural}/s`;
  const write = (done: number, final: boolean) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 && !final ? `, ETA ${Math.ceil((total - done) / rate)} s` : final ? `, ${seconds.toFixed(1)} s` : '';
    const of = unit === 'bytes' ? `${amount(done)} of ${amount(total)}` : `${done} of ${total} ${unit.plural}`;
    const line = `${name}: ${of}, ${rate >= 10 ? Math.round(rate) : rate.toFixed(1)} ${per}${eta}`;
    process.stderr.write(tty ? `\r\x1b[K${line}${final ? '\n' : ''}` : `${line}\n`);
  };
  return {
    update: (done) => {
      const now = performance.now();
      if (now - last < (tty ? 250 : 5000)) return;
      last = now;
      write(done, false);
    },
    done: () => write(total, true),
  };
}

async function commandBpb(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const texts = sources(values, true);
  const batchSize = num(values, 'batch-size', true, 1) ?? 8;
  const maxBytes = num(values, 'max-bytes', true, 1);
  const givenContext = num(values, 'context', true, 2);
  const givenStride = num(values, 'stride', true, 1);
  const windowBytes = num(values, 'window-bytes', true, 1);
  if (windowBytes !== undefined && (givenContext !== undefined || givenStride !== undefined))
    throw new EvalError('INVALID_ARGUMENT', '--window-bytes excludes --context and --stride: each window is one row');
  const loaded = await loadModel(values);
  try {
    const context = givenContext ?? (windowBytes !== undefined ? Math.min(windowBytes, loaded.model.maxContext) : loaded.model.maxContext);
    const stride = givenStride ?? context;
    if (stride > context) throw new EvalError('INVALID_ARGUMENT', `--stride ${stride} exceeds the context of ${context}`);
    out.push(describe(loaded));
    const rows: Array<Array<string | number>> = [];
    const results: Record<string, unknown>[] = [];
    for (const s of texts) {
      const before = loaded.kind === 'blt' ? loaded.model.patchCounts() : undefined;
      const t0 = performance.now();
      const total = Math.min(s.path ? statSync(s.path).size : s.bytes().length, maxBytes ?? Number.POSITIVE_INFINITY);
      const progress = progressLine(values, s.name, total);
      const r = await evaluateBitsPerByte(loaded.model, s.path ? createReadStream(s.path, { highWaterMark: 65536 }) : s.bytes(), {
        ...(windowBytes !== undefined ? { windowBytes } : { contextLength: context, stride }),
        batchSize,
        ...(maxBytes !== undefined ? { maxBytes } : {}),
        ...(progress ? { onProgress: progress.update } : {}),
      });
      progress?.done();
      const seconds = (performance.now() - t0) / 1000;
      let unit = r.bytesPerTarget;
      if (loaded.kind === 'blt') {
        const after = loaded.model.patchCounts();
        unit = (after.positions - before!.positions) / (after.patches - before!.patches);
      }
      const flops = flopsPerByte(loaded, unit, context);
      rows.push([
        s.name,
        r.bytes,
        r.targets,
        loaded.kind === 'blt' ? unit : r.bytesPerTarget,
        r.bitsPerByte,
        flops.total,
        Math.round(r.bytes / seconds),
      ]);
      results.push({
        source: s.name,
        bytes: r.bytes,
        targets: r.targets,
        bitsPerByte: r.bitsPerByte,
        nats: r.nats,
        ...(loaded.kind === 'blt' ? { meanPatchSize: unit } : { bytesPerTarget: r.bytesPerTarget }),
        inferenceFlopsPerByte: flops.total,
        ...(flops.entropyModel !== undefined ? { entropyModelFlopsPerByte: flops.entropyModel } : {}),
        bytesPerSecond: r.bytes / seconds,
      });
    }
    out.push(
      formatTable(
        ['text', 'bytes', 'targets', loaded.kind === 'blt' ? 'bytes/patch' : 'bytes/target', 'bits/byte', 'FLOPs/byte', 'bytes/s'],
        rows,
      ),
    );
    Object.assign(figures, {
      command: 'bpb',
      ...modelFigures(loaded),
      ...(windowBytes !== undefined ? { windowBytes } : { context, stride }),
      results,
    });
  } finally {
    loaded.dispose();
  }
}

async function commandFlops(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const loaded = await loadModel(values);
  try {
    const context = num(values, 'context', true, 2) ?? loaded.model.maxContext;
    let unit: number;
    let measuredOn = 'given';
    if (loaded.kind === 'blt') {
      const given = num(values, 'mean-patch', false, 1);
      if (given !== undefined) unit = given;
      else {
        const texts = sources(values, true);
        let positions = 0;
        let patches = 0;
        for (const s of texts) {
          const m = await measurePatching(loaded.patching, s.bytes(), context);
          positions += m.positions;
          patches += m.patches;
        }
        unit = positions / patches;
        measuredOn = texts.map((s) => s.name).join(', ');
      }
    } else if (loaded.kind === 'token') {
      const given = num(values, 'bytes-per-token', false, 1);
      if (given !== undefined) unit = given;
      else {
        const texts = sources(values, true);
        let bytes = 0;
        let tokens = 0;
        const tok = (loaded.model as { tokenizer: { encode(b: Uint8Array): Int32Array } }).tokenizer;
        for (const s of texts) {
          const b = s.bytes();
          bytes += b.length;
          tokens += tok.encode(b).length;
        }
        unit = bytes / tokens;
        measuredOn = texts.map((s) => s.name).join(', ');
      }
    } else unit = 1;
    const f = flopsPerByte(loaded, unit, context);
    out.push(describe(loaded));
    out.push(`${loaded.kind === 'blt' ? 'mean patch' : 'bytes per token'} ${formatNumber(unit)} (${measuredOn}), context ${context}`);
    const rows: Array<Array<string | number>> = Object.entries(f.parts).map(([k, v]) => [k, v, v / f.total]);
    rows.push(['total (inference)', f.total, 1], ['training (3x)', 3 * f.total, 3]);
    if (f.entropyModel !== undefined) rows.push(['entropy model (patching, not in total)', f.entropyModel, f.entropyModel / f.total]);
    out.push(formatTable(['part', 'FLOPs/byte', 'share'], rows));
    Object.assign(figures, {
      command: 'flops',
      ...modelFigures(loaded),
      context,
      [loaded.kind === 'blt' ? 'meanPatchSize' : 'bytesPerToken']: unit,
      inferenceFlopsPerByte: f.total,
      trainingFlopsPerByte: 3 * f.total,
      parts: f.parts,
      ...(f.entropyModel !== undefined ? { entropyModelFlopsPerByte: f.entropyModel } : {}),
    });
  } finally {
    loaded.dispose();
  }
}

/** The patcher of the patches command: `--patcher` as a folder of any layout, a file, or the shipped one. */
async function loadPatchesPatcher(source: string | undefined): Promise<EntropyPatcher> {
  if (source === undefined) return EntropyPatcher.pretrained();
  const shipped = pretrainedModelNamed(source, 'fast');
  if (shipped !== undefined) return EntropyPatcher.pretrained({ model: shipped });
  const path = userPath(source);
  if (isUrl(path) || statSync(path, { throwIfNoEntry: false })?.isDirectory()) return EntropyPatcher.fromPretrained(path);
  return EntropyPatcher.fromSafetensors(path);
}

const PATCHING_MODES: readonly PatchingMode[] = ['entropy', 'monotonic', 'combined', 'space', 'static', 'byte'];

async function commandPatches(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const texts = sources(values, true);
  // Checked before the patcher loads, so a mistyped mode is a usage error at once.
  if (values.mode !== undefined && !(PATCHING_MODES as readonly string[]).includes(values.mode)) {
    throw new EvalError('INVALID_ARGUMENT', `--mode must be one of ${PATCHING_MODES.join(', ')}, got "${values.mode}"`);
  }
  await ensureBackend();
  const patcher = await loadPatchesPatcher(values.patcher);
  try {
    // The patcher's own settings (a folder's patching settings, a file's defaults) unless flags say otherwise.
    const mode = (values.mode ?? patcher.defaults.mode ?? 'entropy') as PatchingMode;
    const options = {
      mode,
      ...(values.threshold !== undefined ? { threshold: num(values, 'threshold', false, Number.NEGATIVE_INFINITY)! } : {}),
      ...(values['patch-size'] !== undefined ? { patchSize: num(values, 'patch-size', true, 1)! } : {}),
      ...(values['max-patch-length'] !== undefined ? { maxPatchLength: num(values, 'max-patch-length', true, 1)! } : {}),
    };
    const maxBytes = num(values, 'max-bytes', true, 1);
    const rows: Array<Array<string | number>> = [];
    const scriptRows: Array<Array<string | number>> = [];
    const results: Record<string, unknown>[] = [];
    const progress = texts.length > 1 ? progressLine(values, 'patches', texts.length, { plural: 'texts' }) : undefined;
    for (const [done, s] of texts.entries()) {
      progress?.update(done);
      let bytes = s.bytes();
      if (maxBytes !== undefined) bytes = bytes.subarray(0, maxBytes);
      const result = await patcher.patch(bytes, options);
      const lengths = result
        .segments()
        .map((g) => g.end - g.start)
        .filter((l) => l > 0);
      const stats = new PatchStatistics();
      stats.add(bytes, lengths);
      const r = stats.summary();
      rows.push([
        s.name,
        r.bytes,
        r.patches,
        r.meanPatchSize,
        r.p50,
        r.p90,
        r.p99,
        r.maxPatchSize,
        r.startsOnWordStart,
        r.wordStartsCovered,
        r.startsInsideCharacter,
      ]);
      for (const sc of r.byScript)
        scriptRows.push([s.name, sc.script, sc.bytes, sc.patches, sc.meanPatchSize, sc.startsOnWordStart, sc.startsInsideCharacter]);
      results.push({ source: s.name, ...r });
    }
    progress?.done();
    const maxPatchLength = options.maxPatchLength ?? patcher.defaults.maxPatchLength;
    out.push(
      `patching: ${mode}${mode === 'entropy' || mode === 'monotonic' || mode === 'combined' ? `, threshold ${options.threshold ?? patcher.defaults.threshold}` : ''}${maxPatchLength ? `, max length ${maxPatchLength}` : ''}`,
    );
    out.push(
      formatTable(
        ['text', 'bytes', 'patches', 'mean', 'p50', 'p90', 'p99', 'max', 'on word start', 'word starts cut', 'inside char'],
        rows,
      ),
    );
    out.push('');
    out.push(formatTable(['text', 'script', 'bytes', 'patches', 'mean', 'on word start', 'inside char'], scriptRows));
    Object.assign(figures, { command: 'patches', mode, options, results });
  } finally {
    patcher.dispose();
  }
}

async function commandCute(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const loaded = await loadModel(values);
  try {
    const items = generateCharacterTasks({
      perTask: num(values, 'per-task', true, 1) ?? 50,
      shots: num(values, 'shots', true, 0) ?? 2,
      seed: num(values, 'seed', true, 0) ?? 0,
    });
    const candidates = items.reduce((n, item) => n + item.candidates.length, 0);
    const progress = progressLine(values, 'cute', candidates, { plural: 'candidates' });
    const r = await evaluateCharacterTasks(loaded.model, items, {
      batchSize: num(values, 'batch-size', true, 1) ?? 16,
      ...(progress ? { onProgress: progress.update } : {}),
    });
    progress?.done();
    out.push(describe(loaded));
    const example = items[0]!;
    out.push(
      `example (${example.task}): ${JSON.stringify(example.prompt)} -> ${example.candidates.map((c, i) => (i === example.answer ? `[${c.trim()}]` : c.trim())).join(' | ')}`,
    );
    out.push(
      formatTable(
        ['task', 'items', 'accuracy', 'chance'],
        [...r.tasks.map((t) => [t.task, t.items, t.accuracy, t.chance]), ['mean', items.length, r.accuracy, r.chance]],
      ),
    );
    Object.assign(figures, {
      command: 'cute',
      ...modelFigures(loaded),
      tasks: r.tasks,
      accuracy: r.accuracy,
      chance: r.chance,
      taskNames: CHARACTER_TASKS,
    });
  } finally {
    loaded.dispose();
  }
}

async function commandNoise(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const texts = sources(values, true);
  const loaded = await loadModel(values);
  try {
    const maxBytes = num(values, 'max-bytes', true, 1) ?? 16_384;
    const seed = num(values, 'seed', true, 0) ?? 0;
    out.push(describe(loaded));
    const rows: Array<Array<string | number>> = [];
    const results: Record<string, unknown>[] = [];
    for (const s of texts) {
      // Cut on a character boundary so the noise sees whole characters.
      const text = new TextDecoder().decode(s.bytes().subarray(0, maxBytes)).replace(/\uFFFD$/, '');
      // One pass per noise kind and one clean: counted as passes over the text's bytes.
      const passes = NOISE_KINDS.length + 1;
      const textBytes = new TextEncoder().encode(text).length;
      const progress = progressLine(values, s.name, passes * textBytes);
      let finished = 0;
      let lastRead = 0;
      const r = await evaluateNoiseRobustness(loaded.model, text, {
        seed,
        batchSize: num(values, 'batch-size', true, 1) ?? 8,
        ...(values.context ? { contextLength: num(values, 'context', true, 2)! } : {}),
        ...(progress
          ? {
              onProgress: (read: number) => {
                if (read < lastRead) finished++; // a new pass started
                lastRead = read;
                progress.update(Math.min(passes, finished + read / textBytes) * textBytes);
              },
            }
          : {}),
      });
      progress?.done();
      rows.push([s.name, 'clean', r.clean.bytes, r.clean.bitsPerByte, 1]);
      for (const n of r.noised) rows.push([s.name, n.kind, n.result.bytes, n.result.bitsPerByte, n.ratio]);
      results.push({
        source: s.name,
        clean: r.clean.bitsPerByte,
        noised: Object.fromEntries(r.noised.map((n) => [n.kind, n.result.bitsPerByte])),
      });
    }
    out.push(formatTable(['text', 'noise', 'bytes', 'bits/byte', 'x clean'], rows));
    Object.assign(figures, { command: 'noise', ...modelFigures(loaded), seed, kinds: NOISE_KINDS, results });
  } finally {
    loaded.dispose();
  }
}

function walkFiles(path: string, outFiles: string[]): void {
  const st = statSync(path);
  if (st.isFile()) outFiles.push(path);
  else if (st.isDirectory()) {
    for (const e of readdirSync(path).sort()) if (!e.startsWith('.')) walkFiles(join(path, e), outFiles);
  }
}

async function commandBpe(values: Values, out: string[], figures: Record<string, unknown>): Promise<void> {
  const texts = sources(values, true);
  let tokenizer: BytePairTokenizer;
  if (values.bpe !== undefined) {
    const path = resolve(userCwd, values.bpe);
    try {
      tokenizer = BytePairTokenizer.fromJSON(JSON.parse(readFileSync(path, 'utf8')));
    } catch (e) {
      if (e instanceof EvalError) throw e;
      throw new EvalError('DATA_UNAVAILABLE', `cannot read --bpe ${values.bpe}: ${(e as Error).message}`);
    }
  } else {
    if (!values.train?.length) throw new EvalError('INVALID_ARGUMENT', 'bpe needs --train PATH (texts to learn merges from) or --bpe FILE');
    const files: string[] = [];
    for (const t of values.train) {
      try {
        walkFiles(resolve(userCwd, t), files);
      } catch (e) {
        throw new EvalError('DATA_UNAVAILABLE', `--train ${t}: ${(e as Error).message}`);
      }
    }
    const budget = num(values, 'max-train-bytes', true, 1) ?? 4_000_000;
    const chunks: Uint8Array[] = [];
    let read = 0;
    for (const f of files) {
      if (read >= budget) break;
      const b = new Uint8Array(readFileSync(f)).subarray(0, budget - read);
      chunks.push(b);
      read += b.length;
    }
    const t0 = performance.now();
    tokenizer = BytePairTokenizer.train(chunks, { merges: num(values, 'merges', true, 0) ?? 1024 });
    out.push(
      `trained ${tokenizer.merges.length} merges on ${read.toLocaleString('en-US')} bytes of ${files.length} files in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    if (values.out) await writeFile(resolve(userCwd, values.out), JSON.stringify(tokenizer.toJSON()) + '\n');
  }
  const rows: Array<Array<string | number>> = [];
  const results: Record<string, unknown>[] = [];
  for (const s of texts) {
    const bytes = s.bytes();
    const ours = tokenizer.encode(bytes).length;
    const gpt2 = await gpt2TokenCount(new TextDecoder().decode(bytes));
    rows.push([s.name, bytes.length, bytes.length / ours, bytes.length / gpt2]);
    results.push({
      source: s.name,
      bytes: bytes.length,
      tokens: ours,
      bytesPerToken: bytes.length / ours,
      gpt2Tokens: gpt2,
      gpt2BytesPerToken: bytes.length / gpt2,
    });
  }
  out.push(
    formatTable(['text', 'bytes', `${tokenizer.name} bytes/token (vocab ${tokenizer.vocabSize})`, 'GPT-2 bytes/token (vocab 50257)'], rows),
  );
  Object.assign(figures, { command: 'bpe', merges: tokenizer.merges.length, vocabSize: tokenizer.vocabSize, results });
}

const COMMANDS: Record<string, (values: Values, out: string[], figures: Record<string, unknown>) => Promise<void>> = {
  bpb: commandBpb,
  flops: commandFlops,
  patches: commandPatches,
  cute: commandCute,
  noise: commandNoise,
  bpe: commandBpe,
};

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${BIN} ${version()}\n`);
    return 0;
  }
  const command = COMMANDS[positionals[0] ?? ''];
  if (!command || positionals.length > 1) {
    const what = positionals.length === 0 ? 'give a command' : `unknown command "${positionals.join(' ')}"`;
    throw new EvalError('INVALID_ARGUMENT', `${what}: one of ${Object.keys(COMMANDS).join(', ')}`);
  }
  backendName = (values.backend ?? 'auto') as 'auto' | BackendName;
  if (!['auto', 'wasm', 'cpu', 'webgpu'].includes(backendName))
    throw new EvalError('INVALID_ARGUMENT', `--backend must be auto, wasm, cpu or webgpu, got "${backendName}"`);
  const out: string[] = [];
  const figures: Record<string, unknown> = {};
  await command(values, out, figures);
  // --json: stdout holds exactly one JSON document (for pipes), the table goes to stderr.
  if (values.json) {
    process.stderr.write(`${out.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  } else process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

/** parseArgs' messages can run over several lines; a usage error is one line. */
const oneLine = (message: string): string => message.replace(/\s*\n\s*/g, ' ');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    // Usage errors (parseArgs' unknown or malformed options, and INVALID_ARGUMENT: a flag's value or a
    // missing one): one line naming the problem and pointing to --help, exit 2; anything else exits 1.
    if (e instanceof TypeError && err.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${BIN}: ${oneLine(err.message)} (see ${BIN} --help)\n`);
      process.exitCode = 2;
      return;
    }
    if (e instanceof EvalError && err.code === 'INVALID_ARGUMENT') {
      process.stderr.write(`${BIN}: ${err.code}: ${oneLine(err.message)} (see ${BIN} --help)\n`);
      process.exitCode = 2;
      return;
    }
    const known = e instanceof EvalError || (e instanceof Error && typeof err.code === 'string');
    // Node's own errors (ENOENT) already start with their code.
    const message = known && !err.message.startsWith(err.code!) ? `${err.code}: ${err.message}` : err.message;
    process.stderr.write(`${BIN}: ${known ? message : (err.stack ?? String(e))}\n`);
    process.exitCode = 1;
  },
);
