// Test helper: a minimal reader of the zip archives the .pth writer produces (central directory,
// ZIP64 end records and extra fields, local headers), independent of the writer's code.
import { crc32 } from 'node:zlib';

export interface ZipEntry {
  readonly name: string;
  readonly crc: number;
  readonly size: number;
  readonly headerOffset: number;
  readonly dataOffset: number;
  readonly method: number;
}

function u16(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint16(at, true);
}
function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(at, true);
}
function u64(b: Uint8Array, at: number): number {
  return Number(new DataView(b.buffer, b.byteOffset).getBigUint64(at, true));
}

export function readZip(file: Uint8Array): ZipEntry[] {
  let eocd = -1;
  for (let i = file.byteLength - 22; i >= 0; i--) {
    if (u32(file, i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('no end of central directory');
  let count = u16(file, eocd + 10);
  let cdOffset = u32(file, eocd + 16);
  if (u32(file, eocd - 20) === 0x07064b50) {
    const z64 = u64(file, eocd - 20 + 8);
    if (u32(file, z64) !== 0x06064b50) throw new Error('bad zip64 end record');
    count = u64(file, z64 + 32);
    cdOffset = u64(file, z64 + 48);
  }
  const entries: ZipEntry[] = [];
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (u32(file, at) !== 0x02014b50) throw new Error(`bad central header at ${at}`);
    const nameLen = u16(file, at + 28);
    const extraLen = u16(file, at + 30);
    const commentLen = u16(file, at + 32);
    const name = new TextDecoder().decode(file.subarray(at + 46, at + 46 + nameLen));
    let size = u32(file, at + 24);
    let headerOffset = u32(file, at + 42);
    const extra = file.subarray(at + 46 + nameLen, at + 46 + nameLen + extraLen);
    for (let e = 0; e < extra.byteLength;) {
      const id = u16(extra, e);
      const len = u16(extra, e + 2);
      if (id === 1) {
        let f = e + 4;
        if (size === 0xffffffff) {
          size = u64(extra, f);
          f += 16;
        }
        if (headerOffset === 0xffffffff) headerOffset = u64(extra, f);
      }
      e += 4 + len;
    }
    if (u32(file, headerOffset) !== 0x04034b50) throw new Error(`${name}: bad local header`);
    const dataOffset = headerOffset + 30 + u16(file, headerOffset + 26) + u16(file, headerOffset + 28);
    entries.push({ name, crc: u32(file, at + 16), size, headerOffset, dataOffset, method: u16(file, at + 10) });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

export function entryData(file: Uint8Array, e: ZipEntry): Uint8Array {
  return file.subarray(e.dataOffset, e.dataOffset + e.size);
}

export function crcOk(file: Uint8Array, e: ZipEntry): boolean {
  return crc32(entryData(file, e)) === e.crc;
}
