// Sizes as transformers' `max_shard_size` takes them.

/** "5GB" → 5e9, "2GiB" → 2·2^30, "123" → 123 (transformers' parse_size_to_int units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$/i.exec(text.trim());
  if (!m) throw new Error(`cannot read size "${text}" (e.g. 5GB, 500MB, 2GiB, 123456)`);
  const value = Number(m[1]);
  const unit = (m[2] ?? 'B').toUpperCase();
  const scale: Record<string, number> = {
    B: 1,
    KB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    KIB: 2 ** 10,
    MIB: 2 ** 20,
    GIB: 2 ** 30,
    TIB: 2 ** 40,
  };
  return Math.floor(value * (scale[unit] as number));
}
