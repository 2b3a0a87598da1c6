import * as tf from '@tensorflow/tfjs-core';
import { noteImplicitBackend } from '../implicit-backend.js';
import { NnError } from '../errors.js';
import { transposeFloat32 } from '../tensor-source.js';

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

/** Options of {@link ParameterRegistry}. */
export interface ParameterRegistryOptions {
  /**
   * Most trainable scalars the registry accepts in all. A weight that would pass the limit is
   * refused (`TOO_LARGE`) before its values are computed or allocated, so a model built from
   * untrusted arguments (a checkpoint's metadata) never allocates more than its checkpoint holds.
   * Default: no limit.
   */
  readonly maxParameters?: number;
  /**
   * Values that take the place of every module's own initialisation, by reference name and shape,
   * e.g. a checkpoint's ({@link CheckpointInitializer}): the model is then built straight from them,
   * without computing a random initialisation or holding a second copy. The values are in the
   * stored layout: transposed (`[in, out]`) when `transposed` is true, as a 2-D Linear weight is
   * kept. Returning `undefined` keeps the module's initialisation for that weight.
   */
  readonly initialValues?: (name: string, referenceShape: readonly number[], transposed: boolean) => Float32Array | undefined;
}

/** Initial values of a weight, or a function computing them (called only once the size is accepted). */
export type InitialValues = Float32Array | (() => Float32Array);

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
  private total = 0;
  /** The limit on trainable scalars (Infinity when none). */
  readonly maxParameters: number;
  private readonly initialValues: ParameterRegistryOptions['initialValues'];

  /**
   * @param options - an optional limit on the number of trainable scalars, values replacing the initialisation
   * @throws {NnError} `INVALID_ARGUMENT` for a limit that is not a non-negative integer (or Infinity)
   */
  constructor(options: ParameterRegistryOptions = {}) {
    const max = options.maxParameters ?? Number.POSITIVE_INFINITY;
    if (typeof max !== 'number' || !(max === Number.POSITIVE_INFINITY || (Number.isSafeInteger(max) && max >= 0))) {
      throw new NnError('INVALID_ARGUMENT', `maxParameters must be a non-negative integer, got ${String(max)}`);
    }
    this.maxParameters = max;
    this.initialValues = options.initialValues;
    noteImplicitBackend();
  }

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

  /**
   * @internal
   * @throws {NnError} `TOO_LARGE` past `maxParameters` (checked before `values` is called)
   */
  add(name: string, referenceShape: readonly number[], values: InitialValues, transposed: boolean): tf.Variable {
    if (this.params.has(name)) throw new NnError('INVALID_ARGUMENT', `parameter "${name}" defined twice`);
    const size = referenceShape.reduce((a, b) => a * b, 1);
    if (this.total + size > this.maxParameters) {
      throw new NnError(
        'TOO_LARGE',
        `parameter "${name}" of shape [${referenceShape.join(', ')}] would bring the model to ${this.total + size} parameters, more than the limit of ${this.maxParameters}`,
      );
    }
    const shape = transposed ? [...referenceShape].reverse() : [...referenceShape];
    const transposable = transposed && referenceShape.length === 2;
    let data = this.initialValues?.(name, referenceShape, transposed);
    if (data === undefined) {
      data = typeof values === 'function' ? values() : values;
      if (data.length !== size) {
        throw new NnError('SHAPE_MISMATCH', `parameter "${name}": ${data.length} initial values for shape [${referenceShape.join(', ')}]`);
      }
      // On the host: a backend's generic transpose of a large matrix (the cpu backend's walks every
      // index) costs far more than this cache-blocked loop.
      if (transposable) data = transposeFloat32(data, referenceShape[0]!, referenceShape[1]!);
    }
    if (data.length !== size) {
      throw new NnError('SHAPE_MISMATCH', `parameter "${name}": ${data.length} initial values for shape [${referenceShape.join(', ')}]`);
    }
    const stored = data;
    const variable = tf.tidy(() => {
      let t = tf.tensor(stored, (transposable ? shape : referenceShape) as number[], 'float32');
      if (transposed && !transposable) t = tf.transpose(t);
      return tf.variable(t, true, `${this.tag}/${name}`);
    });
    if (variable.shape.join() !== shape.join()) throw new NnError('SHAPE_MISMATCH', `internal: ${name}`);
    this.params.set(name, { name, variable, referenceShape: [...referenceShape], transposed });
    this.total += size;
    return variable;
  }

  /** Number of trainable scalars. */
  count(): number {
    return this.total;
  }

  /** Frees every variable. The model is unusable afterwards. */
  dispose(): void {
    for (const p of this.params.values()) p.variable.dispose();
    this.params.clear();
    this.total = 0;
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
   * @param values - initial values in reference layout, or a function computing them (called only
   *   once the registry accepts the size, see {@link ParameterRegistryOptions.maxParameters})
   * @param transposed - keep it transposed (2-D Linear weights)
   * @throws {NnError} `TOO_LARGE` past the registry's `maxParameters`
   */
  variable(name: string, referenceShape: readonly number[], values: InitialValues, transposed = false): tf.Variable {
    const full = this.prefix ? `${this.prefix}.${name}` : name;
    return this.registry.add(full, referenceShape, values, transposed);
  }
}
