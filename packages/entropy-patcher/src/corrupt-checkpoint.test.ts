// Corrupt and hostile checkpoints: every corruption of the shipped model file is refused with
// a PatcherError whose code and message name the problem, and arguments claiming a huge model are
// refused before anything of that size is allocated.
import { initBackend } from '@bytelatent/nn';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { PatcherError, type PatcherErrorCode } from './errors.js';
import { ARGS_METADATA_KEY, EntropyPatcher, PATCHER_METADATA_KEY } from './patcher.js';

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
type Header = Record<string, Entry> & { __metadata__?: Record<string, string> };

let original: Uint8Array;
let header: Header;
let data: Uint8Array;

/** A file with this header (object or raw JSON text) and data area. */
function craft(h: Header | string, body: Uint8Array = data, declaredLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof h === 'string' ? h : JSON.stringify(h));
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const clone = (): Header => JSON.parse(JSON.stringify(header)) as Header;
const tensorNames = (): string[] => Object.keys(header).filter((k) => k !== '__metadata__');
/** The tensor whose data starts first, and the next one. */
const byOffset = (): string[] => tensorNames().sort((a, b) => header[a]!.data_offsets[0] - header[b]!.data_offsets[0]);

async function refusal(bytes: Uint8Array): Promise<PatcherError> {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    (await EntropyPatcher.fromSafetensors(bytes)).dispose();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected the file to be refused').toBeInstanceOf(PatcherError);
  // A refused file leaves no tensor behind.
  expect(tf.memory().numTensors).toBe(before);
  return caught as PatcherError;
}

async function expectRefused(bytes: Uint8Array, code: PatcherErrorCode, ...fragments: (string | RegExp)[]): Promise<void> {
  const e = await refusal(bytes);
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toMatch(f);
}

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  // A plain copy: Node hands out a Buffer, whose slice() is a view, not a copy.
  original = new Uint8Array(await EntropyPatcher.pretrainedBytes('small'));
  const length = Number(new DataView(original.buffer, original.byteOffset, 8).getBigUint64(0, true));
  header = JSON.parse(new TextDecoder().decode(original.subarray(8, 8 + length))) as Header;
  data = original.slice(8 + length);
  // The helpers rebuild the original exactly when nothing is changed.
  (await EntropyPatcher.fromSafetensors(craft(clone()))).dispose();
});

