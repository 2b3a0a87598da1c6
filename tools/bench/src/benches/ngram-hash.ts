import { encode } from '@bytelatent/bytes';
import { RELEASED_HASH_CONFIG, byteGroupHashIdsReference, hashNgramTables, withJavaScriptHashCore } from '@bytelatent/ngram-hash';
import { medianSeconds, report, syntheticText } from '../measure.js';

// Hash n-gram indices for the released configuration (n = 3..8, vocab 500002), one and three hash
// functions, per input size: the WebAssembly core (the default), the JavaScript core (the fallback
// without WebAssembly) and the BigInt reference, measured in the same run. Sized figures are steady
// state (repeated calls on one input, whose output memory the allocator reuses, as in a model's
// forward passes); `first_call_4mib_mb_s` is one call on fresh memory, whose page faults cost
// about as much as the hashing on a VM.
const SIZES = { '1kib': 1 << 10, '16kib': 16 << 10, '1mib': 1 << 20 } as const;
const BIGINT_BYTES = 64 << 10;
const mb = (bytes: number, s: number) => bytes / 1e6 / s;
const figures: Record<string, number | string> = { bench: 'ngram-hash', config: 'n=3..8, vocab 500002', target_mb_s: 10 };

/** MB/s of `fn` on `bytes`: median of 3 rounds of enough calls for ~4 MiB (at least 2), after 2 warm-up calls. */
function throughput(bytes: number, fn: () => unknown): number {
  fn();
  fn();
  const calls = Math.max(2, Math.round((4 << 20) / bytes));
  return mb(
    bytes * calls,
    medianSeconds(() => {
      for (let i = 0; i < calls; i++) fn();
    }, 3),
  );
}

const all = encode(syntheticText(4 << 20), { bos: true, eos: false });
const start = performance.now();
hashNgramTables(all, RELEASED_HASH_CONFIG);
figures['first_call_4mib_mb_s'] = mb(all.length, (performance.now() - start) / 1000);
const three = { ...RELEASED_HASH_CONFIG, numFunctions: 3 };
for (const [name, bytes] of Object.entries(SIZES)) {
  const ids = all.subarray(0, bytes);
  figures[`wasm_${name}_mb_s`] = throughput(bytes, () => hashNgramTables(ids, RELEASED_HASH_CONFIG));
  figures[`js_${name}_mb_s`] = throughput(bytes, () => withJavaScriptHashCore(() => hashNgramTables(ids, RELEASED_HASH_CONFIG)));
  figures[`wasm_3_functions_${name}_mb_s`] = throughput(bytes, () => hashNgramTables(ids, three));
}
const small = all.subarray(0, BIGINT_BYTES);
const bigint = medianSeconds(
  () => RELEASED_HASH_CONFIG.groupSizes.map((n) => byteGroupHashIdsReference(small, n, { vocabSize: RELEASED_HASH_CONFIG.vocabSize })),
  1,
);
figures['bigint_reference_mb_s'] = mb(small.length, bigint);
figures['wasm_1mib_over_bigint'] = (figures['wasm_1mib_mb_s'] as number) / (figures['bigint_reference_mb_s'] as number);
report(figures);
