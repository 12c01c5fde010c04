// A producer process for the spool tests: records events (in bursts, so that the server's
// absence is noticed while it records), closes the client and prints one JSON line with
// its metrics and record() latencies. With count 0 it only delivers the spool it finds.
// With forgetClose it never calls close(), as a careless script would: the client's
// flushOnExit must deliver the events before the process ends.
//
//   node producer.mjs '{"url": ..., "apiKey": ..., "spoolDir": ..., "tenantId": ..., "count": 3000}'

import { Sealtrail } from '../src/index.js';

const {
  url,
  apiKey,
  spoolDir,
  tenantId,
  count = 0,
  burst = 100,
  pauseMs = 20,
  drainSpool = false,
  forgetClose = false,
} = JSON.parse(process.argv[2]);

const audit = new Sealtrail({
  url,
  apiKey,
  spoolDir,
  tenantId,
  source: 'wedding-web',
  spoolAfterMs: 200,
  maxRetryDelayMs: 200,
  requestTimeoutMs: 2000,
});

const latencies = [];
for (let i = 0; i < count; i++) {
  const started = performance.now();
  await audit.record({
    action: 'guest.rsvp.updated',
    resource_type: 'guest',
    resource_id: String(i),
    details: { burst: Math.floor(i / burst) },
  });
  latencies.push(performance.now() - started);
  if ((i + 1) % burst === 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
}

if (drainSpool) await audit.flush({ spool: true });
if (forgetClose) {
  process.once('exit', () => report(audit.metrics()));
} else {
  report(await audit.close({ timeoutMs: 5000 }));
}

function report(metrics) {
  latencies.sort((a, b) => a - b);
  const quantile = (q) =>
    latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  process.stdout.write(
    `${JSON.stringify({
      source: audit.source,
      metrics,
      latency: {
        mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
        p99: quantile(0.99),
        max: quantile(1),
      },
    })}\n`,
  );
}
// No process.exit(): the test also checks that the client lets the process end by itself.
