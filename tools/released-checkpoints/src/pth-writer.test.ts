import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ReferenceTensor } from './models.js';
import { planPth, statePickle, storageRecordOrder } from './pth-writer.js';
import { asOutput, type OutputTensor } from './tensors.js';

function tensors(specs: Array<[string, number[]]>): OutputTensor[] {
  return specs.map(([name, shape]) =>
    asOutput({ name, shape, init: { kind: 'uniform', std: 1 }, component: 'blt' } satisfies ReferenceTensor),
  );
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('.pth pickle', () => {
  it("is byte for byte torch 1.13's data.pkl of torch.save({'model': OrderedDict(...)})", () => {
    // torch.save({"model": sd}) with bf16 zeros of shapes (2,3), (5,), (2,1,3,3), (), (70000,1).
    const torch113 =
      '80027d710058050000006d6f64656c710163636f6c6c656374696f6e730a4f726465726564446963740a710229527103285808000000612e776569676874710463746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71052828580700000073746f72616765710663746f7263680a42466c6f6174313653746f726167650a71075801000000307108580300000063707571094b0674710a514b004b024b0386710b4b034b0186710c8968022952710d74710e52710f5808000000622e77656967687471106805282868066807580100000031711168094b05747112514b004b058571134b018571148968022952711574711652711758010000006371186805282868066807580100000032711968094b1274711a514b00284b024b014b034b0374711b284b094b094b034b0174711c8968022952711d74711e52711f58010000006471206805282868066807580100000033712168094b01747122514b0029298968022952712374712452712558010000006571266805282868066807580100000034712768094a70110100747128514b004a701101004b018671294b014b0186712a8968022952712b74712c52712d75732e';
    const pkl = statePickle(
      tensors([
        ['a.weight', [2, 3]],
        ['b.weight', [5]],
        ['c', [2, 1, 3, 3]],
        ['d', []],
        ['e', [70000, 1]],
      ]),
      'bf16',
    );
    expect(hex(pkl)).toBe(torch113);
    // One tensor: SETITEM instead of MARK ... SETITEMS; f16 → HalfStorage.
    expect(hex(statePickle(tensors([['big', [1]]]), 'f16'))).toBe(
      '80027d710058050000006d6f64656c710163636f6c6c656374696f6e730a4f726465726564446963740a7102295271035803000000626967710463746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71052828580700000073746f72616765710663746f7263680a48616c6653746f726167650a71075801000000307108580300000063707571094b0174710a514b004b0185710b4b0185710c8968022952710d74710e52710f73732e',
    );
  });

  it('batches 1000 items per SETITEMS and switches to 4-byte memo indices like pickle', () => {
    // torch 1.13: 1001 float32 tensors "t0".."t1000" of i % 3 + 1 elements → 85250 bytes, this sha256.
    const pkl = statePickle(tensors(Array.from({ length: 1001 }, (_, i) => [`t${i}`, [(i % 3) + 1]] as [string, number[]])), 'f32');
    expect(pkl.byteLength).toBe(85250);
    expect(createHash('sha256').update(pkl).digest('hex')).toBe('9106edd59fe2ac8c58442d2caef8e8cd3aea9ec76c9a451952c262d48819a43a');
  });

  it('orders storage records by string key like torch', () => {
    expect(storageRecordOrder(12)).toEqual([0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('plans ZIP64 fields and 64-byte alignment past 4 GiB', () => {
    // 3 tensors of 1.5 GiB (bf16) and one of 4.5 GiB: offsets and a size pass 4 GiB.
    const big = tensors([
      ['a', [3 * 2 ** 28]],
      ['b', [3 * 2 ** 28]],
      ['c', [3 * 2 ** 28]],
      ['d', [9 * 2 ** 28]],
      ['e', [3]],
    ]);
    const plan = planPth('consolidated', big, 'bf16');
    expect(plan.records.map((r) => r.name)).toEqual([
      'consolidated/data.pkl',
      'consolidated/byteorder',
      'consolidated/data/0',
      'consolidated/data/1',
      'consolidated/data/2',
      'consolidated/data/3',
      'consolidated/data/4',
      'consolidated/version',
      'consolidated/.data/serialization_id',
    ]);
    for (const r of plan.records) {
      const h = r.localHeader;
      const v = new DataView(h.buffer, h.byteOffset);
      const nameLen = v.getUint16(26, true);
      const extraLen = v.getUint16(28, true);
      expect(30 + nameLen + extraLen).toBe(h.byteLength);
      expect((r.offset + h.byteLength) % 64).toBe(0);
      const needs64 = r.size >= 0xffffffff || r.offset >= 0xffffffff;
      expect(r.zip64).toBe(needs64);
      if (needs64) {
        expect(v.getUint16(30 + nameLen, true)).toBe(1);
        const fields = v.getUint16(30 + nameLen + 2, true) / 8;
        expect(fields).toBe((r.size >= 0xffffffff ? 2 : 0) + (r.offset >= 0xffffffff ? 1 : 0));
      }
      // The "FB" padding field follows.
      const fb = 30 + nameLen + (needs64 ? 4 + 8 * ((r.size >= 0xffffffff ? 2 : 0) + (r.offset >= 0xffffffff ? 1 : 0)) : 0);
      expect(String.fromCharCode(h[fb] as number, h[fb + 1] as number)).toBe('FB');
    }
    expect(plan.records.filter((r) => r.zip64).map((r) => r.name.split('/').slice(1).join('/'))).toEqual([
      'data/3',
      'data/4',
      'version',
      '.data/serialization_id',
    ]);
    expect(plan.totalBytes).toBeGreaterThan(9 * 2 ** 30);
  });
});
