// withAudit, the Next.js App Router wrapper, called the way Next calls a route handler:
// with a Request and a context of params, expecting a Response. Events are read back from
// the real server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { getAuditContext, Sealtrail, withAudit } from '../src/index.js';
import { createSealtrailServer } from '../test-support/server.mjs';

const TENANT = 'bloom-and-vine';
let sealtrail;
let audit;

before(async () => {
  sealtrail = await createSealtrailServer({ tenant: TENANT });
  await sealtrail.start();
  // The key is bound to the tenant: events need no tenant_id.
  audit = new Sealtrail({
    url: sealtrail.url,
    apiKey: sealtrail.apiKey,
    source: 'wedding-next',
    flushIntervalMs: 10,
    flushOnExit: false,
  });
});

after(async () => {
  await audit?.close();
  await sealtrail?.dispose();
});

async function eventsOf(requestId) {
  await audit.flush();
  const all = await sealtrail.listEvents(TENANT);
  return {
    request: all.find((e) => e.action === 'http.request' && e.request_id === requestId),
    domain: all.filter((e) => e.action !== 'http.request' && e.request_id === requestId),
  };
}

// An async session lookup, as next-auth's auth() would be.
const sessions = new Map([['cookie-ines', 'coord:ines.marques']]);
async function actorFromSession(request) {
  await new Promise((resolve) => setTimeout(resolve, 1));
  const cookie = request.headers.get('cookie')?.replace('session=', '');
  return sessions.get(cookie);
}

test('records the route template, actor (async), status, IP via a trusted peer, and the domain event context', async () => {
  // As in app/api/guests/[id]/route.js: export const GET = withAudit(audit, handler, options).
  const GET = withAudit(
    audit,
    async (request, { params }) => {
      const { id } = await params;
      await audit.record({ action: 'guest.viewed', resource_type: 'guest', resource_id: id });
      return Response.json({ id, requestId: getAuditContext()?.requestId });
    },
    { route: '/api/guests/[id]', actor: actorFromSession, trustedProxies: ['10.0.0.0/8'], peer: () => '10.0.0.2' },
  );
  const request = new Request('http://wedding.example/api/guests/4711?token=abc&view=full', {
    headers: {
      cookie: 'session=cookie-ines',
      'x-forwarded-for': '6.6.6.6, 203.0.113.7',
      'x-request-id': 'next-req-1',
      'user-agent': 'next-tests/1.0',
    },
  });
  const response = await GET(request, { params: Promise.resolve({ id: '4711' }) });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-request-id'), 'next-req-1');
  assert.deepEqual(await response.json(), { id: '4711', requestId: 'next-req-1' });

  const { request: event, domain } = await eventsOf('next-req-1');
  assert.equal(event.resource_id, '/api/guests/[id]');
  assert.equal(event.user_id, 'coord:ines.marques');
  assert.equal(event.ip_address, '203.0.113.7');
  assert.equal(event.user_agent, 'next-tests/1.0');
  assert.equal(event.severity, 'info');
  assert.equal(event.outcome, 'success');
  assert.equal(event.details.status, 200);
  assert.equal(event.details.method, 'GET');
  assert.equal(event.details.path, '/api/guests/4711?token=[redacted]&view=full');
  assert.deepEqual(event.details.query, { token: '[redacted]', view: 'full' });
  assert.equal(event.tenant_id, TENANT);

  assert.equal(domain.length, 1);
  assert.equal(domain[0].user_id, 'coord:ines.marques');
  assert.equal(domain[0].ip_address, '203.0.113.7');
  assert.equal(domain[0].resource_id, '4711');
});

test('a thrown error is recorded as critical with status 500 and rethrown', async () => {
  const POST = withAudit(
    audit,
    async () => {
      throw new RangeError('table 12 has only 10 seats');
    },
    { route: '/api/tables/[id]/seat' },
  );
  const request = new Request('http://wedding.example/api/tables/12/seat', {
    method: 'POST',
    headers: { 'x-request-id': 'next-boom' },
  });
  await assert.rejects(POST(request, { params: Promise.resolve({ id: '12' }) }), { name: 'RangeError' });
  const { request: event } = await eventsOf('next-boom');
  assert.equal(event.details.status, 500);
  assert.equal(event.severity, 'critical');
  assert.equal(event.outcome, 'failure');
  assert.equal(event.details.method, 'POST');
  assert.equal(event.resource_id, '/api/tables/[id]/seat');
});

