// Every patching mode against the reference's own outputs: tools/golden/fixtures/patching-modes,
// written by tools/golden-producer/produce_patching.py, which runs the reference's Patcher.patch
// (entropy with and without a threshold, space, static, byte, bpe, bpe_patcher), its
// calculate_entropies and its BPE-delimiter tokenizer. Rules are checked on the reference's own
// entropies and predictions (integers exact); then end to end, from our entropy model.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SentencePieceBpe, encodeWithBpeDelimiters } from '@bytelatent/bytes';
import { type SafetensorsTensor, parseSafetensors, serializeSafetensors } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import { EntropyModel, type EntropyModelArgs } from './entropy-model.js';
import { EntropyPatcher } from './patcher.js';
import { type PatchOptions, findPatchBoundaries } from './patching.js';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURE = resolve(here, '../../../tools/golden/fixtures/patching-modes');

interface ReferenceResult {
  readonly mode: string;
  readonly options: Record<string, unknown>;
  readonly include_next_token: boolean;
  readonly lengths?: number[];
  readonly error?: string;
}

interface ReferenceCase {
  readonly text: string;
  readonly tokens: number[];
  readonly bpe_tokens: number[];
  readonly entropies: number[];
  readonly bpe_patcher_predictions: number[];
  readonly results: ReferenceResult[];
}

const doc = JSON.parse(readFileSync(join(FIXTURE, 'patching.json'), 'utf8')) as {
  entropy_model: { weights_from: string; args: EntropyModelArgs };
  cases: ReferenceCase[];
};

/** Our options for a reference `PatcherArgs` of the fixture. */
function ourOptions(r: ReferenceResult): PatchOptions {
  const o = r.options;
  const max = typeof o['max_patch_length'] === 'number' ? { maxPatchLength: o['max_patch_length'] } : {};
  const base = { includeNextToken: r.include_next_token, ...max };
  switch (o['patching_mode']) {
    case 'entropy':
      return o['threshold'] === null
        ? { mode: 'entropy-top-k', patchSize: o['patch_size'] as number, ...base }
        : { mode: 'entropy', threshold: o['threshold'] as number, ...base };
    case 'static':
      return { mode: 'static', patchSize: o['patch_size'] as number, ...base };
    case 'bpe_patcher':
      return { mode: 'bpe-patcher', ...base };
    default:
      return { mode: o['patching_mode'] as 'space' | 'byte' | 'bpe', ...base };
  }
}

/**
 * The reference's lengths as we produce them. Static patching deviates on purpose (the model needs
 * a first patch of one token, docs/architecture.md): the reference's first patch of k tokens is
 * ours as 1 and k − 1. Top-k with ⌊N / patchSize⌋ < 2 fails in the reference (topk with a negative
 * k); we patch as if k were 0: starts 0 and 1 only.
 */
function expectedLengths(r: ReferenceResult, tokens: readonly number[]): number[] {
  if (r.error !== undefined) {
    expect(r.error).toMatch(/selected index k out of range/);
    const slots = tokens.length + (r.include_next_token ? 1 : 0);
    return slots > 1 ? [1, slots - 1] : [1];
  }
  const lengths = r.lengths!;
  if (r.options['patching_mode'] === 'static' && lengths[0]! > 1) return [1, lengths[0]! - 1, ...lengths.slice(1)];
  return lengths;
}

function signalOf(c: ReferenceCase, options: PatchOptions): number[] | undefined {
  if (options.mode === 'bpe-patcher') return [-1, ...c.bpe_patcher_predictions];
  if (options.mode === 'entropy' || options.mode === 'entropy-top-k') return c.entropies;
  return undefined;
}

describe('every patching mode against the reference (tools/golden/fixtures/patching-modes)', () => {
  it('has every mode of the reference, with and without the next-token slot', () => {
    const modes = new Set(doc.cases.flatMap((c) => c.results.map((r) => String(r.options['patching_mode']))));
    expect([...modes].sort()).toEqual(['bpe', 'bpe_patcher', 'byte', 'entropy', 'space', 'static']);
    const topK = doc.cases.flatMap((c) => c.results.filter((r) => r.mode.startsWith('entropy-top-k') && r.lengths));
    expect(topK.length).toBeGreaterThan(0);
  });

  it("the rules on the reference's tokens, entropies and predictions: every length exact", () => {
    let compared = 0;
    for (const c of doc.cases) {
      for (const r of c.results) {
        const options = ourOptions(r);
        const tokens = options.mode === 'bpe' ? c.bpe_tokens : c.tokens;
        const got = findPatchBoundaries(tokens, signalOf(c, options), options);
        expect(Array.from(got.patchLengths), `${JSON.stringify(c.text)} ${r.mode} include=${r.include_next_token}`).toEqual(
          expectedLengths(r, tokens),
        );
        compared++;
      }
    }
    expect(compared).toBe(doc.cases.length * 24); // 12 option sets, each with and without the next slot
  });

  it('end to end: our entropy model and BPE patcher model give the same patches', async () => {
    const weightsDir = resolve(FIXTURE, doc.entropy_model.weights_from);
    const bytes = new Uint8Array(readFileSync(join(weightsDir, 'entropy_model.safetensors')));
    const args = doc.entropy_model.args;
    const patcher = EntropyPatcher.fromModel(EntropyModel.fromSafetensors(parseSafetensors(bytes), args));
    // The producer's BPE patcher: the same weights with the delimiter's output row scaled by 12 (in float32).
    const file = parseSafetensors(bytes);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const name of file.names()) {
      const data = file.toFloat32(name);
      if (name === 'output.weight') {
        const dim = data.length / 260;
        for (let i = 3 * dim; i < 4 * dim; i++) data[i] = Math.fround(data[i]! * 12);
      }
      tensors.set(name, { dtype: 'F32', shape: [...file.get(name).shape], data });
    }
    const bpePatcher = EntropyPatcher.fromModel(EntropyModel.fromSafetensors(parseSafetensors(serializeSafetensors(tensors)), args));
    const spm = SentencePieceBpe.fromModelProto(new Uint8Array(readFileSync(join(FIXTURE, 'bpe-delimiter.model'))));
    try {
      for (const c of doc.cases) {
        const input = c.text;
        for (const r of c.results) {
          const options = ourOptions(r);
          if (options.mode === 'bpe') {
            // Tokens from our BPE-delimiter tokenizer on the producer's SentencePiece model, then the rule.
            const tokens = encodeWithBpeDelimiters(c.text, spm, { bos: true, eos: false });
            expect(Array.from(findPatchBoundaries(tokens, undefined, options).patchLengths)).toEqual(expectedLengths(r, c.bpe_tokens));
            continue;
          }
          const p = await (options.mode === 'bpe-patcher' ? bpePatcher : patcher).patch(input, options);
          expect(Array.from(p.tokens)).toEqual(c.tokens);
          if (options.mode === 'entropy' || options.mode === 'entropy-top-k') {
            for (const [t, h] of p.entropies.entries()) expect(Math.abs(h - c.entropies[t]!)).toBeLessThan(1e-4);
          }
          if (options.mode === 'bpe-patcher') expect(Array.from(p.predictions!.subarray(1))).toEqual(c.bpe_patcher_predictions);
          expect(Array.from(p.patchLengths), `${JSON.stringify(c.text)} ${r.mode} include=${r.include_next_token}`).toEqual(
            expectedLengths(r, c.tokens),
          );
        }
      }
    } finally {
      patcher.dispose();
      bpePatcher.dispose();
    }
  });
});
