// The Sealtrail client: record() stamps and queues an event and returns at once; one
// delivery loop per client sends batches in order, retries what can be retried, and
// spools to disk what cannot be delivered now.
//
// Life of an event:
//   record()  -> checked, stamped (id, occurred_at, request context, source, source_seq),
//                serialized, queued (or waits for room, or is dropped, or overflows to disk)
//   loop      -> taken in a batch of up to batchSize, sent; on a transient failure retried
//                with backoff; still failing after spoolAfterMs -> written to the spool,
//                and the client goes offline: new batches go to the spool too, and the
//                oldest spool file is sent now and then as a probe
//   back up   -> spool files are replayed oldest first, alternating with fresh batches
//
// Every event is stamped with `source` = "<name>/<instance>" and `source_seq` 1, 2, 3…
// before anything can drop it, so whatever is lost shows on the server as a hole in the
// sequence instead of disappearing silently.

import { contextMembers, getAuditContext } from './context.js';
import { SealtrailClosedError, SealtrailValidationError } from './errors.js';
import { checkEvent, isoNow } from './event.js';
import { resolveOptions } from './options.js';
import { RingQueue } from './queue.js';
import { splitRefusal } from './refusal.js';
import { BASE_RETRY_DELAY_MS, backoffDelay } from './retry.js';
import { Spool } from './spool.js';
import { createSender } from './transport.js';
import { randomHex, uuidv7 } from './uuid.js';

// record() returns one of these when it needs no waiting: no Promise per event on the
// hot path. They resolve to whether the event was kept.
const QUEUED = Promise.resolve(true);
const DROPPED = Promise.resolve(false);

/** How many refusals `refusals()` remembers. */
const REFUSALS_KEPT = 100;

/** How many event ids a remembered refusal lists. */
const REFUSAL_IDS_KEPT = 100;

/** While offline, queued events go to disk at least this often (fewer, larger files). */
const OFFLINE_SPILL_INTERVAL_MS = 1000;

/** While offline, a spool file is written at the latest when this many events are queued. */
const OFFLINE_SPILL_EVENTS = 1000;

/** How long the `beforeExit` safety net may take to deliver what is still queued. */
const EXIT_FLUSH_TIMEOUT_MS = 5000;

/**
 * A Sealtrail producer. Create one per process (per source name) and share it.
 */
export class Sealtrail {
  // Configuration.
  #config;
  #source;
  #sourceJson;
  #tenantJson;
  #sendBatch;
  #spool;
  #stopController = new AbortController();

  // Events not yet handed to the server: queued, blocked in record(), in flight, being
  // written to the spool. Each entry is {seq, json}.
  #queue;
  #waiters = [];
  #inFlightEntries = null;
  #spills = new Set();
  #seq = 0;

  // Delivery state.
  #inFlightCount = 0;
  #offline = false;
  #probeAttempt = 0;
  #nextProbeAt = 0;
  #failedProbes = 0;
  #timerFired = false;
  #preferSpool = true;
  #replay = null;
  #flushWaiters = [];
  #closing = false;
  #stopped = false;
  #closeDeadline = Infinity;
  #closePromise = null;
  #pumpDone;
  #exitHook = null;

  // The delivery loop's single wait: a resolver, whether new work may end it, its timer.
  #wakeResolve = null;
  #wakeOnWork = false;
  #timer = null;

  // Counters for metrics().
  #delivered = 0;
  #retries = 0;
  #dropped = 0;
  #spooled = 0;
  #refused = 0;
  #lastError = null;
  #refusals = [];

