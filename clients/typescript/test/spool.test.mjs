// The outage spool against the real server: events recorded while it is down survive the
// producer's exit and arrive exactly once when it is back, replays of a file are harmless,
// refusals are set aside, and the spool's bound holds.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Sealtrail, uuidv7 } from '../src/index.js';
import { waitFor } from '../test-support/fake-server.mjs';
import { createSealtrailServer, tempDir } from '../test-support/server.mjs';

const PRODUCER = fileURLToPath(new URL('../test-support/producer.mjs', import.meta.url));

let server;

before(async () => {
  // Created with its key, but not started: the first test begins with Sealtrail down.
  server = await createSealtrailServer();
});

after(async () => {
  await server?.dispose();
});

/** Runs the producer in its own process; it must exit by itself within the time limit. */
function runProducer(settings) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [PRODUCER, JSON.stringify({ url: server.url, apiKey: server.apiKey, ...settings })],
      { timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`producer failed (${error.signal ?? error.code}): ${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').at(-1)));
      },
    );
  });
}

const spoolFiles = (dir) => readdirSync(dir).filter((name) => name.endsWith('.ndjson'));

test('events recorded while Sealtrail is down are spooled, survive the process, and arrive exactly once', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  const tenantId = 'outage';

  // 1. Sealtrail is down. A producer records 3,000 events in bursts and exits.
  const first = await runProducer({ spoolDir, tenantId, count: 3000 });
  assert.equal(first.metrics.recorded, 3000);
  assert.equal(first.metrics.delivered, 0);
  assert.equal(first.metrics.spooled, 3000, 'everything went to the spool');
  assert.equal(first.metrics.dropped, 0);
  assert.ok(first.metrics.retries > 0, 'it tried before spooling');
  assert.ok(
    first.latency.p99 < 1,
    `record() stays fast while Sealtrail is down (p99 ${first.latency.p99.toFixed(3)} ms)`,
  );
  assert.ok(first.latency.max < 50, `no record() waits for the outage (max ${first.latency.max.toFixed(3)} ms)`);
  const files = spoolFiles(spoolDir);
  assert.ok(files.length > 0);
  const lines = files.flatMap((name) => readFileSync(join(spoolDir, name), 'utf8').trim().split('\n'));
  assert.equal(lines.length, 3000);
  assert.deepEqual(JSON.parse(lines[0]).source, first.source, 'spooled fully stamped');

  // Keep a copy of one file, to replay it a second time later (as after a crash between the
  // server's answer and the delete).
  const replayed = join(tempDir(), files[0]);
  copyFileSync(join(spoolDir, files[0]), replayed);

  // 2. Sealtrail comes back. A new producer process on the same spool delivers the old
  //    events and a few of its own.
  await server.start();
  const second = await runProducer({ spoolDir, tenantId, count: 10, drainSpool: true });
  assert.equal(second.metrics.delivered, 3010);
  assert.equal(second.metrics.spoolFiles, 0);
  assert.deepEqual(spoolFiles(spoolDir), []);

  // 3. The copy comes back: delivering it again stores nothing new.
  copyFileSync(replayed, join(spoolDir, files[0]));
  const third = await runProducer({ spoolDir, tenantId, count: 0, drainSpool: true });
  assert.ok(third.metrics.delivered > 0);
  assert.deepEqual(spoolFiles(spoolDir), []);

  const stored = await server.listEvents(tenantId);
  const fromFirst = stored.filter((event) => event.source === first.source);
  assert.equal(fromFirst.length, 3000, 'each event exactly once');
  assert.equal(new Set(fromFirst.map((e) => e.id)).size, 3000);
  assert.deepEqual(
    new Set(fromFirst.map((e) => e.resource_id)),
    new Set(Array.from({ length: 3000 }, (_, i) => String(i))),
  );
  assert.deepEqual(
    fromFirst.map((e) => e.source_seq),
    Array.from({ length: 3000 }, (_, i) => i + 1),
    'replayed oldest first: source_seq in order, no hole',
  );
  assert.equal(stored.filter((event) => event.source === second.source).length, 10);
  assert.equal(stored.length, 3010);
});

test('a script that never calls close() still delivers before its process ends (flushOnExit)', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  const started = Date.now();
  const result = await runProducer({ spoolDir, tenantId: 'forgetful', count: 250, burst: 1000, forgetClose: true });
  assert.ok(Date.now() - started < 10_000, 'the process ended by itself');
  assert.equal(result.metrics.delivered, 250);
  assert.equal((await server.listEvents('forgetful')).length, 250);
});

test('a running client goes offline, spools, and replays by itself when Sealtrail is back', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  await server.stop();
  const audit = new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    tenantId: 'comeback',
    spoolDir,
    spoolAfterMs: 100,
    maxRetryDelayMs: 100,
    flushOnExit: false,
  });
  try {
    for (let i = 0; i < 500; i++)
      audit.record({ action: 'vendor.booked', resource_type: 'vendor', resource_id: String(i) });
    await waitFor(() => audit.metrics().offline && audit.metrics().spooled === 500, {
      what: 'the events to be spooled',
    });
    for (let i = 500; i < 600; i++)
      audit.record({ action: 'vendor.booked', resource_type: 'vendor', resource_id: String(i) });
    await audit.flush();
    assert.equal(audit.metrics().spooled, 600, 'offline, new batches go straight to the spool');

    await server.start();
    // No flush({spool: true}) here: the client's own probe must find the server.
    await waitFor(() => audit.metrics().spoolFiles === 0, { what: 'the spool to drain', timeoutMs: 15_000 });
    const metrics = audit.metrics();
    assert.equal(metrics.delivered, 600);
    assert.equal(metrics.offline, false);
    const stored = await server.listEvents('comeback');
    assert.deepEqual(
      stored.map((e) => e.source_seq),
      Array.from({ length: 600 }, (_, i) => i + 1),
    );
  } finally {
    await audit.close();
  }
});

test('close() with Sealtrail down spools at once instead of waiting out the retries', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  await server.stop();
  const audit = new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    tenantId: 'closing',
    spoolDir,
    spoolAfterMs: 60_000,
    flushOnExit: false,
  });
  for (let i = 0; i < 250; i++)
    audit.record({ action: 'invoice.sent', resource_type: 'invoice', resource_id: String(i) });
  const started = Date.now();
  const metrics = await audit.close({ timeoutMs: 10_000 });
  assert.ok(Date.now() - started < 3000, `close() took ${Date.now() - started} ms`);
  assert.equal(metrics.spooled, 250);
  assert.equal(metrics.queued, 0);
  assert.equal(
    spoolFiles(spoolDir).reduce(
      (n, name) => n + readFileSync(join(spoolDir, name), 'utf8').trim().split('\n').length,
      0,
    ),
    250,
  );
  await server.start();
});

test('the spool is bounded: beyond maxSpoolBytes events are dropped and counted', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  await server.stop();
  const audit = new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    tenantId: 'bounded',
    spoolDir,
    batchSize: 10,
    maxSpoolBytes: 8 * 1024,
    flushOnExit: false,
  });
  for (let i = 0; i < 200; i++)
    audit.record({
      action: 'guest.note.added',
      resource_type: 'guest',
      resource_id: String(i),
      reason: 'x'.repeat(100),
    });
  const metrics = await audit.close();
  assert.ok(metrics.spooled > 0 && metrics.spooled < 200);
  assert.equal(metrics.spooled + metrics.dropped, 200);
  assert.ok(metrics.spoolBytes <= 8 * 1024);
  assert.match(metrics.lastError.message, /spool is full/);
  await server.start();
});

test('spooled events the server refuses are moved to refused/ with the reason, and the rest delivered', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  const good = (i) =>
    JSON.stringify({
      id: uuidv7(),
      tenant_id: 'refusals',
      action: 'guest.viewed',
      resource_type: 'guest',
      resource_id: String(i),
      source: 'old/000000000001',
      source_seq: i + 1,
    });
  const bad = JSON.stringify({
    id: uuidv7(),
    tenant_id: 'refusals',
    action: 'guest viewed',
    resource_type: 'guest',
    source: 'old/000000000001',
    source_seq: 3,
  });
  writeFileSync(
    join(spoolDir, '000000000000001-000000000001-000000001.ndjson'),
    `${good(0)}\n${good(1)}\n${bad}\n${good(3)}\nnot an event\n`,
  );
  const refusedEvents = [];
  const audit = new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    spoolDir,
    flushOnExit: false,
    onRefused: (events) => refusedEvents.push(...events),
  });
  try {
    const metrics = await audit.flush({ spool: true });
    assert.equal(metrics.delivered, 3);
    assert.equal(metrics.refused, 2, 'the invalid event and the unreadable line');
    assert.deepEqual(spoolFiles(spoolDir), []);
    assert.equal(refusedEvents.length, 1);
    assert.equal(refusedEvents[0].action, 'guest viewed');
    const refusedDir = join(spoolDir, 'refused');
    const kept = readdirSync(refusedDir);
    assert.equal(kept.filter((name) => name.endsWith('.ndjson')).length, 2);
    const reasons = kept
      .filter((name) => name.endsWith('.error.json'))
      .map((name) => JSON.parse(readFileSync(join(refusedDir, name), 'utf8')));
    assert.ok(reasons.some((why) => why.status === 400 && why.code === 'invalid_event'));
    const stored = await server.listEvents('refusals');
    assert.deepEqual(
      stored.map((e) => e.resource_id),
      ['0', '1', '3'],
    );
  } finally {
    await audit.close();
  }
});

test('a temporary file left by a process that died while writing it is recovered', async () => {
  const spoolDir = tempDir('sealtrail-spool-');
  const line = (i) =>
    JSON.stringify({
      id: uuidv7(),
      tenant_id: 'recovered',
      action: 'guest.viewed',
      resource_type: 'guest',
      resource_id: String(i),
      source: 'dead/000000000002',
      source_seq: i + 1,
    });
  const temp = join(spoolDir, '.000000000000002-000000000002-000000001.ndjson.tmp');
  writeFileSync(temp, `${line(0)}\n${line(1)}\n${line(2).slice(0, 40)}`);
  const old = new Date(Date.now() - 5 * 60_000);
  utimesSync(temp, old, old);
  const audit = new Sealtrail({
    url: server.url,
    apiKey: server.apiKey,
    source: 'wedding-web',
    spoolDir,
    flushOnExit: false,
  });
  try {
    const metrics = await audit.flush({ spool: true });
    assert.equal(metrics.delivered, 2);
    assert.equal(existsSync(temp), false);
    const stored = await server.listEvents('recovered');
    assert.deepEqual(
      stored.map((e) => e.resource_id),
      ['0', '1'],
    );
  } finally {
    await audit.close();
  }
});
