import { byteGroupHashIdsMulti, rollingPolynomialHash } from '@bytelatent/ngram-hash';
import { type Comparison, compareArrays, mergeComparisons } from '../compare.js';
import type { GoldenCheck, GoldenSkip } from './check.js';

const HASH_TENSOR = /^hash_ids\.f(\d+)\.n(\d+)$/;

/**
 * Every `hash_ids.f{F}.n{n}` tensor (hash function F, group size n, table size
 * `encoder_hash_byte_group_vocab`), computed from the case's stored `tokens`, and the raw int64
 * hashes in the case JSON (`hash_raw_int64_before_mod`). F and n are read from the names, so any
 * configuration is checked.
 */
export const hashCheck: GoldenCheck = {
  name: 'ngram-hash',
  claims: (name) => HASH_TENSOR.test(name),
  run(c) {
    const vocabSize = c.config.blt_args['encoder_hash_byte_group_vocab'];
    if (typeof vocabSize !== 'number') return 'config.json blt_args has no encoder_hash_byte_group_vocab';
    if (!c.tensors.has('tokens')) return 'case has no "tokens" tensor to hash';
    const info = c.tensors.info('tokens');
    const tokens = c.tensors.toInt32('tokens');
    // Stored tensors keep the batch dimension: hash each row on its own.
    const rowLength = info.shape.length > 1 ? info.shape[info.shape.length - 1]! : tokens.length;
    const byFunction = new Map<number, Array<{ name: string; n: number }>>();
    for (const name of c.tensors.names()) {
      const m = HASH_TENSOR.exec(name);
      if (!m) continue;
      const f = Number(m[1]);
      byFunction.set(f, [...(byFunction.get(f) ?? []), { name, n: Number(m[2]) }]);
    }
    const ids: Comparison[] = [];
    for (const [hashFunction, entries] of byFunction) {
      const computed = byteGroupHashIdsMulti(
        tokens,
        entries.map((e) => e.n),
        { vocabSize, hashFunction, rowLength },
      );
      entries.forEach((e, i) => ids.push(compareArrays('hash_ids', e.name, c.tensors.toInt32(e.name), computed[i]!, 0)));
    }
    const out = ids.length > 0 ? [mergeComparisons('hash_ids', ids)] : [];
    const skipped: GoldenSkip[] = [];
    const raw = c.json['hash_raw_int64_before_mod'];
    if (raw !== null && typeof raw === 'object') {
      const parts: Comparison[] = [];
      for (const [key, values] of Object.entries(raw as Record<string, unknown>)) {
        const m = /^f(\d+)\.n(\d+)$/.exec(key);
        if (!m || !Array.isArray(values)) {
          // An entry this check cannot read is named in the report, never dropped.
          const reason = !m ? 'key is not f<F>.n<n>' : 'value is not an array';
          skipped.push({ items: [`json:hash_raw_int64_before_mod.${key}`], reason });
          continue;
        }
        const expected = values.map((v) => BigInt(v as string));
        const computed = rollingPolynomialHash(tokens, Number(m[2]), Number(m[1]), rowLength);
        parts.push(compareArrays('hash_raw_int64', `json:hash_raw_int64_before_mod.${key}`, expected, computed, 0));
      }
      if (parts.length > 0) out.push(mergeComparisons('hash_raw_int64', parts));
    }
    return { comparisons: out, skipped };
  },
};
