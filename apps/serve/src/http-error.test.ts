import { BytesError, CodedError } from '@bytelatent/bytes';
import { BltError } from '@bytelatent/blt';
import { PatcherError } from '@bytelatent/entropy-patcher';
import { EvalError } from '@bytelatent/evals';
import { BackendError, NnError, PthError, SafetensorsError } from '@bytelatent/nn';
import { NgramHashError } from '@bytelatent/ngram-hash';
import { describe, expect, it } from 'vitest';
import { HttpError, toHttpError } from './http-error.js';

const live = new AbortController().signal;

describe('errors', () => {
  it('every package throws a CodedError, named after its class', () => {
    const errors = [
      new BytesError('INVALID_TEXT', 'x'),
      new NgramHashError('INVALID_ARGUMENT', 'x'),
      new NnError('INVALID_ARGUMENT', 'x'),
      new SafetensorsError('INVALID_HEADER' as never, 'x'),
      new PthError('INVALID_ARGUMENT' as never, 'x'),
      new BackendError('INVALID_ARGUMENT', 'x'),
      new PatcherError('EMPTY_INPUT', 'x', { cause: new Error('y') }),
      new BltError('INVALID_ARGUMENT', 'x'),
      new EvalError('INVALID_ARGUMENT', 'x'),
      new HttpError(400, 'INVALID_REQUEST', 'x'),
    ];
    for (const e of errors) {
      expect(e).toBeInstanceOf(CodedError);
      expect(e.name).toBe(e.constructor.name);
      expect(String(e)).toBe(`${e.constructor.name}: x`);
    }
    expect(errors[6]!.cause).toBeInstanceOf(Error);
  });

  it('maps errors to answers by class: bad input the models refused is 4xx, anything else 500', () => {
    expect(toHttpError(new PatcherError('INPUT_TOO_LONG', 'too long'), live)).toMatchObject({ status: 413, code: 'INPUT_TOO_LARGE' });
    expect(toHttpError(new BltError('INVALID_ARGUMENT', 'bad'), live)).toMatchObject({
      status: 400,
      code: 'INVALID_REQUEST',
      message: 'bad',
    });
    expect(toHttpError(new BytesError('INVALID_TEXT', 'x'), live)).toMatchObject({ status: 500, code: 'INTERNAL' });
    // A foreign error carrying a look-alike code is not ours: internal, its message not echoed.
    const foreign = Object.assign(new Error('secret path /etc'), { code: 'INVALID_ARGUMENT' });
    expect(toHttpError(foreign, live)).toMatchObject({ status: 500, code: 'INTERNAL', message: 'internal error' });
  });
});
