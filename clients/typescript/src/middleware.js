// Request auditing for web frameworks: one `http.request` event per request, and the
// request's context (actor, IP, user agent, request id, tenant) made available to every
// `audit.record()` the handler makes, through AsyncLocalStorage.
//
// Both integrations only queue the event (recordSync: no await, no throw) after the
// response is finished, so auditing adds no latency to the response and cannot break it.

import { RequestAuditContext, runWithAuditContext } from './context.js';
import { normalizeIp } from './ip.js';
import {
  buildRequestEvent,
  clientIpOf,
  compileOptions,
  describeTarget,
  pickHeaders,
  usableRequestId,
} from './request-info.js';
import { uuidv7 } from './uuid.js';

// Where the middleware keeps a request's audit state on `req`, for auditErrorHandler.
const AUDIT_STATE = Symbol.for('sealtrail.audit.request');

/**
 * Express/Connect middleware recording one event per request when the response finishes
 * (or the connection closes first), and running the rest of the chain in the request's
 * audit context. Register it first, before routers and authentication; register
 * `auditErrorHandler` before your own error handlers so that errors are recorded as
 * `critical`.
 * @param {import('./client.js').Sealtrail} audit
 * @param {import('./middleware.d.ts').ExpressAuditOptions} [options]
 * @returns {(req: any, res: any, next: (error?: unknown) => void) => void}
 */
export function expressAudit(audit, options = {}) {
  requireClient(audit);
  const compiled = compileOptions(options);
  const actor = options.actor ?? defaultExpressActor;
  const tenant = options.tenant;
  const routeOverride = requireFunction('route', options.route);
  const onError = options.onError ?? warnOnce;

  return function sealtrailAudit(req, res, next) {
    let context;
    try {
      context = startRequest(req, res);
    } catch (error) {
      // Auditing must never break the app: this request goes unaudited instead.
      reportQuietly(onError, error);
    }
    if (context === undefined) return next();
    try {
      return runWithAuditContext(context, next);
    } catch (error) {
      // Connect-style stacks let a handler's synchronous throw reach us; Express catches
      // it before (use auditErrorHandler there).
      markAuditError(req, error);
      throw error;
    }
  };

  function startRequest(req, res) {
    // originalUrl: Express rewrites req.url inside mounted routers.
    const target = describeTarget(String(req.originalUrl ?? req.url ?? '/'), compiled.redact);
    if (compiled.skip(target.pathname, req)) return undefined;
    const started = performance.now();
    const headers = req.headers ?? {};
    const get = (name) => headers[name];
    const requestId = usableRequestId(headers['x-request-id']) ?? uuidv7();
    if (!res.headersSent) res.setHeader('x-request-id', requestId);
    const context = new RequestAuditContext({
      ip: clientIpOf({
        peer: req.socket?.remoteAddress,
        get,
        trusted: compiled.trusted,
        proxyHeader: compiled.proxyHeader,
      }),
      userAgent: typeof headers['user-agent'] === 'string' ? headers['user-agent'] : undefined,
      requestId,
      resolveUserId: () => actor(req),
      resolveTenantId: tenant && (() => tenant(req)),
    });
    const state = { error: undefined };
    req[AUDIT_STATE] = state;

    let recorded = false;
    const finish = (aborted) => {
      if (recorded) return;
      recorded = true;
      try {
        audit.recordSync(
          buildRequestEvent({
            compiled,
            route: expressRoute(req, routeOverride),
            method: req.method,
            target,
            status: res.statusCode,
            error: state.error,
            durationMs: performance.now() - started,
            userId: context.userId,
            tenantId: context.tenantId,
            ip: context.ip,
            userAgent: context.userAgent,
            requestId,
            headers: compiled.recordHeaders.length > 0 ? pickHeaders(get, compiled.recordHeaders) : undefined,
            aborted,
          }),
        );
      } catch (error) {
        reportQuietly(onError, error);
      }
    };
    res.once('finish', () => finish(false));
    // 'close' also follows a normal finish; only without one was the request aborted.
    res.once('close', () => finish(!res.writableFinished));
    return context;
  }
}

