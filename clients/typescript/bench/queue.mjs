// Throughput of the client: how fast record() queues events, and how fast the delivery
// loop gets them to a server.
//
//   node bench/queue.mjs                     # against a local sink that answers 201 at once
//   SEALTRAIL_URL=http://127.0.0.1:7700 SEALTRAIL_KEY=st_... SEALTRAIL_TENANT=bench node bench/queue.mjs
//
// Knobs (environment): BENCH_EVENTS (500000), BENCH_BATCH (1000, the server's maximum
// per request), BENCH_MAX_QUEUE (the event count, so that record() never waits and the
// queueing rate is the hot path's own; set it lower to measure with backpressure).
// The sink runs in a worker thread, so it does not take the client's event loop.
// Progress goes to stderr; the last line on stdout is the result.

import { Worker } from 'node:worker_threads';
import { Sealtrail } from '../src/index.js';

const N = Number(process.env.BENCH_EVENTS ?? 500_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1000);
const MAX_QUEUE = Number(process.env.BENCH_MAX_QUEUE ?? N);

const SINK_SOURCE = `
  const { createServer } = require('node:http');
  const { parentPort } = require('node:worker_threads');
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"events":[],"tree_size":0,"checkpoint":""}');
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
`;

async function startSink() {
  const worker = new Worker(SINK_SOURCE, { eval: true });
  const port = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { url: `http://127.0.0.1:${port}`, apiKey: 'bench', stop: () => worker.terminate() };
}

const target = process.env.SEALTRAIL_URL
  ? { url: process.env.SEALTRAIL_URL, apiKey: process.env.SEALTRAIL_KEY, stop: async () => {} }
  : await startSink();

const audit = new Sealtrail({
  url: target.url,
  apiKey: target.apiKey,
  source: 'bench',
  tenantId: process.env.SEALTRAIL_TENANT ?? 'bench',
  batchSize: BATCH,
  maxQueue: MAX_QUEUE,
  overflow: 'block',
  flushOnExit: false,
});

// A realistic small event: what a wedding app records when a guest's RSVP changes.
const event = {
  action: 'guest.rsvp.updated',
  resource_type: 'guest',
  resource_id: '4711',
  user_id: 'coord:ines.marques',
  ip_address: '85.240.12.9',
  changes: [{ field: 'rsvp', before: 'pending', after: 'attending' }],
};

const started = performance.now();
let last;
for (let i = 0; i < N; i++) last = audit.record(event);
await last;
const queuedSeconds = (performance.now() - started) / 1000;
process.stderr.write(`queued ${N} events in ${queuedSeconds.toFixed(3)} s\n`);

const metrics = await audit.flush();
const deliveredSeconds = (performance.now() - started) / 1000;
process.stderr.write(
  `delivered ${metrics.delivered} events in ${deliveredSeconds.toFixed(3)} s (dropped ${metrics.dropped}, retries ${metrics.retries}, refused ${metrics.refused})\n`,
);
await audit.close();
await target.stop();
if (metrics.delivered !== N) {
  process.stderr.write(`expected ${N} delivered\n`);
  process.exitCode = 1;
}
console.log(
  `ts_client_queued_events_per_sec=${Math.round(N / queuedSeconds)} ts_client_delivered_events_per_sec=${Math.round(metrics.delivered / deliveredSeconds)}`,
);
