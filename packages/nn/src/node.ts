// Node-only entry (`@bytelatent/nn/node`): file system helpers. The browser-safe API is in `index.ts`.
export { openFileReader, type FileReader } from './file-reader-node.js';
export { openPthFile, writePthFile } from './pth-node.js';
export {
  openSafetensorsFile,
  openShardedSafetensors,
  readSafetensorsFile,
  writeFileAtomic,
  writeSafetensorsFile,
  type ShardedOptions,
  type ShardedSafetensors,
} from './safetensors-node.js';
