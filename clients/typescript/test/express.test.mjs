// The Express/Connect middleware on a plain node:http server (routing by hand, setting
// req.baseUrl and req.route the way Express does), with the events read back from the
// real server.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { auditErrorHandler, expressAudit, Sealtrail } from '../src/index.js';
import { createSealtrailServer } from '../test-support/server.mjs';

const TENANT = 'lakeside-celebrations';
let sealtrail;
let audit;
const apps = [];

after(async () => {
  await audit?.close();
  for (const app of apps) {
    app.closeAllConnections();
    app.close();
  }
  await sealtrail?.dispose();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A tiny app: "authentication" runs after the audit middleware, like passport would, and
// routes set req.baseUrl/req.route as Express's router does for app.use('/api', router).
async function handle(req, res) {
  const user = req.headers['x-test-user'];
  if (user) req.user = { id: user, role: 'coordinator' };
  const { pathname } = new URL(req.url, 'http://app');
  let match;
  if ((match = /^\/api\/guests\/([^/]+)$/.exec(pathname))) {
    req.baseUrl = '/api';
    req.route = { path: '/guests/:id' };
    await sleep(1); // the context must survive awaits
    await audit.record({ action: 'guest.viewed', resource_type: 'guest', resource_id: match[1] });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: match[1] }));
  } else if (pathname === '/api/boom') {
    req.baseUrl = '/api';
    req.route = { path: '/boom' };
    throw new TypeError('seating plan is corrupt');
  } else if (pathname === '/api/unavailable') {
    req.baseUrl = '/api';
    req.route = { path: '/unavailable' };
    res.statusCode = 503;
    res.end();
  } else if (pathname === '/api/slow') {
    req.baseUrl = '/api';
    req.route = { path: '/slow' };
    await sleep(400);
    if (!res.destroyed) res.end('late');
  } else if (pathname === '/healthz') {
    res.end('ok');
  } else {
    res.statusCode = 404;
    res.end();
  }
}

/** Serves the app behind the middleware, as Express would chain it. */
async function startApp(middleware, host = '127.0.0.1') {
  const app = createServer((req, res) => {
    middleware(req, res, () => {
      handle(req, res).catch((error) =>
        // Express hands errors to the error middleware; then its final handler answers 500.
        auditErrorHandler(error, req, res, () => {
          res.statusCode = 500;
          res.end();
        }),
      );
    });
  });
  await new Promise((resolve) => app.listen(0, host, resolve));
  apps.push(app);
  return `http://127.0.0.1:${app.address().port}`;
}

let trustedApp;
let untrustedApp;
let forwardedApp;
let brokenActorApp;

before(async () => {
  sealtrail = await createSealtrailServer();
  await sealtrail.start();
  audit = new Sealtrail({
    url: sealtrail.url,
    apiKey: sealtrail.apiKey,
    source: 'wedding-web',
    tenantId: TENANT,
    flushIntervalMs: 10,
    flushOnExit: false,
  });
  const common = { recordHeaders: ['authorization', 'x-trace', 'cookie'] };
  // On '::' an IPv4 client shows up as ::ffff:127.0.0.1, which must match 127.0.0.1.
  trustedApp = await startApp(expressAudit(audit, { ...common, trustedProxies: ['127.0.0.1', '10.0.0.0/8'] }), '::');
  untrustedApp = await startApp(expressAudit(audit, common));
  forwardedApp = await startApp(expressAudit(audit, { trustedProxies: ['loopback'], proxyHeader: 'forwarded' }));
  brokenActorApp = await startApp(
    expressAudit(audit, {
      actor: () => {
        throw new Error('session store down');
      },
      onError: () => {},
    }),
  );
});

async function eventsOf(requestId) {
  await audit.flush();
  const all = await sealtrail.listEvents(TENANT);
  return {
    request: all.find((e) => e.action === 'http.request' && e.request_id === requestId),
    domain: all.filter((e) => e.action !== 'http.request' && e.request_id === requestId),
  };
}

