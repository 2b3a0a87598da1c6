/**
 * Choosing and initialising the TensorFlow.js backend: WebGPU, wasm or cpu, in the browser and in
 * Node.
 *
 * Every backend but cpu is loaded with a dynamic `import()`, so importing this module registers
 * only tfjs's cpu default: code that never calls {@link initBackend} runs on it, users without a GPU never
 * load the WebGPU code, and bundlers can split each backend into its own chunk. (A statically
 * imported wasm backend would register itself at priority 2 and make every synchronous tfjs call
 * made before `await tf.ready()` throw "backend 'wasm' has not yet been initialized".)
 */
import { CodedError } from '@bytelatent/bytes';
import { engine, findBackend, findBackendFactory, getBackend, setBackend } from '@tensorflow/tfjs-core';
// The one backend registered statically: tfjs's pure-JavaScript cpu backend needs no initialisation,
// so it is the default that a model built before initBackend runs on (tfjs-core registers none).
import '@tensorflow/tfjs-backend-cpu';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { silenceCpuBanner } from '../implicit-backend.js';
import type * as WasmKernelFixesModule from './wasm-kernels.js';
import type { NativeSgemmLike } from './wasm-native-matmul.js';

export type { WasmMatMulKind } from './wasm-kernels.js';

/** A backend {@link initBackend} can select. */
export type BackendName = 'webgpu' | 'wasm' | 'cpu';

/** Machine-readable reason of a {@link BackendError}. */
export type BackendErrorCode = 'BACKEND_UNAVAILABLE' | 'INVALID_ARGUMENT';

/**
 * Errors of backend selection: `BACKEND_UNAVAILABLE` when a requested backend cannot be
 * initialised (the message says why), `INVALID_ARGUMENT` for malformed options.
 */
export class BackendError extends CodedError<BackendErrorCode> {
  override readonly name = 'BackendError';
}

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * `'auto'` (default): WebGPU on a hardware adapter, else wasm, else cpu. A named backend is used
   * or the call fails; it never falls back to another one.
   */
  readonly backend?: 'auto' | BackendName;
  /**
   * Where the wasm backend's `.wasm` files are served (a URL prefix ending in `/`), passed to
   * `setWasmPaths`. Needed in the browser when a bundler does not serve them next to the script;
   * Node finds them in `node_modules` by itself. Only takes effect before the wasm backend's first
   * initialisation in the process.
   */
  readonly wasmPaths?: string;
  /**
   * Accept a software WebGPU adapter (SwiftShader, lavapipe/llvmpipe, a fallback adapter). Default
   * `false`: these run far slower than wasm, so they are only useful for correctness tests.
   * In Node this also lets {@link initBackend} point Vulkan at Chromium's SwiftShader.
   */
  readonly allowSoftwareGpu?: boolean;
  /**
   * wasm and cpu in Node only: `'auto'` (default) runs the backend's float32 matmuls (`BatchMatMul`,
   * `_FusedMatMul`) through OpenBLAS when the optional `@bytelatent/native-sgemm` package is
   * installed and its addon built, on the tensors where the backend keeps them, without copies, several times faster than wasm's kernels and far faster than cpu's
   * (docs/performance.md §2). `'off'`
   * keeps (or restores) the backend's kernels. The results differ from theirs by float32 rounding
   * only. {@link BackendInfo.nativeMatMul} says what happened.
   */
  readonly nativeMatMul?: 'auto' | 'off';
}

/** Whether the backend's matmuls run natively (OpenBLAS), see {@link InitBackendOptions.nativeMatMul}. */
export interface NativeMatMulInfo {
  readonly active: boolean;
  /**
   * When active, what runs them (e.g. `'OpenBLAS 0.3.21 ... (core Zen), 2 threads'`); otherwise why
   * not (e.g. `'the optional @bytelatent/native-sgemm package is not installed'`).
   */
  readonly reason: string;
}

