#!/usr/bin/env node
/**
 * `bytelatent-train`: prepare the corpus, train entropy models and BLTs (new, or fine-tuning a
 * released or exported one from a folder of any published layout), export a trained entropy model
 * as a ready-to-use patcher and a trained BLT as one file or a hub/transformers folder. Run
 * `bytelatent-train --help`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { TrainError } from './errors.js';
import { parseConfigFile } from './config-file.js';
import { PRESETS, type RunConfig } from './presets.js';
import { prepareCorpus } from './corpus.js';
import { resolveDataFiles } from './dataset.js';
import { buildTrainable, exportBlt, exportBltPretrained, exportPatcher, loadPretrainedStart, type PretrainedStart } from './run.js';
import { Trainer, type TrainerOptions } from './trainer.js';
import { ProgressBar, formatDuration, formatRate } from './progress.js';
import { runStudy } from './study.js';
import { DEFAULT_STUDY, QUICK_STUDY, STUDY_ARMS, type StudyArmId } from './study-plan.js';

// tfjs's console advice ("install tfjs-node") cannot be followed here and clutters the progress bar.
tf.env().set('PROD', true);

const BIN = 'bytelatent-train';

const USAGE = `usage: bytelatent-train [train] --preset NAME [options]
       bytelatent-train corpus [--corpus DIR]
       bytelatent-train export-patcher --run DIR --out FILE [--target-mean-patch 4.5]
       bytelatent-train export-blt --run DIR --out FILE
       bytelatent-train export-blt --run DIR --out DIR --layout hub|transformers [--dtype F32|BF16|F16]
       bytelatent-train study [--out DIR] [--docs DIR] [--arm ID]... [--quick]
       bytelatent-train --help | --version

Trains BLT entropy models and BLTs on text files with TensorFlow.js in Node, from scratch or from a
released (or exported) model (--init-from). Ctrl-C stops after the current step and saves a
checkpoint; --resume continues exactly where it stopped.

presets:
${Object.entries(PRESETS)
  .map(([k, v]) => `  ${k.padEnd(15)} ${v.description}`)
  .join('\n')}

train options (override the preset; --config FILE gives a JSON object with the same fields):
  --preset NAME           one of the presets above (default tiny)
  --init-from DIR         continue training a model of a published layout (a folder or http(s) URL:
                          consolidated params.json + consolidated.pth, hub config.json +
                          model.safetensors, transformers model_type "blt"): a BLT with its entropy
                          model and the folder's patching settings, or an entropy model; its
                          arguments replace the preset's model, the preset gives the rest
  --config FILE           JSON RunConfig (kind, model, patching, seqLen, batchSize, steps, lr, ...)
  --data PATH             training files: a file, a folder or a glob; repeatable
                          (default: the prepared corpus, <corpus>/train)
  --heldout PATH          evaluation files (default: <corpus>/heldout/books)
  --corpus DIR            corpus folder (default .cache/corpus, built on first use)
  --out DIR               run folder: checkpoint, metrics.jsonl, curve.svg (default runs/<preset>)
  --resume                continue from <out>/checkpoint.safetensors
  --steps N               total steps of the schedule
  --stop-after N          stop after N steps of this invocation (saves a checkpoint)
  --batch-size N          rows per micro-batch
  --grad-accumulation N   micro-batches per step
  --seq-len N             tokens per row
  --lr X                  peak learning rate
  --warmup-steps N        linear warm-up steps
  --weight-decay X        AdamW decoupled weight decay
  --clip-norm X           global gradient-norm clip (0: off)
  --seed N                data order and initialisation seed
  --eval-every N          held-out bits-per-byte every N steps
  --checkpoint-every N    checkpoint every N steps
  --entropy-model PATH    BLT: patch with this entropy model: a safetensors file, a folder of any
                          published layout, or a shipped one: "pretrained" (= "pretrained:small",
                          the demo BLT's) or "pretrained:fast"
  --patching MODE         BLT: entropy | monotonic | combined | space | static | byte
  --threshold X           BLT entropy patching threshold (nats)
  --patch-size K          BLT static patching: bytes per patch
  --max-patch-length N    BLT: split patches longer than N bytes
  --backend NAME          auto (default: fastest available) | wasm | cpu | webgpu
  --progress              the progress bar and checkpoint notes on stderr even when it is not a
                          terminal (a line every 10 s); on a terminal they are always shown
  --json                  print the summary as one JSON document, nothing else on stdout
                          (export-patcher and export-blt always do; corpus and study take no --json)
  -h, --help              this text
  --version               the name and version of this command

Exit status: 0 done, 1 error (data, checkpoint, model folder), 2 usage error, 130 interrupted.

export-blt: --out FILE writes one F16 safetensors file with blt_args metadata (apps/serve --blt,
bytelatent-eval --model); with --layout hub|transformers, --out DIR is a folder of that published
layout (the entropy model and the run's patching settings included) that loadPretrained, Meta's
reference and transformers read; --dtype F32 (default) | BF16 | F16.

study (BLT entropy/static/space patching, BPE and byte transformers at equal training FLOPs,
measured with @bytelatent/evals; finished runs are skipped, interrupted ones resume):
  --out DIR               run folders (default runs/study)
  --docs DIR              report: study.md, study-bpb-vs-flops.svg, study.json (default docs)
  --arm ID                train only this arm (repeatable): ${STUDY_ARMS.join(', ')}
  --budget FLOPS          training FLOPs per arm (default ${DEFAULT_STUDY.budgetFlops.toExponential(0)}); a new budget is a new study folder
  --seeds N,N,...         train every arm once per seed (default ${DEFAULT_STUDY.seeds.join(',')}); the report gives
                          mean ± standard deviation; runs of other seeds are kept
  --quick                 a tiny study (smoke test, seconds)`;

const OPTIONS = {
  preset: { type: 'string' },
  config: { type: 'string' },
  data: { type: 'string', multiple: true },
  heldout: { type: 'string', multiple: true },
  corpus: { type: 'string' },
  out: { type: 'string' },
  run: { type: 'string' },
  resume: { type: 'boolean' },
  steps: { type: 'string' },
  'stop-after': { type: 'string' },
  'batch-size': { type: 'string' },
  'grad-accumulation': { type: 'string' },
  'seq-len': { type: 'string' },
  lr: { type: 'string' },
  'warmup-steps': { type: 'string' },
  'weight-decay': { type: 'string' },
  'clip-norm': { type: 'string' },
  seed: { type: 'string' },
  'eval-every': { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'entropy-model': { type: 'string' },
  patching: { type: 'string' },
  threshold: { type: 'string' },
  'patch-size': { type: 'string' },
  'max-patch-length': { type: 'string' },
  'init-from': { type: 'string' },
  layout: { type: 'string' },
  dtype: { type: 'string' },
  'target-mean-patch': { type: 'string' },
  backend: { type: 'string' },
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
  docs: { type: 'string' },
  arm: { type: 'string', multiple: true },
  quick: { type: 'boolean' },
  budget: { type: 'string' },
  seeds: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

function version(): string {
  // Relative to this module, so it is right wherever the app is installed (dist/ sits beside package.json).
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** `--seeds 0,1,2`: distinct integers >= 0. */
function seedList(text: string): number[] {
  const seeds = text.split(',').map((x) => Number(x.trim()));
  if (seeds.length === 0 || seeds.some((x) => !Number.isInteger(x) || x < 0) || new Set(seeds).size !== seeds.length)
    throw new TrainError('INVALID_ARGUMENT', `--seeds must be distinct integers >= 0 separated by commas, got ${text}`);
  return seeds;
}

