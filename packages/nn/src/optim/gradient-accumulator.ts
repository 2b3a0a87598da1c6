/**
 * One training step over one or more micro-batches: the gradients of each micro-batch's loss are
 * summed (gradient accumulation), then the optimizer applies the sum. The one training step of the
 * project: `apps/train`'s trainer and the web page's training worker both run it. Gradients need
 * `@bytelatent/nn/gradients` (or the `@tensorflow/tfjs` umbrella) to be loaded.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NnError } from '../errors.js';
import type { AdamW, UpdateStats } from './adamw.js';

/** What {@link GradientAccumulator.apply} did: the optimizer's figures and the summed loss. */
export interface StepStats extends UpdateStats {
  /** The micro-batch losses added up (the step's loss when each is already divided by the step's targets). */
  readonly loss: number;
}

/** Sums the gradients of successive micro-batch losses with respect to a fixed list of variables. */
export class GradientAccumulator {
  private sum: tf.Tensor[] | undefined;
  private lossSum = 0;

  /** @param variables - the variables to differentiate (the optimizer's, in its order) */
  constructor(private readonly variables: readonly tf.Variable[]) {
    if (variables.length === 0) throw new NnError('INVALID_ARGUMENT', 'no variables to train');
  }

  /** Micro-batches added since the last {@link apply}. */
  count = 0;

  /**
   * Adds the gradients of one micro-batch's loss.
   *
   * @param loss - computes the micro-batch's scalar loss (run under `tf.variableGrads`)
   * @returns the loss value
   */
  async add(loss: () => tf.Scalar): Promise<number> {
    const { value, grads } = tf.variableGrads(loss, [...this.variables]);
    const lossValue = (await value.data())[0]!;
    value.dispose();
    const list = this.variables.map((v) => grads[v.name]!);
    if (this.sum === undefined) this.sum = list;
    else {
      const previous = this.sum;
      this.sum = tf.tidy(() => previous.map((a, i) => tf.add(a, list[i]!)));
      tf.dispose([...previous, ...list]);
    }
    this.lossSum += lossValue;
    this.count += 1;
    return lossValue;
  }

  /**
   * Applies the summed gradients with the optimizer at learning rate `lr`, then starts a new sum.
   * The gradients are freed whatever happens.
   *
   * @throws {NnError} `NON_FINITE` when the summed loss or the gradient norm is NaN or infinite
   *   (nothing is updated); `INVALID_ARGUMENT` when nothing was added
   */
  async apply(optimizer: AdamW, lr: number): Promise<StepStats> {
    const sum = this.sum;
    const loss = this.lossSum;
    this.sum = undefined;
    this.lossSum = 0;
    this.count = 0;
    if (sum === undefined) throw new NnError('INVALID_ARGUMENT', 'no micro-batch was added before the step');
    try {
      if (!Number.isFinite(loss)) throw new NnError('NON_FINITE', `the loss is ${loss}; the update was skipped`);
      return { ...(await optimizer.apply(sum, lr)), loss };
    } finally {
      tf.dispose(sum);
    }
  }

  /** Frees gradients added but not applied. */
  dispose(): void {
    if (this.sum) tf.dispose(this.sum);
    this.sum = undefined;
    this.lossSum = 0;
    this.count = 0;
  }
}