/** The backend {@link initBackend} selected. */
export interface BackendInfo {
  readonly name: BackendName;
  /** WebGPU only: the adapter's description (or vendor and architecture where that is empty). */
  readonly adapter?: string;
  /** WebGPU only: whether the adapter is a software rasterizer. */
  readonly software?: boolean;
  /** Why this backend was chosen, e.g. `'webgpu unavailable: no adapter; wasm'`. */
  readonly reason: string;
  /** wasm and cpu only: whether its matmuls run natively through OpenBLAS, and why (not). */
  readonly nativeMatMul?: NativeMatMulInfo;
}

/** The functions of the wasm kernel fixes module, see {@link loadWasmKernelFixes}. */
export type WasmKernelFixes = Pick<
  typeof WasmKernelFixesModule,
  'registerWasmKernelFixes' | 'withOriginalWasmKernels' | 'withWasmMatMul' | 'activeWasmMatMul'
>;

/** The exports of `@bytelatent/native-sgemm` used here (declared structurally: it is optional). */
interface NativeSgemmPackage {
  loadNativeSgemm(): (NativeSgemmLike & { readonly config: string; getNumThreads(): number }) | undefined;
  nativeSgemmUnavailableReason(): string | undefined;
}

const NATIVE_MATMUL_CHOICES: readonly string[] = ['auto', 'off'];

const BACKEND_CHOICES: readonly string[] = ['auto', 'webgpu', 'wasm', 'cpu'];

/** Chromium's SwiftShader Vulkan driver, the software WebGPU of Debian machines (`apt-get install chromium libvulkan1`). */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Adapter names of CPU rasterizers: SwiftShader, Mesa's lavapipe (llvmpipe), softpipe, Windows WARP. */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render/i;

// Minimal structural types of the WebGPU objects used here. The `@webgpu/types` declarations are
// not part of this package's compilation (tsconfig `types: ["node"]`), and only these members are
// read.
interface GpuAdapterInfoLike {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly device?: string;
  readonly description?: string;
  readonly isFallbackAdapter?: boolean;
}
interface GpuAdapterLike {
  readonly info?: GpuAdapterInfoLike;
  /** Older spelling, before it moved to `info`. */
  readonly isFallbackAdapter?: boolean;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'low-power' | 'high-performance' }): Promise<GpuAdapterLike | null>;
}
interface WebgpuPackage {
  create(options: string[]): GpuLike;
  globals: object;
}

type Attempt = { ok: true; adapter?: string; software?: boolean } | { ok: false; why: string; skipped?: boolean };

interface Resolved {
  readonly backend: 'auto' | BackendName;
  readonly wasmPaths: string | undefined;
  readonly allowSoftwareGpu: boolean;
  readonly nativeMatMul: 'auto' | 'off';
}

/** The last successful selection, returned as is while the options and tfjs's backend are unchanged. */
let current: { key: string; info: BackendInfo } | undefined;
/** Calls run one after another: two concurrent selections would race on tfjs's global backend. */
let queue: Promise<unknown> = Promise.resolve();
/** The Dawn GPU created in Node, and the `VK_ICD_FILENAMES` it was created under. */
let nodeGpu: { icd: string | undefined; gpu: GpuLike } | undefined;
/** The WebGPU constants of the Node `webgpu` package, installed on the globals once WebGPU is chosen. */
let webgpuGlobals: object | undefined;
/** The adapter tfjs's WebGPU backend was initialised on (tfjs keeps that backend for the process). */
let webgpuAdapter: { adapter: string; software: boolean } | undefined;

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/**
 * Whether tfjs has created this backend. (Not `tf.findBackend`, which starts initialising a
 * registered backend that is not.)
 */
