// Turning an HTTP request into the fields of an `http.request` audit event, shared by the
// Express middleware and the Next.js wrapper: what to keep, what to redact, what to skip.

import { MAX_REQUEST_ID_CHARS } from './event.js';
import { normalizeIp, parseForwardedFor, parseXForwardedFor, resolveClientIp, TrustedProxies } from './ip.js';

/** Query parameters whose values are replaced by "[redacted]" unless `redactQuery` says otherwise. */
export const DEFAULT_REDACTED_QUERY_PARAMS = Object.freeze([
  'token',
  'password',
  'passwd',
  'secret',
  'client_secret',
  'code',
  'key',
  'api_key',
  'apikey',
  'access_token',
  'refresh_token',
  'id_token',
  'signature',
  'sig',
]);

/** Headers whose values are always "[redacted]" when `recordHeaders` names them. */
export const ALWAYS_REDACTED_HEADERS = Object.freeze([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
]);

/** Paths not audited unless `skip` says otherwise: probes and browsers' icon requests. */
export const DEFAULT_SKIPPED_PATHS = Object.freeze(['/healthz', '/readyz', '/favicon.ico']);

export const REDACTED = '[redacted]';

// Server limits (with the defaults): cut long values instead of having the event refused.
const MAX_USER_AGENT_CHARS = 1024;
const MAX_ROUTE_CHARS = 256;
const MAX_ID_CHARS = 256;
const MAX_PATH_CHARS = 2048;
const MAX_HEADER_VALUE_CHARS = 1024;

const ALWAYS_REDACTED = new Set(ALWAYS_REDACTED_HEADERS);

/**
 * The options both integrations share, checked and compiled once.
 * @param {import('./middleware.d.ts').CommonAuditOptions} options
 */
export function compileOptions(options = {}) {
  const redact = new Set(
    (options.redactQuery ?? DEFAULT_REDACTED_QUERY_PARAMS).map((name) => String(name).toLowerCase()),
  );
  const recordHeaders = (options.recordHeaders ?? []).map((name) => String(name).toLowerCase());
  const proxyHeader = (options.proxyHeader ?? 'x-forwarded-for').toLowerCase();
  if (proxyHeader !== 'x-forwarded-for' && proxyHeader !== 'forwarded') {
    throw new TypeError(
      `proxyHeader must be 'x-forwarded-for' or 'forwarded', not ${JSON.stringify(options.proxyHeader)}`,
    );
  }
  for (const name of ['actor', 'tenant', 'severity', 'ip', 'peer', 'onError']) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new TypeError(`the ${name} option must be a function`);
    }
  }
  return {
    redact,
    recordHeaders,
    proxyHeader,
    trusted: new TrustedProxies(options.trustedProxies ?? []),
    skip: compileSkip(options.skip),
    severity: options.severity ?? defaultSeverity,
    action: options.action ?? 'http.request',
    resourceType: options.resourceType ?? 'http.route',
  };
}

/**
 * Makes the skip test from the `skip` option: path strings (exact match) and RegExps, or a
 * function of the request.
 * @param {readonly (string | RegExp)[] | ((request: any) => unknown)} [skip]
 * @returns {(path: string, request: unknown) => boolean}
 */
export function compileSkip(skip = DEFAULT_SKIPPED_PATHS) {
  if (typeof skip === 'function') return (_path, request) => Boolean(skip(request));
  const exact = new Set();
  const patterns = [];
  for (const entry of skip) {
    if (entry instanceof RegExp) patterns.push(entry);
    else exact.add(String(entry));
  }
  return (path) => exact.has(path) || patterns.some((pattern) => pattern.test(path));
}

/**
 * Default severity: `critical` when the handler failed with an error, `warning` for a 5xx
 * answer, else `info`.
 * @param {number} status
 * @param {unknown} [error]
 * @returns {'info' | 'warning' | 'critical'}
 */
export function defaultSeverity(status, error) {
  if (error !== undefined && error !== null) return 'critical';
  return status >= 500 ? 'warning' : 'info';
}

/**
 * The incoming request id when it is usable (1 to 128 printable ASCII characters), else
 * undefined and the caller makes one.
 * @param {unknown} value
 */
export function usableRequestId(value) {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_REQUEST_ID_CHARS) return undefined;
  return /^[\x20-\x7e]+$/.test(value) ? value : undefined;
}

/**
 * Splits a request target into its path and query with secrets redacted, for `details`.
 * @param {string} target the path and query, e.g. `/reset?token=abc&lang=pt`
 * @param {Set<string>} redact lowercase parameter names
 * @returns {{pathname: string, path: string, query: Record<string, string | string[]>}}
 */
