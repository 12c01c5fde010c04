import type { Sealtrail } from './client.js';

export type Severity = 'info' | 'warning' | 'critical';

/** Options both integrations share. */
export interface CommonAuditOptions {
  /**
   * Proxies whose forwarding header is believed: IPs, CIDRs (v4/v6), or `loopback`,
   * `linklocal`, `uniquelocal`. Default: none, so the peer address is the client's.
   */
  trustedProxies?: Iterable<string> | string;
  /**
   * Which header the trusted proxies write: `x-forwarded-for` (default) or RFC 7239
   * `forwarded`. Only one is read: a header the proxies do not write is the client's own.
   */
  proxyHeader?: 'x-forwarded-for' | 'forwarded';
  /**
   * Query parameters whose values become "[redacted]" in `details.path` and
   * `details.query`, case-insensitive. Replaces the defaults
   * (DEFAULT_REDACTED_QUERY_PARAMS); spread those in to extend them.
   */
  redactQuery?: string[];
  /** Request headers to keep in `details.headers`; credentials among them are always "[redacted]". */
  recordHeaders?: string[];
  /** Paths (exact strings, RegExps) not to audit, or a predicate. Default DEFAULT_SKIPPED_PATHS. */
  skip?: (string | RegExp)[];
  /** The severity of a request's event; default: error → critical, 5xx → warning, else info. */
  severity?: (status: number, error: unknown) => Severity;
  /** The event's action; default `http.request`. */
  action?: string;
  /** The event's resource_type; default `http.route`. */
  resourceType?: string;
  /** Called with the middleware's own unexpected errors (default: one process warning). */
  onError?: (error: unknown) => void;
}

export interface ExpressAuditOptions<Req = any> extends Omit<CommonAuditOptions, 'skip'> {
  /** The acting user's id: e.g. `req => req.user?.id` (the default) or the session's user. */
  actor?: (req: Req) => string | number | null | undefined;
  /** The tenant the request acts for. */
  tenant?: (req: Req) => string | null | undefined;
  /** The route template; default `req.baseUrl + req.route.path`, or "unmatched". */
  route?: (req: Req) => string | null | undefined;
  skip?: (string | RegExp)[] | ((req: Req) => boolean);
}

export interface WithAuditOptions extends Omit<CommonAuditOptions, 'skip'> {
  /** The route template, e.g. `/api/guests/[id]` (default: the request's path). */
  route?: string | ((request: Request) => string | null | undefined);
  /** The acting user's id (may be async: it is awaited before the handler runs). */
  actor?: (request: Request) => string | number | null | undefined | Promise<string | number | null | undefined>;
  /** The tenant the request acts for (may be async). */
  tenant?: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /** The client's IP as the application knows it; taken as it is. */
  ip?: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /**
   * The address of the peer that sent the request (from the platform); forwarding headers
   * are read only when it is in `trustedProxies`.
   */
  peer?: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  skip?: (string | RegExp)[] | ((request: Request) => boolean);
}

/** Express/Connect middleware: one `http.request` event per request, and the request's audit context. */
export declare function expressAudit<Req = any>(
  audit: Sealtrail,
  options?: ExpressAuditOptions<Req>,
): (req: any, res: any, next: (error?: unknown) => void) => void;

/** Express error middleware marking the request's event `critical`; register before your own. */
export declare function auditErrorHandler(error: unknown, req: any, res: any, next: (error?: unknown) => void): void;

/** Notes an error for the request's audit event. */
export declare function markAuditError(req: any, error: unknown): void;

/** Wraps a Next.js App Router route handler with request auditing. */
export declare function withAudit<H extends (request: Request, context: any) => unknown>(
  audit: Sealtrail,
  handler: H,
  options?: WithAuditOptions,
): (...args: Parameters<H>) => Promise<Awaited<ReturnType<H>>>;