function isInitialised(name: BackendName): boolean {
  return engine().registry[name] !== undefined;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isModuleNotFound(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/**
 * `import()` of a Node-only module (the `webgpu` native addon, `node:fs`). The specifier is a
 * variable so that bundlers building for the browser leave it alone instead of trying to bundle a
 * native addon; it only runs in Node.
 */
async function importNodeOnly<T>(specifier: string): Promise<T> {
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as T;
}

function resolveOptions(options: unknown): Resolved {
  if (options === undefined || options === null)
    return { backend: 'auto', wasmPaths: undefined, allowSoftwareGpu: false, nativeMatMul: 'auto' };
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new BackendError(
      'INVALID_ARGUMENT',
      `initBackend: options must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`,
    );
  }
  const { backend = 'auto', wasmPaths, allowSoftwareGpu = false, nativeMatMul = 'auto' } = options as Record<string, unknown>;
  if (typeof backend !== 'string' || !BACKEND_CHOICES.includes(backend)) {
    throw new BackendError(
      'INVALID_ARGUMENT',
      `initBackend: backend must be one of ${BACKEND_CHOICES.join(', ')}, got ${JSON.stringify(backend) ?? String(backend)}`,
    );
  }
  if (wasmPaths !== undefined && typeof wasmPaths !== 'string') {
    throw new BackendError('INVALID_ARGUMENT', `initBackend: wasmPaths must be a string, got ${typeof wasmPaths}`);
  }
  if (typeof allowSoftwareGpu !== 'boolean') {
    throw new BackendError('INVALID_ARGUMENT', `initBackend: allowSoftwareGpu must be a boolean, got ${typeof allowSoftwareGpu}`);
  }
  if (typeof nativeMatMul !== 'string' || !NATIVE_MATMUL_CHOICES.includes(nativeMatMul)) {
    throw new BackendError(
      'INVALID_ARGUMENT',
      `initBackend: nativeMatMul must be one of ${NATIVE_MATMUL_CHOICES.join(', ')}, got ${JSON.stringify(nativeMatMul) ?? String(nativeMatMul)}`,
    );
  }
  return { backend: backend as Resolved['backend'], wasmPaths, allowSoftwareGpu, nativeMatMul: nativeMatMul as Resolved['nativeMatMul'] };
}

/**
 * Selects and initialises the tfjs backend (`tf.setBackend`) and says which one it is and why.
 *
 * `'auto'` takes WebGPU only on a hardware adapter: a software adapter (SwiftShader,
 * lavapipe/llvmpipe, any `isFallbackAdapter`) rasterises on the CPU and measured far slower than
 * the wasm backend on the same machine (docs/performance.md §2), so it is skipped unless
 * `allowSoftwareGpu` is set. Next comes wasm (SIMD, much faster than the pure-JS cpu backend), then
 * cpu.
 *
 * WebGPU comes from `navigator.gpu` in the browser and from the optional `webgpu` package (Dawn) in
 * Node, which is then installed as `navigator.gpu` before `@tensorflow/tfjs-backend-webgpu` is
 * imported (that package registers itself only if `navigator.gpu` exists when it is first
 * imported). Choosing wasm also registers the wasm kernel fixes (`./wasm-kernels.js`) and, in Node
 * with `nativeMatMul: 'auto'`, the OpenBLAS matmul kernels when `@bytelatent/native-sgemm` loads.
 *
 * A second call with the same options while tfjs still runs that backend returns the same (frozen)
 * info object at once; different options switch backends. Calls are serialised.
 *
 * @param options - see {@link InitBackendOptions}; default `{ backend: 'auto' }`
 * @returns the selected backend, its adapter for WebGPU, the reason for the choice, and for wasm
 *   whether its matmuls run natively
 * @throws {BackendError} `INVALID_ARGUMENT` for an unknown backend name or option of the wrong
 *   type; `BACKEND_UNAVAILABLE` when a named backend cannot be initialised (never a silent
 *   fallback), or when even cpu fails under `'auto'`
 */
export async function initBackend(options?: InitBackendOptions): Promise<BackendInfo> {
  const resolved = resolveOptions(options);
  const key = JSON.stringify([resolved.backend, resolved.wasmPaths ?? null, resolved.allowSoftwareGpu, resolved.nativeMatMul]);
  const run = queue.then(async () => {
    if (current !== undefined && current.key === key && getBackend() === current.info.name) return current.info;
    const info = Object.freeze(await select(resolved));
    current = { key, info };
    return info;
  });
  queue = run.catch(() => undefined);
  return run;
}

/** Options of {@link ensureBackend}. */
export interface EnsureBackendOptions extends Omit<InitBackendOptions, 'backend'> {
  /**
   * Say nothing, even when the only backend is tfjs's pure-JavaScript cpu backend without native
   * matmuls (by default one line on the console says so, and why).
   */
  readonly quiet?: boolean;
}

/**
 * The backend a model entry point runs on, chosen before its first weight is created: the one the
 * caller already runs (set with `initBackend` or `tf.setBackend`, or tfjs's own default once any
 * tensor exists: a user who sets a backend keeps it), else the best available, chosen now as
 * `initBackend({ backend: 'auto' })` chooses (WebGPU on a hardware adapter, wasm, cpu), so that
 * nobody lands on the pure-JavaScript cpu backend without asking for it. Running there
 * (~30x slower than wasm) is said in one console line unless `quiet`; nothing else is printed (no
 * tfjs banner).
 *
 * @param options - backend options for the automatic choice, and `quiet`
 * @returns the backend, with the reason: `'auto: …'` when chosen here, `'chosen by the caller'` otherwise
 * @throws {BackendError} `INVALID_ARGUMENT` for malformed options, `BACKEND_UNAVAILABLE` when no
 *   backend at all can be initialised
 */
export async function ensureBackend(options: EnsureBackendOptions = {}): Promise<BackendInfo> {
  if (typeof options !== 'object' || options === null) {
    throw new BackendError(
      'INVALID_ARGUMENT',
      `ensureBackend: options must be an object, got ${options === null ? 'null' : typeof options}`,
    );
  }
  const { quiet = false, ...rest } = options;
  if (typeof quiet !== 'boolean') throw new BackendError('INVALID_ARGUMENT', `ensureBackend: quiet must be a boolean, got ${typeof quiet}`);
  // Selections run one after another (initBackend's queue): read the engine's state after any pending one.
  await queue;
  const running = engine().backendName as string | undefined | null;
  let info: BackendInfo;
  if (typeof running === 'string' && running !== '') {
    info =
      current !== undefined && current.info.name === running
        ? current.info
        : { name: running as BackendName, reason: 'chosen by the caller' };
    if (running === 'cpu') silenceCpuBanner(findBackend('cpu') as MathBackendCPU);
  } else {
    const chosen = await initBackend({ ...rest, backend: 'auto' });
    info = chosen.reason.startsWith('auto') ? chosen : { ...chosen, reason: `auto: ${chosen.reason}` };
  }
  if (!quiet && info.name === 'cpu' && info.nativeMatMul?.active !== true) {
    console.warn(
      `bytelatent: running on TensorFlow.js's pure-JavaScript cpu backend (${info.reason}), about 30x slower than wasm; ` +
        'initBackend() chooses the fastest backend, and quiet: true silences this line',
    );
  }
  return info;
}

/**
 * Loads the wasm backend with its kernel fixes (registering both) and returns the fixes' functions:
 * `registerWasmKernelFixes()` (idempotent, already done by loading),
 * `withOriginalWasmKernels(fn)`, which runs `fn` with tfjs's own wasm matmul kernels,
 * `withWasmMatMul(kind, fn)`, which runs it with the `'original'`, `'fixed'` or (once
 * `initBackend` enabled them) `'native'` ones, for benchmarks, and `activeWasmMatMul()`. Loaded lazily, like every backend here, so that importing `@bytelatent/nn` does not
 * register the wasm backend.
 *
 * @returns the functions of `./wasm-kernels.js`
 * @throws {BackendError} `BACKEND_UNAVAILABLE` if `@tensorflow/tfjs-backend-wasm` cannot be loaded
 */
export async function loadWasmKernelFixes(): Promise<WasmKernelFixes> {
  try {
    const { registerWasmKernelFixes, withOriginalWasmKernels, withWasmMatMul, activeWasmMatMul } = await import('./wasm-kernels.js');
    return { registerWasmKernelFixes, withOriginalWasmKernels, withWasmMatMul, activeWasmMatMul };
  } catch (e) {
    throw new BackendError('BACKEND_UNAVAILABLE', `the wasm backend could not be loaded: ${errorMessage(e)}`);
  }
}

async function select(options: Resolved): Promise<BackendInfo> {
  const forced = `forced (backend: '${options.backend}')`;
  switch (options.backend) {
    case 'cpu': {
      const cpu = await tryCpu();
      if (!cpu.ok) throw new BackendError('BACKEND_UNAVAILABLE', `cpu unavailable: ${cpu.why}`);
      return { name: 'cpu', reason: forced, nativeMatMul: await configureNativeMatMul(options.nativeMatMul, 'cpu') };
    }
    case 'wasm': {
      const wasm = await tryWasm(options.wasmPaths);
      if (!wasm.ok) throw new BackendError('BACKEND_UNAVAILABLE', `wasm unavailable: ${wasm.why}`);
      return { name: 'wasm', reason: forced, nativeMatMul: await configureNativeMatMul(options.nativeMatMul, 'wasm') };
    }
    case 'webgpu': {
      const gpu = await tryWebgpu(options.allowSoftwareGpu);
      if (!gpu.ok) throw new BackendError('BACKEND_UNAVAILABLE', `webgpu ${gpu.skipped === true ? 'skipped' : 'unavailable'}: ${gpu.why}`);
      return { name: 'webgpu', adapter: gpu.adapter, software: gpu.software, reason: forced };
    }
    case 'auto': {
      // WebGPU only on real hardware, then wasm, then cpu; see initBackend's documentation for the
      // measurements behind this order.
      const notes: string[] = [];
      const gpu = await tryWebgpu(options.allowSoftwareGpu);
      if (gpu.ok) {
        return {
          name: 'webgpu',
          adapter: gpu.adapter,
          software: gpu.software,
          reason: `auto: webgpu on ${gpu.software === true ? 'software' : 'hardware'} adapter ${JSON.stringify(gpu.adapter)}`,
        };
      }
      notes.push(`webgpu ${gpu.skipped === true ? 'skipped' : 'unavailable'}: ${gpu.why}`);
      const wasm = await tryWasm(options.wasmPaths);
      if (wasm.ok)
        return {
          name: 'wasm',
          reason: `${notes.join('; ')}; wasm`,
          nativeMatMul: await configureNativeMatMul(options.nativeMatMul, 'wasm'),
        };
      notes.push(`wasm unavailable: ${wasm.why}`);
      const cpu = await tryCpu();
      if (cpu.ok)
        return { name: 'cpu', reason: `${notes.join('; ')}; cpu`, nativeMatMul: await configureNativeMatMul(options.nativeMatMul, 'cpu') };
      throw new BackendError('BACKEND_UNAVAILABLE', `no backend could be initialised: ${notes.join('; ')}; cpu unavailable: ${cpu.why}`);
    }
  }
}

async function activate(name: BackendName): Promise<Attempt> {
  const previous = getBackend() as string | null | undefined;
  let attempt: Attempt;
  try {
    // setBackend resolves to false (after tfjs logs the cause as a warning) when the factory fails.
    attempt = (await setBackend(name)) ? { ok: true } : { ok: false, why: `tf.setBackend('${name}') failed (tfjs logged the cause above)` };
  } catch (e) {
    attempt = { ok: false, why: `tf.setBackend('${name}') threw: ${errorMessage(e)}` };
  }
  // A failed setBackend leaves tfjs with no backend selected; a failed attempt must not change
  // what was running before.
  if (!attempt.ok && typeof previous === 'string' && previous !== name && isInitialised(previous as BackendName)) {
    await setBackend(previous).catch(() => false);
  }
  return attempt;
}

async function tryCpu(): Promise<Attempt> {
  let pool: typeof import('./cpu-buffer-pool.js');
  try {
    // Registers the backend and the kernel replacements of ./cpu-kernels.ts.
    await import('./cpu-kernels.js');
    pool = await import('./cpu-buffer-pool.js');
  } catch (e) {
    return { ok: false, why: `@tensorflow/tfjs-backend-cpu could not be loaded: ${errorMessage(e)}` };
  }
  const attempt = await activate('cpu');
  if (attempt.ok) {
    const backend = findBackend('cpu') as MathBackendCPU;
    pool.hookCpuBufferPool(backend);
    silenceCpuBanner(backend);
  }
  return attempt;
}

async function tryWasm(wasmPaths: string | undefined): Promise<Attempt> {
  try {
    // The kernel fixes import the backend itself; loading them first means they are registered
    // before the backend's setupFuncs run in setBackend.
    await import('./wasm-kernels.js');
    if (wasmPaths !== undefined && !isInitialised('wasm')) {
      const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
      setWasmPaths(wasmPaths);
    }
  } catch (e) {
    return { ok: false, why: `@tensorflow/tfjs-backend-wasm could not be loaded: ${errorMessage(e)}` };
  }
  return activate('wasm');
}

/** Switches a backend's native matmul kernels on (with the addon) or off. */
interface NativeKernelSwitch {
  enable(sgemm: NativeSgemmLike): void;
  disable(): void;
}

async function nativeKernelSwitch(backend: 'wasm' | 'cpu'): Promise<NativeKernelSwitch> {
  if (backend === 'wasm') {
    const m = await import('./wasm-native-matmul.js');
    return { enable: m.enableNativeWasmMatMul, disable: m.disableNativeWasmMatMul };
  }
  const m = await import('./cpu-native-matmul.js');
  return { enable: m.enableNativeCpuMatMul, disable: m.disableNativeCpuMatMul };
}

/**
 * Registers the OpenBLAS matmul kernels for the backend (or, for `'off'` or without the addon,
 * makes sure the backend's own are registered) and says which. Never throws: the native kernels
 * are optional.
 */
async function configureNativeMatMul(mode: 'auto' | 'off', backend: 'wasm' | 'cpu'): Promise<NativeMatMulInfo> {
  // Only Node can load the addon; in the browser this module's import stays unreached.
  if (!isNode()) return { active: false, reason: 'Node only (a native addon)' };
  let native: NativeKernelSwitch;
  try {
    native = await nativeKernelSwitch(backend);
  } catch (e) {
    return { active: false, reason: `the native matmul kernels could not be loaded: ${errorMessage(e)}` };
  }
  if (mode === 'off') {
    native.disable();
    return { active: false, reason: "off (nativeMatMul: 'off')" };
  }
  let pkg: NativeSgemmPackage;
  try {
    pkg = await importNodeOnly<NativeSgemmPackage>('@bytelatent/native-sgemm');
  } catch (e) {
    native.disable();
    return {
      active: false,
      reason: isModuleNotFound(e)
        ? 'the optional @bytelatent/native-sgemm package is not installed'
        : `@bytelatent/native-sgemm failed to load: ${errorMessage(e)}`,
    };
  }
  const sgemm = pkg.loadNativeSgemm();
  if (sgemm === undefined) {
    native.disable();
    return { active: false, reason: `@bytelatent/native-sgemm: ${pkg.nativeSgemmUnavailableReason() ?? 'unavailable'}` };
  }
  native.enable(sgemm);
  const threads = sgemm.getNumThreads();
  return { active: true, reason: `${sgemm.config}, ${threads} thread${threads === 1 ? '' : 's'}` };
}

function describeAdapter(info: GpuAdapterInfoLike | undefined): string {
  const description = info?.description?.trim() ?? '';
  if (description !== '') return description;
  const vendorArch = [info?.vendor, info?.architecture, info?.device].filter((s) => s !== undefined && s.trim() !== '').join(' ');
  return vendorArch !== '' ? vendorArch : 'unknown adapter';
}

function isSoftwareAdapter(adapter: GpuAdapterLike): boolean {
  const info = adapter.info;
  if (info?.isFallbackAdapter === true || adapter.isFallbackAdapter === true) return true;
  return SOFTWARE_ADAPTER.test([info?.vendor, info?.architecture, info?.device, info?.description].join(' '));
}

function existingGpu(): GpuLike | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  return nav?.gpu ?? undefined;
}

