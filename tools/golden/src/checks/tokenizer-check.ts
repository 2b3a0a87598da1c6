import { encode, encodeUtf8 } from '@bytelatent/bytes';
import { type Comparison, compareArrays, mergeComparisons } from '../compare.js';
import type { GoldenCheck } from './check.js';

/**
 * `tokens` and `targets` from the case's `texts`: `ids = concat(encode(t, bos, eos))`,
 * `tokens = ids[:-1]`, `targets = ids[1:]` (shared/golden/README.md, "How each output was produced").
 */
export const tokenizerCheck: GoldenCheck = {
  name: 'tokenizer',
  claims: (name) => name === 'tokens' || name === 'targets',
  run(c) {
    const texts = c.json['texts'];
    if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) return 'case JSON has no "texts" list';
    const ids = texts.flatMap((t: string) => Array.from(encode(t)));
    const out: Comparison[] = [];
    const utf8 = c.json['utf8_bytes'];
    if (Array.isArray(utf8) && utf8.length === texts.length && texts.length > 0) {
      const parts = texts.map((t: string, i) =>
        compareArrays('utf8_bytes', `json:utf8_bytes[${i}]`, utf8[i] as number[], encodeUtf8(t), 0),
      );
      out.push(mergeComparisons('utf8_bytes', parts));
    } else if (utf8 !== undefined && !(Array.isArray(utf8) && utf8.length === 0 && texts.length === 0)) {
      // Present but not one list per text: a failure, never a silently dropped item.
      const got = Array.isArray(utf8) ? `${utf8.length} list(s)` : typeof utf8;
      out.push({
        group: 'utf8_bytes',
        items: ['json:utf8_bytes'],
        values: 0,
        maxAbsDiff: Number.POSITIVE_INFINITY,
        tolerance: 0,
        ok: false,
        firstMismatch: `json:utf8_bytes: expected one list per text (${texts.length}), got ${got}`,
      });
    }
    if (c.tensors.has('tokens')) out.push(compareArrays('tokens', 'tokens', c.tensors.toInt32('tokens'), ids.slice(0, -1), 0));
    if (c.tensors.has('targets')) out.push(compareArrays('targets', 'targets', c.tensors.toInt32('targets'), ids.slice(1), 0));
    return out;
  },
};
