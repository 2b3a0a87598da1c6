/**
 * Sharded safetensors checkpoints (`model.safetensors.index.json` + `model-0000i-of-0000n.safetensors`),
 * browser-safe: the index parsed and checked, and the shards — however they were opened (positioned
 * file reads in Node, fetched bytes, files in memory) — checked against it and served as one source.
 */
import { SafetensorsError } from './safetensors.js';
import { type TensorSource, listSome, mergeTensorSources } from './tensor-source.js';

/** A parsed `model.safetensors.index.json`. */
export interface ShardIndex {
  /** The index's `metadata` object (`{ total_size }` usually; empty if absent). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The index's `weight_map`: tensor name → shard file, relative to the index's folder. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** The shard files in the order of their first appearance in `weight_map`. */
  readonly files: readonly string[];
}

/**
 * Parses and checks an index: a JSON object whose `weight_map` maps tensor names to relative file
 * paths inside the index's folder (no absolute path, no `..`, no empty segment).
 *
 * @param index - the parsed JSON
 * @param description - names the index in errors
 * @throws {SafetensorsError} `INVALID_INDEX` naming the bad entry
 */
export function parseShardIndex(index: unknown, description: string): ShardIndex {
  const bad = (why: string) => new SafetensorsError('INVALID_INDEX', `${description}: ${why}`);
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw bad('must be a JSON object with a "weight_map"');
  const map = (index as Record<string, unknown>)['weight_map'];
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw bad('"weight_map" must be an object mapping tensor names to shard files');
  const meta = (index as Record<string, unknown>)['metadata'] ?? {};
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw bad('"metadata" must be an object');
  const weightMap = new Map<string, string>();
  for (const [tensor, file] of Object.entries(map)) {
    if (
      typeof file !== 'string' ||
      file === '' ||
      /^([a-zA-Z]:)?[\\/]/.test(file) ||
      file.split(/[\\/]/).some((part) => part === '..' || part === '') ||
      file.includes('\0')
    ) {
      throw bad(
        `"weight_map"[${JSON.stringify(tensor)}] must be a relative file path inside the index's folder, got ${JSON.stringify(file)}`,
      );
    }
    weightMap.set(tensor, file);
  }
  if (weightMap.size === 0) throw bad('"weight_map" is empty');
  return {
    metadata: Object.freeze({ ...(meta as Record<string, unknown>) }),
    weightMap,
    files: Object.freeze([...new Set(weightMap.values())]),
  };
}

/**
 * The error for shards of an index that do not exist.
 *
 * @param missing - the files, as the index names them
 * @param show - how to name a file in the message (its path or URL)
 */
export function missingShardsError(
  index: ShardIndex,
  missing: readonly string[],
  description: string,
  show: (file: string) => string = (f) => f,
): SafetensorsError {
  const lines = missing.map((file) => {
    const listed = [...index.weightMap.values()].filter((f) => f === file).length;
    return `${show(file)} (index lists ${listed} tensor${listed === 1 ? '' : 's'} in it)`;
  });
  return new SafetensorsError(
    'MISSING_SHARD',
    `${description}: ${missing.length} of ${index.files.length} shard file(s) missing:\n  ${listSome(lines)}`,
  );
}

/**
 * The shards as one source, checked against the index: every tensor the index names is in the
 * shard it names, and no shard holds a tensor the index does not put there. `close()` closes every
 * shard; on failure they are closed before the error is thrown.
 *
 * @param index - the parsed index
 * @param shards - every file of `index.files`, opened
 * @param description - names the index in errors
 * @throws {SafetensorsError} `DUPLICATE_TENSOR`, `INDEX_MISMATCH` listing every problem
 */
export function shardedTensorSource(index: ShardIndex, shards: ReadonlyMap<string, TensorSource>, description: string): TensorSource {
  const closeAll = () => {
    for (const shard of shards.values()) shard.close?.();
  };
  try {
    const merged = mergeTensorSources([...shards.values()], description);
    const mismatches: string[] = [];
    for (const [tensor, file] of index.weightMap) {
      if (!shards.get(file)?.has(tensor)) mismatches.push(`the index puts "${tensor}" in ${file}, which does not hold it`);
    }
    for (const [file, shard] of shards) {
      for (const tensor of shard.names()) {
        const listed = index.weightMap.get(tensor);
        if (listed !== file)
          mismatches.push(`${file} holds "${tensor}", which the index ${listed === undefined ? 'does not list' : `puts in ${listed}`}`);
      }
    }
    if (mismatches.length > 0) {
      throw new SafetensorsError(
        'INDEX_MISMATCH',
        `${description} does not match its shards (${mismatches.length} problem(s)):\n  ${listSome(mismatches)}`,
      );
    }
    return { ...merged, close: closeAll };
  } catch (e) {
    closeAll();
    throw e;
  }
}