/**
 * Express error middleware that notes the error for the request's audit event (severity
 * `critical`) and passes it on. Register it after your routes and before your own error
 * handlers: `app.use(auditErrorHandler)`.
 * @param {unknown} error
 * @param {any} req
 * @param {any} _res
 * @param {(error?: unknown) => void} next
 */
export function auditErrorHandler(error, req, _res, next) {
  markAuditError(req, error);
  next(error);
}

/**
 * Notes an error for the request's audit event, for apps that handle errors themselves
 * (the event is then recorded as `critical` unless `severity` says otherwise).
 * @param {any} req
 * @param {unknown} error
 */
export function markAuditError(req, error) {
  const state = req?.[AUDIT_STATE];
  if (state !== undefined) state.error = error ?? new Error('unknown error');
}

/**
 * Wraps a Next.js App Router route handler: records one event per call, runs the handler
 * in the request's audit context, records a thrown error as `critical` with status 500
 * (and rethrows it), and sets `x-request-id` on the response.
 *
 * Next.js gives a route handler no socket, so no IP is recorded unless `options.ip` returns
 * one, or `options.peer` names the peer address; forwarding headers are read only when
 * that peer is in `trustedProxies`.
 * @template {(request: Request, context: any) => any} H
 * @param {import('./client.js').Sealtrail} audit
 * @param {H} handler
 * @param {import('./middleware.d.ts').WithAuditOptions} [options]
 * @returns {H}
 */
export function withAudit(audit, handler, options = {}) {
  requireClient(audit);
  if (typeof handler !== 'function')
    throw new TypeError('withAudit(audit, handler): handler must be a route handler function');
  const compiled = compileOptions(options);
  const route = options.route;
  if (route !== undefined && typeof route !== 'string' && typeof route !== 'function') {
    throw new TypeError(
      'withAudit route must be the route template (e.g. "/api/guests/[id]") or a function of the request',
    );
  }
  const onError = options.onError ?? warnOnce;

  return /** @type {H} */ (
    async function auditedRouteHandler(request, routeContext) {
      let prepared;
      try {
        prepared = await prepareNextRequest(request);
      } catch (error) {
        reportQuietly(onError, error);
      }
      if (prepared === undefined) return handler(request, routeContext);
      const { context, target, started } = prepared;

      let response;
      let failed = false;
      let thrown;
      try {
        response = await runWithAuditContext(context, () => handler(request, routeContext));
      } catch (error) {
        failed = true;
        thrown = error;
      }
      try {
        // Next's redirect() and notFound() throw to unwind; they are answers, not failures.
        const controlStatus = failed ? nextControlFlowStatus(thrown) : undefined;
        const status = failed ? (controlStatus ?? 500) : response instanceof Response ? response.status : 200;
        audit.recordSync(
          buildRequestEvent({
            compiled,
            route: nextRoute(route, request, target.pathname),
            method: request.method,
            target,
            status,
            error: failed && controlStatus === undefined ? (thrown ?? new Error('undefined thrown')) : undefined,
            durationMs: performance.now() - started,
            userId: context.userId,
            tenantId: context.tenantId,
            ip: context.ip,
            userAgent: context.userAgent,
            requestId: context.requestId,
            headers:
              compiled.recordHeaders.length > 0
                ? pickHeaders((name) => request.headers.get(name), compiled.recordHeaders)
                : undefined,
            aborted: Boolean(request.signal?.aborted),
          }),
        );
      } catch (error) {
        reportQuietly(onError, error);
      }
      if (failed) throw thrown;
      return withRequestIdHeader(response, context.requestId);
    }
  );

  async function prepareNextRequest(request) {
    const url = new URL(request.url);
    const target = describeTarget(`${url.pathname}${url.search}`, compiled.redact);
    if (compiled.skip(target.pathname, request)) return undefined;
    const started = performance.now();
    const get = (name) => request.headers.get(name);
    const [userId, tenantId, ip] = await Promise.all([
      callQuietly(options.actor, request),
      callQuietly(options.tenant, request),
      nextClientIp(request, get),
    ]);
    const context = new RequestAuditContext({
      userId: userId ?? undefined,
      tenantId: tenantId ?? undefined,
      ip,
      userAgent: get('user-agent') ?? undefined,
      requestId: usableRequestId(get('x-request-id')) ?? uuidv7(),
    });
    return { context, target, started };
  }

  async function nextClientIp(request, get) {
    if (options.ip !== undefined) {
      // The application's own answer: taken as the client's address as it is.
      return normalizeIp(await callQuietly(options.ip, request));
    }
    if (options.peer !== undefined) {
      const peer = await callQuietly(options.peer, request);
      return clientIpOf({ peer, get, trusted: compiled.trusted, proxyHeader: compiled.proxyHeader });
    }
    return undefined;
  }
}

