// Delivery to the real server: everything arrives exactly once and in order, close()
// delivers what is queued, and the queue bound holds under a flood.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Sealtrail } from '../src/index.js';
import { createSealtrailServer } from '../test-support/server.mjs';

let server;

before(async () => {
  server = await createSealtrailServer();
  await server.start();
});

after(async () => {
  await server?.dispose();
});

function clientFor(tenantId, options = {}) {
  return new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    tenantId,
    flushOnExit: false,
    ...options,
  });
}

/** Asserts the events hold each id once and that source_seq runs 1..count without a gap. */
function assertExactlyOnce(stored, ids, source) {
  const fromSource = stored.filter((event) => event.source === source);
  const storedIds = fromSource.map((event) => event.id);
  assert.equal(new Set(storedIds).size, storedIds.length, 'no id is stored twice');
  assert.deepEqual(new Set(storedIds), new Set(ids), 'every recorded id is stored');
  assert.deepEqual(
    fromSource.map((event) => event.source_seq),
    Array.from({ length: ids.length }, (_, i) => i + 1),
    "source_seq is 1..n in the order of the server's seq",
  );
}

test('5,000 events arrive exactly once, with source_seq 1..5000 in order', async () => {
  const audit = clientFor('five-thousand');
  const ids = [];
  for (let i = 0; i < 5000; i++) {
    // Half with an id of the caller's, half with one the client makes.
    const given = i % 2 === 0 ? `0192f4c1-7a3e-7c41-9d2b-${String(i).padStart(12, '0')}` : undefined;
    ids.push(given);
    await audit.record({
      ...(given && { id: given }),
      action: 'guest.rsvp.updated',
      resource_type: 'guest',
      resource_id: String(i),
    });
  }
  const metrics = await audit.close();
  assert.equal(metrics.delivered, 5000);
  assert.equal(metrics.dropped + metrics.refused + metrics.spooled, 0);
  const stored = await server.listEvents('five-thousand');
  assert.equal(stored.length, 5000);
  // The ids the client made are known only to the server: take them from the events.
  const byResource = new Map(stored.map((event) => [event.resource_id, event.id]));
  const expected = ids.map((id, i) => id ?? byResource.get(String(i)));
  assertExactlyOnce(stored, expected, audit.source);
  for (const event of stored) {
    assert.match(event.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(event.source, /^wedding-web\/[0-9a-f]{12}$/);
  }
});

test('close() delivers everything still queued', async () => {
  // Batches that never fill and an interval that never fires: only close() sends them.
  const audit = clientFor('close-delivers', { batchSize: 1000, flushIntervalMs: 60_000 });
  for (let i = 0; i < 1500; i++)
    audit.record({ action: 'table.assigned', resource_type: 'guest', resource_id: String(i) });
  const metrics = await audit.close();
  assert.equal(metrics.delivered, 1500);
  assert.equal(metrics.queued, 0);
  await assert.rejects(audit.record({ action: 'late', resource_type: 'guest' }), { name: 'SealtrailClosedError' });
  assert.equal(audit.recordSync({ action: 'late', resource_type: 'guest' }), false);
  const stored = await server.listEvents('close-delivers');
  assert.equal(stored.length, 1500);
  assert.deepEqual(new Set(stored.map((e) => e.source_seq)).size, 1500);
});

test("overflow 'drop' under a flood: the queue bound holds, drops are counted, holes show in source_seq", async () => {
  const audit = clientFor('flood-drop', { maxQueue: 50, batchSize: 20, overflow: 'drop' });
  let kept = 0;
  let maxQueued = 0;
  for (let i = 0; i < 5000; i++) {
    if (await audit.record({ action: 'guest.viewed', resource_type: 'guest', resource_id: String(i) })) kept++;
    maxQueued = Math.max(maxQueued, audit.metrics().queued);
    // Let the delivery loop in now and then, as a real app's awaits would.
    if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const metrics = await audit.close();
  assert.ok(maxQueued <= 50, `queued at most maxQueue (saw ${maxQueued})`);
  assert.ok(metrics.dropped > 0, 'a flood this size drops');
  assert.equal(metrics.recorded, 5000, 'every event got a source_seq, dropped ones too');
  assert.equal(metrics.delivered, kept);
  assert.equal(metrics.delivered + metrics.dropped, 5000);
  const seqs = (await server.listEvents('flood-drop')).map((e) => e.source_seq);
  assert.equal(seqs.length, kept);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    'in order',
  );
  assert.ok(seqs.at(-1) <= 5000);
  const holes = 5000 - seqs.length;
  assert.equal(holes, metrics.dropped, 'each drop is one hole in source_seq');
});

test("overflow 'block' under a flood: record() waits for room, the queue never exceeds maxQueue, nothing is lost", async () => {
  const audit = clientFor('flood-block', { maxQueue: 30, batchSize: 10, overflow: 'block' });
  let maxQueued = 0;
  const sampler = setInterval(() => {
    maxQueued = Math.max(maxQueued, audit.metrics().queued);
  }, 1);
  // 2,000 concurrent producers that do not await: the ones beyond the bound wait.
  const results = [];
  for (let i = 0; i < 2000; i++) {
    results.push(audit.record({ action: 'guest.viewed', resource_type: 'guest', resource_id: String(i) }));
    maxQueued = Math.max(maxQueued, audit.metrics().queued);
  }
  assert.ok(audit.metrics().waiting > 0, 'producers beyond maxQueue wait');
  assert.deepEqual(new Set(await Promise.all(results)), new Set([true]));
  const metrics = await audit.close();
  clearInterval(sampler);
  assert.ok(maxQueued <= 30, `queued at most maxQueue (saw ${maxQueued})`);
  assert.equal(metrics.dropped, 0);
  assert.equal(metrics.delivered, 2000);
  const seqs = (await server.listEvents('flood-block')).map((e) => e.source_seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: 2000 }, (_, i) => i + 1),
    'all, gapless, in order',
  );
});

