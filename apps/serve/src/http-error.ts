/** Machine-readable code of an API error, sent as `{"error":{"code","message"}}`. */
export type ApiErrorCode =
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'MALFORMED_JSON'
  | 'INVALID_REQUEST'
  | 'BODY_TOO_LARGE'
  | 'INPUT_TOO_LARGE'
  | 'OVERLOADED'
  | 'TIMEOUT'
  | 'INTERNAL';

/** An error with its HTTP status; everything the API rejects is one of these. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  toJSON(): { error: { code: ApiErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export const badRequest = (message: string) => new HttpError(400, 'INVALID_REQUEST', message);
