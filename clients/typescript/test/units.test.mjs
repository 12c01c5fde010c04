// The small pieces on their own: ids, the ring queue, backoff, refusal splitting, client
// IPs, redaction, options and the context.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  getAuditContext,
  runWithAuditContext,
  Sealtrail,
  SealtrailRefusedError,
  TrustedProxies,
  updateAuditContext,
  uuidv7,
} from '../src/index.js';
import { normalizeIp, parseForwardedFor, parseXForwardedFor, resolveClientIp } from '../src/ip.js';
import { RingQueue } from '../src/queue.js';
import { splitRefusal } from '../src/refusal.js';
import { describeTarget, pickHeaders, usableRequestId } from '../src/request-info.js';
import { backoffDelay, classifyStatus, parseRetryAfter } from '../src/retry.js';
import { ingestEndpoint } from '../src/transport.js';

describe('uuidv7', () => {
  test('is a version 7, variant 10 UUID carrying the current millisecond', () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const millis = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    assert.ok(millis >= before && millis <= after);
  });

  test('does not repeat across many ids (the random pool refills)', () => {
    const ids = new Set();
    for (let i = 0; i < 50_000; i++) ids.add(uuidv7());
    assert.equal(ids.size, 50_000);
  });
});

describe('RingQueue', () => {
  test('is FIFO across wrap-around and reports full', () => {
    const queue = new RingQueue(3);
    queue.push(1);
    queue.push(2);
    assert.deepEqual(queue.take(1), [1]);
    queue.push(3);
    queue.push(4);
    assert.equal(queue.full, true);
    assert.equal(queue.peek(), 2);
    assert.deepEqual(queue.take(10), [2, 3, 4]);
    assert.equal(queue.length, 0);
    assert.equal(queue.peek(), undefined);
  });
});