test('records route template, status, actor, client IP behind a trusted proxy, request id and redactions', async () => {
  const response = await fetch(`${trustedApp}/api/guests/4711?lang=pt&token=abc123&Password=hunter2`, {
    headers: {
      'x-forwarded-for': '198.51.100.9, 203.0.113.7, 10.1.2.3',
      'x-test-user': 'coord:ines.marques',
      'x-request-id': 'req-4711-a',
      authorization: 'Bearer s3cret',
      cookie: 'session=abc',
      'x-trace': 'trace-1',
      'user-agent': 'wedding-tests/1.0',
    },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-request-id'), 'req-4711-a', 'the incoming id is echoed');
  const { request, domain } = await eventsOf('req-4711-a');
  assert.ok(request, 'the request event arrived');
  assert.equal(request.resource_type, 'http.route');
  assert.equal(request.resource_id, '/api/guests/:id');
  assert.equal(request.user_id, 'coord:ines.marques');
  assert.equal(request.actor_type, 'user');
  assert.equal(request.ip_address, '203.0.113.7', 'the rightmost untrusted hop');
  assert.equal(request.user_agent, 'wedding-tests/1.0');
  assert.equal(request.outcome, 'success');
  assert.equal(request.severity, 'info');
  assert.equal(request.details.method, 'GET');
  assert.equal(request.details.status, 200);
  assert.equal(request.details.path, '/api/guests/4711?lang=pt&token=[redacted]&Password=[redacted]');
  assert.deepEqual(request.details.query, { lang: 'pt', token: '[redacted]', Password: '[redacted]' });
  assert.deepEqual(request.details.headers, {
    authorization: '[redacted]',
    'x-trace': 'trace-1',
    cookie: '[redacted]',
  });
  assert.equal(typeof request.details.duration_ms, 'number');
  assert.ok(request.details.duration_ms > 0);
  assert.doesNotMatch(JSON.stringify(request), /abc123|hunter2|s3cret|session=abc/);

  // The domain event the handler recorded carries the request's context.
  assert.equal(domain.length, 1);
  assert.equal(domain[0].action, 'guest.viewed');
  assert.equal(domain[0].resource_id, '4711');
  assert.equal(domain[0].user_id, 'coord:ines.marques');
  assert.equal(domain[0].ip_address, '203.0.113.7');
  assert.equal(domain[0].user_agent, 'wedding-tests/1.0');
  assert.equal(domain[0].tenant_id, TENANT);
});

test('a spoofed X-Forwarded-For from an untrusted peer is ignored', async () => {
  await fetch(`${untrustedApp}/api/guests/1`, {
    headers: { 'x-forwarded-for': '6.6.6.6', 'x-request-id': 'req-spoof' },
  });
  const { request, domain } = await eventsOf('req-spoof');
  assert.equal(request.ip_address, '127.0.0.1');
  assert.equal(domain[0].ip_address, '127.0.0.1');
  assert.equal(request.user_id, undefined, 'no user, no actor');
});

test('the walk passes every trusted hop and stops at the first untrusted one; alone, the trusted peer is the client', async () => {
  // The peer (127.0.0.1) and 10.0.0.5 are trusted, so 6.6.6.6 is the first address from the
  // right that no trusted proxy vouches for being one of ours: the client.
  await fetch(`${trustedApp}/api/guests/2`, {
    headers: { 'x-forwarded-for': '6.6.6.6, 10.0.0.5', 'x-request-id': 'req-chain' },
  });
  const { request } = await eventsOf('req-chain');
  assert.equal(request.ip_address, '6.6.6.6');
  // Without any header, the trusted peer itself is the client.
  await fetch(`${trustedApp}/api/guests/3`, { headers: { 'x-request-id': 'req-direct' } });
  assert.equal((await eventsOf('req-direct')).request.ip_address, '127.0.0.1');
});

test('RFC 7239 Forwarded is read when configured', async () => {
  await fetch(`${forwardedApp}/api/guests/5`, {
    headers: {
      forwarded: 'for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711"',
      'x-forwarded-for': '6.6.6.6',
      'x-request-id': 'req-fwd',
    },
  });
  const { request } = await eventsOf('req-fwd');
  assert.equal(request.ip_address, '2001:db8:cafe::17');
});

test('a request id is generated when absent or unusable, and set on the response', async () => {
  const first = await fetch(`${untrustedApp}/api/guests/6`);
  const generated = first.headers.get('x-request-id');
  assert.match(generated, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
  assert.equal((await eventsOf(generated)).request.resource_id, '/api/guests/:id');

  const second = await fetch(`${untrustedApp}/api/guests/7`, { headers: { 'x-request-id': 'x'.repeat(129) } });
  const replaced = second.headers.get('x-request-id');
  assert.notEqual(replaced, 'x'.repeat(129));
  assert.ok((await eventsOf(replaced)).request);
});

test('errors are critical, 5xx warnings, unmatched routes named so; health checks are skipped', async () => {
  const boom = await fetch(`${untrustedApp}/api/boom`, { headers: { 'x-request-id': 'req-boom' } });
  assert.equal(boom.status, 500);
  await fetch(`${untrustedApp}/api/unavailable`, { headers: { 'x-request-id': 'req-503' } });
  await fetch(`${untrustedApp}/no/such/page`, { headers: { 'x-request-id': 'req-404' } });
  await fetch(`${untrustedApp}/healthz`, { headers: { 'x-request-id': 'req-health' } });

  const failed = (await eventsOf('req-boom')).request;
  assert.equal(failed.resource_id, '/api/boom');
  assert.equal(failed.details.status, 500);
  assert.equal(failed.severity, 'critical');
  assert.equal(failed.outcome, 'failure');
  assert.equal(failed.details.error, 'TypeError', 'the class, not the message');

  const unavailable = (await eventsOf('req-503')).request;
  assert.equal(unavailable.severity, 'warning');
  assert.equal(unavailable.outcome, 'failure');

  const missing = (await eventsOf('req-404')).request;
  assert.equal(missing.resource_id, 'unmatched');
  assert.equal(missing.severity, 'info');
  assert.equal(missing.outcome, 'failure');

  assert.equal((await eventsOf('req-health')).request, undefined);
});

test('an aborted request is recorded when the connection closes', async () => {
  const controller = new AbortController();
  const pending = fetch(`${untrustedApp}/api/slow`, {
    headers: { 'x-request-id': 'req-aborted' },
    signal: controller.signal,
  });
  await sleep(50);
  controller.abort();
  await assert.rejects(pending);
  await sleep(50);
  const { request } = await eventsOf('req-aborted');
  assert.ok(request);
  assert.equal(request.details.aborted, true);
  assert.equal(request.outcome, 'failure');
  assert.equal(request.resource_id, '/api/slow', 'matched before the client went away');
});

test('an actor callback that throws does not break the request or lose the event', async () => {
  const response = await fetch(`${brokenActorApp}/api/guests/8`, { headers: { 'x-request-id': 'req-actor-broken' } });
  assert.equal(response.status, 200);
  const { request, domain } = await eventsOf('req-actor-broken');
  assert.equal(request.user_id, undefined);
  assert.equal(domain.length, 1);
});
