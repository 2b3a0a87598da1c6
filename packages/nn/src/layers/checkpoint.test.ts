import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parsePth } from '../pth.js';
import { openPthFile } from '../pth-node.js';
import { float32ToBfloat16Bits, parseSafetensors, serializeSafetensors, type SafetensorsTensor } from '../safetensors.js';
import { openSafetensorsFile, openShardedSafetensors } from '../safetensors-node.js';
import type { TensorSource } from '../tensor-source.js';
import { CheckpointInitializer, loadReferenceWeights } from './checkpoint.js';
import { NnError } from '../errors.js';
import { seededUniform } from './init.js';
import { Linear } from './linear.js';
import { ParameterRegistry, ParameterScope } from './parameters.js';
import { RMSNorm } from './rms-norm.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytelatent-ckpt-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Linear "proj" 3 → 2 (reference weight [2, 3], stored transposed) and RMSNorm "norm" of 3. */
function tiny(): { reg: ParameterRegistry; lin: Linear; norm: RMSNorm } {
  const reg = new ParameterRegistry();
  const scope = new ParameterScope(reg);
  return {
    reg,
    lin: new Linear(scope.child('proj'), 3, 2, { std: 0.1, random: seededUniform(1) }),
    norm: new RMSNorm(scope.child('norm'), 3),
  };
}

const weightsPth = fileURLToPath(new URL('../../test-data/pth/weights.pth', import.meta.url));
const W = [1, 2, 3, 4, 5, 6]; // proj.weight [out=2, in=3]
const N = [1, 0.5, 2];

async function expectLoaded(reg: ParameterRegistry, lin: Linear): Promise<void> {
  // x Wᵀ for x = [1, 0, -1]: rows of W are [1, 2, 3] and [4, 5, 6].
  expect(Array.from(await lin.apply(tf.tensor2d([[1, 0, -1]])).data())).toEqual([1 - 3, 4 - 6]);
  const byName = new Map(reg.list().map((p) => [p.name, p]));
  expect(Array.from(await byName.get('norm.weight')!.variable.data())).toEqual(N);
}

const tensors = (
  w: SafetensorsTensor = { dtype: 'F32', shape: [2, 3], data: Float32Array.from(W) },
): Record<string, SafetensorsTensor> => ({
  'proj.weight': w,
  'norm.weight': { dtype: 'F32', shape: [3], data: Float32Array.from(N) },
});

/** A source that logs every call, delegating to another. */
function logged(inner: TensorSource, log: string[]): TensorSource {
  return {
    description: inner.description,
    names: () => inner.names(),
    has: (n) => inner.has(n),
    info: (n) => inner.info(n),
    readBytes: (n, b, e) => {
      log.push(`read ${n}`);
      return inner.readBytes(n, b, e);
    },
  };
}

