// Hostile and corrupt BLT checkpoints, beyond what checkpoint.test.ts covers (missing,
// truncated, mis-shaped, NaN weights in the tfjs format): arguments or weight specs that claim a huge
// model are refused before anything of that size is allocated, and the safetensors form (the one the
// server loads) refuses every corruption with a typed error naming it.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseSafetensors, SafetensorsError } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BltArgs } from './blt-args.js';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer } from './blt-model.js';
import { fromBltArtifacts, loadBlt, saveBlt, toBltArtifacts } from './checkpoint.js';
import { BltError } from './index.js';
import { SMALL_ARGS } from './test-fixtures.js';

let tmp = '';
let model: ByteLatentTransformer;
let file: Uint8Array;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'blt-corrupt-'));
  model = new ByteLatentTransformer(SMALL_ARGS, 3);
  file = await model.toSafetensors();
});
afterAll(async () => {
  model.dispose();
  await rm(tmp, { recursive: true, force: true });
});

/** Loads a BLT safetensors file as the server does: arguments from the metadata. */
function loadSafetensors(bytes: Uint8Array): ByteLatentTransformer {
  const parsed = parseSafetensors(bytes);
  return ByteLatentTransformer.fromSafetensors(parsed, JSON.parse(parsed.metadata[BLT_ARGS_METADATA_KEY]!) as BltArgs);
}

function refusal(fn: () => unknown): Error {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    const m = fn() as { dispose?: () => void } | undefined;
    m?.dispose?.();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a refusal').toBeInstanceOf(Error);
  expect(tf.memory().numTensors, 'a refused checkpoint leaves no tensor behind').toBe(before);
  return caught as Error;
}

/** The file with its header rewritten by `edit` (data area unchanged). */
function rewrite(
  edit: (
    header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> & { __metadata__: Record<string, string> },
  ) => void,
): Uint8Array {
  const length = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + length)));
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + file.length - 8 - length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(file.subarray(8 + length), 8 + json.length);
  return out;
}

const withArgs = (patch: Partial<BltArgs>) =>
  rewrite((h) => {
    h.__metadata__[BLT_ARGS_METADATA_KEY] = JSON.stringify({ ...SMALL_ARGS, ...patch });
  });

describe('BLT checkpoints that claim a huge model', () => {
  const HUGE: ReadonlyArray<Partial<BltArgs>> = [
    { n_layers_global: 100_000 },
    { dim_global: 2 ** 16, n_heads_global: 2 ** 8 },
    { encoder_hash_byte_group_vocab: 2 ** 31 - 1 },
    { n_layers_local_encoder: 50_000, n_layers_local_decoder: 50_000 },
  ];

  it('safetensors: refused weight by weight before allocating, with INVALID_CHECKPOINT naming the weight', () => {
    const heap = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    for (const patch of HUGE) {
      const e = refusal(() => loadSafetensors(withArgs(patch)));
      expect(e, JSON.stringify(patch)).toBeInstanceOf(BltError);
      expect((e as BltError).code).toBe('INVALID_CHECKPOINT');
      expect(e.message).toMatch(/the BLT args describe a model far larger than its weights: parameter "[^"]+" of shape \[[\d, ]+\]/);
    }
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(64 << 20);
  });

  it('tfjs format: huge blt_args in model.json, and weight specs whose shapes overflow, are refused', async () => {
    const dir = join(tmp, 'hostile');
    await saveBlt(model, dir);
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    json.modelTopology.blt_args = { ...SMALL_ARGS, n_layers_global: 100_000 };
    await writeFile(join(dir, 'model.json'), JSON.stringify(json));
    let e = await loadBlt(dir).then(
      () => undefined,
      (err: unknown) => err as BltError,
    );
    expect(e).toBeInstanceOf(BltError);
    expect(e!.code).toBe('INVALID_CHECKPOINT');
    expect(e!.message).toContain('far larger than its weights');

    const a = await toBltArtifacts(model);
    const specs = a.weightSpecs!.map((s, i) => (i === 0 ? { ...s, shape: [2 ** 40, 2 ** 40] } : s));
    e = refusal(() => fromBltArtifacts({ ...a, weightSpecs: specs })) as BltError;
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/the weight data has \d+ bytes but the weight specs describe/);
    const unsafe = a.weightSpecs!.map((s, i) => (i === 0 ? { ...s, shape: [1e300] } : s));
    e = refusal(() => fromBltArtifacts({ ...a, weightSpecs: unsafe })) as BltError;
    expect(e.message).toMatch(/has an invalid shape \[1e\+300\]/);
  });

  it('a huge claimed context is no huge allocation: RoPE rows are computed as positions are used', async () => {
    const heap = process.memoryUsage().arrayBuffers;
    const m = loadSafetensors(withArgs({ max_seqlen: 2 ** 30, max_encoder_seq_length: 2 ** 30 }));
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(64 << 20);
    const logits = m.forward([[1, 72, 105, 2]], [[1, 3, 1]]);
    expect(logits.shape).toEqual([1, 4, 260]);
    expect((await logits.data()).every(Number.isFinite)).toBe(true);
    tf.dispose(logits);
    m.dispose();
  });
});