/**
 * The route template of an Express request: the override's answer, else the mount path
 * and the matched route's path, else "unmatched" (a 404, or an answer from middleware).
 */
function expressRoute(req, override) {
  if (override !== undefined) {
    try {
      const chosen = override(req);
      if (chosen != null && chosen !== '') return String(chosen);
    } catch {
      // Fall back to what Express knows.
    }
  }
  const route = req.route;
  if (route != null && route.path !== undefined) {
    return `${req.baseUrl ?? ''}${String(route.path)}`;
  }
  return 'unmatched';
}

function nextRoute(route, request, pathname) {
  if (typeof route === 'string') return route;
  if (typeof route === 'function') {
    try {
      const chosen = route(request);
      if (chosen != null && chosen !== '') return String(chosen);
    } catch {
      // Fall back to the path.
    }
  }
  return pathname;
}

// The digests Next.js puts on the errors redirect(), permanentRedirect(), notFound(),
// forbidden() and unauthorized() throw.
function nextControlFlowStatus(error) {
  const digest = error?.digest;
  if (typeof digest !== 'string') return undefined;
  if (digest.startsWith('NEXT_REDIRECT')) {
    const status = Number(digest.split(';')[3]);
    return Number.isInteger(status) ? status : 307;
  }
  if (digest === 'NEXT_NOT_FOUND') return 404;
  if (digest.startsWith('NEXT_HTTP_ERROR_FALLBACK;')) {
    const status = Number(digest.split(';')[1]);
    return Number.isInteger(status) ? status : undefined;
  }
  return undefined;
}

function withRequestIdHeader(response, requestId) {
  if (!(response instanceof Response) || response.headers.has('x-request-id')) return response;
  try {
    response.headers.set('x-request-id', requestId);
    return response;
  } catch {
    // Immutable headers (Response.redirect(), a fetch() result): answer with a copy.
    try {
      const headers = new Headers(response.headers);
      headers.set('x-request-id', requestId);
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
    } catch {
      return response;
    }
  }
}

function defaultExpressActor(req) {
  return req.user?.id;
}

async function callQuietly(fn, request) {
  if (fn === undefined) return undefined;
  try {
    return await fn(request);
  } catch {
    return undefined;
  }
}

function requireClient(audit) {
  if (typeof audit?.recordSync !== 'function') {
    throw new TypeError('the first argument must be a Sealtrail client (new Sealtrail({...}))');
  }
}

function requireFunction(name, value) {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`the ${name} option must be a function`);
  return value;
}

function reportQuietly(onError, error) {
  try {
    onError(error);
  } catch {
    // Nothing more can be done without risking the app.
  }
}

let warned = false;
function warnOnce(error) {
  if (warned) return;
  warned = true;
  process.emitWarning(
    `Sealtrail audit middleware failed; requests go unaudited when this happens: ${error?.stack ?? error}`,
    'SealtrailWarning',
  );
}
