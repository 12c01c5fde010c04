// Live tail: GET /v1/stream as Server-Sent Events. The browser's EventSource sends the
// session cookie and, after a dropped connection, reconnects by itself with Last-Event-ID
// (the last seq it received), so the server resumes exactly after it. When the browser
// gives up instead (the server answered something other than a stream: a restart that
// ended the session, too many subscribers), this opens a new stream after the last seq,
// backing off, unless the session is gone.

import { api, ApiError, queryString } from './api.js';
import { STREAM_FILTER_PARAMS, pick, withinTimeRange } from './filters.js';

const RETRY_FIRST_DELAY_MS = 1000;
const RETRY_MAX_DELAY_MS = 15000;

export class LiveTail {
  /**
   * @param {{filter: object, since: number|null, onEvent: (event: object) => void,
   *          onState: (state: 'connecting'|'live'|'caught-up'|'reconnecting'|'ended', detail?: string) => void}} options
   */
  constructor({ filter, since, onEvent, onState }) {
    this.filter = filter;
    this.lastSeq = since;
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.retryTimer = null;
    this.retryDelay = RETRY_FIRST_DELAY_MS;
    this.stopped = false;
  }

  start() {
    this.onState('connecting');
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
  }

  open() {
    const query = { ...pick(this.filter, STREAM_FILTER_PARAMS), since: this.lastSeq ?? '' };
    const source = new EventSource(`/v1/stream${queryString(query)}`);
    this.source = source;
    source.onopen = () => {
      this.retryDelay = RETRY_FIRST_DELAY_MS;
      this.onState('live');
    };
    source.onmessage = (message) => this.receive(message);
    source.addEventListener('caught_up', () => this.onState('caught-up'));
    source.onerror = () => {
      if (this.stopped || source !== this.source) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.onState('reconnecting'); // the browser retries by itself, with Last-Event-ID
      } else {
        source.close();
        this.recover();
      }
    };
  }

  receive(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not an event (the stream only sends events as unnamed messages)
    }
    const seq = Number(message.lastEventId);
    if (Number.isSafeInteger(seq) && seq > 0) this.lastSeq = seq;
    if (withinTimeRange(event, this.filter)) this.onEvent(event);
  }

  async recover() {
    this.onState('reconnecting');
    try {
      await api('/console/session', { redirectOn401: false });
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof ApiError && error.status === 401) {
        this.onState('ended', 'Live tail stopped: the session ended. Sign in again to resume.');
        return;
      }
      // The server is not answering yet: try again after the delay.
    }
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_DELAY_MS);
  }
}
