import { encode } from '@bytelatent/bytes';
import { RELEASED_HASH_CONFIG, byteGroupHashIds, byteGroupHashIdsReference, hashNgramTables } from '@bytelatent/ngram-hash';
import { medianSeconds, report, syntheticText } from '../measure.js';

// Hash n-gram indices for the released configuration (n = 3..8, one function, 500002 rows):
// the fast path against the BigInt reference measured in the same run.
const FAST_BYTES = 4 << 20;
const BIGINT_BYTES = 64 << 10;
const ids = encode(syntheticText(FAST_BYTES), { bos: true, eos: false });
const small = ids.subarray(0, BIGINT_BYTES);
const { groupSizes, vocabSize } = RELEASED_HASH_CONFIG;

const fast = medianSeconds(() => hashNgramTables(ids, RELEASED_HASH_CONFIG), 5);
const perSize = medianSeconds(() => groupSizes.map((n) => byteGroupHashIds(ids, n, { vocabSize })), 3);
const bigint = medianSeconds(() => groupSizes.map((n) => byteGroupHashIdsReference(small, n, { vocabSize })), 1);

const mb = (bytes: number, s: number) => bytes / 1e6 / s;
report({
  bench: 'ngram-hash',
  config: 'n=3..8, 1 function, vocab 500002',
  bytes: ids.length,
  fast_mb_s: mb(ids.length, fast),
  one_call_per_size_mb_s: mb(ids.length, perSize),
  bigint_reference_mb_s: mb(small.length, bigint),
  speedup_vs_bigint: mb(ids.length, fast) / mb(small.length, bigint),
  target_mb_s: 10,
});
