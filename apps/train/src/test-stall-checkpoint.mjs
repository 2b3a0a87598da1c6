// Test-only preload (`node --import ./test-stall-checkpoint.mjs dist/cli.js ...`), used by cli.test.ts to
// SIGKILL the trainer in the middle of a checkpoint write, deterministically: the Nth time the process
// opens a checkpoint's temporary file (writeFileAtomic's `checkpoint.safetensors.tmp-<pid>-<hex>`),
// where N is $BYTELATENT_STALL_CHECKPOINT_WRITE, it writes the first half of the bytes, prints
// `stalled in checkpoint write N` on stderr and waits; the test kills it there. Other writes run as usual.
// Patches node:fs/promises `open` and re-syncs the ESM bindings before the CLI imports anything.
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const stallAt = Number(process.env.BYTELATENT_STALL_CHECKPOINT_WRITE ?? 0);
const realOpen = fsp.open;
let writes = 0;

fsp.open = async function open(path, ...rest) {
  const handle = await realOpen.call(this, path, ...rest);
  if (typeof path === 'string' && /checkpoint\.safetensors\.tmp-/.test(path) && ++writes === stallAt) {
    handle.writeFile = async (data) => {
      const half = Math.floor(data.byteLength / 2);
      await handle.write(data, 0, half, 0);
      await handle.sync();
      process.stderr.write(`stalled in checkpoint write ${writes} (${half} of ${data.byteLength} bytes written)\n`);
      await new Promise((resolve) => setTimeout(resolve, 120_000));
      throw new Error('the test should have killed this process');
    };
  }
  return handle;
};
syncBuiltinESMExports();
