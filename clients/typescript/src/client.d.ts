import type { SealtrailRefusedError } from './errors.js';

/** One change of a field, for `changes`. */
export interface FieldChange {
  field: string;
  before?: unknown;
  after?: unknown;
}

/**
 * An audit event as the application records it. `action` and `resource_type` are
 * required; the client fills `id`, `occurred_at`, the request fields and `tenant_id`
 * when they are not given, and always stamps `source` and `source_seq`.
 */
export interface AuditEvent {
  /** What happened, e.g. `guest.dietary_restriction.updated` (letters, digits, `. _ - : /`). */
  action: string;
  /** The kind of thing it happened to, e.g. `guest`. */
  resource_type: string;
  /** A UUID; the client makes a UUIDv7 when absent. It is the idempotency key of retries. */
  id?: string | null;
  /** Needed unless the API key is bound to a tenant (or the client has `tenantId`). */
  tenant_id?: string | null;
  /** RFC 3339 or a Date; now when absent. */
  occurred_at?: string | Date | null;
  user_id?: string | number | null;
  actor_type?: 'user' | 'service' | 'system' | null;
  resource_id?: string | number | null;
  severity?: 'info' | 'warning' | 'critical' | null;
  outcome?: 'success' | 'failure' | null;
  ip_address?: string | null;
  user_agent?: string | null;
  /** At most 128 characters. */
  request_id?: string | null;
  reason?: string | null;
  changes?: FieldChange[] | null;
  details?: Record<string, unknown> | null;
  /** Stamped by the client; record() rejects events that set it. */
  source?: never;
  /** Stamped by the client; record() rejects events that set it. */
  source_seq?: never;
}

/** What to do with an event recorded while the queue is full. */
export type OverflowPolicy = 'block' | 'drop' | 'spool';

export interface SealtrailOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:7700` (a path prefix is kept). */
  url: string | URL;
  /** An API key with the `ingest` scope. */
  apiKey: string;
  /**
   * This producer's name, e.g. `wedding-web` (letters, digits, `. _ - : /`). Events carry
   * `source` = `<name>/<random instance id>` and a gapless `source_seq`.
   */
  source: string;
  /** The tenant of events that name none (and are not recorded inside a request that does). */
  tenantId?: string;
  /** Most events per request, 1 to 1000. Default 100. */
  batchSize?: number;
  /** Longest a queued event waits for its batch to fill, in ms. Default 100. */
  flushIntervalMs?: number;
  /** Most events held in memory waiting to be sent. Default 10000. */
  maxQueue?: number;
  /**
   * When the queue is full: `block` makes record() wait for room (backpressure), `drop`
   * drops the event (counted, and a hole in `source_seq`), `spool` writes the queue to
   * disk. Default `spool` with a `spoolDir`, else `block`.
   */
  overflow?: OverflowPolicy;
  /** A directory for the outage spool; files in it from earlier processes are delivered. */
  spoolDir?: string;
  /** The spool's bound in bytes; batches beyond it are dropped and counted. Default 1 GiB. */
  maxSpoolBytes?: number;
  /** How long one request may take, in ms. Default 10000. */
  requestTimeoutMs?: number;
  /** The longest wait between retries, in ms (a `Retry-After` is honoured up to 5 min). Default 10000. */
  maxRetryDelayMs?: number;
  /** How long a batch may keep failing transiently before it goes to the spool, in ms. Default 3000. */
  spoolAfterMs?: number;
  /** Called with events the server refused for good, and its answer. Must not throw (it is caught). */
  onRefused?: (events: Record<string, unknown>[], error: SealtrailRefusedError) => void | Promise<void>;
  /**
   * Deliver what is still queued when the process's event loop runs dry (`beforeExit`),
   * for scripts that never call close(). Default true.
   */
  flushOnExit?: boolean;
  /** The fetch to use; Node's built-in one by default. */
  fetch?: typeof fetch;
}

export interface SealtrailMetrics {
  /** Events accepted so far: the last `source_seq` stamped. */
  recorded: number;
  /** Events in the queue. */
  queued: number;
  /** record() calls blocked waiting for room (`overflow: 'block'`). */
  waiting: number;
  /** Events in the request in flight. */
  inFlight: number;
  /** Events the server acknowledged (spool replays included). */
  delivered: number;
  /** Transient failures that were retried. */
  retries: number;
  /** Events dropped: queue overflow with `drop`, spool full, or close() timed out without a spool. */
  dropped: number;
  /** Events written to the spool. */
  spooled: number;
  /** Spool files waiting to be delivered. */
  spoolFiles: number;
  /** Their size in bytes. */
  spoolBytes: number;
  /** Events the server refused for good. */
  refused: number;
  /** Whether the client currently holds new batches on disk because the server is unreachable. */
  offline: boolean;
  /** The most recent problem, or null. */
  lastError: { message: string; status?: number; at: string } | null;
}

/** A refusal, as `refusals()` remembers it. */
export interface Refusal {
  at: string;
  /** The HTTP status, or 0 for an unreadable spool line. */
  status: number;
  code?: string;
  field?: string;
  reason?: string;
  /** How many events were refused. */
  count: number;
  /** The ids of (up to 100 of) the refused events. */
  eventIds: (string | undefined)[];
}

export declare class Sealtrail {
  constructor(options: SealtrailOptions);
  /** This instance's `source`: the configured name, a slash and a random instance id. */
  readonly source: string;
  /**
   * Records an event. Resolves as soon as it is queued (at once when there is room; with
   * `overflow: 'block'` when room frees up), never waiting for delivery: `true` when kept,
   * `false` when dropped. Rejects with SealtrailValidationError or SealtrailClosedError.
   */
  record(event: AuditEvent): Promise<boolean>;
  /** Like record(), but never throws and never waits: true when accepted. */
  recordSync(event: AuditEvent): boolean;
  /**
   * Resolves when everything recorded before the call is delivered, refused, dropped, or
   * (server unreachable) spooled; with `{spool: true}` also once the spool is replayed,
   * unless the server cannot be reached.
   */
  flush(options?: { spool?: boolean }): Promise<SealtrailMetrics>;
  /** Stops accepting events, delivers (or spools) what is queued, and stops all timers. */
  close(options?: { timeoutMs?: number }): Promise<SealtrailMetrics>;
  metrics(): SealtrailMetrics;
  /** The last (up to 100) refusals, oldest first. */
  refusals(): Refusal[];
}
