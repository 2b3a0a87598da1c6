// Seeded fuzzing: the 10,000 byte strings of tools/fuzz (invalid UTF-8, NUL, empty, up to
// 1 MiB) through every patching mode — the rules on all of them (with seeded entropies), the shipped
// entropy model on a bounded subset of short ones (the model is slow on CPU). No crash, lengths >= 1
// summing to the input length (+1 with the next-byte slot), segments covering the bytes, no tensor leak.
import { BYTE_OFFSET, encode } from '@bytelatent/bytes';
import { initBackend } from '@bytelatent/nn';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzInputs, mulberry32, randomChunks, type FuzzInput } from '../../../tools/fuzz/seeded-bytes.js';
import { EntropyPatcher, type PatchCallOptions, type PatchResult } from './patcher.js';
import {
  StreamingPatcher,
  decoderPatchIdsFromLengths,
  findPatchBoundaries,
  patchIdsFromLengths,
  type PatchBoundaries,
  type PatchOptions,
  type PatchingMode,
} from './patching.js';

const COUNT = 10_000;
const inputs: FuzzInput[] = [...fuzzInputs({ count: COUNT })];
const MODES: readonly PatchingMode[] = ['entropy', 'monotonic', 'combined', 'space', 'static', 'byte'];

/** Options of one mode, drawn from `random`; `maxPatchLength` on about half of the calls. */
function optionsFor(mode: PatchingMode, random: () => number): PatchOptions {
  const includeNextToken = random() < 0.7;
  const maxPatchLength = random() < 0.5 ? 1 + Math.floor(random() * 12) : undefined;
  const base = { mode, includeNextToken, ...(maxPatchLength === undefined ? {} : { maxPatchLength }) };
  switch (mode) {
    case 'entropy':
      return { ...base, threshold: random() * 4 };
    case 'monotonic':
      return { ...base, threshold: random() * 2 - 0.5 };
    case 'combined':
      return { ...base, threshold: random() * 4, thresholdAdd: random() * 2 - 0.5 };
    case 'static':
      return { ...base, patchSize: 1 + Math.floor(random() * 9) };
    default:
      return base;
  }
}

/** Entropies in nats as a model gives them: >= 0, <= ln 260, with runs of equal values and exact zeros. */
function entropiesFor(n: number, random: () => number): Float32Array {
  const h = new Float32Array(n);
  for (let i = 0; i < n; i++) h[i] = random() < 0.1 ? 0 : random() < 0.1 && i > 0 ? h[i - 1]! : random() * Math.log(260);
  return h;
}

/** The invariants of one row's patches; returns a problem or undefined. */
function checkBoundaries(b: PatchBoundaries, n: number, o: PatchOptions): string | undefined {
  const total = o.includeNextToken === false ? n : n + 1;
  for (const [lengths, starts, name] of [
    [b.patchLengths, b.patchStarts, 'split'],
    [b.patchLengthsUnsplit, b.patchStartsUnsplit, 'unsplit'],
  ] as const) {
    if (lengths.length !== starts.length || lengths.length === 0) return `${name}: ${lengths.length} lengths, ${starts.length} starts`;
    let sum = 0;
    for (let p = 0; p < lengths.length; p++) {
      if (starts[p] !== sum) return `${name}: patch ${p} starts at ${starts[p]}, expected ${sum}`;
      if (!(lengths[p]! >= 1)) return `${name}: patch ${p} has length ${lengths[p]}`;
      sum += lengths[p]!;
    }
    if (sum !== total) return `${name}: lengths sum to ${sum}, expected ${total}`;
  }
  // The first patch is BOS alone (when the row has room for a second patch).
  if (total > 1 && b.patchLengths[0] !== 1) return `first patch has length ${b.patchLengths[0]}`;
  if (o.maxPatchLength !== undefined && b.patchLengths.some((l) => l > o.maxPatchLength!))
    return `a patch is longer than ${o.maxPatchLength}`;
  return undefined;
}

