import type { Comparison } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';

/**
 * One implemented piece of the model, checked against the golden tensors it can reproduce.
 * Every tensor of a case that no check claims is reported as skipped (not implemented yet).
 */
export interface GoldenCheck {
  /** Short name, e.g. `tokenizer`. */
  readonly name: string;
  /** Whether this check compares the tensor of that name. */
  claims(tensorName: string): boolean;
  /**
   * Runs the check on a case.
   *
   * @returns one comparison per report line; or a string saying why the case cannot be checked
   *   (its claimed tensors are then counted as skipped)
   */
  run(goldenCase: GoldenCase): Comparison[] | string | Promise<Comparison[] | string>;
}
