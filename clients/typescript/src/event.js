// The checks `record()` can afford on every event, and the clock it stamps them with.
//
// The server validates everything; the client only catches what would certainly be
// refused and is cheap to see, so the mistake surfaces at the call site (a rejected
// promise with the field name) instead of later as a refused batch.

import { SealtrailValidationError } from './errors.js';

/** Letters, digits and `. _ - : /`, as the server allows in names (action, resource_type, source). */
export const NAME_PATTERN = /^[A-Za-z0-9._:/-]+$/;

/** The server's default limit for names. */
export const MAX_NAME_CHARS = 128;

/** The server's limit for `source`. */
export const MAX_SOURCE_CHARS = 200;

/** The server's limit for `request_id`. */
export const MAX_REQUEST_ID_CHARS = 128;

/** @type {[string, string[]][]} */
const CHOICES = [
  ['actor_type', ['user', 'service', 'system']],
  ['severity', ['info', 'warning', 'critical']],
  ['outcome', ['success', 'failure']],
];

/**
 * Returns why the event would be refused, or undefined when it passes the cheap checks.
 * @param {any} event
 * @returns {SealtrailValidationError | undefined}
 */
export function checkEvent(event) {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    return new SealtrailValidationError('event', 'must be an object');
  }
  const nameProblem = checkName(event.action);
  if (nameProblem) return new SealtrailValidationError('action', nameProblem);
  const typeProblem = checkName(event.resource_type);
  if (typeProblem) return new SealtrailValidationError('resource_type', typeProblem);
  if (event.source !== undefined || event.source_seq !== undefined) {
    const field = event.source !== undefined ? 'source' : 'source_seq';
    return new SealtrailValidationError(
      field,
      'is stamped by the client (its name and instance, and a gapless sequence number); leave it out',
    );
  }
  const occurredAt = event.occurred_at;
  if (occurredAt instanceof Date && Number.isNaN(occurredAt.getTime())) {
    return new SealtrailValidationError('occurred_at', 'is an invalid Date');
  }
  for (const [field, allowed] of CHOICES) {
    const value = event[field];
    if (value != null && !allowed.includes(value)) {
      return new SealtrailValidationError(field, `must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`);
    }
  }
  return undefined;
}

/**
 * Why `value` is not a valid name, or undefined when it is.
 * @param {unknown} value
 * @param {number} [maxChars]
 */
export function checkName(value, maxChars = MAX_NAME_CHARS) {
  if (value === undefined || value === null || value === '') return 'required';
  if (typeof value !== 'string') return `must be a string, not ${typeof value}`;
  if (value.length > maxChars) return `is ${value.length} characters; at most ${maxChars}`;
  if (!NAME_PATTERN.test(value)) return 'use letters, digits and . _ - : / only (e.g. guest.rsvp.updated)';
  return undefined;
}

let clockMillis = -1;
let clockText = '';

/**
 * Now as RFC 3339 with milliseconds (`2026-12-04T01:05:25.073Z`), formatted once per
 * millisecond however many events are stamped in it.
 * @returns {string}
 */
export function isoNow() {
  const now = Date.now();
  if (now !== clockMillis) {
    clockMillis = now;
    clockText = new Date(now).toISOString();
  }
  return clockText;
}
