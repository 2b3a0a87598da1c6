// `.pth` files as `torch.save({"model": state_dict}, path)` writes them, streamed: the archive
// (pickle, zip records, 64-byte alignment, ZIP64, end records) is planned by @bytelatent/nn's writer
// (`planPthArchive`, `pthDataDescriptor`, `pthArchiveEnd`: packages/nn/src/pth-writer.ts, the one
// implementation of the format, byte for byte torch 1.13's for the `torch1` flavour); this file maps
// the generator's tensors onto it and streams each storage's generated values into a FileSink, its
// CRC-32 computed on the way. The archive is named after the file, as torch names it
// (`consolidated.pth` → `consolidated/`).
//
// The CRC is node:zlib's (native, ~5 GB/s here) rather than nn's table-driven one (~0.9 GB/s), which
// would compete with value generation for the one core at the disk's pace; both give the same value.
import { crc32 } from 'node:zlib';
import type { SafetensorsDtype } from '@bytelatent/nn';
// The writer's own entry: the same code as the main entry's, without loading TensorFlow.js (~55 MB
// of RSS and ~1 s of start-up this tool does not need).
import {
  planPthArchive,
  pthArchiveEnd,
  pthDataDescriptor,
  pthStatePickle,
  pthStorageRecordOrder,
  type PthArchivePlan,
  type PthFlavor,
  type PthTensorSpec,
} from '@bytelatent/nn/pth-writer';
import type { FileSink } from './sink.js';
import { outputByteLength, writeTensorValues, type OutputTensor } from './tensors.js';
import type { Dtype } from './values.js';

/** `torch2`: the records torch >= 2.1 writes (byteorder, serialization id). `torch1`: torch 1.6–2.0. */
export type { PthFlavor };

const DTYPES: Readonly<Record<Dtype, SafetensorsDtype>> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

function specs(tensors: readonly OutputTensor[], dtype: Dtype): PthTensorSpec[] {
  return tensors.map((t) => ({ name: t.name, dtype: DTYPES[dtype], shape: t.shape }));
}

/** `data.pkl` of `torch.save({"model": OrderedDict(tensors)})`; storage keys are "0", "1", ... in order. */
export function statePickle(tensors: readonly OutputTensor[], dtype: Dtype, topKey = 'model'): Uint8Array {
  return pthStatePickle(specs(tensors, dtype), { topKey });
}

/** Storage keys in the order torch writes the data records (`sorted()` of the string keys). */
export function storageRecordOrder(count: number): number[] {
  return pthStorageRecordOrder(count);
}

/** A planned `.pth`: nn's archive plan, and the tensors whose values its storage records hold. */
export interface PthPlan extends PthArchivePlan {
  readonly tensors: readonly OutputTensor[];
  readonly dtype: Dtype;
}

/** Plans a `.pth` file: every record's offset and header, and the file size. */
export function planPth(archiveName: string, tensors: readonly OutputTensor[], dtype: Dtype, flavor: PthFlavor = 'torch2'): PthPlan {
  const plan = planPthArchive(specs(tensors, dtype), { archiveName, flavor });
  for (const r of plan.records) {
    if (r.storage !== undefined && r.size !== outputByteLength(tensors[r.storage] as OutputTensor, dtype))
      throw new Error(`${r.name}: planned ${r.size} bytes`);
  }
  return { ...plan, tensors, dtype };
}

/** Streams a planned `.pth` into the sink (which must be at offset 0). */
export async function writePth(sink: FileSink, plan: PthPlan, seed: number): Promise<void> {
  if (sink.position !== 0) throw new Error('a .pth must start at offset 0 of its file');
  const crcs: number[] = [];
  for (const r of plan.records) {
    if (sink.position !== r.offset) throw new Error(`${r.name}: planned at ${r.offset}, writer at ${sink.position}`);
    await sink.write(r.localHeader);
    let crc = 0;
    if (r.bytes !== undefined) {
      crc = crc32(r.bytes);
      await sink.write(r.bytes);
    } else {
      await writeTensorValues(sink, plan.tensors[r.storage as number] as OutputTensor, seed, plan.dtype, (bytes) => {
        crc = crc32(bytes, crc);
      });
    }
    crcs.push(crc);
    await sink.write(pthDataDescriptor(r, crc));
  }
  if (sink.position !== plan.centralOffset)
    throw new Error(`central directory planned at ${plan.centralOffset}, writer at ${sink.position}`);
  await sink.write(pthArchiveEnd(plan, crcs));
  if (sink.position !== plan.totalBytes) throw new Error(`.pth planned at ${plan.totalBytes} bytes, wrote ${sink.position}`);
}