/**
 * Makes `navigator.gpu` the given GPU in Node. Node 20 has no `globalThis.navigator`; Node 21+ has
 * one (an accessor on `globalThis`) without `gpu`.
 */
function installNavigatorGpu(gpu: GpuLike): void {
  const holder = globalThis as { navigator?: object };
  if (holder.navigator === undefined || holder.navigator === null) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true, enumerable: false });
    return;
  }
  try {
    Object.defineProperty(holder.navigator, 'gpu', { value: gpu, configurable: true, writable: true, enumerable: true });
  } catch {
    // A non-extensible navigator: replace it with one that inherits everything else from it.
    const replacement = Object.create(holder.navigator, {
      gpu: { value: gpu, configurable: true, writable: true, enumerable: true },
    }) as object;
    Object.defineProperty(globalThis, 'navigator', { value: replacement, configurable: true, writable: true, enumerable: false });
  }
}

/** Where the Vulkan loader looks for driver manifests (ICDs) on Linux. */
function vulkanIcdDirectories(): string[] {
  const dataDirs = (process.env['XDG_DATA_DIRS'] ?? '/usr/local/share:/usr/share').split(':').filter((d) => d !== '');
  return ['/etc/vulkan/icd.d', ...dataDirs.map((d) => `${d.replace(/\/$/, '')}/vulkan/icd.d`)];
}