test('no IP is recorded unless the app says how to find it; forwarding headers alone are not believed', async () => {
  const handler = withAudit(audit, () => new Response('ok'), { route: '/api/ping', trustedProxies: ['0.0.0.0/0'] });
  const response = await handler(
    new Request('http://wedding.example/api/ping', {
      headers: { 'x-forwarded-for': '6.6.6.6', 'x-request-id': 'next-no-ip' },
    }),
    {},
  );
  assert.equal(await response.text(), 'ok');
  assert.equal((await eventsOf('next-no-ip')).request.ip_address, undefined);

  const withIp = withAudit(audit, () => new Response('ok'), {
    route: '/api/ping',
    ip: (request) => request.headers.get('x-real-ip'),
  });
  await withIp(
    new Request('http://wedding.example/api/ping', {
      headers: { 'x-real-ip': '::ffff:198.51.100.4', 'x-request-id': 'next-ip' },
    }),
    {},
  );
  assert.equal((await eventsOf('next-ip')).request.ip_address, '198.51.100.4');

  const untrustedPeer = withAudit(audit, () => new Response('ok'), {
    route: '/api/ping',
    trustedProxies: ['10.0.0.0/8'],
    peer: () => '192.0.2.1',
  });
  await untrustedPeer(
    new Request('http://wedding.example/api/ping', {
      headers: { 'x-forwarded-for': '6.6.6.6', 'x-request-id': 'next-peer' },
    }),
    {},
  );
  assert.equal(
    (await eventsOf('next-peer')).request.ip_address,
    '192.0.2.1',
    'an untrusted peer is the client; its header is ignored',
  );
});

test('status codes map to outcome and severity; immutable responses still get x-request-id', async () => {
  const notFound = withAudit(audit, () => new Response(null, { status: 404 }), { route: '/api/guests/[id]' });
  await notFound(new Request('http://wedding.example/api/guests/0', { headers: { 'x-request-id': 'next-404' } }), {});
  const missing = (await eventsOf('next-404')).request;
  assert.equal(missing.outcome, 'failure');
  assert.equal(missing.severity, 'info');

  const unavailable = withAudit(audit, () => new Response(null, { status: 503 }), { route: '/api/health/db' });
  await unavailable(
    new Request('http://wedding.example/api/health/db', { headers: { 'x-request-id': 'next-503' } }),
    {},
  );
  assert.equal((await eventsOf('next-503')).request.severity, 'warning');

  const redirect = withAudit(audit, () => Response.redirect('http://wedding.example/login', 302), { route: '/api/me' });
  const redirected = await redirect(new Request('http://wedding.example/api/me'), {});
  assert.equal(redirected.status, 302);
  const generatedId = redirected.headers.get('x-request-id');
  assert.match(generatedId, /^[0-9a-f]{8}-/);
  assert.equal((await eventsOf(generatedId)).request.details.status, 302);
});

test("Next's redirect() and notFound() throws are answers, not failures", async () => {
  const redirecting = withAudit(
    audit,
    () => {
      throw Object.assign(new Error('NEXT_REDIRECT'), { digest: 'NEXT_REDIRECT;replace;/login;307;' });
    },
    { route: '/api/private' },
  );
  await assert.rejects(
    redirecting(
      new Request('http://wedding.example/api/private', { headers: { 'x-request-id': 'next-redirect' } }),
      {},
    ),
  );
  const event = (await eventsOf('next-redirect')).request;
  assert.equal(event.details.status, 307);
  assert.equal(event.severity, 'info');
  assert.equal(event.outcome, 'success');

  const missing = withAudit(
    audit,
    () => {
      throw Object.assign(new Error('NEXT_HTTP_ERROR_FALLBACK;404'), { digest: 'NEXT_HTTP_ERROR_FALLBACK;404' });
    },
    { route: '/api/guests/[id]' },
  );
  await assert.rejects(
    missing(new Request('http://wedding.example/api/guests/0', { headers: { 'x-request-id': 'next-not-found' } }), {}),
  );
  const notFound = (await eventsOf('next-not-found')).request;
  assert.equal(notFound.details.status, 404);
  assert.equal(notFound.severity, 'info');
  assert.equal(notFound.details.error, undefined);
});

test('skipped paths run the handler without an event or a context', async () => {
  const health = withAudit(audit, () => new Response(String(getAuditContext() === undefined)), {
    skip: ['/api/healthz'],
  });
  const response = await health(
    new Request('http://wedding.example/api/healthz', { headers: { 'x-request-id': 'next-skip' } }),
    {},
  );
  assert.equal(await response.text(), 'true');
  assert.equal((await eventsOf('next-skip')).request, undefined);
});
