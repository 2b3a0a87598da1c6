import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// What a user who never calls initBackend gets: the loaders choose the backend themselves (no tfjs
// banner, no Dawn warnings, nothing printed on a good backend), a backend the user set is kept, and
// the pure-JavaScript cpu backend is never used silently. Each case runs in a fresh Node process,
// since the choice is made once per process.

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

/** Runs an ES module script from this package's folder; its stdout and stderr. */
function run(script: string): { stdout: string; stderr: string } {
  const env = { ...process.env };
  // A user's machine: no test-only Vulkan driver override.
  delete env['VK_ICD_FILENAMES'];
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: PACKAGE_DIR, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

describe('the backend of a user who never chose one', () => {
  it("the README's pretrained example runs on wasm (or a hardware GPU) and prints nothing but its own output", () => {
    const { stdout, stderr } = run(`
      import { EntropyPatcher } from '@bytelatent/entropy-patcher';
      const patcher = await EntropyPatcher.pretrained();
      const { segments } = await patcher.patch('Alice was beginning to get very tired of sitting by her sister on the bank.');
      console.log(segments().map((s) => s.text).join('|'));
      console.log(JSON.stringify({ name: patcher.backend.name, reason: patcher.backend.reason, gpuGlobals: 'GPUBufferUsage' in globalThis }));`);
    const [line, info] = stdout.trim().split('\n');
    expect(line).toMatch(/^A.*\|was \|/);
    const backend = JSON.parse(info!) as { name: string; reason: string; gpuGlobals: boolean };
    expect(['wasm', 'webgpu']).toContain(backend.name);
    expect(backend.reason).toMatch(/^auto/);
    // WebGPU constants are only installed on the globals when WebGPU is chosen.
    expect(backend.gpuGlobals).toBe(backend.name === 'webgpu');
    expect(stderr).toBe('');
  });

  it('keeps a backend the user set, and says in one line (silenced by quiet) when that is the pure-JavaScript cpu backend', () => {
    const script = (quiet: boolean) => `
      import * as tf from '@tensorflow/tfjs-core';
      import '@tensorflow/tfjs-backend-cpu';
      import { EntropyPatcher } from '@bytelatent/entropy-patcher';
      await tf.setBackend('cpu');
      const patcher = await EntropyPatcher.pretrained({ quiet: ${quiet} });
      await patcher.patch('Hello there.');
      console.log(JSON.stringify(patcher.backend));`;
    const loud = run(script(false));
    expect(JSON.parse(loud.stdout)).toEqual({ name: 'cpu', reason: 'chosen by the caller' });
    expect(loud.stderr.trim().split('\n')).toHaveLength(1);
    expect(loud.stderr).toMatch(/^bytelatent: running on TensorFlow\.js's pure-JavaScript cpu backend \(chosen by the caller\)/);
    expect(loud.stderr).not.toContain('Hi, looks like you are running TensorFlow.js');
    const quiet = run(script(true));
    expect(JSON.parse(quiet.stdout).name).toBe('cpu');
    expect(quiet.stderr).toBe('');
  });

  it('takes the backend asked for (backend option) and refuses an unknown one with a typed error', () => {
    const { stdout } = run(`
      import { EntropyPatcher } from '@bytelatent/entropy-patcher';
      const patcher = await EntropyPatcher.pretrained({ backend: 'cpu', quiet: true });
      let error;
      try { await EntropyPatcher.pretrained({ backend: 'tpu' }); } catch (e) { error = { name: e.name, code: e.code }; }
      console.log(JSON.stringify({ name: patcher.backend.name, reason: patcher.backend.reason, error }));`);
    expect(JSON.parse(stdout)).toEqual({
      name: 'cpu',
      reason: "forced (backend: 'cpu')",
      error: { name: 'PatcherError', code: 'INVALID_ARGUMENT' },
    });
  });
});