describe('BLT safetensors files (the server format): every corruption refused with its name', () => {
  it('truncated, bad header length, header garbage, overlapping offsets: SafetensorsError codes', () => {
    const headerLength = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
    const cases: Array<[Uint8Array, string]> = [
      [file.subarray(0, file.length - 1), 'TRUNCATED'],
      [file.subarray(0, 8 + headerLength - 1), 'TRUNCATED'],
      [
        (() => {
          const b = file.slice();
          new DataView(b.buffer).setBigUint64(0, 2n ** 53n, true);
          return b;
        })(),
        'HEADER_TOO_LARGE',
      ],
      [
        (() => {
          const b = file.slice();
          b.set(new TextEncoder().encode('{"x"::'), 8);
          return b;
        })(),
        'INVALID_HEADER',
      ],
      [
        rewrite((h) => {
          const [a, b] = Object.keys(h)
            .filter((k) => k !== '__metadata__')
            .sort((x, y) => h[x]!.data_offsets[0]! - h[y]!.data_offsets[0]!);
          h[b!]!.data_offsets = [h[b!]!.data_offsets[0]! - 4, h[b!]!.data_offsets[1]! - 4];
          void a;
        }),
        'OVERLAPPING_OFFSETS',
      ],
    ];
    for (const [bytes, code] of cases) {
      const e = refusal(() => loadSafetensors(bytes));
      expect(e, code).toBeInstanceOf(SafetensorsError);
      expect((e as SafetensorsError).code).toBe(code);
    }
  });

  it('dtype, shape, NaN/Inf and configuration mismatches: BltError listing every problem', () => {
    const names = parseSafetensors(file).names();
    const target = names.find((n) => n.endsWith('tok_embeddings.weight'))!;
    const e1 = refusal(() =>
      loadSafetensors(
        rewrite((h) => {
          h[target]!.dtype = 'I32';
          h[names[0]!]!.shape = [...h[names[0]!]!.shape].reverse();
        }),
      ),
    ) as BltError;
    expect(e1.code).toBe('INVALID_CHECKPOINT');
    expect(e1.message).toContain(`"${target}" has dtype I32, expected F32, F16 or BF16`);
    const parsed = parseSafetensors(file);
    const info = parsed.info(target);
    for (const [value, shown] of [
      [Number.NaN, 'NaN'],
      [Number.NEGATIVE_INFINITY, '-Infinity'],
    ] as const) {
      const bytes = file.slice();
      new DataView(bytes.buffer).setFloat32(info.byteOffset + 4 * 5, value, true);
      const e = refusal(() => loadSafetensors(bytes)) as BltError;
      expect(e.code).toBe('INVALID_CHECKPOINT');
      expect(e.message).toContain(`"${target}" holds a non-finite value (${shown}) at flat index 5`);
    }
    const e2 = refusal(() => loadSafetensors(withArgs({ dim_local_encoder: 32, dim_local_decoder: 32 }))) as BltError;
    expect(e2.code).toBe('INVALID_CHECKPOINT');
    expect(e2.message).toMatch(/"local_encoder\.tok_embeddings\.weight" has shape \[260, 16\], expected \[260, 32\]/);
    const e3 = refusal(() => loadSafetensors(withArgs({ cross_attn_encoder: false }))) as BltError;
    expect(e3.code).toBe('CONFIG_MISMATCH');
    expect(e3.message).toContain('cross_attn_encoder');
  });
});
