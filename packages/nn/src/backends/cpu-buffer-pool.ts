/**
 * Output arrays for our cpu kernels, reused once tfjs disposes the tensor that held one.
 *
 * Why: the cpu backend gives every kernel output a new `Float32Array`, and a large new array costs
 * its first-touch page faults. On a virtual machine these run at a few hundred MB/s, and for a
 * released-size model they took about as long as the products themselves. A forward pass disposes
 * its intermediates at the end of each `tf.tidy`, so the same sizes come back again and again.
 *
 * An array is reused only when nothing outside the backend can still see it. It must have been made
 * here and attached to exactly one tensor as a whole array. It must never have been read out
 * (`readSync`, `read`: `dataSync()` and `data()` hand out the backend's own array). It must never
 * have been shared by a view (a contiguous `Slice` returns a `subarray`) or moved in. Once such a
 * tensor is disposed, its array goes back to a pool, bounded in bytes and per size.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { DataId } from '@tensorflow/tfjs-core';

/** Most bytes the pool keeps for reuse. */
const POOL_BYTES = 512 * 2 ** 20;
/** Most arrays kept per length. */
const PER_LENGTH = 8;
/** Arrays below this many elements are cheap to make: never pooled. */
const MIN_LENGTH = 16384;

interface Ownership {
  /** Attached to a tensor now. */
  attached: boolean;
  /** Seen outside the backend, or shared by a view: never reused. */
  exposed: boolean;
}

interface PoolState {
  readonly owned: WeakMap<ArrayBuffer, Ownership>;
  readonly free: Map<number, Float32Array[]>;
  bytes: number;
  readonly hooked: WeakSet<object>;
}

// Shared by every copy of this module: the backend is hooked once, and every copy's arrays are known.
const STATE_KEY = Symbol.for('@bytelatent/nn:cpu-buffer-pool');
function state(): PoolState {
  const holder = globalThis as unknown as Record<symbol, PoolState | undefined>;
  holder[STATE_KEY] ??= { owned: new WeakMap(), free: new Map(), bytes: 0, hooked: new WeakSet() };
  return holder[STATE_KEY];
}

/**
 * A float32 array of `length` elements for a kernel output: a reused one when the pool has one (its
 * contents are then stale unless `zeroed`), else a new one.
 *
 * @param length - elements
 * @param zeroed - whether the caller needs zeros (a new array always has them)
 */
export function poolFloat32(length: number, zeroed = false): Float32Array {
  const s = state();
  if (length >= MIN_LENGTH) {
    const list = s.free.get(length);
    const reused = list?.pop();
    if (reused !== undefined) {
      s.bytes -= reused.byteLength;
      s.owned.set(reused.buffer as ArrayBuffer, { attached: false, exposed: false });
      if (zeroed) reused.fill(0);
      return reused;
    }
  }
  const fresh = new Float32Array(length);
  if (length >= MIN_LENGTH) s.owned.set(fresh.buffer, { attached: false, exposed: false });
  return fresh;
}

function ownership(values: unknown): Ownership | undefined {
  if (!(values instanceof Float32Array)) return undefined;
  return state().owned.get(values.buffer as ArrayBuffer);
}

function expose(values: unknown): void {
  const o = ownership(values);
  if (o !== undefined) o.exposed = true;
}

/**
 * Hooks a cpu backend instance so that arrays from {@link poolFloat32} are tracked and come back
 * when their tensor is disposed. Idempotent per instance.
 *
 * @param backend - the cpu backend (`tf.findBackend('cpu')`)
 */
export function hookCpuBufferPool(backend: MathBackendCPU): void {
  const s = state();
  if (s.hooked.has(backend)) return;
  s.hooked.add(backend);
  const data = () => backend.data;
  const write = backend.write.bind(backend);
  backend.write = (values, shape, dtype) => {
    const o = ownership(values);
    if (o !== undefined) {
      const whole = values instanceof Float32Array && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
      if (o.attached || !whole) o.exposed = true;
      else o.attached = true;
    }
    return write(values, shape, dtype);
  };
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: DataId) => {
    expose(data().get(dataId)?.values);
    return readSync(dataId);
  };
  const read = backend.read.bind(backend);
  backend.read = (dataId: DataId) => {
    expose(data().get(dataId)?.values);
    return read(dataId);
  };
  const move = backend.move.bind(backend);
  backend.move = (dataId, values, shape, dtype, refCount) => {
    expose(values);
    move(dataId, values, shape, dtype, refCount);
  };
  const disposeData = backend.disposeData.bind(backend);
  backend.disposeData = (dataId: DataId, force?: boolean) => {
    const values = data().get(dataId)?.values;
    const removed = disposeData(dataId, force);
    if (removed && values instanceof Float32Array && !data().has(dataId)) release(values);
    return removed;
  };
}

function release(values: Float32Array): void {
  const s = state();
  const o = s.owned.get(values.buffer as ArrayBuffer);
  if (o === undefined || o.exposed || !o.attached) return;
  o.attached = false;
  if (s.bytes + values.byteLength > POOL_BYTES) return;
  let list = s.free.get(values.length);
  if (list === undefined) s.free.set(values.length, (list = []));
  if (list.length >= PER_LENGTH) return;
  list.push(values);
  s.bytes += values.byteLength;
}

/** Bytes the pool holds for reuse now (for tests and benchmarks). */
export function cpuBufferPoolBytes(): number {
  return state().bytes;
}
