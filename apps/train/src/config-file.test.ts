import { describe, expect, it } from 'vitest';
import { parseConfigFile } from './config-file.js';
import { TrainError } from './errors.js';

function problem(text: string): string {
  try {
    parseConfigFile(text, 'run.json');
  } catch (e) {
    expect(e).toBeInstanceOf(TrainError);
    expect((e as TrainError).code).toBe('CONFIG_INVALID');
    return (e as Error).message;
  }
  throw new Error('accepted');
}

describe('--config files', () => {
  it('accepts the fields of a run configuration', () => {
    const fields = { steps: 100, lr: 1e-3, batchSize: 4, warmupSteps: 0, patching: { mode: 'static', patchSize: 4 } };
    expect(parseConfigFile(JSON.stringify(fields), 'run.json')).toEqual(fields);
    expect(parseConfigFile('{}', 'run.json')).toEqual({});
  });

  it('refuses unknown fields, naming the closest known one', () => {
    expect(problem('{"learningRate": 0.001}')).toMatch(/^run\.json: unknown field "learningRate" \(known: kind, model, /);
    expect(problem('{"step": 10}')).toMatch(/unknown field "step" \(did you mean "steps"\?/);
    expect(problem('{"batchsize": 8}')).toMatch(/did you mean "batchSize"\?/);
    expect(problem('{"patching": {"mode": "entropy", "treshold": 2}}')).toMatch(
      /unknown field "patching\.treshold" \(did you mean "patching\.threshold"\?/,
    );
  });

  it('refuses mistyped and out-of-range values, every problem at once', () => {
    const message = problem('{"steps": "100", "lr": -1, "beta2": 1, "kind": "gpt", "patching": {"mode": "spaces"}}');
    expect(message).toMatch(/"steps" must be an integer >= 1, got "100"/);
    expect(message).toMatch(/"lr" must be a number > 0, got -1/);
    expect(message).toMatch(/"beta2" must be a number in \[0, 1\), got 1/);
    expect(message).toMatch(/"kind" must be one of "entropy", "blt", got "gpt"/);
    expect(message).toMatch(/"patching\.mode" must be one of "entropy", .*got "spaces"/);
    expect(problem('{"kind": "blt"}')).toMatch(/"kind" without "model"/);
  });

  it('refuses what is not a JSON object', () => {
    expect(problem('{"steps": 1,}')).toMatch(/^run\.json is not JSON: /);
    expect(problem('[1, 2]')).toMatch(/must hold a JSON object of run settings, got an array/);
    expect(problem('null')).toMatch(/got null/);
  });
});
