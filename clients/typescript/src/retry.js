// When to retry and how long to wait.
//
// The server is all-or-nothing per request and idempotent per event id, so a retry is
// always safe; what matters is not to hammer a server that is down or shedding load.

/** First retry delay ceiling; doubled per attempt up to the client's `maxRetryDelayMs`. */
export const BASE_RETRY_DELAY_MS = 100;

/** The longest `Retry-After` honoured; a larger value is treated as this. */
export const MAX_RETRY_AFTER_MS = 5 * 60 * 1000;

/**
 * Statuses that mean "this request will never succeed as sent": the batch (or the events
 * the answer names) are refused, not retried. 401/403/404 are not here on purpose: they
 * mean the client is misconfigured (key revoked, wrong URL), which an operator fixes, so
 * the events wait (in memory or in the spool) instead of being thrown away.
 */
const PERMANENT_STATUSES = new Set([400, 409, 413, 415, 422]);

/**
 * Sorts an HTTP status into what the client does with the batch.
 * @param {number} status
 * @returns {'delivered' | 'refused' | 'transient'}
 */
export function classifyStatus(status) {
  if (status >= 200 && status < 300) return 'delivered';
  if (PERMANENT_STATUSES.has(status)) return 'refused';
  return 'transient';
}

/**
 * The delay before retry number `attempt` (0 for the first retry): "full jitter", a uniform
 * random time between 0 and the exponential ceiling, so many clients that failed together
 * do not come back together.
 * @param {number} attempt
 * @param {number} maxDelayMs
 * @param {() => number} [random]
 * @returns {number}
 */
export function backoffDelay(attempt, maxDelayMs, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, BASE_RETRY_DELAY_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * Parses a `Retry-After` header (delta-seconds or an HTTP date) into milliseconds from
 * `now`; undefined when absent or unreadable.
 * @param {string | null | undefined} header
 * @param {number} [now]
 * @returns {number | undefined}
 */
export function parseRetryAfter(header, now = Date.now()) {
  if (header == null) return undefined;
  const text = String(header).trim();
  if (text === '') return undefined;
  let ms;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = Math.max(0, date - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}
