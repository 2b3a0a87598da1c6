import { describe, expect, it } from 'vitest';
import * as real from './node.js';
import * as standIn from './node-unavailable.js';
import {
  openFileReader,
  openPthFile,
  openSafetensorsFile,
  openShardedSafetensors,
  readSafetensorsFile,
  writeFileAtomic,
  writePthFile,
  writeSafetensorsFile,
} from './node-unavailable.js';

describe('the non-Node stand-in for @bytelatent/nn/node', () => {
  it('fails every call with a typed error naming the Node-only function', async () => {
    await expect(readSafetensorsFile('x')).rejects.toMatchObject({
      name: 'SafetensorsError',
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('readSafetensorsFile needs Node'),
    });
    await expect(writeSafetensorsFile('x', {})).rejects.toThrow(/writeSafetensorsFile needs Node/);
    await expect(writeFileAtomic('x', new Uint8Array(1))).rejects.toThrow(/writeFileAtomic needs Node/);
    expect(() => openSafetensorsFile('x')).toThrow(/openSafetensorsFile needs Node/);
    expect(() => openShardedSafetensors('x')).toThrow(/openShardedSafetensors needs Node/);
    expect(() => openPthFile('x')).toThrow(/openPthFile needs Node/);
    await expect(writePthFile('x', {})).rejects.toThrow(/writePthFile needs Node/);
    expect(() => openFileReader('x')).toThrow(/openFileReader needs Node/);
  });

  it('has every name of the Node entry', () => {
    expect(Object.keys(standIn).sort()).toEqual(Object.keys(real).sort());
  });
});
