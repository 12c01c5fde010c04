// One ingest request: POST /v1/events with a batch, and what its answer means for the batch.
// It never throws; every way a request can end is a result the delivery loop acts on.

import { SealtrailRefusedError } from './errors.js';
import { classifyStatus, parseRetryAfter } from './retry.js';

/**
 * @typedef {{outcome: 'delivered', status: number}
 *   | {outcome: 'refused', status: number, error: SealtrailRefusedError}
 *   | {outcome: 'transient', status?: number, retryAfterMs?: number, message: string}} SendResult
 */

/**
 * Makes the function that sends one batch. Events arrive already serialized (the client
 * captures each event as JSON when it is recorded), so the body is a join, not a walk.
 * @param {{url: string, apiKey: string, requestTimeoutMs: number, fetch: typeof fetch,
 *   stopSignal?: AbortSignal}} options `stopSignal` aborts a request in flight when the
 *   client stops, so an unanswered request cannot keep the process alive after close()
 * @returns {(events: string[]) => Promise<SendResult>}
 */
export function createSender({ url, apiKey, requestTimeoutMs, fetch: fetchImpl, stopSignal }) {
  const endpoint = ingestEndpoint(url);
  const headers = {
    authorization: `Bearer ${apiKey}`,
    'content-type': 'application/json',
  };
  return async function sendBatch(events) {
    const abort = abortOnTimeoutOrStop(requestTimeoutMs, stopSignal);
    let response;
    let text;
    try {
      response = await fetchImpl(endpoint, {
        method: 'POST',
        headers,
        body: `{"events":[${events.join(',')}]}`,
        signal: abort.signal,
      });
      // Read the whole answer even on success: it frees the connection for keep-alive.
      text = await response.text();
    } catch (error) {
      return { outcome: 'transient', message: describeFetchError(error, endpoint, requestTimeoutMs) };
    } finally {
      abort.release();
    }
    const status = response.status;
    const outcome = classifyStatus(status);
    if (outcome === 'delivered') return { outcome, status };
    const body = parseErrorBody(text);
    if (outcome === 'refused') {
      return { outcome, status, error: new SealtrailRefusedError(status, body) };
    }
    return {
      outcome,
      status,
      retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
      message: `${status}${body.code ? ` ${body.code}` : ''}: ${body.message ?? 'no message'}`,
    };
  };
}

// One request's abort signal: fired by its timeout or by the client stopping. Hand-made
// rather than AbortSignal.timeout/any so that the timer is cleared as soon as the answer
// is in (thousands of requests would otherwise leave thousands of pending timers) and
// nothing stays registered on the long-lived stop signal.
function abortOnTimeoutOrStop(timeoutMs, stopSignal) {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  timer.unref();
  const onStop = () => controller.abort(new DOMException('the client stopped', 'AbortError'));
  stopSignal?.addEventListener('abort', onStop, { once: true });
  if (stopSignal?.aborted) onStop();
  return {
    signal: controller.signal,
    release() {
      clearTimeout(timer);
      stopSignal?.removeEventListener('abort', onStop);
    },
  };
}

/**
 * The ingest URL under the server's base URL, keeping any path prefix of a reverse proxy.
 * @param {string} base
 */
export function ingestEndpoint(base) {
  const withSlash = base.endsWith('/') ? base : `${base}/`;
  return new URL('v1/events', withSlash).href;
}

function parseErrorBody(text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body === 'object') return body;
  } catch {
    // Not JSON: a proxy's HTML error page, say.
  }
  return { message: text.slice(0, 200) || undefined };
}

function describeFetchError(error, endpoint, timeoutMs) {
  if (error?.name === 'TimeoutError' || error?.name === 'AbortError') {
    return `no answer from ${endpoint} within ${timeoutMs} ms`;
  }
  const cause = error?.cause;
  const detail = cause?.code ?? cause?.message ?? error?.message ?? String(error);
  return `cannot reach ${endpoint}: ${detail}`;
}
