export declare class SealtrailError extends Error {}

/** record() was given an event the server would refuse for certain. */
export declare class SealtrailValidationError extends SealtrailError {
  constructor(field: string, reason: string);
  readonly field: string;
  readonly reason: string;
}

/** record() was called after close(). */
export declare class SealtrailClosedError extends SealtrailError {
  constructor();
}

/** One invalid event of a refused request, as the server names it. */
export interface SealtrailFieldError {
  index: number;
  field: string;
  reason: string;
}

/** The server refused events for good (400, 409, 413, 415 or 422). */
export declare class SealtrailRefusedError extends SealtrailError {
  constructor(
    status: number,
    body: { code?: string; message?: string; field?: string; reason?: string; errors?: SealtrailFieldError[] },
  );
  readonly status: number;
  readonly code: string | undefined;
  readonly field: string | undefined;
  readonly reason: string | undefined;
  readonly errors: SealtrailFieldError[] | undefined;
}
