import { describe, expect, it } from 'vitest';
import { PyFloat, pydanticFloat, pydanticJson, pythonFloatRepr, pythonJson, toPlainJson } from './pyjson.js';

describe('Python-style JSON', () => {
  it('prints floats like Python repr and like pydantic (values checked against CPython 3.11 / pydantic 2.13)', () => {
    const cases: Array<[number, string, string]> = [
      [1e-5, '1e-05', '0.00001'],
      [1e-7, '1e-07', '1e-7'],
      [3e-4, '0.0003', '0.0003'],
      [1e-4, '0.0001', '0.0001'],
      [500000, '500000.0', '500000.0'],
      [1.335442066192627, '1.335442066192627', '1.335442066192627'],
      [4, '4.0', '4.0'],
      [0, '0.0', '0.0'],
      [4.5, '4.5', '4.5'],
      [1e16, '1e+16', '1e+16'],
      [123456789012345.6, '123456789012345.6', '123456789012345.6'],
      [-2.5e-8, '-2.5e-08', '-2.5e-8'],
    ];
    for (const [x, python, pydantic] of cases) {
      expect(pythonFloatRepr(x)).toBe(python);
      expect(pydanticFloat(x)).toBe(pydantic);
      expect(Number(python)).toBe(x);
      expect(Number(pydantic)).toBe(x);
    }
  });

  it('writes model_dump_json and json.dumps layouts', () => {
    const value = { b: [3, 4], a: new PyFloat(1e-5), c: {}, d: [], e: null, f: 'x\\y', g: new PyFloat(0), h: true };
    expect(pydanticJson(value)).toBe('{"b":[3,4],"a":0.00001,"c":{},"d":[],"e":null,"f":"x\\\\y","g":0.0,"h":true}');
    expect(pythonJson(value, { indent: 2, sortKeys: true })).toBe(
      '{\n  "a": 1e-05,\n  "b": [\n    3,\n    4\n  ],\n  "c": {},\n  "d": [],\n  "e": null,\n  "f": "x\\\\y",\n  "g": 0.0,\n  "h": true\n}',
    );
    expect(pythonJson({ a: [1, { b: 2 }] })).toBe('{"a": [1, {"b": 2}]}');
    expect(JSON.parse(pythonJson(value, { indent: 2 }))).toEqual(toPlainJson(value));
    expect(() => pydanticJson(0.5)).toThrow(/PyFloat/);
  });
});
