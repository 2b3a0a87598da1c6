import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

// A command-line tool: silence tfjs's console advice ("install tfjs-node"), which would clutter
// the output and which cannot be followed here (tfjs-node downloads a binary at install).
tf.env().set('PROD', true);

/** Golden checks run on the cpu backend: the reference of exactness for every other backend. */
export async function useCpuBackend(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}
