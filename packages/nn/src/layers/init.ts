/**
 * Seeded random numbers for reproducible initialisation (tfjs's own initialisers are not seedable
 * per call in a portable way, and tf.truncatedNormal cuts at 2 std where the reference cuts at 3).
 *
 * This file imports nothing, on purpose: the shared fuzz inputs (`tools/fuzz/seeded-bytes.ts`) read
 * `seededUniform` from it by path, for packages that do not depend on nn (turbo.json lists it among
 * the global dependencies, next to `tools/fuzz/**`).
 */

/** A uniform generator in [0, 1) from a 32-bit seed (mulberry32). */
export function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Truncated normal values, mean 0, cut at ±3 std as the reference's `trunc_normal_(std, a=-3std,
 * b=3std)` (architecture §11), by rejection of standard normals (Box–Muller).
 *
 * @param count - number of values
 * @param std - standard deviation before truncation
 * @param random - uniform generator in [0, 1)
 * @returns the values
 */
export function truncatedNormal(count: number, std: number, random: () => number): Float32Array {
  const out = new Float32Array(count);
  let i = 0;
  while (i < count) {
    const u = 1 - random();
    const v = random();
    const r = Math.sqrt(-2 * Math.log(u));
    for (const z of [r * Math.cos(2 * Math.PI * v), r * Math.sin(2 * Math.PI * v)]) {
      if (i < count && Math.abs(z) <= 3) out[i++] = z * std;
    }
  }
  return out;
}

/** How the reference scales init std with depth (`init_std_factor`, architecture §11). */
export type InitStdFactor = 'disabled' | 'current_depth' | 'global_depth' | 'dim_ratio';

/**
 * The divisor of a layer's init std.
 *
 * @param factor - the reference's `init_std_factor`
 * @param layerIndex - depth of this layer (0-based)
 * @param nLayers - number of layers of the stack
 * @param dim - model width
 * @returns `sqrt(2(depth+1))`, `sqrt(2(nLayers+1))`, `dim/4096` or 1
 */
export function initStdDivisor(factor: InitStdFactor, layerIndex: number, nLayers: number, dim: number): number {
  switch (factor) {
    case 'current_depth':
      return Math.sqrt(2 * (layerIndex + 1));
    case 'global_depth':
      return Math.sqrt(2 * (nLayers + 1));
    case 'dim_ratio':
      return dim / 4096;
    default:
      return 1;
  }
}
