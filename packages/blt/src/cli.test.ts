import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { beforeAll, describe, expect, it } from 'vitest';
import { ByteLatentTransformer } from './blt-model.js';
import { savePretrained } from './export-pretrained.js';
import { generate, type GenerateResult } from './generate.js';
import { loadPretrained } from './pretrained.js';
import { SMALL_ARGS } from './test-fixtures.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../dist/cli.js');
/** A BLT written by Meta's reference in the consolidated layout (params.json + consolidated.pth, ../entropy_model). */
const CONSOLIDATED = resolve(here, '../../../tools/golden/fixtures/layout-consolidated/pretrained/blt');
const VERSION = (JSON.parse(readFileSync(resolve(here, '../package.json'), 'utf8')) as { version: string }).version;

const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 2,
  n_heads: 2,
  max_seqlen: 64,
  vocab_size: 260,
  ffn_dim_multiplier: 1.0,
  attn_bias_type: 'local_block_causal',
  sliding_window: 7,
  attn_impl: 'xformers',
};

const PROMPT = 'Bytes in, ';
const folders: Record<'hub' | 'transformers', string> = { hub: '', transformers: '' };

function cli(args: string[], input?: string): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  const blt = new ByteLatentTransformer(SMALL_ARGS, 21);
  const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 22), { mode: 'entropy', threshold: 4.9, maxPatchLength: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'blt-cli-'));
  for (const layout of ['hub', 'transformers'] as const) {
    folders[layout] = join(dir, layout);
    await savePretrained(blt, patcher, folders[layout], { layout });
  }
  blt.dispose();
  patcher.dispose();
});

/** What the library generates in-process from the same folder, on the same backend. */
async function inProcess(folder: string, options: { maxBytes: number; temperature?: number; seed?: number }): Promise<GenerateResult> {
  const loaded = await loadPretrained(folder);
  try {
    return await generate(loaded.model, PROMPT, { patcher: loaded.patcher!, ...options });
  } finally {
    loaded.dispose();
  }
}

describe('bytelatent CLI', () => {
  it('--help, --version, and usage errors with exit status 2', () => {
    const help = cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toContain('usage: bytelatent generate --model DIR');
    // `<bin> <version>`, as every bytelatent CLI prints it; the subcommand takes the flag too.
    for (const args of [['--version'], ['-v'], ['generate', '--version']]) {
      const version = cli(args);
      expect(version.code, args.join(' ')).toBe(0);
      expect(version.stdout.toString()).toBe(`bytelatent ${VERSION}\n`);
      expect(version.stderr).toBe('');
    }
    for (const [args, message] of [
      [[], /give a command/],
      [['train'], /unknown command "train"/],
      [['generate', 'hi'], /generate needs --model DIR/],
      [['generate', '--model', folders.hub], /generate needs a prompt/],
      [['generate', '--model', folders.hub, 'a', 'b'], /one prompt, got 2/],
      [['generate', '--model', folders.hub, '--max-bytes', 'many', 'hi'], /--max-bytes must be an integer >= 0, got "many"/],
      [['generate', '--model', folders.hub, '--temperature=-1', 'hi'], /--temperature must be a number >= 0/],
      [['generate', '--model', folders.hub, '--seed', '1.5', 'hi'], /--seed must be an integer in \[0, 2\^32\)/],
      [['generate', '--model', folders.hub, '--backend', 'tpu', 'hi'], /--backend must be auto, wasm, cpu or webgpu/],
      [['generate', '--bogus'], /Unknown option '--bogus'/],
      [['--bogus'], /Unknown option '--bogus'/],
    ] as const) {
      const r = cli([...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      // One line naming the problem and pointing to --help, not the whole usage.
      expect(r.stderr).toMatch(/^bytelatent: [^\n]+ \(see bytelatent --help\)\n$/);
      expect(r.stdout.length).toBe(0);
    }
  });

  for (const layout of ['hub', 'transformers'] as const) {
    it(`generate on a ${layout} folder: stdout holds exactly the bytes the library generates (greedy)`, async () => {
      const want = await inProcess(folders[layout], { maxBytes: 16 });
      expect(want.bytes.length).toBeGreaterThan(8);
      const r = cli(['generate', '--model', folders[layout], '--max-bytes', '16', '--backend', 'cpu', PROMPT]);
      expect(r.code, r.stderr).toBe(0);
      expect(new Uint8Array(r.stdout)).toEqual(want.bytes);
      expect(r.stderr).toContain(`${layout} layout`);
      expect(r.stderr).toContain('patching entropy, threshold 4.9, max patch length 4');
      expect(r.stderr).toMatch(/backend cpu/);
      expect(r.stderr).toContain(
        `${want.stats.generatedBytes} bytes in ${want.stats.patches - want.stats.promptPatches} patches after a 10-byte prompt (${want.stats.promptPatches} patches)`,
      );
      expect(r.stderr).toContain(`finish: ${want.finishReason}`);
    });
  }

  it('generate on a consolidated checkpoint written by the reference (entropy model beside it, combined rule)', async () => {
    const want = await inProcess(CONSOLIDATED, { maxBytes: 12 });
    const r = cli(['generate', '--model', CONSOLIDATED, '--max-bytes', '12', '--backend', 'cpu', PROMPT]);
    expect(r.code, r.stderr).toBe(0);
    expect(new Uint8Array(r.stdout)).toEqual(want.bytes);
    expect(r.stderr).toContain('consolidated layout');
    expect(r.stderr).toContain('entropy model consolidated layout');
    expect(r.stderr).toContain('patching combined, threshold 5.08, threshold_add 0.01, max patch length 3');
  });

  it('sampling with a seed is reproducible and equals the library; the prompt can come from stdin', async () => {
    const want = await inProcess(folders.hub, { maxBytes: 16, temperature: 1, seed: 7 });
    const a = cli(
      [
        'generate',
        '--model',
        folders.hub,
        '--patcher',
        join(folders.hub, 'entropy_model'),
        '--max-bytes',
        '16',
        '--temperature',
        '1',
        '--seed',
        '7',
        '--backend',
        'cpu',
        '-q',
        '-',
      ],
      PROMPT,
    );
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toBe('');
    expect(new Uint8Array(a.stdout)).toEqual(want.bytes);
  });

  it('streams: the first bytes reach stdout before generation ends', async () => {
    const want = await inProcess(folders.transformers, { maxBytes: 16 });
    const child = spawn(process.execPath, [
      CLI,
      'generate',
      '--model',
      folders.transformers,
      '--max-bytes',
      '16',
      '--backend',
      'cpu',
      PROMPT,
    ]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const seen: number[] = [];
    let statsBeforeFirstByte: boolean | undefined;
    child.stdout.on('data', (d: Buffer) => {
      statsBeforeFirstByte ??= /bytes in \d+ patches/.test(stderr);
      seen.push(d.length);
    });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, stderr).toBe(0);
    expect(statsBeforeFirstByte).toBe(false);
    expect(seen.reduce((s, n) => s + n, 0)).toBe(want.bytes.length);
  });

  it('a folder that is not a model: exit status 1 and the typed error', () => {
    const r = cli(['generate', '--model', tmpdir() + '/no-such-blt-folder', 'hi']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bytelatent: INVALID_CHECKPOINT: /);
  });
});
