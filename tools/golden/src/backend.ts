import * as tf from '@tensorflow/tfjs-core';
import { type BackendInfo, initBackend } from '@bytelatent/nn';

// A command-line tool: silence tfjs's console advice ("install tfjs-node"), which would clutter
// the output and which cannot be followed here (tfjs-node downloads a binary at install).
tf.env().set('PROD', true);

/** Backends the golden checker can run on; cpu is the reference of exactness for the others. */
export type GoldenBackend = 'cpu' | 'wasm' | 'webgpu';

/**
 * Selects the backend for a golden run. WebGPU may be a software adapter here (SwiftShader): it is
 * accepted, since parity, not speed, is what the checker measures.
 *
 * @throws {BackendError} when the backend cannot start
 */
export async function useBackend(name: GoldenBackend = 'cpu'): Promise<BackendInfo> {
  return initBackend({ backend: name, allowSoftwareGpu: true });
}
