/** Query parameters whose values are redacted by default. */
export declare const DEFAULT_REDACTED_QUERY_PARAMS: readonly string[];
/** Headers that are always redacted when `recordHeaders` names them. */
export declare const ALWAYS_REDACTED_HEADERS: readonly string[];
/** Paths skipped by default. */
export declare const DEFAULT_SKIPPED_PATHS: readonly string[];

/** @internal The placeholder of redacted values. */
export declare const REDACTED: '[redacted]';

/** @internal What the integrations compile their options into. */
export interface CompiledAuditOptions {
  redact: Set<string>;
  recordHeaders: string[];
  proxyHeader: 'x-forwarded-for' | 'forwarded';
  trusted: import('./ip.js').TrustedProxies;
  skip: (path: string, request: unknown) => boolean;
  severity: (status: number, error: unknown) => 'info' | 'warning' | 'critical';
  action: string;
  resourceType: string;
}

/** @internal */
export declare function compileOptions(
  options?: Omit<import('./middleware.js').CommonAuditOptions, 'skip'> & { skip?: unknown },
): CompiledAuditOptions;
/** @internal */
export declare function compileSkip(
  skip?: (string | RegExp)[] | ((request: any) => boolean),
): (path: string, request: unknown) => boolean;
/** Default severity: an error → critical, 5xx → warning, else info. */
export declare function defaultSeverity(status: number, error?: unknown): 'info' | 'warning' | 'critical';
/** @internal The incoming request id when usable (1 to 128 printable ASCII characters). */
export declare function usableRequestId(value: unknown): string | undefined;
/** @internal A request target's path and query with secrets redacted. */
export declare function describeTarget(
  target: string,
  redact: Set<string>,
): { pathname: string; path: string; query: Record<string, string | string[]> };
/** @internal The named request headers, credentials redacted. */
export declare function pickHeaders(
  get: (name: string) => string | string[] | null | undefined,
  names: string[],
): Record<string, string>;
/** @internal The client IP from the peer and the configured forwarding header. */
export declare function clientIpOf(parts: {
  peer: string | undefined;
  get: (name: string) => string | string[] | null | undefined;
  trusted: import('./ip.js').TrustedProxies;
  proxyHeader: string;
}): string | undefined;
/** @internal The `http.request` event of a finished request. */
export declare function buildRequestEvent(parts: Record<string, unknown>): import('./client.js').AuditEvent;
/** @internal */
export declare function truncate(text: string, max: number): string;