test('record() stamps occurred_at, tenant and source, keeps given fields, and rejects what the server would refuse', async () => {
  const audit = clientFor('stamping');
  const occurred = new Date('2026-06-01T12:00:00.123Z');
  await audit.record({
    action: 'guest.dietary_restriction.updated',
    resource_type: 'guest',
    resource_id: 4711,
    user_id: 'coord:ines.marques',
    severity: 'warning',
    occurred_at: occurred,
    reason: 'Guest called: severe peanut allergy',
    changes: [{ field: 'dietary_restriction', before: 'none', after: 'peanut allergy' }],
    details: { via: 'phone' },
  });
  const before = Date.now();
  await audit.record({ action: 'guest.viewed', resource_type: 'guest', id: null, occurred_at: null, user_id: null });
  await assert.rejects(audit.record({ resource_type: 'guest' }), { name: 'SealtrailValidationError', field: 'action' });
  await assert.rejects(audit.record({ action: 'guest viewed', resource_type: 'guest' }), { field: 'action' });
  await assert.rejects(audit.record({ action: 'a', resource_type: 'guest', severity: 'high' }), { field: 'severity' });
  await assert.rejects(audit.record({ action: 'a', resource_type: 'guest', source: 'me' }), { field: 'source' });
  await assert.rejects(audit.record({ action: 'a', resource_type: 'guest', details: { n: 1n } }), { field: 'event' });
  await assert.rejects(audit.record(null), { field: 'event' });
  const metrics = await audit.close();
  assert.equal(metrics.recorded, 2, 'rejected events take no source_seq');
  assert.equal(metrics.delivered, 2);
  const [first, second] = await server.listEvents('stamping');
  assert.equal(first.occurred_at, '2026-06-01T12:00:00.123000Z');
  assert.equal(first.resource_id, '4711');
  assert.equal(first.severity, 'warning');
  assert.deepEqual(first.details, { via: 'phone' });
  assert.equal(first.tenant_id, 'stamping');
  assert.equal(first.source_seq, 1);
  assert.equal(second.source_seq, 2);
  assert.equal(second.user_id, undefined);
  assert.ok(Math.abs(Date.parse(second.occurred_at) - before) < 5000);
});

test('an event is captured when recorded: changing the object afterwards changes nothing', async () => {
  // The event is captured when it is recorded: changing the object later changes nothing
  // (and cannot turn a retry into an id conflict).
  const audit = clientFor('captured');
  const details = { seats: 8 };
  const event = { action: 'table.resized', resource_type: 'table', resource_id: 't1', details };
  await audit.record(event);
  details.seats = 10;
  event.resource_id = 't2';
  await audit.close();
  const [stored] = await server.listEvents('captured');
  assert.equal(stored.resource_id, 't1');
  assert.deepEqual(stored.details, { seats: 8 });
});
