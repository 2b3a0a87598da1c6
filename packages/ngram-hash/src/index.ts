export { NgramHashError, type NgramHashErrorCode } from './errors.js';
export { byteGroupHashIds, byteGroupHashIdsMulti, rollingPolynomialHash, withJavaScriptHashCore, type HashIdsOptions } from './hash.js';
export { hashWasmAvailable } from './hash-wasm.js';
export {
  RELEASED_HASH_CONFIG,
  hashNgramConfigFromArgs,
  hashNgramTables,
  validateHashNgramConfig,
  type HashNgramConfig,
  type HashNgramTable,
} from './ngram-tables.js';
export { HASH_PRIMES } from './primes.js';
export { byteGroupHashIdsReference, rollingPolynomialHashReference } from './reference-hash.js';
