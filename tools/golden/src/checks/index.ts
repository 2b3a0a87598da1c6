import type { GoldenCheck } from './check.js';
import { bltCheck } from './blt-check.js';
import { entropyCheck } from './entropy-check.js';
import { hashCheck } from './hash-check.js';
import { nnCheck } from './nn-check.js';
import { patchCheck } from './patch-check.js';
import { tokenizerCheck } from './tokenizer-check.js';

export type { GoldenCheck, GoldenCheckOutcome, GoldenCheckResult, GoldenSkip } from './check.js';

/** Every implemented check, in report order. Later pieces (entropies, patches, activations) add theirs here. */
export const GOLDEN_CHECKS: readonly GoldenCheck[] = [tokenizerCheck, hashCheck, nnCheck, entropyCheck, patchCheck, bltCheck];