function numberFlag(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new TrainError('INVALID_ARGUMENT', `--${name} must be ${integer ? 'an integer' : 'a number'}, got "${value}"`);
  }
  return n;
}

/** The directory the user ran the command from (npm scripts change cwd to the package root). */
const userCwd = process.env['INIT_CWD'] ?? process.cwd();

/** A path the user gave, resolved against where they ran the command; URLs and "pretrained" as they are. */
function userPath(p: string): string {
  return p === 'pretrained' || /^https?:\/\//i.test(p) ? p : resolve(userCwd, p);
}

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
  const command = positionals[0] ?? 'train';
  if (positionals.length > 1 || !['train', 'corpus', 'export-patcher', 'export-blt', 'study'].includes(command)) {
    throw new TrainError(
      'INVALID_ARGUMENT',
      `unknown command "${positionals.join(' ')}": one of train, corpus, export-patcher, export-blt, study`,
    );
  }
  // Their stdout is a line of text (study) or nothing (corpus): --json would promise a document that never comes.
  if (values.json && (command === 'corpus' || command === 'study'))
    throw new TrainError('INVALID_ARGUMENT', `--json goes with train, export-patcher and export-blt, not ${command}`);
  const corpusDir = resolve(userCwd, values.corpus ?? '.cache/corpus');
  const backendName = (values.backend ?? 'auto') as 'auto' | BackendName;
  if (!['auto', 'wasm', 'cpu', 'webgpu'].includes(backendName))
    throw new TrainError('INVALID_ARGUMENT', `--backend must be auto, wasm, cpu or webgpu, got "${backendName}"`);

  if (command === 'corpus') {
    await ensureCorpus(corpusDir, true);
    return 0;
  }
  if (command === 'study') {
    const arms = values.arm as StudyArmId[] | undefined;
    const unknown = (arms ?? []).filter((a) => !(STUDY_ARMS as readonly string[]).includes(a));
    if (unknown.length > 0)
      throw new TrainError('INVALID_ARGUMENT', `--arm must be one of ${STUDY_ARMS.join(', ')}, got ${unknown.join(', ')}`);
    await ensureCorpus(corpusDir, false);
    const backend = await initBackend({ backend: backendName });
    process.stderr.write(`backend ${backend.name}\n`);
    const started = Date.now();
    const results = await runStudy({
      settings: {
        ...(values.quick ? QUICK_STUDY : DEFAULT_STUDY),
        ...(values.budget !== undefined ? { budgetFlops: numberFlag('budget', values.budget, false)! } : {}),
        ...(values.seeds !== undefined ? { seeds: seedList(values.seeds) } : {}),
      },
      outDir: resolve(userCwd, values.out ?? join('runs', 'study')),
      docsDir: resolve(userCwd, values.docs ?? 'docs'),
      corpusDir,
      ...(arms ? { arms } : {}),
      onLog: (m) => process.stderr.write(`${m}\n`),
    });
    process.stdout.write(
      `study: ${results.length} arms in the report, ${formatDuration((Date.now() - started) / 1000)}; ${join(resolve(userCwd, values.docs ?? 'docs'), 'study.md')}\n`,
    );
    return 0;
  }
  const backend = await initBackend({ backend: backendName });
  if (command === 'export-blt') {
    if (!values.run || !values.out)
      throw new TrainError('INVALID_ARGUMENT', 'export-blt needs --run DIR and --out FILE (or --out DIR with --layout)');
    if (values.layout === undefined) {
      if (values.dtype !== undefined)
        throw new TrainError('INVALID_ARGUMENT', '--dtype goes with --layout hub|transformers (the single-file export is F16)');
      process.stdout.write(`${JSON.stringify(await exportBlt(resolve(userCwd, values.run), resolve(userCwd, values.out)))}\n`);
      return 0;
    }
    if (values.layout !== 'hub' && values.layout !== 'transformers')
      throw new TrainError('INVALID_ARGUMENT', `--layout must be hub or transformers, got "${values.layout}"`);
    const dtype = values.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16')
      throw new TrainError('INVALID_ARGUMENT', `--dtype must be F32, BF16 or F16, got "${dtype}"`);
    const exported = await exportBltPretrained(resolve(userCwd, values.run), resolve(userCwd, values.out), {
      layout: values.layout,
      dtype,
    });
    for (const w of exported.warnings)
      process.stderr.write(`warning: Hugging Face's BLT port would not run this model as the reference does: ${w}\n`);
    process.stdout.write(`${JSON.stringify(exported)}\n`);
    return 0;
  }
  if (values.layout !== undefined || values.dtype !== undefined)
    throw new TrainError('INVALID_ARGUMENT', '--layout and --dtype go with export-blt');
  if (command === 'export-patcher') {
    if (!values.run || !values.out) throw new TrainError('INVALID_ARGUMENT', 'export-patcher needs --run DIR and --out FILE');
    await ensureCorpus(corpusDir, false);
    const heldout = resolveDataFiles(values.heldout ?? [join(corpusDir, 'heldout', 'books')]);
    const result = await exportPatcher({
      runDir: resolve(userCwd, values.run),
      outFile: resolve(userCwd, values.out),
      calibrationFiles: heldout,
      targetMeanPatch: numberFlag('target-mean-patch', values['target-mean-patch'], false) ?? 4.5,
      onLog: (m) => process.stderr.write(`${m}\n`),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }

  const presetName = values.preset ?? 'tiny';
  const preset = PRESETS[presetName];
  if (!preset) throw new TrainError('INVALID_ARGUMENT', `unknown preset "${presetName}" (${Object.keys(PRESETS).join(', ')})`);
  const { description: _d, ...base } = preset;
  let config: RunConfig = base;
  if (values.config) {
    let text: string;
    try {
      text = readFileSync(resolve(userCwd, values.config), 'utf8');
    } catch (e) {
      throw new TrainError('CONFIG_INVALID', `cannot read --config ${values.config}: ${(e as Error).message}`);
    }
    try {
      config = { ...config, ...parseConfigFile(text, `--config ${values.config}`) };
    } catch (e) {
      // Settings the file gets wrong are a usage error (exit 2), as a wrong flag is.
      throw new TrainError('INVALID_ARGUMENT', (e as Error).message);
    }
  }
  const int = (flag: string) => numberFlag(flag, values[flag as keyof typeof values] as string | undefined, true);
  const num = (flag: string) => numberFlag(flag, values[flag as keyof typeof values] as string | undefined, false);
  const override: Partial<Record<keyof RunConfig, number | undefined>> = {
    steps: int('steps'),
    batchSize: int('batch-size'),
    gradAccumulation: int('grad-accumulation'),
    seqLen: int('seq-len'),
    lr: num('lr'),
    warmupSteps: int('warmup-steps'),
    weightDecay: num('weight-decay'),
    clipNorm: num('clip-norm'),
    seed: int('seed'),
    evalEvery: int('eval-every'),
    checkpointEvery: int('checkpoint-every'),
  };
  config = { ...config, ...Object.fromEntries(Object.entries(override).filter(([, v]) => v !== undefined)) };
  // --init-from: the folder's model (its arguments and weights) and, for a BLT, its patching settings.
  let start: PretrainedStart | undefined;
  if (values['init-from'] !== undefined) {
    const where = userPath(values['init-from']);
    process.stderr.write(`loading ${where} ...\n`);
    start = await loadPretrainedStart(where, values['entropy-model'] ? { entropyModel: userPath(values['entropy-model']) } : {});
    const { patching: _p, ...rest } = config;
    config = { ...rest, kind: start.kind, model: start.args, ...(start.patching ? { patching: start.patching } : {}) };
    const limit =
      start.blt !== undefined ? Math.min(start.blt.args.encoder.maxSeqLen, start.blt.args.global.maxSeqLen) : start.entropy!.maxSeqLen;
    if (config.seqLen > limit) {
      throw new TrainError(
        'INVALID_ARGUMENT',
        `--seq-len ${config.seqLen} is longer than the ${start.kind} model of ${where} reads (${limit}); give --seq-len ${limit} or less`,
      );
    }
  }
  if (config.kind === 'blt') {
    const modes = ['entropy', 'monotonic', 'combined', 'space', 'static', 'byte'];
    const mode = (values.patching ?? config.patching?.mode ?? 'entropy') as NonNullable<RunConfig['patching']>['mode'];
    if (!modes.includes(mode)) throw new TrainError('INVALID_ARGUMENT', `--patching must be one of ${modes.join(', ')}, got "${mode}"`);
    config = {
      ...config,
      patching: {
        ...config.patching,
        mode,
        ...(values['entropy-model'] ? { entropyModel: userPath(values['entropy-model']) } : {}),
        ...(values.threshold !== undefined ? { threshold: num('threshold')! } : {}),
        ...(values['patch-size'] !== undefined ? { patchSize: int('patch-size')! } : {}),
        ...(values['max-patch-length'] !== undefined ? { maxPatchLength: int('max-patch-length')! } : {}),
      },
    };
  }

  const usesCorpus = !values.data || !values.heldout;
  if (usesCorpus) await ensureCorpus(corpusDir, false);
  const trainFiles = resolveDataFiles((values.data ?? [join(corpusDir, 'train')]).map((p) => resolve(userCwd, p)));
  const heldoutFiles = resolveDataFiles((values.heldout ?? [join(corpusDir, 'heldout', 'books')]).map((p) => resolve(userCwd, p)));
  const outDir = resolve(userCwd, values.out ?? join('runs', presetName));
  const cacheDir = join(corpusDir, '..', 'patch-cache');

  const trainable = await buildTrainable(config, { cacheDir, ...(start ? { start } : {}) });
  const { kind: _kind, model: _model, patching: _patching, ...hyperparameters } = config;
  const options: TrainerOptions = {
    ...hyperparameters,
    outDir,
    trainFiles,
    heldoutFiles,
    ...(values['stop-after'] !== undefined ? { stopAfter: int('stop-after')! } : {}),
  };
  const bar = new ProgressBar(process.stderr, 10_000, values.progress === true);
  let lastLoss = NaN;
  const initFrom = start ? { initFrom: { location: start.location, layout: start.layout } } : {};
  const trainer = new Trainer(
    trainable,
    options,
    { kind: config.kind, model: config.model, patching: config.patching ?? null, ...initFrom },
    {
      onStep: (r, total) => {
        lastLoss = r.loss;
        const eta = ((total - r.step) * r.elapsedSec) / Math.max(1, r.step - startStep);
        bar.update(r.step, total, { loss: r.loss.toFixed(3), 'B/s': formatRate(r.bytesPerSec), lr: r.lr.toExponential(1) }, eta);
      },
      onEval: (r) => bar.log(`step ${r.step}: held-out ${r.bpb.toFixed(3)} bits/byte over ${r.bytes} bytes`),
      onCheckpoint: (step, path) => bar.note(`step ${step}: checkpoint ${path}`),
      onLog: (m) => bar.log(m),
    },
  );
  let startStep = 0;
  if (start) {
    const p = config.patching;
    bar.log(
      `initialised from ${start.location} (${start.layout} layout)` +
        (p
          ? `; patching ${p.mode}${p.threshold !== undefined ? `, threshold ${p.threshold}` : ''}${p.maxPatchLength !== undefined ? `, max patch length ${p.maxPatchLength}` : ''}`
          : ''),
    );
  }
  bar.log(
    `${config.kind} model, ${trainable.registry.count().toLocaleString('en-US')} parameters, backend ${backend.name}; ` +
      `${trainFiles.length} training files (${(trainer.dataset.totalBytes / 1e6).toFixed(1)} MB), ${heldoutFiles.length} held-out; run folder ${outDir}`,
  );
  let interrupts = 0;
  const onSigint = () => {
    interrupts += 1;
    if (interrupts > 1) {
      bar.log('second interrupt: exiting now (the last checkpoint is intact)');
      process.exit(130);
    }
    bar.log('interrupt: finishing this step, then saving a checkpoint (Ctrl-C again to quit at once)');
    trainer.requestStop();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    if (values.resume) startStep = (await import('./checkpoint.js').then((m) => m.readCheckpoint(trainer.checkpointPath))).state.step;
    const summary = await trainer.run(Boolean(values.resume));
    bar.done();
    const line = {
      ...summary,
      preset: presetName,
      backend: backend.name,
      parameters: trainable.registry.count(),
      lastLoss: summary.lastLoss ?? lastLoss,
      ...initFrom,
    };
    if (values.json) process.stdout.write(`${JSON.stringify(line)}\n`);
    else {
      process.stdout.write(
        `${summary.stoppedEarly ? 'stopped' : 'finished'} at step ${summary.endStep}/${config.steps}` +
          (summary.lastEvalBpb !== undefined ? `, held-out ${summary.lastEvalBpb.toFixed(3)} bits/byte` : '') +
          `, ${formatRate(summary.trainBytesPerSec)} bytes/s; checkpoint ${summary.checkpoint}` +
          (summary.stoppedEarly ? `\nresume with the same command and --resume` : '') +
          '\n',
      );
    }
    return summary.stoppedEarly && interrupts > 0 ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    trainer.dispose();
    trainable.dispose();
  }
}

async function ensureCorpus(dir: string, force: boolean): Promise<void> {
  if (!force && existsSync(join(dir, 'manifest.json'))) return;
  process.stderr.write(`preparing the corpus in ${dir} ...\n`);
  const started = Date.now();
  const manifest = await prepareCorpus({
    outDir: dir,
    onProgress: (done, total) => {
      if (done === total || done % 100 === 0) process.stderr.write(`  ${done}/${total} files\n`);
    },
  });
  process.stderr.write(
    `corpus ready: ${(manifest.trainBytes / 1e6).toFixed(1)} MB training, ${(manifest.heldoutBytes / 1e6).toFixed(1)} MB held out, ` +
      `${manifest.files.length} files in ${formatDuration((Date.now() - started) / 1000)}` +
      (manifest.missing.length ? ` (missing sources: ${manifest.missing.join(', ')})` : '') +
      '\n',
  );
}

/** parseArgs' messages can run over several lines; a usage error is one line. */
const oneLine = (message: string): string => message.replace(/\s*\n\s*/g, ' ');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Error & { code?: unknown };
    // Usage errors (parseArgs' unknown or malformed options, and INVALID_ARGUMENT: a flag's value, a
    // missing or misplaced flag): one line naming the problem and pointing to --help, exit 2.
    if (
      (e instanceof TypeError && typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) ||
      (e instanceof TrainError && e.code === 'INVALID_ARGUMENT')
    ) {
      process.stderr.write(`${BIN}: ${oneLine(err.message)} (see ${BIN} --help)\n`);
      process.exit(2);
    }
    // Anything else (a file that cannot be read, a bad checkpoint or model folder) is a failure: exit 1.
    if (e instanceof Error && typeof err.code === 'string') {
      // Node's own errors (ENOENT) already start with their code.
      process.stderr.write(`${BIN}: ${err.message.startsWith(err.code) ? '' : `${err.code}: `}${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