describe('corrupt entropy model files are refused with a typed error naming the problem', () => {
  it('truncated anywhere: in the length, in the header, in the data, by one byte', async () => {
    const headerEnd = original.length - data.length;
    for (const at of [0, 5, 8, 100, headerEnd - 1, headerEnd, headerEnd + 3, Math.floor(original.length / 2), original.length - 1]) {
      const e = await refusal(original.subarray(0, at));
      expect(e.code, `cut at ${at}`).toBe('INVALID_CHECKPOINT');
      expect(e.message, `cut at ${at}`).toMatch(/\((TRUNCATED|INVALID_HEADER)\)/);
    }
    await expectRefused(original.subarray(0, original.length - 1), 'INVALID_CHECKPOINT', /\(TRUNCATED\)/, /declares \d+/);
  });

  it('a wrong header length: too long, too short, 2^53 (never allocated)', async () => {
    const length = BigInt(original.length - data.length - 8);
    await expectRefused(craft(clone(), data, length + 8n), 'INVALID_CHECKPOINT', /\((INVALID_HEADER|INVALID_OFFSETS)\)/);
    await expectRefused(craft(clone(), data, length - 8n), 'INVALID_CHECKPOINT', /\(INVALID_HEADER\)/, /JSON/);
    const heap = process.memoryUsage().arrayBuffers;
    await expectRefused(craft(clone(), data, 2n ** 53n), 'INVALID_CHECKPOINT', /\(HEADER_TOO_LARGE\)/, /9007199254740992/);
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(8 << 20);
  });

  it('JSON header garbage: not JSON, not an object, entries that are not tensors', async () => {
    const text = JSON.stringify(clone());
    await expectRefused(craft(`${text.slice(0, 40)}\u0000garbage${text.slice(48)}`), 'INVALID_CHECKPOINT', /\(INVALID_HEADER\)/);
    await expectRefused(craft('[1,2,3]'), 'INVALID_CHECKPOINT', /\(INVALID_HEADER\)/);
    const h = clone();
    (h as Record<string, unknown>)[byOffset()[0]!] = 'weights';
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(INVALID_HEADER\)/, new RegExp(`tensor "${byOffset()[0]}"`));
  });

  it('offsets out of range, reversed, leaving a gap, or overlapping', async () => {
    const [first, second] = byOffset() as [string, string];
    const last = byOffset().at(-1)!;
    const lastName = new RegExp(`"${last.replace(/\./g, '\\.')}"`);
    // Past the end of the data area (shape and span agree, the file is too short).
    let h = clone();
    const elements = h[last]!.shape.reduce((a, b) => a * b, 1);
    h[last]!.shape = [elements + 1];
    h[last]!.data_offsets = [h[last]!.data_offsets[0], h[last]!.data_offsets[1] + 4];
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(TRUNCATED\)/, /declares \d+/, lastName);
    // A span that does not match the shape.
    h = clone();
    h[last]!.data_offsets = [h[last]!.data_offsets[0], h[last]!.data_offsets[1] + 4];
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(SIZE_MISMATCH\)/, lastName);
    h = clone();
    h[first]!.data_offsets = [h[first]!.data_offsets[1], h[first]!.data_offsets[0]];
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(INVALID_OFFSETS\)/, /is after end/);
    h = clone();
    h[second]!.data_offsets = [h[second]!.data_offsets[0] - 4, h[second]!.data_offsets[1] - 4];
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(OVERLAPPING_OFFSETS\)/, new RegExp(`inside "${first.replace(/\./g, '\\.')}"`));
    h = clone();
    h[first]!.data_offsets = [2 ** 60, 2 ** 60 + 4];
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(INVALID_OFFSETS|SIZE_MISMATCH\)/);
  });

  it('dtype and shape mismatches: against the byte span, and against the model', async () => {
    const [first] = byOffset() as [string];
    let h = clone();
    h[first]!.dtype = 'F16'; // half the bytes the span holds
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(SIZE_MISMATCH\)/, /needs \d+ bytes/);
    h = clone();
    h[first]!.dtype = 'I32'; // same size, wrong kind
    await expectRefused(
      craft(h),
      'INVALID_CHECKPOINT',
      new RegExp(`"${first.replace(/\./g, '\\.')}" has dtype I32, expected F32, F16 or BF16`),
    );
    h = clone();
    h['tok_embeddings.weight']!.shape = [...h['tok_embeddings.weight']!.shape].reverse(); // same element count, transposed
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', '"tok_embeddings.weight" has shape [128, 260], expected [260, 128]');
    h = clone();
    h[first]!.dtype = 'F8_E4M3';
    await expectRefused(craft(h), 'INVALID_CHECKPOINT', /\(INVALID_DTYPE\)/, /F8_E4M3/);
  });

  it('NaN and Inf weights, naming the tensor and the index', async () => {
    const [first] = byOffset() as [string];
    for (const [value, shown] of [
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      [Number.NEGATIVE_INFINITY, '-Infinity'],
    ] as const) {
      const body = data.slice();
      new DataView(body.buffer, body.byteOffset).setFloat32(header[first]!.data_offsets[0] + 4 * 7, value, true);
      await expectRefused(craft(clone(), body), 'INVALID_CHECKPOINT', `"${first}" holds a non-finite value (${shown}) at flat index 7`);
    }
  });

  it('wrong config: arguments that do not fit the weights, invalid arguments or defaults', async () => {
    const withArgs = (patch: Record<string, unknown> | string, key = ARGS_METADATA_KEY): Uint8Array => {
      const h = clone();
      const current = JSON.parse(h.__metadata__![key] ?? '{}') as Record<string, unknown>;
      h.__metadata__ = { ...h.__metadata__, [key]: typeof patch === 'string' ? patch : JSON.stringify({ ...current, ...patch }) };
      return craft(h);
    };
    // Fewer layers than the file has: unexpected weights, listed.
    await expectRefused(withArgs({ n_layers: 1 }), 'INVALID_CHECKPOINT', /unexpected "layers\.1\./);
    // A different width: every mis-shaped weight listed at once.
    await expectRefused(
      withArgs({ dim: 64 }),
      'INVALID_CHECKPOINT',
      /"tok_embeddings.weight" has shape \[260, 128\], expected \[260, 64\]/,
      /problem\(s\)/,
    );
    await expectRefused(withArgs({ n_heads: 0 }), 'CONFIG_MISMATCH', /n_heads must be an integer >= 1, got 0/);
    await expectRefused(withArgs({ attn_bias_type: 'sparse' }), 'CONFIG_MISMATCH', /attn_bias_type/);
    await expectRefused(withArgs('{"dim": 12'), 'INVALID_CHECKPOINT', /"entropy_model_args" is not valid JSON/);
    await expectRefused(withArgs('null'), 'CONFIG_MISMATCH', /"entropy_model_args" must be a JSON object, got null/);
    await expectRefused(withArgs({ mode: 'chaos' }, PATCHER_METADATA_KEY), 'CONFIG_MISMATCH', /"patcher_defaults": mode must be one of/);
    await expectRefused(
      withArgs({ threshold: 'high' }, PATCHER_METADATA_KEY),
      'CONFIG_MISMATCH',
      /threshold must be a finite number, got "high"/,
    );
    await expectRefused(withArgs({ maxPatchLength: 0 }, PATCHER_METADATA_KEY), 'CONFIG_MISMATCH', /maxPatchLength must be an integer >= 1/);
  });

  it('arguments claiming a huge model are refused before allocating it', async () => {
    const hostile = (patch: Record<string, unknown>): Uint8Array => {
      const h = clone();
      const args = JSON.parse(h.__metadata__![ARGS_METADATA_KEY]!) as Record<string, unknown>;
      h.__metadata__ = { ...h.__metadata__, [ARGS_METADATA_KEY]: JSON.stringify({ ...args, ...patch }) };
      return craft(h);
    };
    const heap = process.memoryUsage();
    const t0 = performance.now();
    // 10^5 layers; a 2^20-wide model (a 260 x 2^20 embedding alone is 1 GiB); 2^30 vocabulary rows.
    for (const patch of [{ n_layers: 100_000 }, { dim: 2 ** 20, n_heads: 2 ** 12 }, { vocab_size: 2 ** 30 }]) {
      await expectRefused(hostile(patch), 'INVALID_CHECKPOINT', /far larger than its weights/, /more than the limit of \d+/);
    }
    expect(performance.now() - t0).toBeLessThan(20_000);
    const after = process.memoryUsage();
    expect(after.arrayBuffers - heap.arrayBuffers).toBeLessThan(64 << 20);
    // A huge claimed context is not a huge allocation either: RoPE rows are computed when used.
    const patcher = await EntropyPatcher.fromSafetensors(hostile({ max_seqlen: 2 ** 30 }));
    expect(process.memoryUsage().arrayBuffers - heap.arrayBuffers).toBeLessThan(64 << 20);
    const r = await patcher.patch('still works');
    expect(r.patchLengths.reduce((a, b) => a + b, 0)).toBe(12 + 1);
    patcher.dispose();
  });
});
