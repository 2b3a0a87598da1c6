// A tensor as written to a file: a name, a shape and the reference tensors whose values it holds
// (one, or several stacked along the first axis, like the transformers layout's fused hash table).
import { numel, type ReferenceTensor } from './models.js';
import type { FileSink } from './sink.js';
import { dtypeBytes, fillValues, valueStream, type Dtype } from './values.js';

export interface OutputTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Stacked along axis 0, in order. */
  readonly parts: readonly ReferenceTensor[];
}

/** The reference tensor written under its own name. */
export function asOutput(t: ReferenceTensor, name = t.name): OutputTensor {
  return { name, shape: t.shape, parts: [t] };
}

/** Reference tensors stacked along axis 0 into one output tensor. */
export function stacked(name: string, parts: readonly ReferenceTensor[]): OutputTensor {
  const first = parts[0];
  if (!first) throw new Error(`${name}: nothing to stack`);
  const rest = first.shape.slice(1);
  for (const p of parts) {
    if (p.shape.length !== first.shape.length || p.shape.slice(1).some((d, i) => d !== rest[i])) {
      throw new Error(`${name}: cannot stack ${p.name} ${JSON.stringify(p.shape)} onto ${JSON.stringify(first.shape)}`);
    }
  }
  return { name, shape: [parts.reduce((a, p) => a + (p.shape[0] as number), 0), ...rest], parts };
}

export function outputByteLength(t: OutputTensor, dtype: Dtype): number {
  return numel(t.shape) * dtypeBytes(dtype);
}

/** Streams the tensor's values into the sink (element-aligned if the sink position is). */
export async function writeTensorValues(
  sink: FileSink,
  t: OutputTensor,
  seed: number,
  dtype: Dtype,
  onBytes?: (bytes: Uint8Array) => void,
): Promise<void> {
  const size = dtypeBytes(dtype);
  for (const part of t.parts) {
    const stream = valueStream(part, seed, dtype);
    await sink.fill(stream.numel * size, (dst, offset) => {
      const begin = offset / size;
      fillValues(stream, begin, begin + dst.byteLength / size, dst);
      onBytes?.(dst);
    });
  }
}