/** Whether the Vulkan loader can find a driver: named by the environment, or a manifest installed. */
function hasVulkanDriver(fs: typeof import('node:fs')): boolean {
  const named = ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'VK_ADD_DRIVER_FILES'].some((v) => (process.env[v] ?? '') !== '');
  if (named) return true;
  return vulkanIcdDirectories().some((dir) => {
    try {
      return fs.readdirSync(dir).some((f) => f.endsWith('.json'));
    } catch {
      return false;
    }
  });
}

/** The Node WebGPU (Dawn) GPU object, or why there is none. */
async function nodeWebgpu(allowSoftwareGpu: boolean): Promise<{ gpu: GpuLike; hint: string } | { why: string }> {
  let hint = '';
  const fs = await importNodeOnly<typeof import('node:fs')>('node:fs');
  const swiftshader = fs.existsSync(SWIFTSHADER_ICD);
  // Vulkan reads VK_ICD_FILENAMES when Dawn creates its instance and then sees only the listed
  // drivers. Pointing it at SwiftShader therefore hides any real GPU, so it is done only when a
  // software adapter is acceptable, and never over a value the user set.
  if (process.env['VK_ICD_FILENAMES'] === undefined && swiftshader) {
    if (allowSoftwareGpu) process.env['VK_ICD_FILENAMES'] = SWIFTSHADER_ICD;
    else hint = ` (SwiftShader at ${SWIFTSHADER_ICD} is ignored without allowSoftwareGpu: true)`;
  }
  // Dawn on Linux finds GPUs through Vulkan. Without any Vulkan driver it would only print
  // warnings to stderr (from native code) and find no adapter: skip it, quietly.
  if (process.platform === 'linux' && !hasVulkanDriver(fs))
    return { why: `no Vulkan driver is installed (no ICD file in ${vulkanIcdDirectories().join(', ')})${hint}` };
  let webgpu: WebgpuPackage;
  try {
    webgpu = await importNodeOnly<WebgpuPackage>('webgpu');
  } catch (e) {
    return {
      why: isModuleNotFound(e)
        ? 'the optional `webgpu` package is not installed'
        : `the \`webgpu\` package failed to load: ${errorMessage(e)}`,
    };
  }
  webgpuGlobals = webgpu.globals;
  const icd = process.env['VK_ICD_FILENAMES'];
  // A GPU created under another VK_ICD_FILENAMES keeps the drivers it saw; make a new one.
  if (nodeGpu === undefined || nodeGpu.icd !== icd) nodeGpu = { icd, gpu: webgpu.create([]) };
  return { gpu: nodeGpu.gpu, hint };
}

