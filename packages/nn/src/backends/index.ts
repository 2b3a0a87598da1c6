/**
 * Backend selection for TensorFlow.js. Only `./select-backend.js` is re-exported: it loads every
 * backend (and the wasm kernel fixes, through {@link loadWasmKernelFixes}) with a dynamic import,
 * so importing `@bytelatent/nn` registers no backend and no kernel.
 */
export {
  BackendError,
  ensureBackend,
  initBackend,
  loadWasmKernelFixes,
  type BackendErrorCode,
  type BackendInfo,
  type BackendName,
  type EnsureBackendOptions,
  type InitBackendOptions,
  type NativeMatMulInfo,
  type WasmKernelFixes,
  type WasmMatMulKind,
} from './select-backend.js';
