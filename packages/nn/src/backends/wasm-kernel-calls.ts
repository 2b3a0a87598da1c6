/**
 * Calling the wasm backend's own kernels from replacements, and the error the replacements throw:
 * shared by the matmul replacements (`./wasm-matmul.ts`) and the other kernel fixes
 * (`./wasm-kernels.ts`).
 */
import { CodedError } from '@bytelatent/bytes';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { getKernel, type KernelConfig, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';

export const WASM = 'wasm';

/** Machine-readable reason of a {@link WasmKernelError}. */
export type WasmKernelErrorCode = 'KERNEL_MISSING' | 'INVALID_ARGUMENT';

/**
 * Errors thrown by the wasm kernel fixes: `KERNEL_MISSING` when the installed
 * `@tensorflow/tfjs-backend-wasm` lacks a kernel these fixes wrap (a version other than 4.22),
 * `INVALID_ARGUMENT` for inputs a kernel cannot handle.
 */
export class WasmKernelError extends CodedError<WasmKernelErrorCode> {
  override readonly name = 'WasmKernelError';
}

/** The arguments tfjs passes to a wasm kernel function. */
export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: NamedAttrMap;
}

/** The kernel of `name` registered for wasm now (looked up per call, so later replacements count). */
export function wasmKernel(name: string): KernelConfig {
  const kernel = getKernel(name, WASM);
  if (kernel === undefined) throw new WasmKernelError('KERNEL_MISSING', `the wasm backend has no '${name}' kernel`);
  return kernel;
}

/** Runs a wasm kernel that has exactly one output. */
export function runWasm(name: string, backend: BackendWasm, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
  const out = wasmKernel(name).kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new WasmKernelError('KERNEL_MISSING', `the wasm '${name}' kernel returned several tensors`);
  return out;
}
