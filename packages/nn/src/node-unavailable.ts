// What `@bytelatent/nn/node` resolves to outside Node (the `default` export condition): the same
// names, failing clearly when called, so that bundlers can resolve a dynamic import of the Node
// entry that a browser build never takes.
import { SafetensorsError } from './safetensors.js';

function unavailable(name: string): never {
  throw new SafetensorsError('INVALID_ARGUMENT', `${name} needs Node's file system; it is not available in this environment`);
}

/** Node only: see `@bytelatent/nn/node`. */
export async function readSafetensorsFile(_path: string): Promise<never> {
  return unavailable('readSafetensorsFile');
}

/** Node only: see `@bytelatent/nn/node`. */
export async function writeSafetensorsFile(_path: string, ..._rest: unknown[]): Promise<never> {
  return unavailable('writeSafetensorsFile');
}

/** Node only: see `@bytelatent/nn/node`. */
export async function writeFileAtomic(_path: string, _data: Uint8Array): Promise<never> {
  return unavailable('writeFileAtomic');
}

/** Node only: see `@bytelatent/nn/node`. */
export function openSafetensorsFile(_path: string, ..._rest: unknown[]): never {
  return unavailable('openSafetensorsFile');
}

/** Node only: see `@bytelatent/nn/node`. */
export function openShardedSafetensors(_indexPath: string, ..._rest: unknown[]): never {
  return unavailable('openShardedSafetensors');
}

/** Node only: see `@bytelatent/nn/node`. */
export function openPthFile(_path: string, ..._rest: unknown[]): never {
  return unavailable('openPthFile');
}

/** Node only: see `@bytelatent/nn/node`. */
export async function writePthFile(_path: string, ..._rest: unknown[]): Promise<never> {
  return unavailable('writePthFile');
}

/** Node only: see `@bytelatent/nn/node`. */
export function openFileReader(_path: string): never {
  return unavailable('openFileReader');
}
