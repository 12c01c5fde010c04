// The console's one way to the API: the session cookie authenticates (the browser sends it
// by itself), and every request carries X-Sealtrail-Console, which the server requires of
// cookie-authenticated requests that change something (so another site's form cannot).

export const CONSOLE_HEADER = 'X-Sealtrail-Console';

/** An API answer that was not a success, with the API's error body when it sent one. */
export class ApiError extends Error {
  constructor(status, body, path) {
    const message = body?.message ?? (status === 0 ? 'the server could not be reached' : `HTTP ${status}`);
    super(message);
    this.status = status;
    this.code = body?.code ?? null;
    this.field = body?.field ?? null;
    this.reason = body?.reason ?? null;
    this.path = path;
  }
}

/** Where the login page sends the reader back to: this page, as it is now. */
export function loginUrl() {
  const next = `${location.pathname}${location.search}`;
  return `/console/login?next=${encodeURIComponent(next)}`;
}

/** Query text of the entries whose value is not empty (the API refuses empty ones). */
export function queryString(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === '') continue;
    query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `?${text}` : '';
}

/**
 * Calls the API and returns its JSON (null for 204). A 401 means the session ended: the
 * page goes to sign in, and comes back here after.
 * @param {string} path e.g. '/v1/events'
 * @param {{method?: string, query?: object, body?: unknown, redirectOn401?: boolean}} [options]
 */
export async function api(path, { method = 'GET', query, body, redirectOn401 = true } = {}) {
  const url = `${path}${query ? queryString(query) : ''}`;
  const headers = { [CONSOLE_HEADER]: '1', Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, null, path);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    if (response.status === 401 && redirectOn401) location.assign(loginUrl());
    throw new ApiError(response.status, json, path);
  }
  if (json === null && text) throw new ApiError(response.status, { message: 'the answer was not JSON' }, path);
  return json;
}

/** The signed-in key: {key_id, scopes, tenant_id, expires_at}. */
export function getSession() {
  return api('/console/session');
}

/** Signs out (the server forgets the session and clears the cookie). */
export function deleteSession() {
  return api('/console/session', { method: 'DELETE', redirectOn401: false });
}
