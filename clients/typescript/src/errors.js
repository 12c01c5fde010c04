// The errors the client shows its caller. Delivery failures are never thrown at the code
// that recorded an event (it is long gone by then); they surface through `metrics()`,
// `refusals()` and the `onRefused` hook.

/** Base class of every error this package creates. */
export class SealtrailError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'SealtrailError';
  }
}

/** `record()` was given an event the server would refuse for certain. */
export class SealtrailValidationError extends SealtrailError {
  /**
   * @param {string} field the event field at fault
   * @param {string} reason why
   */
  constructor(field, reason) {
    super(`invalid audit event: ${field}: ${reason}`);
    this.name = 'SealtrailValidationError';
    this.field = field;
    this.reason = reason;
  }
}

/** `record()` was called after `close()`. */
export class SealtrailClosedError extends SealtrailError {
  constructor() {
    super('the Sealtrail client is closed; it no longer accepts events');
    this.name = 'SealtrailClosedError';
  }
}

/**
 * The server refused events for good (400, 409, 413, 415 or 422). Carries the server's
 * error body: `code`, `field`, `reason` and, for invalid events, `errors` with the index
 * of each bad event in the request.
 */
export class SealtrailRefusedError extends SealtrailError {
  /**
   * @param {number} status
   * @param {{code?: string, message?: string, field?: string, reason?: string, errors?: any[]}} body
   */
  constructor(status, body) {
    super(
      `Sealtrail refused the events (${status}${body.code ? ` ${body.code}` : ''}): ${body.message ?? body.reason ?? 'no reason given'}`,
    );
    this.name = 'SealtrailRefusedError';
    this.status = status;
    this.code = body.code;
    this.field = body.field;
    this.reason = body.reason ?? body.message;
    this.errors = Array.isArray(body.errors) ? body.errors : undefined;
  }
}