export function describeTarget(target, redact) {
  const hash = target.indexOf('#');
  const withoutHash = hash === -1 ? target : target.slice(0, hash);
  const mark = withoutHash.indexOf('?');
  const pathname = mark === -1 ? withoutHash : withoutHash.slice(0, mark);
  /** @type {Record<string, string | string[]>} */
  const query = {};
  if (mark === -1) return { pathname, path: truncate(pathname, MAX_PATH_CHARS), query };
  const parts = [];
  for (const [name, value] of new URLSearchParams(withoutHash.slice(mark + 1))) {
    const hidden = redact.has(name.toLowerCase());
    const shown = hidden ? REDACTED : value;
    const existing = query[name];
    if (existing === undefined) query[name] = shown;
    else if (Array.isArray(existing)) existing.push(shown);
    else query[name] = [existing, shown];
    parts.push(`${encodeURIComponent(name)}=${hidden ? REDACTED : encodeURIComponent(value)}`);
  }
  const path = parts.length > 0 ? `${pathname}?${parts.join('&')}` : pathname;
  return { pathname, path: truncate(path, MAX_PATH_CHARS), query };
}

/**
 * The request headers named in `recordHeaders`, credentials redacted.
 * @param {(name: string) => string | string[] | null | undefined} get
 * @param {string[]} names lowercase
 */
export function pickHeaders(get, names) {
  const picked = {};
  for (const name of names) {
    const value = get(name);
    if (value == null) continue;
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    picked[name] = ALWAYS_REDACTED.has(name) ? REDACTED : truncate(text, MAX_HEADER_VALUE_CHARS);
  }
  return picked;
}

/**
 * The client IP from the peer and the configured forwarding header.
 * @param {{peer: string | undefined, get: (name: string) => string | string[] | null | undefined,
 *   trusted: TrustedProxies, proxyHeader: string}} parts
 */
export function clientIpOf({ peer, get, trusted, proxyHeader }) {
  const peerIp = normalizeIp(peer);
  if (peerIp === undefined || !trusted.has(peerIp)) return peerIp;
  const hops =
    proxyHeader === 'forwarded' ? parseForwardedFor(get('forwarded')) : parseXForwardedFor(get('x-forwarded-for'));
  return resolveClientIp({ peer: peerIp, hops, trusted });
}

/**
 * The `http.request` event of a finished request.
 * @returns {import('./client.d.ts').AuditEvent}
 */
export function buildRequestEvent({
  compiled,
  route,
  method,
  target,
  status,
  error,
  durationMs,
  userId,
  tenantId,
  ip,
  userAgent,
  requestId,
  headers,
  aborted,
}) {
  const { path, query } = target;
  /** @type {Record<string, unknown>} */
  const details = { method, path, status, duration_ms: Math.round(durationMs * 1000) / 1000 };
  if (Object.keys(query).length > 0) details.query = query;
  if (headers !== undefined && Object.keys(headers).length > 0) details.headers = headers;
  if (aborted) details.aborted = true;
  if (error !== undefined && error !== null) details.error = errorName(error);
  /** @type {import('./client.d.ts').AuditEvent} */
  const event = {
    action: compiled.action,
    resource_type: compiled.resourceType,
    resource_id: truncate(route || 'unmatched', MAX_ROUTE_CHARS),
    actor_type: 'user',
    outcome: status >= 400 || aborted || (error !== undefined && error !== null) ? 'failure' : 'success',
    severity: safeSeverity(compiled.severity, status, error),
    request_id: requestId,
    details,
  };
  if (userId != null && userId !== '')
    event.user_id = typeof userId === 'number' ? userId : truncate(String(userId), MAX_ID_CHARS);
  if (tenantId != null && tenantId !== '') event.tenant_id = String(tenantId);
  if (ip !== undefined) event.ip_address = ip;
  if (userAgent) event.user_agent = truncate(userAgent, MAX_USER_AGENT_CHARS);
  return event;
}

function safeSeverity(severity, status, error) {
  try {
    const chosen = severity(status, error);
    if (chosen === 'info' || chosen === 'warning' || chosen === 'critical') return chosen;
  } catch {
    // An override that throws falls back to the default.
  }
  return defaultSeverity(status, error);
}

// The error's class name only: messages can hold personal data or secrets, and the
// application's own error logging has the rest.
function errorName(error) {
  if (error instanceof Error) return truncate(error.name || 'Error', 128);
  return typeof error;
}

/**
 * @param {string} text
 * @param {number} max characters
 */
export function truncate(text, max) {
  return text.length > max ? text.slice(0, max) : text;
}