describe('fuzz: patching rules on 10,000 seeded byte strings, every mode', () => {
  it('lengths >= 1 tile the row (N+1 slots with the next byte, N without); ids follow the lengths', () => {
    const random = mulberry32(1);
    let calls = 0;
    for (const { index, kind, bytes } of inputs) {
      const tokens = encode(bytes, { eos: false });
      const n = tokens.length;
      const entropies = entropiesFor(n, random);
      // Every mode on short inputs; one mode (in turn) on the long ones, to keep the suite fast.
      const modes = n > 8192 ? [MODES[index % MODES.length]!] : MODES;
      for (const mode of modes) {
        const o = optionsFor(mode, random);
        const b = findPatchBoundaries(tokens, entropies, o);
        calls++;
        const problem = checkBoundaries(b, n, o);
        if (problem) expect.fail(`input ${index} (${kind}), ${JSON.stringify(o)}: ${problem}`);
        const ids = patchIdsFromLengths(b.patchLengths, n);
        const dec = decoderPatchIdsFromLengths(b.patchLengths, n);
        if (ids.length !== n || dec.length !== n || ids[0] !== 0) expect.fail(`input ${index} (${kind}): patch ids of the wrong shape`);
        for (let t = 1; t < n; t++) {
          if (ids[t]! < ids[t - 1]! || ids[t]! - ids[t - 1]! > 1) expect.fail(`input ${index} (${kind}): patch ids jump at ${t}`);
          if (dec[t]! < dec[t - 1]!) expect.fail(`input ${index} (${kind}): decoder patch ids decrease at ${t}`);
        }
      }
    }
    expect(calls).toBeGreaterThan(55_000);
  });

  it('StreamingPatcher on random pieces equals the one-shot result (inputs up to 8 KiB)', () => {
    const random = mulberry32(2);
    for (const { index, kind, bytes } of inputs) {
      if (bytes.length > 8192 || index % 3 !== 0) continue;
      const tokens = encode(bytes, { eos: false });
      const entropies = entropiesFor(tokens.length, random);
      const mode = MODES[index % MODES.length]!;
      const o = optionsFor(mode, random);
      const whole = findPatchBoundaries(tokens, entropies, o);
      const sp = new StreamingPatcher(o);
      const starts: number[] = [];
      const lengths: number[] = [];
      let at = 0;
      for (const piece of randomChunks(new Uint8Array(tokens.length), random)) {
        const r = sp.push(tokens.subarray(at, at + piece.length), entropies.subarray(at, at + piece.length));
        at += piece.length;
        starts.push(...r.starts);
        lengths.push(...r.lengths);
      }
      const last = sp.finish();
      starts.push(...last.starts);
      lengths.push(...last.lengths);
      if (lengths.join() !== Array.from(whole.patchLengths).join() || starts.join() !== Array.from(whole.patchStarts).join()) {
        expect.fail(`input ${index} (${kind}), ${JSON.stringify(o)}: streamed patches differ`);
      }
    }
  });
});

describe('fuzz: the shipped entropy patcher on a bounded subset', () => {
  let patcher: EntropyPatcher;
  /** Short inputs (the model runs on each), plus a few longer than its 256-byte context. */
  const subset = [
    ...inputs.filter((x) => x.bytes.length <= 48).filter((_, i) => i % 40 === 0),
    ...inputs.filter((x) => x.bytes.length > 256 && x.bytes.length <= 700).slice(0, 3),
  ];

  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    patcher = await EntropyPatcher.pretrained();
  });
  afterAll(() => patcher.dispose());

  function checkResult(r: PatchResult, bytes: Uint8Array, o: PatchCallOptions, where: string): void {
    const n = bytes.length + 1;
    if (r.tokens.length !== n || r.entropies.length !== n || r.patchIds.length !== n || r.decoderPatchIds.length !== n) {
      expect.fail(`${where}: arrays of the wrong length for ${bytes.length} bytes`);
    }
    for (let i = 0; i < bytes.length; i++) if (r.tokens[i + 1] !== bytes[i]! + BYTE_OFFSET) expect.fail(`${where}: token ${i + 1}`);
    if (!r.entropies.every((h) => Number.isFinite(h) && h >= -1e-4)) expect.fail(`${where}: entropies not finite and >= 0`);
    const problem = checkBoundaries(r, n, {
      mode: o.mode ?? 'entropy',
      includeNextToken: true,
      ...(o.maxPatchLength ? { maxPatchLength: o.maxPatchLength } : {}),
    });
    if (problem) expect.fail(`${where}: ${problem}`);
    // Segments are the input's bytes, in order, without gaps or overlaps.
    const segments = r.segments();
    let at = 0;
    for (const s of segments) {
      if (s.start !== at || s.end <= s.start) expect.fail(`${where}: segment [${s.start}, ${s.end}) after ${at}`);
      at = s.end;
    }
    if (at !== bytes.length) expect.fail(`${where}: segments cover ${at} of ${bytes.length} bytes`);
  }

  it('every mode, in batches: right shapes, lengths tile the input, no tensor leak', async () => {
    expect(subset.length).toBeGreaterThan(100);
    const random = mulberry32(3);
    const before = tf.memory().numTensors;
    for (const mode of MODES) {
      for (let i = 0; i < subset.length; i += 16) {
        const group = subset.slice(i, i + 16);
        const { includeNextToken: _ignored, ...o } = optionsFor(mode, random);
        const results = await patcher.patchBatch(
          group.map((x) => x.bytes),
          o,
        );
        results.forEach((r, k) => checkResult(r, group[k]!.bytes, o, `input ${group[k]!.index} (${group[k]!.kind}), ${JSON.stringify(o)}`));
      }
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rows of a batch are independent, and patch() on one row equals its batch row', async () => {
    const group = subset.slice(0, 8).concat(subset.slice(-2));
    const batch = await patcher.patchBatch(group.map((x) => x.bytes));
    for (const [k, x] of group.entries()) {
      const alone = await patcher.patch(x.bytes);
      expect(Array.from(alone.patchLengths), `input ${x.index}`).toEqual(Array.from(batch[k]!.patchLengths));
      const diff = Math.max(0, ...alone.entropies.map((h, t) => Math.abs(h - batch[k]!.entropies[t]!)));
      expect(diff, `input ${x.index}`).toBeLessThan(1e-4);
    }
  });

  it('patchStream over random byte chunks equals patch() on the whole input', async () => {
    const random = mulberry32(4);
    const before = tf.memory().numTensors;
    for (const x of subset.filter((_, i) => i % 8 === 0)) {
      const whole = await patcher.patch(x.bytes);
      const lengths: number[] = [];
      for await (const b of patcher.patchStream(randomChunks(x.bytes, random))) lengths.push(...b.lengths);
      expect(lengths, `input ${x.index} (${x.kind})`).toEqual(Array.from(whole.patchLengths));
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
