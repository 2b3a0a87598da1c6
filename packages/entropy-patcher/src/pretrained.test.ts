import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatcherError } from './errors.js';
import { EntropyPatcher } from './patcher.js';
import { findPatchBoundaries } from './patching.js';

// Checkpoints that Meta's reference code itself wrote in each published layout, with the vectors it
// computed from the models its own loaders read back (tools/golden-producer).
const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = resolve(here, '../../../tools/golden/fixtures');
const LAYOUTS = [
  ['consolidated', 'layout-consolidated/pretrained/entropy_model'],
  ['consolidated', 'layout-consolidated/pretrained/blt'],
  ['hub', 'layout-hub/pretrained/blt-entropy'],
  ['consolidated', 'layout-hub/pretrained/blt'],
  ['transformers', 'layout-transformers/pretrained/blt'],
] as const;

interface Case {
  tokens: number[];
  entropies: number[];
  patch_lengths: number[];
}

function cases(fixture: string): Case[] {
  const index = JSON.parse(readFileSync(join(FIXTURES, fixture, 'index.json'), 'utf8')) as { cases: Array<{ name: string }> };
  return index.cases.map((c) => JSON.parse(readFileSync(join(FIXTURES, fixture, 'cases', `${c.name}.json`), 'utf8')) as Case);
}

let scratch: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  scratch = mkdtempSync(join(tmpdir(), 'entropy-pretrained-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('EntropyPatcher.fromPretrained on files the reference wrote', () => {
  for (const [layout, folder] of LAYOUTS) {
    it(`${folder}: ${layout} layout, the reference's entropies and patches, the file's patching settings`, async () => {
      const patcher = await EntropyPatcher.fromPretrained(join(FIXTURES, folder));
      try {
        // The BLT folder of the hub layout holds its entropy model in the consolidated layout.
        expect(patcher.layout).toBe(layout);
        for (const c of cases(folder.split('/')[0]!)) {
          const tokens = Int32Array.from(c.tokens);
          const entropies = (await patcher.model.entropies([tokens]))[0]!;
          const diff = Math.max(...c.entropies.map((e, i) => Math.abs(e - entropies[i]!)));
          expect(diff).toBeLessThan(1e-4);
          // A standalone entropy folder (facebook/blt-entropy) carries no patching settings: the
          // reference's PatcherArgs defaults apply, not the BLT's the vectors were patched with.
          if (folder.endsWith('blt-entropy')) {
            expect(patcher.defaults).toEqual({ mode: 'entropy', threshold: 1.335442066192627 });
            continue;
          }
          const { patchLengths } = findPatchBoundaries(tokens, entropies, {
            ...patcher.defaults,
            mode: patcher.defaults.mode ?? 'entropy',
            includeNextToken: true,
          });
          expect(Array.from(patchLengths)).toEqual(c.patch_lengths);
        }
      } finally {
        patcher.dispose();
      }
    });
  }

  it('reads the settings each layout keeps: combined with a cap, monotonic, a cap', async () => {
    const settings = [];
    for (const folder of ['layout-consolidated/pretrained/blt', 'layout-hub/pretrained/blt', 'layout-transformers/pretrained/blt']) {
      const p = await EntropyPatcher.fromPretrained(join(FIXTURES, folder));
      settings.push(p.defaults);
      p.dispose();
    }
    expect(settings).toEqual([
      { mode: 'combined', threshold: 5.08, thresholdAdd: 0.01, maxPatchLength: 3 },
      { mode: 'monotonic', threshold: 0.02 },
      { mode: 'entropy', threshold: 5.09, maxPatchLength: 4 },
    ]);
  });
});

describe('EntropyPatcher.fromPretrained errors name the file and the field', () => {
  const copy = (from: string, to: string) => {
    const dest = join(scratch, to);
    cpSync(join(FIXTURES, from), dest, { recursive: true });
    return dest;
  };
  const error = async (location: string): Promise<PatcherError> => {
    const e = await EntropyPatcher.fromPretrained(location).then(
      (p) => {
        p.dispose();
        throw new Error('expected an error');
      },
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(PatcherError);
    return e as PatcherError;
  };

  it('a BLT folder whose entropy model is not where the reference keeps it', async () => {
    const blt = copy('layout-consolidated/pretrained/blt', 'alone/blt');
    const e = await error(blt);
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/params\.json describes a BLT, and no entropy model was found in .*alone\/entropy_model/);
  });

  it('a truncated .pth and a missing weights file', async () => {
    const dir = copy('layout-consolidated/pretrained/entropy_model', 'cut/entropy_model');
    truncateSync(join(dir, 'consolidated.pth'), 5000);
    let e = await error(dir);
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('consolidated.pth');
    const hub = copy('layout-hub/pretrained/blt-entropy', 'noweights/blt-entropy');
    rmSync(join(hub, 'model.safetensors'));
    e = await error(hub);
    expect(e.message).toMatch(/model\.safetensors is missing beside .*config\.json \(hub layout\)/);
  });

  it('arguments the reference would refuse, and a patching mode we do not have', async () => {
    const hub = copy('layout-hub/pretrained/blt-entropy', 'sdpa/blt-entropy');
    const config = JSON.parse(readFileSync(join(hub, 'config.json'), 'utf8')) as { args: Record<string, unknown> };
    config.args['attn_impl'] = 'sdpa';
    writeFileSync(join(hub, 'config.json'), JSON.stringify(config));
    let e = await error(hub);
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toMatch(/sdpa\/blt-entropy: entropy model args: attn_impl "sdpa" cannot build the local_block_causal mask/);
    const ent = copy('layout-consolidated/pretrained/entropy_model', 'bpe/entropy_model');
    const params = JSON.parse(readFileSync(join(ent, 'params.json'), 'utf8')) as { data: { patcher_args: Record<string, unknown> } };
    params.data.patcher_args['patching_mode'] = 'wordpiece';
    writeFileSync(join(ent, 'params.json'), JSON.stringify(params));
    e = await error(ent);
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toMatch(/params\.json data\.patcher_args: patching_mode "wordpiece" is not supported/);
  });
});
