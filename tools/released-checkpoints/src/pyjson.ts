// JSON text the way the Python writers of Meta's release write it, so the generated configuration
// files have the same bytes as real ones would (a loader must parse `1e-05`, `500000.0`, ...):
// - pydantic `model_dump_json()` (the reference's `params.json` / `train_args.json`): compact, fields in
//   declaration order, a float-typed field always printed as a float (`0.0`, `4.0`), floats in the shortest
//   round-trip form with a fixed notation for decimal exponents -5..15 (`0.00001`, `1e-7`, `1e+16`);
// - Python `json.dumps` (`config.json` of the hub and transformers layouts): `float.__repr__`
//   (fixed notation for exponents -4..15: `0.0001`, `1e-05`), `int` stays an int, optional indent
//   and sorted keys.

/** A value that is a Python `float` at run time (printed `4.0`, never `4`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A JSON-able value with Python's float/int distinction kept. */
export type PyValue = null | boolean | number | string | PyFloat | readonly PyValue[] | { readonly [key: string]: PyValue };

/** Shortest round-trip digits and decimal exponent of a finite non-zero |x|: x = d.ddd × 10^exp. */
function shortestDigits(x: number): { digits: string; exp: number } {
  const [mantissa, e] = Math.abs(x).toExponential().split('e') as [string, string];
  return { digits: mantissa.replace('.', ''), exp: Number(e) };
}

function formatFloat(x: number, fixedFrom: number, fixedTo: number, padExponent: boolean): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} as JSON`);
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const { digits, exp } = shortestDigits(x);
  if (exp >= fixedFrom && exp <= fixedTo) {
    if (exp >= 0) {
      const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
      const frac = digits.slice(exp + 1);
      return `${sign}${int}.${frac.length > 0 ? frac : '0'}`;
    }
    return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const mag = String(Math.abs(exp));
  return `${sign}${mant}e${exp < 0 ? '-' : '+'}${padExponent ? mag.padStart(2, '0') : mag}`;
}

/** Python's `repr(float)`: `1e-05`, `0.0001`, `500000.0`, `1e+16`. */
export function pythonFloatRepr(x: number): string {
  return formatFloat(x, -4, 15, true);
}

/** pydantic-core's JSON float: `0.00001`, `1e-7`, `500000.0`, `1e+16`. */
export function pydanticFloat(x: number): string {
  return formatFloat(x, -5, 15, false);
}

function scalar(value: PyValue, mode: 'pydantic' | 'python'): string | undefined {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`${value}: a non-integer number must be a PyFloat`);
    return String(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof PyFloat) return mode === 'pydantic' ? pydanticFloat(value.value) : pythonFloatRepr(value.value);
  return undefined;
}

/** pydantic's `model_dump_json()`: compact, keys in the given (declaration) order. */
export function pydanticJson(value: PyValue): string {
  const s = scalar(value, 'pydantic');
  if (s !== undefined) return s;
  if (Array.isArray(value)) return `[${value.map(pydanticJson).join(',')}]`;
  const obj = value as { readonly [key: string]: PyValue };
  return `{${Object.keys(obj)
    .map((k) => `${JSON.stringify(k)}:${pydanticJson(obj[k] as PyValue)}`)
    .join(',')}}`;
}

/**
 * Python's `json.dumps(value, indent=indent, sort_keys=sortKeys)` (ASCII keys and strings).
 * Without `indent`: `, ` and `: ` separators on one line.
 */
export function pythonJson(value: PyValue, options: { indent?: number; sortKeys?: boolean } = {}): string {
  const { indent, sortKeys = false } = options;
  const write = (v: PyValue, depth: number): string => {
    const s = scalar(v, 'python');
    if (s !== undefined) return s;
    const inner = indent === undefined ? '' : `\n${' '.repeat(indent * (depth + 1))}`;
    const outer = indent === undefined ? '' : `\n${' '.repeat(indent * depth)}`;
    const sep = indent === undefined ? ', ' : ',';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return `[${v.map((x) => inner + write(x, depth + 1)).join(sep)}${outer}]`;
    }
    const obj = v as { readonly [key: string]: PyValue };
    const keys = Object.keys(obj);
    if (sortKeys) keys.sort();
    if (keys.length === 0) return '{}';
    return `{${keys.map((k) => `${inner}${JSON.stringify(k)}: ${write(obj[k] as PyValue, depth + 1)}`).join(sep)}${outer}}`;
  };
  return write(value, 0);
}

/** The plain JSON value (what `JSON.parse` of either text gives). */
export function toPlainJson(value: PyValue): unknown {
  if (value instanceof PyFloat) return value.value;
  if (Array.isArray(value)) return value.map(toPlainJson);
  if (value !== null && typeof value === 'object') {
    const obj = value as { readonly [key: string]: PyValue };
    return Object.fromEntries(Object.keys(obj).map((k) => [k, toPlainJson(obj[k] as PyValue)]));
  }
  return value;
}