describe('loadReferenceWeights from any TensorSource', () => {
  it('a torch .pth (its "model" state dict; proj.weight a transposed bf16 view), in memory and on disk', async () => {
    for (const source of [parsePth(new Uint8Array(readFileSync(weightsPth))), openPthFile(weightsPth)]) {
      const { reg, lin } = tiny();
      expect(source.info('proj.weight')).toMatchObject({ dtype: 'BF16', shape: [2, 3] });
      loadReferenceWeights(reg, source);
      await expectLoaded(reg, lin);
      source.close();
      reg.dispose();
    }
  });

  it('a safetensors file opened for positioned reads', async () => {
    const path = join(dir, 'w.safetensors');
    await writeFile(
      path,
      serializeSafetensors(tensors({ dtype: 'BF16', shape: [2, 3], data: Uint16Array.from(W.map(float32ToBfloat16Bits)) })),
    );
    const { reg, lin } = tiny();
    const file = openSafetensorsFile(path);
    loadReferenceWeights(reg, file);
    file.close();
    await expectLoaded(reg, lin);
    reg.dispose();
  });

  it('sharded safetensors', async () => {
    const all = tensors();
    await writeFile(join(dir, 'a.safetensors'), serializeSafetensors({ 'proj.weight': all['proj.weight']! }));
    await writeFile(join(dir, 'b.safetensors'), serializeSafetensors({ 'norm.weight': all['norm.weight']! }));
    await writeFile(
      join(dir, 'index.json'),
      JSON.stringify({ weight_map: { 'proj.weight': 'a.safetensors', 'norm.weight': 'b.safetensors' } }),
    );
    const source = openShardedSafetensors(join(dir, 'index.json'));
    const { reg, lin } = tiny();
    loadReferenceWeights(reg, source);
    source.close();
    await expectLoaded(reg, lin);
    reg.dispose();
  });

  it('checks names, shapes and dtypes before reading anything', () => {
    const log: string[] = [];
    const file = parseSafetensors(
      serializeSafetensors({ ...tensors(), 'norm.weight': { dtype: 'F32', shape: [4], data: new Float32Array(4) } }),
    );
    const { reg } = tiny();
    expect(() => loadReferenceWeights(reg, logged(file, log))).toThrow(/"norm\.weight" has shape \[4\], expected \[3\]/);
    // The atomic pass read proj.weight to check its values; nothing was assigned.
    expect(log).toEqual(['read proj.weight']);
    log.length = 0;
    expect(() => loadReferenceWeights(reg, logged(file, log), { atomic: false })).toThrow(NnError);
    expect(log).toEqual([]);
    reg.dispose();
  });

  it('streams: atomic reads each tensor twice (check, then assign); atomic: false once, assigning as it goes', async () => {
    const file = parseSafetensors(serializeSafetensors(tensors()));
    const log: string[] = [];
    const { reg, lin } = tiny();
    loadReferenceWeights(reg, logged(file, log));
    expect(log).toEqual(['read proj.weight', 'read norm.weight', 'read proj.weight', 'read norm.weight']);
    await expectLoaded(reg, lin);
    reg.dispose();

    log.length = 0;
    const fresh = tiny();
    let projWhenNormRead: number[] = [];
    const watching: TensorSource = {
      ...logged(file, log),
      readBytes: (n, b, e) => {
        log.push(`read ${n}`);
        // proj.weight is already in the model when norm.weight is read: one tensor at a time.
        if (n === 'norm.weight') projWhenNormRead = Array.from(fresh.lin.weight.dataSync());
        return file.readBytes(n, b, e);
      },
    };
    loadReferenceWeights(fresh.reg, watching, { atomic: false });
    expect(log).toEqual(['read proj.weight', 'read norm.weight']);
    expect(projWhenNormRead).toEqual([1, 4, 2, 5, 3, 6]); // stored transposed, [in, out]
    await expectLoaded(fresh.reg, fresh.lin);
    fresh.reg.dispose();
  });

  it('a non-finite value: atomic changes nothing; atomic: false reports every bad tensor and how many were assigned', async () => {
    const bad = {
      ...tensors(),
      'norm.weight': { dtype: 'F32', shape: [3], data: Float32Array.of(1, Number.POSITIVE_INFINITY, 1) } as SafetensorsTensor,
    };
    const file = parseSafetensors(serializeSafetensors(bad));
    const { reg, lin } = tiny();
    const before = Array.from(await lin.weight.data());
    expect(() => loadReferenceWeights(reg, file)).toThrow(/"norm\.weight" holds a non-finite value \(Infinity\) at flat index 1/);
    expect(Array.from(await lin.weight.data())).toEqual(before);
    let error: NnError | undefined;
    try {
      loadReferenceWeights(reg, file, { atomic: false });
    } catch (e) {
      error = e as NnError;
    }
    expect(error?.code).toBe('INVALID_CHECKPOINT');
    expect(error?.message).toContain('"norm.weight" holds a non-finite value (Infinity) at flat index 1');
    expect(error?.message).toContain('1 of 2 parameters were assigned before the first bad value');
    expect(Array.from(await lin.weight.data())).toEqual([1, 4, 2, 5, 3, 6]);
    reg.dispose();
  });

  it('non-finite F16 and BF16 values are found from their bits', () => {
    for (const [dtype, bits] of [
      ['F16', 0x7e00],
      ['BF16', 0xff80],
    ] as const) {
      const file = parseSafetensors(
        serializeSafetensors({ ...tensors(), 'norm.weight': { dtype, shape: [3], data: Uint16Array.of(0x3c00, 0x3c00, bits) } }),
      );
      const { reg } = tiny();
      expect(() => loadReferenceWeights(reg, file), dtype).toThrow(
        new RegExp(`"norm\\.weight" holds a non-finite value \\((NaN|-Infinity)\\) at flat index 2`),
      );
      reg.dispose();
    }
  });
});

describe('CheckpointInitializer: a model built straight from a checkpoint', () => {
  function build(
    source: TensorSource,
    options: { strict?: boolean } = {},
  ): { init: CheckpointInitializer; reg: ParameterRegistry; lin: Linear } {
    const init = new CheckpointInitializer(source, options);
    const reg = new ParameterRegistry({ initialValues: init.initialValues });
    const scope = new ParameterScope(reg);
    // A random generator that fails if the module's initialisation is ever computed.
    const random = () => {
      throw new Error('the initialisation was computed');
    };
    const lin = new Linear(scope.child('proj'), 3, 2, { std: 0.1, random });
    new RMSNorm(scope.child('norm'), 3);
    return { init, reg, lin };
  }

  it('creates every weight from the file, reading each tensor once, without computing the initialisation', async () => {
    const log: string[] = [];
    const source = logged(parsePth(readFileSync(weightsPth)), log);
    const { init, reg, lin } = build(source);
    init.finish(reg);
    await expectLoaded(reg, lin);
    expect(log).toEqual(['read proj.weight', 'read norm.weight']);
    reg.dispose();
  });

  it('reports every problem at once: missing, unexpected, mis-shaped, non-float, non-finite', () => {
    const bad = parseSafetensors(
      serializeSafetensors({
        'proj.weight': { dtype: 'F32', shape: [2, 3], data: Float32Array.of(1, 2, Number.NaN, 4, 5, 6) },
        'norm.weight': { dtype: 'I32', shape: [3], data: Int32Array.of(1, 1, 1) },
        'extra.weight': { dtype: 'F32', shape: [1], data: Float32Array.of(0) },
      }),
    );
    const { init, reg } = build(bad);
    expect(() => init.finish(reg)).toThrow(NnError);
    let message = '';
    try {
      init.finish(reg);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('"proj.weight" holds a non-finite value (NaN) at flat index 2');
    expect(message).toContain('"norm.weight" has dtype I32, expected F32, F16 or BF16');
    expect(message).toContain('unexpected "extra.weight"');
    reg.dispose();
    const short = parseSafetensors(serializeSafetensors({ 'proj.weight': { dtype: 'F32', shape: [3, 2], data: new Float32Array(6) } }));
    const second = build(short, { strict: false });
    expect(() => second.init.finish(second.reg)).toThrow(
      /"proj.weight" has shape \[3, 2\], expected \[2, 3\][\s\S]*missing "norm.weight" \(expected shape \[3\]\)/,
    );
    second.reg.dispose();
  });
});
