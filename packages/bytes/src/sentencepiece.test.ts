import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BytesError } from './errors.js';
import { SentencePieceBpe, encodeWithBpeDelimiters } from './sentencepiece.js';

// SentencePiece models and the ids Debian's sentencepiece (and the reference's BPE-delimiter
// tokenizer) give for them, written by tools/golden-producer/produce_patching.py.
const here = dirname(fileURLToPath(import.meta.url));
const FIXTURE = resolve(here, '../../../tools/golden/fixtures/patching-modes');
const doc = JSON.parse(readFileSync(join(FIXTURE, 'patching.json'), 'utf8')) as {
  cases: Array<{ text: string; bpe_tokens: number[]; sentencepiece_ids: Record<string, number[]> }>;
};
const model = (name: string) => SentencePieceBpe.fromModelProto(new Uint8Array(readFileSync(join(FIXTURE, name))));

/** Protobuf bytes of a tiny ModelProto: pieces (piece, score, type), trainer and normalizer fields. */
function modelProto(
  pieces: Array<[string, number, number]>,
  trainer: Record<number, number> = { 3: 2 },
  normalizer: { name?: string } = { name: 'identity' },
): Uint8Array {
  const out: number[] = [];
  const varint = (v: number, to: number[]) => {
    while (v > 127) {
      to.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    to.push(v);
  };
  const field = (n: number, body: number[], to: number[]) => {
    varint(n * 8 + 2, to);
    varint(body.length, to);
    to.push(...body);
  };
  for (const [piece, score, type] of pieces) {
    const body: number[] = [];
    field(1, [...new TextEncoder().encode(piece)], body);
    body.push(2 * 8 + 5, ...new Uint8Array(Float32Array.of(score).buffer));
    varint(3 * 8, body);
    varint(type, body);
    field(1, body, out);
  }
  const t: number[] = [];
  for (const [n, v] of Object.entries(trainer)) {
    varint(Number(n) * 8, t);
    varint(v, t);
  }
  field(2, t, out);
  const nz: number[] = [];
  if (normalizer.name !== undefined) field(1, [...new TextEncoder().encode(normalizer.name)], nz);
  field(3, nz, out);
  return Uint8Array.from(out);
}

const TINY: Array<[string, number, number]> = [
  ['<unk>', 0, 2],
  ['<s>', 0, 3],
  ['</s>', 0, 3],
  ['▁a', -1, 1],
  ['ab', -2, 1],
  ['aa', -0.5, 1],
  ['▁', -4, 1],
  ['a', -5, 1],
  ['b', -6, 1],
];

describe('SentencePieceBpe', () => {
  it("gives SentencePiece's ids on its models: byte fallback, extra whitespace kept or removed, unknown runs", () => {
    for (const name of ['bpe-delimiter.model', 'bpe-no-fallback.model']) {
      const sp = model(name);
      for (const c of doc.cases)
        expect(Array.from(sp.encode(c.text)), `${name} ${JSON.stringify(c.text)}`).toEqual(c.sentencepiece_ids[name]);
    }
  });

  it("gives the reference's BPE-delimiter token ids (BltTokenizer(bpe_delim=True))", () => {
    const sp = model('bpe-delimiter.model');
    for (const c of doc.cases) expect(Array.from(encodeWithBpeDelimiters(c.text, sp, { bos: true, eos: false }))).toEqual(c.bpe_tokens);
    // EOS by default, as the reference's tokenizer; nothing but BOS and EOS for an empty text.
    expect(Array.from(encodeWithBpeDelimiters('', sp))).toEqual([1, 2]);
  });

  it('merges the highest-scoring pair first, the leftmost among equals', () => {
    const sp = SentencePieceBpe.fromModelProto(modelProto(TINY));
    const pieces = (text: string) => Array.from(sp.encode(text), (id) => sp.idToPiece(id));
    // "▁ab": "▁a" (-1) beats "ab" (-2); then "▁a"+"b" is not a piece, so two pieces.
    expect(pieces('ab')).toEqual(['▁a', 'b']);
    expect(pieces('ab ab')).toEqual(['▁a', 'b', '▁a', 'b']);
    // "▁aaa": "aa" (-0.5) twice, equal scores: the leftmost merges, leaving the last "a".
    expect(pieces('aaa')).toEqual(['▁', 'aa', 'a']);
    // Without byte fallback an unknown run is one <unk>.
    expect(pieces('a€€b')).toEqual(['▁a', '<unk>', 'b']);
    expect(sp.vocabSize).toBe(TINY.length);
    expect(() => sp.idToPiece(99)).toThrow(BytesError);
  });

  it('refuses what it would encode differently, with the reason', () => {
    expect(() => SentencePieceBpe.fromModelProto(modelProto(TINY, { 3: 1 }))).toThrow(/model_type 1 is not BPE/);
    expect(() => SentencePieceBpe.fromModelProto(modelProto(TINY, { 3: 2 }, { name: 'nmt_nfkc' }))).toThrow(/normalization "nmt_nfkc"/);
    expect(() => SentencePieceBpe.fromModelProto(modelProto([...TINY, ['<x>', 0, 4]]))).toThrow(/user-defined/);
    expect(() => SentencePieceBpe.fromModelProto(modelProto(TINY, { 3: 2, 35: 1 }))).toThrow(/byte pieces are missing/);
    expect(() => SentencePieceBpe.fromModelProto(modelProto(TINY, { 3: 2, 40: 3 }))).toThrow(/unk_id 3/);
    expect(() => SentencePieceBpe.fromModelProto(new Uint8Array([0x0a, 0x05, 0x01]))).toThrow(/truncated/);
    expect(() => SentencePieceBpe.fromModelProto('x' as never)).toThrow(BytesError);
  });
});