  /**
   * @param {import('./client.d.ts').SealtrailOptions} options
   */
  constructor(options) {
    const config = resolveOptions(options);
    this.#config = config;
    const instanceId = randomHex(12);
    this.#source = `${config.source}/${instanceId}`;
    this.#sourceJson = JSON.stringify(this.#source);
    this.#tenantJson = config.tenantId === undefined ? undefined : JSON.stringify(config.tenantId);
    this.#queue = new RingQueue(config.maxQueue);
    this.#sendBatch = createSender({
      url: config.url,
      apiKey: config.apiKey,
      requestTimeoutMs: config.requestTimeoutMs,
      fetch: config.fetch,
      stopSignal: this.#stopController.signal,
    });
    if (config.spoolDir !== undefined) {
      this.#spool = new Spool({ dir: config.spoolDir, maxBytes: config.maxSpoolBytes, instanceId });
    }
    this.#pumpDone = this.#run();
    if (config.flushOnExit) {
      // A script that records and ends without close() would lose what is still queued:
      // when the event loop runs dry, deliver it first (close() removes this).
      this.#exitHook = () => {
        if (!this.#closing && !this.#memoryEmpty()) void this.close({ timeoutMs: EXIT_FLUSH_TIMEOUT_MS });
      };
      process.on('beforeExit', this.#exitHook);
    }
  }

  /** This instance's `source`: the configured name, a slash and a random instance id. */
  get source() {
    return this.#source;
  }

  /**
   * Records an audit event. Resolves as soon as it is queued, never waiting for delivery:
   * at once when there is room; with `overflow: 'block'` when room frees up (backpressure).
   * Resolves `true` when the event was kept, `false` when the overflow policy dropped it.
   * Rejects with a SealtrailValidationError when the event would certainly be refused, and
   * with a SealtrailClosedError after close().
   *
   * Fills `id` (a UUIDv7), `occurred_at` (now), `tenant_id` (the request's, else the
   * client's `tenantId`), and `user_id`, `ip_address`, `user_agent` and `request_id` from
   * the current request context, each only when not given (an explicit `null` stays
   * "none"), then stamps `source` and `source_seq`. The event is serialized here, so
   * changing the object afterwards changes nothing.
   * @param {import('./client.d.ts').AuditEvent} event
   * @returns {Promise<boolean>}
   */
  record(event) {
    const entry = this.#accept(event);
    if (entry instanceof Error) return Promise.reject(entry);
    return this.#offer(entry, true);
  }

  /**
   * Like record(), for code that cannot await or must never fail because of auditing:
   * never throws and returns at once. Returns true when the event was accepted (queued, or
   * waiting for room with `overflow: 'block'`), false when it was invalid, dropped or the
   * client is closed; the reason is in `metrics().lastError`.
   * @param {import('./client.d.ts').AuditEvent} event
   * @returns {boolean}
   */
  recordSync(event) {
    try {
      const entry = this.#accept(event);
      if (entry instanceof Error) {
        this.#noteError(entry.message);
        return false;
      }
      return this.#offer(entry, false) !== DROPPED;
    } catch (error) {
      this.#noteError(`recordSync: ${error?.message ?? error}`);
      return false;
    }
  }

  /**
   * Resolves when every event recorded before the call is settled: delivered, or refused,
   * or dropped, or (when the server stays unreachable past spoolAfterMs, or at close) safe
   * in the spool. With `{spool: true}` it also waits until the spool directory is empty,
   * i.e. replayed to the server, unless the server cannot be reached (one probe is sent at
   * once to find out). Resolves with metrics(); never rejects.
   * @param {{spool?: boolean}} [options]
   * @returns {Promise<import('./client.d.ts').SealtrailMetrics>}
   */
  flush({ spool = false } = {}) {
    const waiter = { target: this.#seq, spool, failedProbes: this.#failedProbes, resolve: null };
    const settled = new Promise((resolve) => {
      waiter.resolve = resolve;
    });
    this.#flushWaiters.push(waiter);
    if (spool && this.#offline) this.#nextProbeAt = Date.now();
    this.#settleFlushes();
    this.#notifyWork();
    return settled;
  }

  /**
   * Stops accepting events (record() rejects from now on), delivers everything already
   * recorded, and stops the delivery loop and its timers so the process can exit. When the
   * server cannot be reached, what is left goes to the spool at once; without a spool it is
   * retried until `timeoutMs`, and whatever is still unsent then is counted as dropped.
   * Spool files are left for the next process (use flush({spool: true}) first to drain
   * them). Resolves with the final metrics(); calling it again returns the same promise.
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<import('./client.d.ts').SealtrailMetrics>}
   */
  close({ timeoutMs = 10_000 } = {}) {
    if (this.#closePromise) return this.#closePromise;
    if (!(timeoutMs >= 0)) timeoutMs = 0; // NaN or negative: do not wait
    this.#closing = true;
    this.#closeDeadline = Date.now() + timeoutMs;
    if (this.#exitHook) {
      process.off('beforeExit', this.#exitHook);
      this.#exitHook = null;
    }
    this.#release();
    this.#closePromise = this.#finishClose(timeoutMs);
    return this.#closePromise;
  }

  /**
   * A snapshot of the client's counters and state.
   * @returns {import('./client.d.ts').SealtrailMetrics}
   */
  metrics() {
    return {
      recorded: this.#seq,
      queued: this.#queue.length,
      waiting: this.#waiters.length,
      inFlight: this.#inFlightCount,
      delivered: this.#delivered,
      retries: this.#retries,
      dropped: this.#dropped,
      spooled: this.#spooled,
      spoolFiles: this.#spool?.fileCount ?? 0,
      spoolBytes: this.#spool?.bytes ?? 0,
      refused: this.#refused,
      offline: this.#offline,
      lastError: this.#lastError,
    };
  }

  /**
   * The most recent refusals (up to 100), oldest first: when, the status, the server's
   * code and reason, and the ids of the refused events.
   * @returns {import('./client.d.ts').Refusal[]}
   */
  refusals() {
    return this.#refusals.slice();
  }

  // ---- record() path -----------------------------------------------------------------

  // Checks, stamps and serializes an event; returns the queue entry, or the error.
  //
  // The caller's object is serialized as it is and the stamped fields are appended to the
  // JSON text: copying the object and adding properties to the copy costs several times
  // more (V8 falls off JSON.stringify's fast path for such objects), and this runs for
  // every event. A field is appended only where the event has none (undefined members are
  // left out by JSON.stringify), so no member can appear twice.
  #accept(event) {
    if (this.#closing) return new SealtrailClosedError();
    const problem = checkEvent(event);
    if (problem !== undefined) return problem;
    // `null` id or time means "fill it in", like absent; other nulls mean "none".
    const base =
      event.id === null || event.occurred_at === null
        ? { ...event, id: event.id ?? undefined, occurred_at: event.occurred_at ?? undefined }
        : event;
    let json;
    try {
      json = JSON.stringify(base);
    } catch (error) {
      return new SealtrailValidationError('event', `cannot be serialized as JSON: ${error.message}`);
    }
    if (json.charCodeAt(0) !== 0x7b /* { */) {
      return new SealtrailValidationError('event', 'must serialize to a JSON object (check its toJSON)');
    }
    let stamped = '';
    if (base.id === undefined) stamped += `,"id":"${uuidv7()}"`;
    if (base.occurred_at === undefined) stamped += `,"occurred_at":"${isoNow()}"`;
    const context = getAuditContext();
    if (context !== undefined) stamped += contextMembers(base, context);
    if (base.tenant_id === undefined && this.#tenantJson !== undefined && !stamped.includes(',"tenant_id":')) {
      stamped += `,"tenant_id":${this.#tenantJson}`;
    }
    // The number is taken only now that the event is known to be accepted: an event
    // record() rejects is not a hole in the sequence.
    const seq = ++this.#seq;
    stamped += `,"source":${this.#sourceJson},"source_seq":${seq}}`;
    json = json.length === 2 ? `{${stamped.slice(1)}` : json.slice(0, -1) + stamped;
    return { seq, json };
  }

  // Queues an accepted entry, or applies the overflow policy when the queue is full.
  // `canWait`: the caller gets the promise and can be held back (record()); recordSync()
  // cannot, so under 'block' its events wait only up to another maxQueue, then drop:
  // otherwise a long outage would grow the waiting list without bound.
  #offer(entry, canWait) {
    const queue = this.#queue;
    if (this.#waiters.length === 0 && !queue.full) {
      queue.push(entry);
      const length = queue.length;
      if (length === 1 || length === this.#config.batchSize) this.#notifyWork();
      return QUEUED;
    }
    const overflow = this.#config.overflow;
    if (overflow === 'block' && (canWait || this.#waiters.length < queue.capacity)) {
      return new Promise((resolve) => this.#waiters.push({ entry, resolve }));
    }
    if (overflow === 'spool' && this.#spills.size === 0) {
      // Move the whole queue to disk (one file) and make room; a second overflow while
      // that write is still going means the disk cannot keep up, and drops.
      void this.#spillQueue();
      queue.push(entry);
      this.#notifyWork();
      return QUEUED;
    }
    this.#drop(1, `the queue is full (maxQueue ${queue.capacity}, overflow '${overflow}')`);
    return DROPPED;
  }

  // ---- the delivery loop -------------------------------------------------------------

  async #run() {
    // Let the constructor return, and the first record() calls land, before looking.
    await null;
    while (!this.#stopped) {
      try {
        if (!(await this.#step())) break;
      } catch (error) {
        // A bug or an unexpected I/O error must not end delivery for good.
        this.#noteError(`delivery loop: ${error?.message ?? error}`);
        await this.#sleep(1000, false);
      }
    }
  }

  // One turn of the loop; false when closing and nothing is left to do.
  async #step() {
    if (this.#offline && Date.now() < this.#nextProbeAt) return this.#stepOffline();
    const source = this.#pickSource();
    if (source === 'spool') {
      await this.#replayNextChunk();
      return true;
    }
    if (source === 'memory') {
      await this.#deliverFromMemory();
      return true;
    }
    if (this.#closing) return false;
    // Nothing due: wait for a full batch, the flush interval, flush() or close().
    const interval = this.#queue.length > 0 ? this.#config.flushIntervalMs : undefined;
    if (await this.#sleep(interval, true)) this.#timerFired = true;
    return true;
  }

  // Offline and no probe due yet: queued events go to disk; otherwise wait.
  async #stepOffline() {
    const queued = this.#queue.length;
    if (
      queued > 0 &&
      (queued >= Math.min(OFFLINE_SPILL_EVENTS, this.#queue.capacity) || this.#urgent() || this.#timerFired)
    ) {
      await this.#spillQueue();
      return true;
    }
    // Closing: done once nothing is queued or blocked (close() waits for spills in flight).
    if (this.#closing) return this.#queue.length > 0 || this.#waiters.length > 0;
    const untilProbe = this.#nextProbeAt - Date.now();
    const untilSpill = queued > 0 ? Math.max(OFFLINE_SPILL_INTERVAL_MS, this.#config.flushIntervalMs) : Infinity;
    const wait = Math.min(untilProbe, untilSpill);
    if ((await this.#sleep(wait, true)) && wait === untilSpill) this.#timerFired = true;
    return true;
  }

  // What to send next: 'spool', 'memory' or null. Spool files and fresh batches take
  // turns, so replaying a large spool neither starves new events nor the other way round.
  #pickSource() {
    const memoryDue =
      this.#queue.length > 0 && (this.#queue.length >= this.#config.batchSize || this.#timerFired || this.#urgent());
    const spool = this.#spool;
    const spoolDue =
      spool !== undefined && spool.fileCount > 0 && (!this.#closing || this.#flushWaiters.some((w) => w.spool));
    if (memoryDue && spoolDue) {
      this.#preferSpool = !this.#preferSpool;
      return this.#preferSpool ? 'spool' : 'memory';
    }
    return spoolDue ? 'spool' : memoryDue ? 'memory' : null;
  }

  // Whether queued events should go out now rather than wait for a full batch.
  #urgent() {
    return this.#closing || this.#flushWaiters.length > 0;
  }

  async #deliverFromMemory() {
    const entries = this.#queue.take(this.#config.batchSize);
    this.#timerFired = false;
    this.#admitWaiters();
    this.#inFlightEntries = entries;
    try {
      await this.#deliver(entries.map(toJson), { fromSpool: false });
    } finally {
      this.#inFlightEntries = null;
      this.#settleFlushes();
    }
  }

  // Sends the next chunk of the oldest spool file; deletes the file once all of it is
  // settled. Progress within a file is remembered, so a file is not resent from its start
  // after each chunk (resending would be harmless, only wasteful).
  async #replayNextChunk() {
    const file = this.#spool.oldest();
    if (this.#replay?.file !== file) {
      const content = await this.#spool.read(file);
      if (content === undefined) return; // another process delivered it
      if (content.unreadable.length > 0) {
        this.#refuseLocally(content.unreadable, file);
      }
      this.#replay = { file, events: content.events };
    }
    const replay = this.#replay;
    const chunk = replay.events.slice(0, this.#config.batchSize);
    const unsettled = chunk.length > 0 ? await this.#deliver(chunk, { fromSpool: true }) : undefined;
    if (unsettled !== undefined) {
      replay.events = unsettled.concat(replay.events.slice(chunk.length));
      return;
    }
    replay.events = replay.events.slice(chunk.length);
    if (replay.events.length === 0) {
      await this.#spool.remove(file);
      this.#replay = null;
      this.#settleFlushes();
    }
  }

  /**
   * Sends events until each is delivered or refused; retries transient failures. Returns
   * undefined when all are settled, or, for spool events when the server is unreachable,
   * the ones still unsettled (they stay in their file).
   */
  async #deliver(events, { fromSpool }) {
    const pending = [events];
    let failingSince;
    let attempt = 0;
    while (pending.length > 0) {
      const batch = pending[0];
      this.#inFlightCount = batch.length;
      const result = await this.#sendBatch(batch);
      this.#inFlightCount = 0;
      // close() gave up waiting and already spooled (or counted) what was in memory.
      if (this.#stopped) return fromSpool ? pending.flat() : undefined;

      if (result.outcome === 'delivered') {
        this.#delivered += batch.length;
        pending.shift();
        failingSince = undefined;
        attempt = 0;
        this.#markOnline();
        continue;
      }
      if (result.outcome === 'refused') {
        const { refused, resend } = splitRefusal(batch, result.error);
        pending.splice(0, 1, ...resend);
        await this.#refuse(refused, result.error);
        this.#markOnline();
        continue;
      }

      this.#noteError(result.message, result.status);
      failingSince ??= Date.now();
      const unreachable = this.#offline || this.#closing || Date.now() - failingSince >= this.#config.spoolAfterMs;
      if (this.#spool !== undefined && unreachable) {
        this.#markOffline(result.retryAfterMs);
        if (fromSpool) return pending.flat();
        if (await this.#spoolEvents(pending.flat())) return undefined;
        // The disk failed as well: keep the events in memory and keep retrying.
      }
      this.#retries++;
      const delay = result.retryAfterMs ?? backoffDelay(attempt++, this.#config.maxRetryDelayMs);
      await this.#sleep(Math.min(delay, Math.max(0, this.#closeDeadline - Date.now())), false);
      if (this.#stopped) return fromSpool ? pending.flat() : undefined;
    }
    return undefined;
  }

  // Moves everything queued to one spool file.
  async #spillQueue() {
    const entries = this.#queue.take(this.#queue.length);
    this.#timerFired = false;
    this.#admitWaiters();
    if (entries.length === 0) return;
    const job = { minSeq: entries[0].seq, done: null };
    this.#spills.add(job);
    job.done = (async () => {
      const events = entries.map(toJson);
      if (!(await this.#spoolEvents(events))) this.#drop(events.length, 'the spool cannot be written');
    })();
    try {
      await job.done;
    } finally {
      this.#spills.delete(job);
      this.#settleFlushes();
    }
  }

  // Writes events to the spool; true when they are settled (spooled, or dropped because
  // the spool is at its bound), false when the disk failed and they are still ours.
  async #spoolEvents(events) {
    try {
      if (await this.#spool.write(events)) {
        this.#spooled += events.length;
      } else {
        this.#drop(events.length, `the spool is full (maxSpoolBytes ${this.#config.maxSpoolBytes})`);
      }
      return true;
    } catch (error) {
      this.#noteError(`cannot write the spool in ${this.#spool.dir}: ${error.message}`);
      return false;
    }
  }

  #markOffline(retryAfterMs) {
    this.#offline = true;
    this.#failedProbes++;
    const delay =
      retryAfterMs ?? Math.max(BASE_RETRY_DELAY_MS, backoffDelay(this.#probeAttempt++, this.#config.maxRetryDelayMs));
    this.#nextProbeAt = Date.now() + delay;
    this.#settleFlushes();
  }

  #markOnline() {
    if (!this.#offline) return;
    this.#offline = false;
    this.#probeAttempt = 0;
    // Other processes sharing the directory may have left files meanwhile.
    this.#spool?.rescan();
  }

  // ---- refusals and drops ------------------------------------------------------------

  async #refuse(events, error) {
    if (events.length === 0) return;
    this.#refused += events.length;
    this.#noteError(error.message, error.status);
    const parsed = events.map(parseQuietly);
    this.#remember({
      at: new Date().toISOString(),
      status: error.status,
      code: error.code,
      field: error.field,
      reason: error.reason,
      count: events.length,
      eventIds: parsed.slice(0, REFUSAL_IDS_KEPT).map((event) => event?.id),
    });
    if (this.#spool !== undefined) {
      const why = {
        status: error.status,
        code: error.code,
        field: error.field,
        reason: error.reason,
        errors: error.errors,
      };
      await this.#spool
        .keepRefused(events, why)
        .catch((writeError) => this.#noteError(`cannot keep refused events: ${writeError.message}`));
    }
    const hook = this.#config.onRefused;
    if (hook !== undefined) {
      // The hook is the application's code; its failure must not stop delivery.
      try {
        const returned = /** @type {any} */ (hook(parsed, error));
        if (typeof returned?.then === 'function') {
          returned.then(undefined, (hookError) => this.#noteError(`onRefused: ${hookError?.message ?? hookError}`));
        }
      } catch (hookError) {
        this.#noteError(`onRefused: ${hookError?.message ?? hookError}`);
      }
    }
  }

  // Lines of a spool file that are not events: set aside without asking the server.
  #refuseLocally(lines, file) {
    this.#refused += lines.length;
    this.#noteError(`${lines.length} unreadable line(s) in spool file ${file.name}`);
    this.#remember({
      at: new Date().toISOString(),
      status: 0,
      code: 'unreadable_spool_line',
      reason: `unreadable line in ${file.name}`,
      count: lines.length,
      eventIds: [],
    });
    void this.#spool.keepRefused(lines, { code: 'unreadable_spool_line', file: file.name }).catch(() => {});
  }

  #remember(refusal) {
    this.#refusals.push(refusal);
    if (this.#refusals.length > REFUSALS_KEPT) this.#refusals.shift();
  }

  #drop(count, why) {
    this.#dropped += count;
    this.#noteError(why);
  }

  #noteError(message, status) {
    this.#lastError = status === undefined ? { message, at: isoNow() } : { message, status, at: isoNow() };
  }

  // ---- waiting and settling ----------------------------------------------------------

  // The loop's only way to wait: for `ms` (undefined: no limit) or until released.
  // Resolves true when the time ran out. `wakeOnWork`: new events or flush() end it too
  // (not during a retry delay: that would turn backoff into hammering).
  #sleep(ms, wakeOnWork) {
    return new Promise((resolve) => {
      this.#wakeResolve = resolve;
      this.#wakeOnWork = wakeOnWork;
      if (ms !== undefined && Number.isFinite(ms)) {
        this.#timer = setTimeout(
          () => {
            this.#timer = null;
            this.#wakeResolve = null;
            resolve(true);
          },
          Math.max(0, ms),
        );
        // The client alone never keeps the process alive (see close() and flushOnExit).
        this.#timer.unref();
      }
    });
  }

  #release() {
    const resolve = this.#wakeResolve;
    if (resolve === null) return;
    this.#wakeResolve = null;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    resolve(false);
  }

  #notifyWork() {
    if (this.#wakeOnWork) this.#release();
  }

  // Blocked record() calls take the room a batch freed, in the order they came.
  #admitWaiters() {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    let admitted = 0;
    while (admitted < waiters.length && !this.#queue.full) {
      const waiter = waiters[admitted++];
      this.#queue.push(waiter.entry);
      waiter.resolve(true);
    }
    waiters.splice(0, admitted);
  }

  // The lowest source_seq not yet settled; Infinity when everything is.
  #minUnsettledSeq() {
    let min = this.#inFlightEntries?.[0]?.seq ?? Infinity;
    const head = this.#queue.peek();
    if (head !== undefined && head.seq < min) min = head.seq;
    if (this.#waiters.length > 0 && this.#waiters[0].entry.seq < min) min = this.#waiters[0].entry.seq;
    for (const job of this.#spills) if (job.minSeq < min) min = job.minSeq;
    return min;
  }

  #memoryEmpty() {
    return this.#minUnsettledSeq() === Infinity;
  }

  #settleFlushes() {
    if (this.#flushWaiters.length === 0) return;
    const minUnsettled = this.#minUnsettledSeq();
    const spoolEmpty = this.#spool === undefined || this.#spool.fileCount === 0;
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      const memorySettled = waiter.target < minUnsettled;
      const spoolSettled = !waiter.spool || spoolEmpty || this.#failedProbes > waiter.failedProbes || this.#stopped;
      if (!(memorySettled && spoolSettled)) return true;
      waiter.resolve(this.metrics());
      return false;
    });
  }

  // ---- close ---------------------------------------------------------------------------

  async #finishClose(timeoutMs) {
    let deadline;
    const waits = [this.#pumpDone.then(() => false)];
    if (Number.isFinite(timeoutMs)) {
      // Deliberately not unref'd: whoever awaits close() wants it to finish.
      waits.push(
        new Promise((resolve) => {
          deadline = setTimeout(resolve, Math.min(Math.max(0, timeoutMs), 2 ** 31 - 1), true);
        }),
      );
    }
    const timedOut = await Promise.race(waits);
    clearTimeout(deadline);
    if (timedOut) await this.#abandonMemory();
    this.#stopped = true;
    this.#stopController.abort();
    this.#release();
    await Promise.allSettled([...this.#spills].map((job) => job.done));
    for (const waiter of this.#flushWaiters) waiter.resolve(this.metrics());
    this.#flushWaiters = [];
    return this.metrics();
  }

  // close() ran out of time: what is still in memory (the batch in flight included, which
  // may yet arrive; its ids make a later replay harmless) goes to the spool, or is counted
  // as dropped without one.
  async #abandonMemory() {
    this.#stopped = true;
    const entries = [...(this.#inFlightEntries ?? []), ...this.#queue.take(this.#queue.length)];
    this.#inFlightEntries = null;
    for (const waiter of this.#waiters.splice(0)) {
      entries.push(waiter.entry);
      waiter.resolve(true);
    }
    if (entries.length === 0) return;
    const events = entries.map(toJson);
    const spooled = this.#spool !== undefined && (await this.#spoolEvents(events));
    if (!spooled) this.#drop(events.length, `close() timed out with ${events.length} event(s) undelivered`);
  }
}

function toJson(entry) {
  return entry.json;
}

function parseQuietly(json) {
  try {
    return JSON.parse(json);
  } catch {
    return { unreadable: json };
  }
}
