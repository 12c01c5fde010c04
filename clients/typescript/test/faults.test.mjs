// How the client treats each kind of answer: permanent refusals are reported and never
// retried, transient failures are retried with the same event ids. The answers come from a
// local fake, since the real server cannot be made to fail on demand.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sealtrail, SealtrailRefusedError } from '../src/index.js';
import { startFakeSealtrail } from '../test-support/fake-server.mjs';

function clientFor(fake, options = {}) {
  return new Sealtrail({
    url: fake.url,
    apiKey: fake.apiKey,
    source: 'faults',
    tenantId: 'bloom-and-vine',
    flushIntervalMs: 5,
    maxRetryDelayMs: 200,
    flushOnExit: false,
    ...options,
  });
}

const guestEvent = (i) => ({ action: 'guest.rsvp.updated', resource_type: 'guest', resource_id: String(i) });

test('a 400 is refused once, never retried, reported to onRefused and remembered', async () => {
  const fake = await startFakeSealtrail(() => ({
    status: 400,
    body: {
      code: 'invalid_event',
      message: 'events[0].action: bad',
      field: 'events[0].action',
      reason: 'bad',
      errors: [{ index: 0, field: 'action', reason: 'bad' }],
    },
  }));
  const hooked = [];
  const audit = clientFor(fake, { onRefused: (events, error) => hooked.push({ events, error }) });
  try {
    await audit.record(guestEvent(1));
    const metrics = await audit.flush();
    assert.equal(fake.requests.length, 1, 'sent exactly once');
    assert.deepEqual(fake.shapeErrors, []);
    assert.equal(metrics.refused, 1);
    assert.equal(metrics.delivered, 0);
    assert.equal(metrics.retries, 0);
    assert.equal(hooked.length, 1);
    assert.ok(hooked[0].error instanceof SealtrailRefusedError);
    assert.equal(hooked[0].error.status, 400);
    assert.equal(hooked[0].error.code, 'invalid_event');
    assert.equal(hooked[0].events[0].id, fake.requests[0].events[0].id);
    const [refusal] = audit.refusals();
    assert.equal(refusal.status, 400);
    assert.equal(refusal.reason, 'bad');
    assert.deepEqual(refusal.eventIds, [fake.requests[0].events[0].id]);
    assert.match(metrics.lastError.message, /invalid_event/);
    // Nothing more arrives later either.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(fake.requests.length, 1);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('only the events a 400 names are refused; the rest of the batch is sent again', async () => {
  const fake = await startFakeSealtrail(({ attempt, events }) =>
    attempt === 1
      ? {
          status: 400,
          body: {
            code: 'invalid_event',
            message: '1 event is invalid',
            errors: [{ index: 1, field: 'resource_id', reason: 'too long' }],
          },
        }
      : { status: 201, body: { events: events.map((e) => ({ id: e.id })) } },
  );
  const audit = clientFor(fake, { flushIntervalMs: 50 });
  try {
    for (let i = 0; i < 3; i++) audit.record(guestEvent(i));
    const metrics = await audit.flush();
    assert.deepEqual(fake.shapeErrors, []);
    assert.equal(fake.requests.length, 2);
    assert.equal(fake.requests[0].events.length, 3);
    const first = fake.requests[0].events;
    assert.deepEqual(
      fake.requests[1].events.map((e) => e.id),
      [first[0].id, first[2].id],
    );
    assert.equal(metrics.refused, 1);
    assert.equal(metrics.delivered, 2);
    assert.deepEqual(audit.refusals()[0].eventIds, [first[1].id]);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('409 and 422 are permanent too; 413 halves the batch', async () => {
  const fake = await startFakeSealtrail(({ events }) => {
    if (events.length > 2) return { status: 413, body: { code: 'payload_too_large', message: 'too large' } };
    if (events.some((e) => e.resource_id === '3'))
      return {
        status: 409,
        body: {
          code: 'id_conflict',
          message: 'reused',
          field: 'events[0].id',
          reason: 'reused with different content',
        },
      };
    if (events.some((e) => e.resource_id === '4'))
      return { status: 422, body: { code: 'unprocessable', message: 'no' } };
    return { status: 201 };
  });
  const audit = clientFor(fake, { flushIntervalMs: 50 });
  try {
    for (let i = 0; i < 6; i++) audit.record(guestEvent(i));
    const metrics = await audit.flush();
    assert.deepEqual(fake.shapeErrors, []);
    assert.equal(metrics.retries, 0);
    // [0..5] -> 413 -> [0,1,2] -> 413 -> [0,1] ok, [2] ok; [3,4,5] -> 413 -> [3,4]: 409 names
    // index 0 (3); [4] -> 422; [5] ok.
    assert.equal(metrics.refused, 2);
    assert.equal(metrics.delivered, 4);
    const delivered = fake.requests.filter(
      (r) => r.events.length <= 2 && !r.events.some((e) => ['3', '4'].includes(e.resource_id)),
    );
    assert.deepEqual(delivered.flatMap((r) => r.events.map((e) => e.resource_id)).sort(), ['0', '1', '2', '5']);
    assert.deepEqual(
      audit.refusals().map((r) => r.status),
      [409, 422],
    );
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('429 waits for Retry-After, then the same events are sent again', async () => {
  const fake = await startFakeSealtrail(({ attempt }) =>
    attempt === 1
      ? { status: 429, headers: { 'retry-after': '1' }, body: { code: 'rate_limited', message: 'slow down' } }
      : { status: 201 },
  );
  const audit = clientFor(fake, { maxRetryDelayMs: 50 });
  try {
    await audit.record(guestEvent(1));
    await audit.record(guestEvent(2));
    const metrics = await audit.flush();
    assert.deepEqual(fake.shapeErrors, []);
    assert.equal(fake.requests.length, 2);
    const waited = fake.requests[1].at - fake.requests[0].at;
    assert.ok(waited >= 950, `waited ${waited} ms for Retry-After: 1 (maxRetryDelayMs is only 50)`);
    assert.deepEqual(
      fake.requests[1].events.map((e) => e.id),
      fake.requests[0].events.map((e) => e.id),
    );
    assert.equal(metrics.retries, 1);
    assert.equal(metrics.delivered, 2);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('503, 500, 502 and 504 are retried with backoff until delivered, ids unchanged', async () => {
  const failures = [503, 500, 502, 504];
  const fake = await startFakeSealtrail(({ attempt }) =>
    attempt <= failures.length ? { status: failures[attempt - 1] } : { status: 201 },
  );
  const audit = clientFor(fake);
  try {
    await audit.record(guestEvent(1));
    const metrics = await audit.flush();
    assert.deepEqual(fake.shapeErrors, []);
    assert.equal(fake.requests.length, 5);
    const ids = new Set(fake.requests.map((r) => r.events[0].id));
    assert.equal(ids.size, 1, 'every attempt carries the same event id');
    const seqs = new Set(fake.requests.map((r) => r.events[0].source_seq));
    assert.deepEqual([...seqs], [1]);
    assert.equal(metrics.retries, 4);
    assert.equal(metrics.delivered, 1);
    assert.equal(metrics.refused, 0);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('a request that gets no answer times out and is retried', async () => {
  const fake = await startFakeSealtrail(({ attempt }) => (attempt === 1 ? 'hang' : { status: 201 }));
  const audit = clientFor(fake, { requestTimeoutMs: 200 });
  try {
    await audit.record(guestEvent(1));
    const metrics = await audit.flush();
    assert.equal(fake.requests.length, 2);
    assert.equal(fake.requests[1].events[0].id, fake.requests[0].events[0].id);
    assert.equal(metrics.delivered, 1);
    assert.equal(metrics.retries, 1);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('401 keeps the events (a key problem is fixed by an operator, not by dropping audit data)', async () => {
  const fake = await startFakeSealtrail(({ attempt }) =>
    attempt <= 2 ? { status: 401, body: { code: 'unauthorized', message: 'unknown key' } } : { status: 201 },
  );
  const audit = clientFor(fake);
  try {
    await audit.record(guestEvent(1));
    const metrics = await audit.flush();
    assert.equal(metrics.refused, 0);
    assert.equal(metrics.delivered, 1);
    assert.equal(metrics.retries, 2);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test('batches go out one at a time, in order', async () => {
  const fake = await startFakeSealtrail(() => ({ status: 201, delayMs: 5 }));
  const audit = clientFor(fake, { batchSize: 7 });
  try {
    for (let i = 0; i < 100; i++) audit.record(guestEvent(i));
    await audit.flush();
    const seqs = fake.requests.flatMap((r) => r.events.map((e) => e.source_seq));
    assert.deepEqual(
      seqs,
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    assert.ok(fake.requests.every((r) => r.events.length <= 7));
    assert.equal(fake.stats.maxConcurrent, 1);
  } finally {
    await audit.close();
    await fake.close();
  }
});

test("recordSync under 'block' cannot wait: beyond another maxQueue of waiting events it drops", async () => {
  const fake = await startFakeSealtrail(() => 'hang');
  const audit = clientFor(fake, { maxQueue: 10, overflow: 'block', requestTimeoutMs: 60_000 });
  try {
    let accepted = 0;
    for (let i = 0; i < 100; i++) if (audit.recordSync(guestEvent(i))) accepted++;
    const metrics = audit.metrics();
    assert.equal(accepted, 20);
    assert.equal(metrics.queued, 10);
    assert.equal(metrics.waiting, 10);
    assert.equal(metrics.dropped, 80);
    assert.equal(metrics.recorded, 100);
  } finally {
    await audit.close({ timeoutMs: 100 });
    await fake.close();
  }
});
