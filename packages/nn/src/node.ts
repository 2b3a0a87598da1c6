// Node-only entry (`@bytelatent/nn/node`): file system helpers. The browser-safe API is in `index.ts`.
export { readSafetensorsFile, writeFileAtomic, writeSafetensorsFile } from './safetensors-node.js';
