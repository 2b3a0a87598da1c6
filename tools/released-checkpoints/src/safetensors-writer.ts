// safetensors files as the `safetensors` library writes them (`save_file` / `save_model`, as used by
// huggingface_hub's PyTorchModelHubMixin and transformers' save_pretrained): an 8-byte little-endian
// header length, a compact JSON header (`__metadata__` first, then the tensors sorted by dtype and
// name, each `{"dtype","shape","data_offsets"}`) padded with spaces to a multiple of 8, then the
// tensors' bytes in header order.
import type { FileSink } from './sink.js';
import { outputByteLength, writeTensorValues, type OutputTensor } from './tensors.js';
import type { Dtype } from './values.js';

export function safetensorsDtype(dtype: Dtype): 'BF16' | 'F16' | 'F32' {
  return dtype === 'bf16' ? 'BF16' : dtype === 'f16' ? 'F16' : 'F32';
}

function byName(a: OutputTensor, b: OutputTensor): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The tensors in the order the file stores them (one dtype: sorted by name). */
export function safetensorsOrder(tensors: readonly OutputTensor[]): OutputTensor[] {
  const sorted = [...tensors].sort(byName);
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] as OutputTensor).name === (sorted[i - 1] as OutputTensor).name)
      throw new Error(`tensor ${(sorted[i] as OutputTensor).name} appears twice`);
  }
  return sorted;
}

/** The header bytes (length prefix included) of a safetensors file of these tensors. */
export function safetensorsHeader(tensors: readonly OutputTensor[], dtype: Dtype, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const entries: string[] = [];
  if (metadata) entries.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const t of safetensorsOrder(tensors)) {
    const end = offset + outputByteLength(t, dtype);
    entries.push(
      `${JSON.stringify(t.name)}:{"dtype":"${safetensorsDtype(dtype)}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength);
  return out;
}

export function safetensorsFileBytes(tensors: readonly OutputTensor[], dtype: Dtype, metadata?: Readonly<Record<string, string>>): number {
  return safetensorsHeader(tensors, dtype, metadata).byteLength + tensors.reduce((a, t) => a + outputByteLength(t, dtype), 0);
}

export async function writeSafetensors(
  sink: FileSink,
  tensors: readonly OutputTensor[],
  seed: number,
  dtype: Dtype,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await sink.write(safetensorsHeader(tensors, dtype, metadata));
  for (const t of safetensorsOrder(tensors)) await writeTensorValues(sink, t, seed, dtype);
}
