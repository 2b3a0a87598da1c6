// Runs in Chromium under src/browser-checkpoint.test.ts: @bytelatent/blt's own checkpoint format
// through tfjs's browser routers. Saves to IndexedDB and loads back, loads a directory that Node
// saved over HTTP, and checks that a missing checkpoint is a typed error. Writes one JSON object
// into #result (and window.checkResult).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bytelatent/nn';
import { ByteLatentTransformer, loadBlt, saveBlt, type BltArgs } from '@bytelatent/blt';

const params = new URLSearchParams(location.search);
const args = JSON.parse(params.get('args')!) as BltArgs;
const seed = Number(params.get('seed'));
const tokens = [Int32Array.from(JSON.parse(params.get('tokens')!) as number[])];
const lengths = [Int32Array.from(JSON.parse(params.get('lengths')!) as number[])];

async function logits(model: ByteLatentTransformer): Promise<number[]> {
  const out = model.forward(tokens, lengths);
  const values = Array.from(await out.data());
  out.dispose();
  return values;
}

const maxAbsDiff = (a: number[], b: number[]) => (a.length !== b.length ? Infinity : Math.max(...a.map((x, i) => Math.abs(x - b[i]!))));

async function run(): Promise<Record<string, unknown>> {
  await initBackend({ backend: 'cpu' });
  const model = new ByteLatentTransformer(args, seed);
  const reference = await logits(model);
  const saved = await saveBlt(model, 'indexeddb://bytelatent-check');
  const fromIndexedDb = await loadBlt('indexeddb://bytelatent-check');
  const fromHttp = await loadBlt(new URL('node-checkpoint/model.json', location.href).href);
  let missing: { name: string; code: unknown; message: string } | undefined;
  try {
    (await loadBlt('indexeddb://no-such-checkpoint')).dispose();
  } catch (e) {
    missing = { name: (e as Error).name, code: (e as { code?: unknown }).code, message: (e as Error).message };
  }
  const result = {
    savedBytes: saved.modelArtifactsInfo.weightDataBytes,
    indexedDbMaxAbsDiff: maxAbsDiff(reference, await logits(fromIndexedDb)),
    httpMaxAbsDiff: maxAbsDiff(reference, await logits(fromHttp)),
    logits: reference.slice(0, 8),
    missing,
  };
  for (const m of [model, fromIndexedDb, fromHttp]) m.dispose();
  return { ...result, numTensors: tf.memory().numTensors };
}

run()
  .then(
    (r) => r,
    (e: unknown) => ({ error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }),
  )
  .then((r) => {
    (window as unknown as { checkResult: unknown }).checkResult = r;
    document.getElementById('result')!.textContent = JSON.stringify(r);
  });