describe('retry', () => {
  test('sorts statuses into delivered, refused and transient', () => {
    for (const status of [200, 201]) assert.equal(classifyStatus(status), 'delivered');
    for (const status of [400, 409, 413, 415, 422]) assert.equal(classifyStatus(status), 'refused');
    for (const status of [401, 403, 404, 408, 429, 500, 502, 503, 504])
      assert.equal(classifyStatus(status), 'transient');
  });

  test('backoff is full jitter under an exponential, capped ceiling', () => {
    assert.equal(
      backoffDelay(0, 10_000, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(3, 10_000, () => 0.5),
      400,
    );
    assert.equal(
      backoffDelay(30, 10_000, () => 0.5),
      5000,
    );
    assert.equal(
      backoffDelay(5, 10_000, () => 0),
      0,
    );
  });

  test('Retry-After is read as seconds or an HTTP date, and capped', () => {
    assert.equal(parseRetryAfter('2'), 2000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2026-12-04T10:00:00Z');
    assert.equal(parseRetryAfter('Fri, 04 Dec 2026 10:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('86400'), 5 * 60 * 1000);
  });
});

describe('splitRefusal', () => {
  const events = ['a', 'b', 'c', 'd'];
  test('refuses the indexed events and resends the rest', () => {
    const error = new SealtrailRefusedError(400, { code: 'invalid_event', errors: [{ index: 1 }, { index: 3 }] });
    assert.deepEqual(splitRefusal(events, error), { refused: ['b', 'd'], resend: [['a', 'c']] });
  });
  test('reads the index from field when there is no errors list (409)', () => {
    const error = new SealtrailRefusedError(409, { code: 'id_conflict', field: 'events[2].id' });
    assert.deepEqual(splitRefusal(events, error), { refused: ['c'], resend: [['a', 'b', 'd']] });
  });
  test('refuses everything when the answer names no event', () => {
    const error = new SealtrailRefusedError(400, { code: 'invalid_json' });
    assert.deepEqual(splitRefusal(events, error), { refused: events, resend: [] });
  });
  test('halves on 413 until one event is left', () => {
    const error = new SealtrailRefusedError(413, { code: 'payload_too_large' });
    assert.deepEqual(splitRefusal(events, error), {
      refused: [],
      resend: [
        ['a', 'b'],
        ['c', 'd'],
      ],
    });
    assert.deepEqual(splitRefusal(['a'], error), { refused: ['a'], resend: [] });
  });
});

describe('client IP', () => {
  test('normalizes socket and header spellings', () => {
    assert.equal(normalizeIp('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(normalizeIp('::ffff:7f00:1'), '127.0.0.1');
    assert.equal(normalizeIp('[2001:DB8::1]:443'), '2001:db8::1');
    assert.equal(normalizeIp('192.0.2.1:8080'), '192.0.2.1');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalizeIp('"[::1]:80"'), '::1');
    assert.equal(normalizeIp('unknown'), undefined);
    assert.equal(normalizeIp('_hidden'), undefined);
    assert.equal(normalizeIp(undefined), undefined);
  });

  test('trusted proxies match IPs, v4 and v6 CIDRs, names, and IPv4-mapped peers', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8', '2001:db8::/32', 'loopback', '192.0.2.7', 'linklocal']);
    for (const address of [
      '10.9.9.9',
      '2001:db8:1::1',
      '127.0.0.1',
      '::1',
      '192.0.2.7',
      normalizeIp('::ffff:10.1.1.1'),
    ]) {
      assert.equal(trusted.has(address), true, address);
    }
    assert.equal(trusted.has('febf::1'), true, 'the last address of fe80::/10');
    for (const address of ['11.0.0.1', '2001:db9::1', '192.0.2.8', 'fec0::1', '::2']) {
      assert.equal(trusted.has(address), false, address);
    }
    assert.throws(() => new TrustedProxies(['not-an-ip']), /not an IP address/);
    assert.throws(() => new TrustedProxies(['10.0.0.0/33']), /prefix/);
    assert.equal(new TrustedProxies().empty, true);
  });

  test('walks forwarding hops from the right past trusted proxies', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8']);
    const hops = parseXForwardedFor(['198.51.100.1, 203.0.113.7', '10.0.0.3']);
    assert.deepEqual(hops, ['198.51.100.1', '203.0.113.7', '10.0.0.3']);
    assert.equal(resolveClientIp({ peer: '10.0.0.1', hops, trusted }), '203.0.113.7');
    assert.equal(
      resolveClientIp({ peer: '203.0.113.50', hops, trusted }),
      '203.0.113.50',
      'untrusted peer: header ignored',
    );
    assert.equal(
      resolveClientIp({ peer: '10.0.0.1', hops: ['10.0.0.9'], trusted }),
      '10.0.0.9',
      'all trusted: the leftmost',
    );
    assert.equal(
      resolveClientIp({ peer: '10.0.0.1', hops: ['203.0.113.7', 'unknown'], trusted }),
      undefined,
      'an unknown hop: no answer rather than a wrong one',
    );
  });

  test('parses RFC 7239 Forwarded', () => {
    assert.deepEqual(
      parseForwardedFor('for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", proto=https'),
      ['192.0.2.60', '"[2001:db8:cafe::17]:4711"', 'unknown'],
    );
  });
});

describe('request details', () => {
  const redact = new Set(['token', 'password']);
  test('redacts query values by name, case-insensitively, in path and query', () => {
    const target = describeTarget('/reset?token=abc&Password=x&lang=pt&lang=en#frag', redact);
    assert.equal(target.pathname, '/reset');
    assert.equal(target.path, '/reset?token=[redacted]&Password=[redacted]&lang=pt&lang=en');
    assert.deepEqual(target.query, { token: '[redacted]', Password: '[redacted]', lang: ['pt', 'en'] });
  });

  test('keeps only the named headers, credentials always redacted', () => {
    const headers = { authorization: 'Bearer x', 'x-api-key': 'k', accept: 'text/html', cookie: 'a=b' };
    assert.deepEqual(
      pickHeaders((name) => headers[name], ['authorization', 'x-api-key', 'accept', 'cookie', 'x-missing']),
      {
        authorization: '[redacted]',
        'x-api-key': '[redacted]',
        accept: 'text/html',
        cookie: '[redacted]',
      },
    );
  });

  test('accepts request ids of 1 to 128 printable characters only', () => {
    assert.equal(usableRequestId('abc-123'), 'abc-123');
    assert.equal(usableRequestId('x'.repeat(128)), 'x'.repeat(128));
    assert.equal(usableRequestId('x'.repeat(129)), undefined);
    assert.equal(usableRequestId('a\nb'), undefined);
    assert.equal(usableRequestId(''), undefined);
    assert.equal(usableRequestId(undefined), undefined);
  });
});

describe('options', () => {
  const base = { url: 'http://127.0.0.1:1', apiKey: 'st_x', source: 'wedding-web', flushOnExit: false };
  test('are checked at construction', () => {
    assert.throws(() => new Sealtrail({ ...base, url: 'ftp://x' }), /url/);
    assert.throws(() => new Sealtrail({ ...base, apiKey: '' }), /apiKey/);
    assert.throws(() => new Sealtrail({ ...base, source: 'wedding web' }), /source/);
    assert.throws(() => new Sealtrail({ ...base, batchSize: 1001 }), /batchSize/);
    assert.throws(() => new Sealtrail({ ...base, overflow: 'spool' }), /spoolDir/);
    assert.throws(() => new Sealtrail({ ...base, overflow: 'later' }), /overflow/);
  });

  test('the ingest URL keeps a path prefix', () => {
    assert.equal(ingestEndpoint('http://host:7700'), 'http://host:7700/v1/events');
    assert.equal(ingestEndpoint('https://host/audit/'), 'https://host/audit/v1/events');
  });

  test('source is the name and a 12-hex-digit instance id, different per client', async () => {
    const one = new Sealtrail(base);
    const two = new Sealtrail(base);
    assert.match(one.source, /^wedding-web\/[0-9a-f]{12}$/);
    assert.notEqual(one.source, two.source);
    await Promise.all([one.close(), two.close()]);
  });
});

describe('audit context', () => {
  test('follows async work and can be updated; outside it there is none', async () => {
    assert.equal(getAuditContext(), undefined);
    assert.equal(updateAuditContext({ userId: 'x' }), false);
    await runWithAuditContext({ requestId: 'r1' }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      assert.equal(getAuditContext().requestId, 'r1');
      assert.equal(updateAuditContext({ userId: 'coord:ines' }), true);
      await Promise.resolve();
      assert.equal(getAuditContext().userId, 'coord:ines');
    });
  });

  test('record() fills request fields from the context but never overrides given ones', async () => {
    const bodies = [];
    const audit = new Sealtrail({
      url: 'http://sealtrail.test',
      apiKey: 'st_x',
      source: 'ctx',
      flushOnExit: false,
      fetch: async (_url, init) => {
        bodies.push(JSON.parse(init.body));
        return new Response('{}', { status: 201 });
      },
    });
    await runWithAuditContext(
      { userId: 'u1', ip: '192.0.2.1', userAgent: 'ua', requestId: 'r1', tenantId: 't1' },
      async () => {
        await audit.record({ action: 'a', resource_type: 'b' });
        await audit.record({ action: 'a', resource_type: 'b', user_id: 'other', ip_address: null, tenant_id: 't2' });
      },
    );
    await audit.close();
    const [first, second] = bodies.flatMap((body) => body.events);
    assert.equal(first.user_id, 'u1');
    assert.equal(first.ip_address, '192.0.2.1');
    assert.equal(first.user_agent, 'ua');
    assert.equal(first.request_id, 'r1');
    assert.equal(first.tenant_id, 't1');
    assert.equal(second.user_id, 'other');
    assert.equal(second.ip_address, null, 'explicit null stays "none"');
    assert.equal(second.tenant_id, 't2');
    assert.equal(second.request_id, 'r1');
  });
});
