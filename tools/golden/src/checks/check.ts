import type { Comparison } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';

/** Tensors (or `json:` items) a check claims but does not compare, and why: reported and counted as skipped. */
export interface GoldenSkip {
  /** Tensor names (JSON-only items are named `json:<key>`). */
  readonly items: readonly string[];
  /** Why they are not compared, printed in the report. */
  readonly reason: string;
}

/** What a check returns: its report lines, and the claimed items it skipped with their reasons. */
export interface GoldenCheckOutcome {
  readonly comparisons: readonly Comparison[];
  readonly skipped: readonly GoldenSkip[];
}

/** A check's result: report lines; lines plus named skips; or why the whole case cannot be checked. */
export type GoldenCheckResult = Comparison[] | GoldenCheckOutcome | string;

/**
 * One implemented piece of the model, checked against the golden tensors it can reproduce.
 * Every tensor of a case ends up compared, failed or skipped, never silently dropped: a tensor
 * that no check claims is skipped (not implemented yet), and a claimed tensor that the check
 * neither compares nor skips by name is skipped by the runner (see `runGoldenCheck`).
 */
export interface GoldenCheck {
  /** Short name, e.g. `tokenizer`. */
  readonly name: string;
  /** Whether this check compares the tensor of that name. */
  claims(tensorName: string): boolean;
  /**
   * Runs the check on a case.
   *
   * @returns one comparison per report line (optionally with the claimed items it skipped and
   *   why); or a string saying why the case cannot be checked (its claimed tensors are then
   *   skipped with that reason, unless a later check compares them)
   */
  run(goldenCase: GoldenCase): GoldenCheckResult | Promise<GoldenCheckResult>;
}
