// Shared by the tests (not part of the build: see tsconfig.json "exclude").
import { expect } from 'vitest';
import { EvalError, type EvalErrorCode } from './errors.js';
import type { ByteScoringModel, ScoringRow } from './scoring-model.js';

/** The EvalError a call throws (sync or async); fails the test if it throws nothing or something else. */
export async function evalErrorOf(f: () => unknown): Promise<EvalError> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(EvalError);
    return e as EvalError;
  }
  throw new Error('expected an EvalError');
}

/** Expects `f` to throw an EvalError with this code. */
export async function expectCode(f: () => unknown, code: EvalErrorCode): Promise<void> {
  expect((await evalErrorOf(f)).code).toBe(code);
}

/** A byte model that records every row it is asked to score and answers `logp` everywhere. */
export function recordingModel(maxContext: number, logp = -1): ByteScoringModel & { rows: ScoringRow[] } {
  const rows: ScoringRow[] = [];
  return {
    kind: 'byte',
    name: 'recorder',
    maxContext,
    bosId: 1,
    rows,
    logProbs: async (batch) => {
      rows.push(...batch.map((r) => ({ tokens: r.tokens.slice(), targets: r.targets.slice() })));
      return batch.map((r) => new Float64Array(r.targets.length).fill(logp));
    },
  };
}
