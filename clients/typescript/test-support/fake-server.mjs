// A stand-in for Sealtrail's ingest endpoint, only for fault injection (refusals, 429, 503,
// silence) that the real server cannot be made to produce on demand. It checks that every
// request has the shape the real server requires, and records what it got.

import { createServer } from 'node:http';

/**
 * @param {(request: {events: object[], attempt: number}) => {status: number, headers?: object, body?: object} | 'hang'} respond
 *   decides each answer; `attempt` counts requests from 1
 * @param {{apiKey?: string}} [options]
 */
export async function startFakeSealtrail(respond, { apiKey = 'st_fake_key' } = {}) {
  const requests = [];
  const shapeErrors = [];
  const hanging = new Set();
  const stats = { concurrent: 0, maxConcurrent: 0 };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const problems = [];
      if (req.method !== 'POST') problems.push(`method ${req.method}`);
      if (req.url !== '/v1/events') problems.push(`path ${req.url}`);
      if (req.headers.authorization !== `Bearer ${apiKey}`) problems.push(`authorization ${req.headers.authorization}`);
      if (!String(req.headers['content-type']).startsWith('application/json'))
        problems.push(`content-type ${req.headers['content-type']}`);
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        problems.push('body is not JSON');
      }
      const events = body?.events;
      if (!Array.isArray(events) || events.length === 0 || events.length > 1000) {
        problems.push('body.events is not an array of 1 to 1000 events');
      } else {
        for (const event of events) {
          if (
            typeof event.id !== 'string' ||
            !/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(event.id)
          )
            problems.push(`event id ${event.id}`);
          if (typeof event.source !== 'string' || !Number.isInteger(event.source_seq))
            problems.push('event without source/source_seq');
          if (!event.action || !event.resource_type) problems.push('event without action/resource_type');
        }
      }
      if (problems.length > 0) {
        shapeErrors.push(...problems);
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 'fake_shape', message: problems.join('; ') }));
        return;
      }
      const request = { events, attempt: requests.length + 1, at: Date.now() };
      requests.push(request);
      stats.concurrent++;
      stats.maxConcurrent = Math.max(stats.maxConcurrent, stats.concurrent);
      res.once('close', () => stats.concurrent--);
      const answer = respond(request);
      if (answer === 'hang') {
        hanging.add(res);
        return;
      }
      const send = () => {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...(answer.headers ?? {}) });
        const success = answer.status >= 200 && answer.status < 300;
        const payload =
          answer.body ??
          (success
            ? {
                events: events.map((event, seq) => ({ id: event.id, seq, leaf_hash: '' })),
                tree_size: 0,
                checkpoint: '',
              }
            : { code: 'fake', message: 'fake failure' });
        res.end(JSON.stringify(payload));
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    apiKey,
    requests,
    shapeErrors,
    stats,
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Polls `predicate` until it holds, or fails after `timeoutMs`. */
export async function waitFor(predicate, { timeoutMs = 10_000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
