#!/usr/bin/env node
import { BOS_ID, EOS_ID, StreamingDecoder, decode, decodeToBytes, encode } from '@bytelatent/bytes';
import { HASH_PRIMES, RELEASED_HASH_CONFIG, hashNgramTables } from '@bytelatent/ngram-hash';

const DEFAULT_TEXT = 'Byte Latent Transformer: no tokenizer, just bytes → patches. 日本語 ✓';

const USAGE = `usage: npm start [-- "some text"]

Tokenizes the text the way the reference BLT does (ids = byte + 4, BOS = 1, EOS = 2) and computes
the hash n-gram embedding-table indices (n = 3..8, 500002-row tables) that the local encoder
adds to each byte. Without an argument it uses an embedded sentence.`;

function label(id: number): string {
  if (id === BOS_ID) return '<BOS>';
  if (id === EOS_ID) return '<EOS>';
  const b = id - 4;
  if (b >= 0x20 && b < 0x7f) return JSON.stringify(String.fromCharCode(b));
  return `0x${b.toString(16).padStart(2, '0')}`;
}

function main(argv: readonly string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const text = argv.length > 0 ? argv.join(' ') : DEFAULT_TEXT;
  const ids = encode(text);
  const bytes = decodeToBytes(ids);
  console.log(`text: ${JSON.stringify(text)}`);
  console.log(`${bytes.length} UTF-8 bytes -> ${ids.length} ids (with BOS and EOS): [${Array.from(ids).join(', ')}]`);
  const roundTrip = decode(ids);
  console.log(`decode(encode(text)) === text: ${roundTrip === text}`);

  const stream = new StreamingDecoder();
  const chunks = Array.from(ids, (id) => stream.push(id)).filter((c) => c.length > 0);
  const multiByte = chunks.filter((c) => new TextEncoder().encode(c).length > 1);
  console.log(
    `streaming decode: ${chunks.length} chunks, one per complete character; multi-byte ones held back until whole: ${multiByte.map((c) => JSON.stringify(c)).join(' ') || '(none)'}`,
  );

  const { groupSizes, vocabSize } = RELEASED_HASH_CONFIG;
  const tables = hashNgramTables(ids, RELEASED_HASH_CONFIG);
  console.log(`\nhash n-gram table indices (prime ${HASH_PRIMES[0]}, ${vocabSize} rows per table, as in BLT-1B/7B):`);
  const header = ['pos', 'id', 'byte', ...groupSizes.map((n) => `n=${n}`)];
  const rows = Array.from(ids, (id, j) => [String(j), String(id), label(id), ...tables.map((t) => String(t.ids[j]))]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const fmt = (r: string[]) => r.map((cell, c) => cell.padStart(widths[c]!)).join('  ');
  console.log(fmt(header));
  for (const r of rows) console.log(fmt(r));
  console.log('\nEntropy patching, the model and the server arrive with the next issues; see README.md.');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
