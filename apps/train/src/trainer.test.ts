import { readFileSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors } from '@bytelatent/nn';
import { spawnSync } from 'node:child_process';
import { resolveDataFiles } from './dataset.js';
import { EntropyTrainable } from './models.js';
import type { MetricsRecord } from './metrics.js';
import { Trainer, CHECKPOINT_FILE, METRICS_FILE, CURVE_FILE, removeStaleTemporaryFiles } from './trainer.js';
import { makeTextFolder, TINY_ENTROPY_ARGS, trainerOptions } from './test-helpers.js';
import { TrainError } from './errors.js';

const folder = makeTextFolder();
const files = { train: resolveDataFiles([folder.train]), heldout: resolveDataFiles([folder.heldout]) };
const runConfig = { kind: 'entropy', model: TINY_ENTROPY_ARGS, patching: null };

async function train(outDir: string, resume: boolean, overrides: Parameters<typeof trainerOptions>[2] = {}) {
  const model = EntropyTrainable.create(TINY_ENTROPY_ARGS, 5);
  const trainer = new Trainer(model, trainerOptions(outDir, files, overrides), runConfig);
  try {
    return await trainer.run(resume);
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

function metrics(outDir: string): MetricsRecord[] {
  return readFileSync(join(outDir, METRICS_FILE), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsRecord);
}

const tmp = () => mkdtempSync(join(tmpdir(), 'bytelatent-run-'));

describe('Trainer', () => {
  it('trains: the loss falls, metrics, checkpoint and curve are written', async () => {
    const out = tmp();
    const summary = await train(out, false, { steps: 12, lr: 3e-2 });
    expect(summary.endStep).toBe(12);
    expect(summary.stoppedEarly).toBe(false);
    const recs = metrics(out);
    const losses = recs.filter((r) => r.type === 'train').map((r) => (r as { loss: number }).loss);
    expect(losses).toHaveLength(12);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! - 0.5);
    expect(recs.filter((r) => r.type === 'eval').map((r) => r.step)).toEqual([2, 4, 6, 8, 10, 12]);
    expect(summary.lastEvalBpb).toBeGreaterThan(0);
    expect(readFileSync(join(out, CURVE_FILE), 'utf8')).toMatch(/^<svg[\s\S]*<path[\s\S]*<\/svg>/);
  });

  it('resumed after an interruption, computes exactly what the uninterrupted run computes', async () => {
    const straight = tmp();
    await train(straight, false);
    const split = tmp();
    const first = await train(split, false, { stopAfter: 3 });
    expect(first.endStep).toBe(3);
    expect(first.stoppedEarly).toBe(true);
    const second = await train(split, true);
    expect(second.startStep).toBe(3);
    expect(second.endStep).toBe(6);
    const strip = (rs: MetricsRecord[]) => rs.map((r) => (r.type === 'train' ? [r.step, r.loss, r.gradNorm, r.lr] : [r.step, r.bpb]));
    expect(strip(metrics(split))).toEqual(strip(metrics(straight)));
    const a = parseSafetensors(readFileSync(join(straight, CHECKPOINT_FILE)));
    const b = parseSafetensors(readFileSync(join(split, CHECKPOINT_FILE)));
    expect(b.names()).toEqual(a.names());
    for (const name of a.names()) expect(Buffer.from(b.get(name).data.buffer).equals(Buffer.from(a.get(name).data.buffer))).toBe(true);
  });

  it('drops metrics written after the checkpoint it resumes from', async () => {
    const out = tmp();
    await train(out, false, { stopAfter: 4, checkpointEvery: 2 });
    // Simulate a crash between step 4's metrics and its checkpoint: put the step-2 checkpoint back.
    const two = tmp();
    await train(two, false, { stopAfter: 2 });
    writeFileSync(join(out, CHECKPOINT_FILE), readFileSync(join(two, CHECKPOINT_FILE)));
    writeFileSync(join(out, METRICS_FILE), readFileSync(join(out, METRICS_FILE), 'utf8') + '{"type":"train","step":5,"lo');
    await train(out, true, { stopAfter: 1 });
    expect(metrics(out).map((r) => r.step)).toEqual([1, 2, 2, 3]);
  });

  it('leaks no tensor per step', async () => {
    const out = tmp();
    const model = EntropyTrainable.create(TINY_ENTROPY_ARGS, 5);
    const trainer = new Trainer(
      model,
      trainerOptions(out, files, { steps: 40, stopAfter: 2, evalEvery: 1, checkpointEvery: 1 }),
      runConfig,
    );
    await trainer.run(false);
    const before = tf.memory().numTensors;
    await trainer.run(true);
    await trainer.run(true);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    model.dispose();
  });

  it('stops on request after the current step, with a checkpoint', async () => {
    const out = tmp();
    const model = EntropyTrainable.create(TINY_ENTROPY_ARGS, 5);
    const trainer = new Trainer(model, trainerOptions(out, files, { checkpointEvery: 0, evalEvery: 0 }), runConfig, {
      onStep: (r) => {
        if (r.step === 2) trainer.requestStop();
      },
    });
    const summary = await trainer.run(false);
    expect(summary.endStep).toBe(2);
    expect(existsSync(join(out, CHECKPOINT_FILE))).toBe(true);
    trainer.dispose();
    model.dispose();
  });

  it('refuses to resume with a configuration that changes the results, naming the fields', async () => {
    const out = tmp();
    await train(out, false, { stopAfter: 1 });
    await expect(train(out, true, { lr: 0.5, seed: 9 })).rejects.toThrow(/seed: checkpoint 3, now 9[\s\S]*lr: checkpoint 0.01, now 0.5/);
  });

  it('names a corrupt or missing checkpoint', async () => {
    const out = tmp();
    await expect(train(out, true)).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID' });
    await train(out, false, { stopAfter: 1 });
    const path = join(out, CHECKPOINT_FILE);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 10));
    await expect(train(out, true)).rejects.toThrow(TrainError);
    await expect(train(out, true)).rejects.toThrow(/corrupt/);
  });

  it('refuses a checkpoint whose state, optimizer moments or weights are garbage, naming the problem', async () => {
    const out = tmp();
    await train(out, false, { stopAfter: 2 });
    const path = join(out, CHECKPOINT_FILE);
    const good = parseSafetensors(new Uint8Array(readFileSync(path)));
    const tensors = new Map(good.names().map((n) => [n, { ...good.get(n), data: good.get(n).data.slice() }] as const));
    const state = JSON.parse(good.metadata['train_state']!) as Record<string, unknown>;
    const write = (meta: unknown, edit?: (t: typeof tensors) => void) => {
      const copy = new Map([...tensors].map(([n, t]) => [n, { ...t, data: t.data.slice() }] as const));
      edit?.(copy);
      writeFileSync(path, serializeSafetensors(copy, { train_state: typeof meta === 'string' ? meta : JSON.stringify(meta) }));
    };
    const cases: Array<[unknown, RegExp, ((t: typeof tensors) => void)?]> = [
      ['null', /is not a bytelatent-train-checkpoint v1 file/],
      ['[1,2]', /is not a bytelatent-train-checkpoint v1 file/],
      [{ ...state, step: -3 }, /step must be an integer >= 0, got -3/],
      [{ ...state, kind: 'gpt' }, /kind must be "entropy", "blt" or "token", got "gpt"/],
      [{ ...state, config: null }, /config must be an object, got null/],
      [
        state,
        /optimizer\.m\.tok_embeddings\.weight holds NaN at flat index 3: optimizer moments must be finite/,
        (t) => ((t.get('optimizer.m.tok_embeddings.weight')!.data as Float32Array)[3] = Number.NaN),
      ],
      [
        state,
        /optimizer\.v\.norm\.weight holds -1 at flat index 0: optimizer moments must be finite and >= 0/,
        (t) => ((t.get('optimizer.v.norm.weight')!.data as Float32Array)[0] = -1),
      ],
    ];
    for (const [meta, message, edit] of cases) {
      write(meta, edit);
      const e = await train(out, true).then(
        () => undefined,
        (err: unknown) => err as TrainError,
      );
      expect(e, String(message)).toBeInstanceOf(TrainError);
      expect(e!.code).toBe('CHECKPOINT_INVALID');
      expect(e!.message).toMatch(message);
    }
    // Non-finite weights are named too (as weights that do not fit).
    write(state, (t) => ((t.get('model.norm.weight')!.data as Float32Array)[1] = Number.POSITIVE_INFINITY));
    await expect(train(out, true)).rejects.toMatchObject({
      code: 'CHECKPOINT_MISMATCH',
      message: expect.stringContaining('"model.norm.weight" holds a non-finite value (Infinity) at flat index 1'),
    });
    // The untouched file still resumes.
    write(state);
    await expect(train(out, true, { stopAfter: 1 })).resolves.toMatchObject({ startStep: 2, endStep: 3 });
  });

  it('removes temporary files that a killed process left, keeps those of a live one', async () => {
    const out = tmp();
    await train(out, false, { stopAfter: 1 });
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
    const names = [
      `${CHECKPOINT_FILE}.tmp-${dead}-0a1b2c`,
      `${METRICS_FILE}.tmp-${process.pid}-ffee01`,
      `config.json.tmp-${process.ppid}-abcdef`,
    ];
    for (const n of names) writeFileSync(join(out, n), 'partial');
    expect(await removeStaleTemporaryFiles(out)).toEqual([names[0]]);
    // This process and its parent are alive: their files may be writes in progress.
    expect(existsSync(join(out, names[1]!))).toBe(true);
    expect(existsSync(join(out, names[2]!))).toBe(true);
    expect(existsSync(join(out, names[0]!))).toBe(false);
    expect(existsSync(join(out, CHECKPOINT_FILE))).toBe(true);
  });
});
