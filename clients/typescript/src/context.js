// The current request's audit context, carried by AsyncLocalStorage through every await
// and callback of the request, so `audit.record()` deep inside a service function knows
// who is acting and from where without threading `req` through every call.

import { AsyncLocalStorage } from 'node:async_hooks';

const storage = new AsyncLocalStorage();

/**
 * The context of one request, as the middleware builds it. The actor and tenant are
 * resolved lazily, on first use: authentication middleware usually runs after the audit
 * middleware, so `req.user` does not exist yet when the context is created.
 */
export class RequestAuditContext {
  #userId;
  #tenantId;
  #resolveUserId;
  #resolveTenantId;

  /**
   * @param {{userId?: string | number, tenantId?: string, ip?: string, userAgent?: string,
   *   requestId?: string, resolveUserId?: () => unknown, resolveTenantId?: () => unknown}} parts
   */
  constructor({ userId, tenantId, ip, userAgent, requestId, resolveUserId, resolveTenantId } = {}) {
    this.#userId = userId;
    this.#tenantId = tenantId;
    this.#resolveUserId = resolveUserId;
    this.#resolveTenantId = resolveTenantId;
    /** @type {string | undefined} */
    this.ip = ip;
    /** @type {string | undefined} */
    this.userAgent = userAgent;
    /** @type {string | undefined} */
    this.requestId = requestId;
  }

  /** The acting user's id: set explicitly, or what the `actor` option returns now. */
  get userId() {
    return this.#userId !== undefined ? this.#userId : resolveSafely(this.#resolveUserId);
  }

  set userId(value) {
    this.#userId = value;
  }

  /** The tenant the request acts for: set explicitly, or what the `tenant` option returns now. */
  get tenantId() {
    return this.#tenantId !== undefined ? this.#tenantId : resolveSafely(this.#resolveTenantId);
  }

  set tenantId(value) {
    this.#tenantId = value;
  }
}

// An actor callback that throws (a session store hiccup, say) must not break the app's
// request or the audit event: the event is recorded without the actor instead.
function resolveSafely(resolve) {
  if (resolve === undefined) return undefined;
  try {
    const value = resolve();
    // A promise cannot be used synchronously; async actors are awaited by withAudit instead.
    if (value == null || typeof value?.then === 'function') return undefined;
    return value;
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` with `context` as the audit context of everything it does, sync or async.
 * Use it for work that is not an HTTP request, such as a queue consumer:
 * `runWithAuditContext({userId: job.requestedBy}, () => handle(job))`.
 * @template T
 * @param {import('./context.d.ts').AuditContext} context
 * @param {() => T} fn
 * @returns {T}
 */
export function runWithAuditContext(context, fn) {
  return storage.run(context, fn);
}

/**
 * The audit context of the code running now, or undefined outside any.
 * @returns {import('./context.d.ts').AuditContext | undefined}
 */
export function getAuditContext() {
  return storage.getStore();
}

/**
 * Changes the current audit context, e.g. to name the user right after a login handler
 * authenticated them. Returns false when there is no current context.
 * @param {Partial<import('./context.d.ts').AuditContext>} changes
 * @returns {boolean}
 */
export function updateAuditContext(changes) {
  const context = storage.getStore();
  if (context === undefined) return false;
  for (const [name, value] of Object.entries(changes)) context[name] = value;
  return true;
}

const CONTEXT_FIELDS = [
  ['user_id', 'userId'],
  ['tenant_id', 'tenantId'],
  ['ip_address', 'ip'],
  ['user_agent', 'userAgent'],
  ['request_id', 'requestId'],
];

/**
 * The event's request fields taken from the context, as JSON members to append to the
 * event's JSON (each starting with a comma): only fields the event does not have; an
 * explicit `null` in the event means "none" and is not filled either.
 * @param {Record<string, unknown>} event
 * @param {import('./context.d.ts').AuditContext} context
 * @returns {string}
 */
export function contextMembers(event, context) {
  let members = '';
  for (const [field, property] of CONTEXT_FIELDS) {
    if (event[field] !== undefined) continue;
    const value = context[property];
    // Strings and numbers only: an actor callback returning a whole user object must not
    // make the server refuse the event.
    if ((typeof value === 'string' && value !== '') || (typeof value === 'number' && Number.isFinite(value))) {
      members += `,"${field}":${JSON.stringify(value)}`;
    }
  }
  return members;
}