async function tryWebgpu(allowSoftwareGpu: boolean): Promise<Attempt> {
  // tfjs keeps one WebGPU backend (and device) per process: reuse it with the adapter it was made on.
  if (isInitialised('webgpu') && webgpuAdapter !== undefined) {
    if (webgpuAdapter.software && !allowSoftwareGpu) return softwareSkipped(webgpuAdapter.adapter);
    const active = await activate('webgpu');
    return active.ok ? { ok: true, ...webgpuAdapter } : active;
  }

  let gpu = existingGpu();
  let hint = '';
  const ownGpu = gpu === undefined;
  if (gpu === undefined) {
    if (!isNode()) return { ok: false, why: 'navigator.gpu is missing (no WebGPU in this browser, or not a secure context)' };
    const found = await nodeWebgpu(allowSoftwareGpu);
    if ('why' in found) return { ok: false, why: found.why };
    ({ gpu, hint } = found);
  }

  let adapter: GpuAdapterLike | null;
  try {
    // The power preference tfjs-backend-webgpu requests by default, so that it gets this adapter.
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { ok: false, why: `requestAdapter failed: ${errorMessage(e)}` };
  }
  if (adapter === null) return { ok: false, why: `no adapter${hint}` };
  const description = describeAdapter(adapter.info);
  const software = isSoftwareAdapter(adapter);
  if (software && !allowSoftwareGpu) return softwareSkipped(description);

  // tfjs-backend-webgpu registers its backend at import time only if navigator.gpu exists then, and
  // reads the GPUBufferUsage, GPUMapMode, ... constants from the global scope: both are set only
  // now that WebGPU is chosen, so a fallback to wasm leaves no trace on the globals.
  if (ownGpu) {
    installNavigatorGpu(gpu);
    if (webgpuGlobals !== undefined) Object.assign(globalThis, webgpuGlobals);
  }
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    return {
      ok: false,
      why: isModuleNotFound(e)
        ? 'the optional @tensorflow/tfjs-backend-webgpu package is not installed'
        : `@tensorflow/tfjs-backend-webgpu failed to load: ${errorMessage(e)}`,
    };
  }
  if (findBackendFactory('webgpu') == null) {
    return {
      ok: false,
      why: '@tensorflow/tfjs-backend-webgpu was first imported before navigator.gpu existed, so it did not register itself',
    };
  }
  const active = await activate('webgpu');
  if (!active.ok) return active;
  webgpuAdapter = { adapter: description, software };
  return { ok: true, adapter: description, software };
}

function softwareSkipped(adapter: string): Attempt {
  return {
    ok: false,
    skipped: true,
    why: `software adapter ${JSON.stringify(adapter)} (a CPU rasterizer, ~70x slower than wasm; allowSoftwareGpu: true accepts it)`,
  };
}
