/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter) with global-norm gradient clipping, written
 * with plain tfjs ops so that its whole state (the moments and the step) can be saved in a checkpoint
 * and restored bit for bit — tfjs's own optimizers keep their slots behind an API that does not
 * round-trip exactly, and they have no decoupled decay. Used by `apps/train` and usable anywhere tfjs
 * trains (the browser included); gradients need `@bytelatent/nn/gradients`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NnError } from '../errors.js';

export interface AdamWOptions {
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  readonly weightDecay?: number;
  /** Clip the global gradient norm to this value (0 or undefined: no clipping). */
  readonly clipNorm?: number;
}

/** What one update did. */
export interface UpdateStats {
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  readonly clipped: boolean;
}

/** Inputs per `addN`: tfjs's WebGPU kernel binds one storage buffer per input and one for its output. */
const ADD_N_GROUP = 4;

/**
 * Σ of same-shaped tensors, added a few at a time. tfjs's WebGPU `AddN` binds every input as a
 * storage buffer, and a WebGPU device allows 8 per shader stage unless more are requested: with more
 * inputs the pipeline fails validation on a real adapter and the sum reads as garbage (a model's
 * worth of gradient norms is dozens of inputs).
 */
function sumInGroups(values: tf.Tensor[]): tf.Tensor {
  if (values.length === 0) return tf.scalar(0);
  let level = values;
  while (level.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < level.length; i += ADD_N_GROUP) {
      const group = level.slice(i, i + ADD_N_GROUP);
      next.push(group.length === 1 ? group[0]! : tf.addN(group));
    }
    level = next;
  }
  return level[0]!;
}

/** AdamW over a fixed list of named variables. */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  /** Updates applied so far. */
  step = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];

  /**
   * @param params - the variables to train, with stable names (the checkpoint keys)
   * @param options - hyper-parameters (defaults: 0.9, 0.95, 1e-8, 0.1, clip 1.0)
   */
  constructor(
    readonly params: ReadonlyArray<{ name: string; variable: tf.Variable }>,
    options: AdamWOptions = {},
  ) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.1;
    this.clipNorm = options.clipNorm ?? 1.0;
    for (const [k, v] of Object.entries({ beta1: this.beta1, beta2: this.beta2 })) {
      if (!(v >= 0 && v < 1)) throw new NnError('INVALID_ARGUMENT', `${k} must be in [0, 1), got ${v}`);
    }
    if (!(this.eps > 0)) throw new NnError('INVALID_ARGUMENT', `eps must be > 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new NnError('INVALID_ARGUMENT', `weightDecay must be >= 0, got ${this.weightDecay}`);
    if (!(this.clipNorm >= 0)) throw new NnError('INVALID_ARGUMENT', `clipNorm must be >= 0, got ${this.clipNorm}`);
    this.m = params.map((p) => tf.variable(tf.zerosLike(p.variable), false));
    this.v = params.map((p) => tf.variable(tf.zerosLike(p.variable), false));
  }

  /**
   * Applies one update with these gradients (same order as `params`) at learning rate `lr`. The
   * gradients are not disposed.
   *
   * @returns the gradient norm and whether it was clipped
   * @throws {NnError} `NON_FINITE` when the gradient norm is NaN or infinite (nothing is updated);
   *   `INVALID_ARGUMENT` for a gradient count other than the parameters'
   */
  async apply(grads: readonly tf.Tensor[], lr: number): Promise<UpdateStats> {
    if (grads.length !== this.params.length)
      throw new NnError('INVALID_ARGUMENT', `expected ${this.params.length} gradients, got ${grads.length}`);
    const normT = tf.tidy(() => tf.sqrt(sumInGroups(grads.map((g) => tf.sum(tf.square(g))))));
    const gradNorm = (await normT.data())[0]!;
    normT.dispose();
    if (!Number.isFinite(gradNorm)) throw new NnError('NON_FINITE', `the gradient norm is ${gradNorm}; the update was skipped`);
    const clipped = this.clipNorm > 0 && gradNorm > this.clipNorm;
    const scale = clipped ? this.clipNorm / (gradNorm + 1e-6) : 1;
    this.step += 1;
    const { beta1: b1, beta2: b2, eps, weightDecay: wd } = this;
    const bias1 = 1 - b1 ** this.step;
    const bias2 = 1 - b2 ** this.step;
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const g = scale === 1 ? grads[i]! : tf.mul(grads[i]!, scale);
        const m = tf.add(tf.mul(this.m[i]!, b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(this.v[i]!, b2), tf.mul(tf.square(g), 1 - b2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        const update = tf.div(tf.div(m, bias1), tf.add(tf.sqrt(tf.div(v, bias2)), eps));
        // Decoupled decay: w ← w − lr·(update + wd·w).
        p.variable.assign(tf.sub(p.variable, tf.mul(tf.add(update, tf.mul(p.variable, wd)), lr)));
      });
    });
    return { gradNorm, clipped };
  }

  /** The moments by checkpoint key (`optimizer.m.<name>`, `optimizer.v.<name>`). */
  state(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    this.params.forEach((p, i) => {
      out.set(`optimizer.m.${p.name}`, this.m[i]!);
      out.set(`optimizer.v.${p.name}`, this.v[i]!);
    });
    return out;
  }

  /**
   * Restores moments saved by {@link state}.
   *
   * @throws {NnError} `SHAPE_MISMATCH` naming every missing or mis-shaped moment
   */
  loadState(step: number, tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>): void {
    const problems: string[] = [];
    const plan: Array<[tf.Variable, Float32Array, number[]]> = [];
    this.params.forEach((p, i) => {
      for (const [kind, slot] of [
        ['m', this.m[i]!],
        ['v', this.v[i]!],
      ] as const) {
        const key = `optimizer.${kind}.${p.name}`;
        const t = tensors.get(key);
        if (!t) problems.push(`missing ${key}`);
        else if (t.shape.join() !== slot.shape.join())
          problems.push(`${key} has shape [${t.shape.join(', ')}], expected [${slot.shape.join(', ')}]`);
        else plan.push([slot, t.data, [...slot.shape]]);
      }
    });
    if (problems.length > 0) throw new NnError('SHAPE_MISMATCH', `optimizer state does not fit: ${problems.join('; ')}`);
    for (const [slot, data, shape] of plan) tf.tidy(() => slot.assign(tf.tensor(data, shape, 'float32')));
    this.step = step;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

export interface ScheduleOptions {
  readonly lr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
  /** Final learning rate as a fraction of `lr` (default 0.1). */
  readonly minLrRatio?: number;
}

/**
 * Linear warm-up from 0 to `lr` over `warmupSteps`, then cosine decay to `lr · minLrRatio` at
 * `totalSteps` (the reference's `cosine` scheduler).
 *
 * @param step - the update about to be applied, from 0
 */
export function learningRate(step: number, options: ScheduleOptions): number {
  const { lr, warmupSteps, totalSteps } = options;
  const minRatio = options.minLrRatio ?? 0.1;
  if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, (step - warmupSteps) / decaySteps);
  return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}
