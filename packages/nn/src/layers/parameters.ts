import * as tf from '@tensorflow/tfjs-core';
import { NnError } from './errors.js';

/** One trainable weight, known by its reference `state_dict` name. */
export interface Parameter {
  /** Reference name, e.g. `layers.0.attention.wq.weight`. */
  readonly name: string;
  readonly variable: tf.Variable;
  /** Shape in the reference checkpoint (Linear: `[out, in]`). */
  readonly referenceShape: readonly number[];
  /** Stored transposed relative to the reference (Linear weights are kept `[in, out]` for matMul). */
  readonly transposed: boolean;
}

let instanceCounter = 0;

/**
 * The weights of one model, keyed by reference name. Modules create their weights through a scope
 * (`scope.child('layers.0')`), so names match the reference `state_dict` by construction.
 *
 * tfjs requires variable names to be unique across the whole engine, so each registry tags its
 * variables (`bytelatent3/layers.0...`): two models with the same architecture can coexist.
 */
export class ParameterRegistry {
  private readonly params = new Map<string, Parameter>();
  private readonly tag = `bytelatent${instanceCounter++}`;

  /** All parameters, in creation order. */
  list(): Parameter[] {
    return [...this.params.values()];
  }

  /** The parameter of that reference name. @throws {NnError} when absent */
  get(name: string): Parameter {
    const p = this.params.get(name);
    if (!p) throw new NnError('INVALID_ARGUMENT', `no parameter named "${name}"`);
    return p;
  }

  /** @internal */
  add(name: string, referenceShape: readonly number[], values: Float32Array, transposed: boolean): tf.Variable {
    if (this.params.has(name)) throw new NnError('INVALID_ARGUMENT', `parameter "${name}" defined twice`);
    const shape = transposed ? [...referenceShape].reverse() : [...referenceShape];
    const variable = tf.tidy(() => {
      let t = tf.tensor(values, referenceShape as number[], 'float32');
      if (transposed) t = tf.transpose(t);
      return tf.variable(t, true, `${this.tag}/${name}`);
    });
    if (variable.shape.join() !== shape.join()) throw new NnError('SHAPE_MISMATCH', `internal: ${name}`);
    this.params.set(name, { name, variable, referenceShape: [...referenceShape], transposed });
    return variable;
  }

  /** Number of trainable scalars. */
  count(): number {
    return this.list().reduce((s, p) => s + p.variable.size, 0);
  }

  /** Frees every variable. The model is unusable afterwards. */
  dispose(): void {
    for (const p of this.params.values()) p.variable.dispose();
    this.params.clear();
  }
}

/** A name prefix inside a {@link ParameterRegistry}; modules create their weights through it. */
export class ParameterScope {
  constructor(
    readonly registry: ParameterRegistry,
    readonly prefix = '',
  ) {}

  /** The scope of a sub-module: `child('attention')` → names `...attention.wq.weight`. */
  child(name: string): ParameterScope {
    return new ParameterScope(this.registry, this.prefix ? `${this.prefix}.${name}` : name);
  }

  /**
   * Creates a weight named `<prefix>.<name>`.
   *
   * @param name - local name, e.g. `weight`
   * @param referenceShape - shape in the reference checkpoint
   * @param values - initial values in reference layout
   * @param transposed - keep it transposed (2-D Linear weights)
   */
  variable(name: string, referenceShape: readonly number[], values: Float32Array, transposed = false): tf.Variable {
    const full = this.prefix ? `${this.prefix}.${name}` : name;
    return this.registry.add(full, referenceShape, values, transposed);
  }
}
