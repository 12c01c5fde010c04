// The web console end to end: the real server, the real pages, headless Chromium. One server
// and one browser for the whole file; the tests run in order and build on each other's data
// (sign in, filter, live tail, the other pages, tenant binding, tampering, sign out).

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DESKTOP, PHONE, launchBrowser, openPage, screenshot, signIn } from './support/browser.mjs';
import { startCuttableProxy } from './support/proxy.mjs';
import { createSealtrailServer, editLogDatabase, tempDir } from './support/sealtrail.mjs';
import { FILTER_PARAMS, STREAM_FILTER_PARAMS } from '../assets/filters.js';

/** How long a live event may take from the ingest answer to its row (the bound). */
const LIVE_ROW_WITHIN_MS = 1000;
const BLOOM_RSVPS = 50;
const RSVP_SPACING_MS = 20 * 60 * 1000;
const PAGE_SIZE = 20;
const WAIT_MS = 10_000;

let server;
let receiver;
let browser;
let admin; // {page, context, problems} signed in with the admin key, desktop
let phone; // the same at phone width
let dietary; // the receipt of the event the integrity tests tamper with
let lakesideIds;

/** A webhook receiver that refuses everything for good (400): the sink's dead letters. */
async function startRefusingReceiver() {
  const requests = [];
  const http = createServer((request, response) => {
    request.resume();
    requests.push(request.url);
    response.writeHead(400, { 'content-type': 'text/plain' });
    response.end('unknown guest: the caterer has no such wedding');
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${http.address().port}`, requests, close: () => new Promise((r) => http.close(r)) };
}

async function eventually(what, check, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The event ids of the table's rows, top to bottom. */
function rowIds(page) {
  return page.locator('table.data-table tbody tr').evaluateAll((rows) => rows.map((row) => row.dataset.eventId));
}

function assertNoProblems(...pages) {
  for (const { problems } of pages) assert.deepEqual(problems, [], 'no script errors or CSP violations on the page');
}

/** Every form control on the page is named by a <label for>; returns those that are not. */
function unlabelledControls(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((control) => !control.labels?.length || ![...control.labels].some((l) => l.textContent.trim()))
      .map((control) => control.outerHTML),
  );
}

/** Loads `path` at desktop and phone width, waits for `ready`, and saves both screenshots. */
async function capture(name, path, ready) {
  for (const { page } of [admin, phone]) {
    await page.goto(`${server.url}${path}`);
    await ready(page);
    assert.deepEqual(await unlabelledControls(page), [], `every control of ${path} has a label`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${path} fits the ${page.viewportSize().width}px width (${overflow}px too wide)`);
    await screenshot(page, name);
  }
}

before(async () => {
  receiver = await startRefusingReceiver();
  const secrets = tempDir('sealtrail-console-secrets-');
  const secret = join(secrets, 'caterer-whsec');
  writeFileSync(secret, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
  const config = [
    '[[sinks]]',
    'name = "caterer-hook"',
    'kind = "webhook"',
    `url = "${receiver.url}/hook"`,
    `secret = { file = "${secret}" }`,
    'max_batch_events = 10',
    'request_timeout_ms = 400',
    'retry_initial_delay_ms = 10',
    'retry_max_delay_ms = 50',
    '',
    '[[routes]]',
    'name = "dietary changes to the caterer"',
    'sinks = ["caterer-hook"]',
    'action = "guest.dietary_restriction.*"',
    '',
    '[[sinks]]',
    'name = "search"',
    'kind = "webhook"',
    'url = "http://127.0.0.1:9/unreachable"',
    `secret = { file = "${secret}" }`,
    'request_timeout_ms = 400',
    'retry_initial_delay_ms = 200',
    'retry_max_delay_ms = 2000',
    '',
    '[[routes]]',
    'name = "critical vendors to search"',
    'sinks = ["search"]',
    'action = "vendor.*"',
    'severities = ["critical"]',
    '',
  ].join('\n');
  server = await createSealtrailServer({
    config,
    keys: {
      admin: { scopes: 'ingest,read,stream,admin' },
      reader: { scopes: 'read,stream' },
      bloomReader: { scopes: 'read,stream', tenant: 'bloom' },
      producer: { scopes: 'ingest' },
    },
  });
  await server.start();

  // Spread over the last day, so the overview's chart has a shape.
  const start = Date.now() - BLOOM_RSVPS * RSVP_SPACING_MS;
  const rsvps = Array.from({ length: BLOOM_RSVPS }, (_, i) => ({
    tenant_id: 'bloom',
    occurred_at: new Date(start + i * RSVP_SPACING_MS).toISOString(),
    action: i % 2 ? 'guest.rsvp.accepted' : 'guest.rsvp.declined',
    resource_type: 'guest',
    resource_id: `g-${i}`,
    user_id: `guest:${i}`,
    severity: i % 10 === 9 ? 'warning' : 'info',
  }));
  await server.ingest('admin', rsvps);
  const lakeside = await server.ingest(
    'admin',
    Array.from({ length: 8 }, (_, i) => ({
      tenant_id: 'lakeside',
      action: 'vendor.contract.signed',
      resource_type: 'vendor',
      resource_id: `v-${i}`,
      user_id: 'coord:marta',
      severity: i === 7 ? 'critical' : 'info',
    })),
  );
  lakesideIds = lakeside.map((r) => r.id);
  [dietary] = await server.ingest('admin', [
    {
      tenant_id: 'bloom',
      action: 'guest.dietary_restriction.updated',
      resource_type: 'guest',
      resource_id: '4711',
      user_id: 'coord:ines.marques',
      ip_address: '85.240.12.9',
      severity: 'warning',
      reason: 'Guest called: vegetarian since spring',
      changes: [{ field: 'dietary_restriction', before: 'none', after: 'vegetarian' }],
      details: { table: 7, vendor: { kind: 'caterer' } },
    },
  ]);

  browser = await launchBrowser();
  admin = await openPage(browser, DESKTOP);
  phone = await openPage(browser, PHONE);
  await signIn(admin.page, server.url, server.keys.admin.secret);
  await signIn(phone.page, server.url, server.keys.admin.secret);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await receiver?.close();
});

test('sign in: a wrong key is told so, a key without read is refused, a right key lands on its page with a strict HttpOnly cookie', async () => {
  const visitor = await openPage(browser, DESKTOP);
  const { page, context } = visitor;
  await page.goto(`${server.url}/console/events?tenant_id=bloom`);
  assert.equal(new URL(page.url()).pathname, '/console/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/console/events?tenant_id=bloom');
  await screenshot(page, 'login');

  const alert = page.locator('#login-error');
  await page.getByLabel('API key').fill('st_000000000000_not-a-key-at-all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(alert.filter({ hasText: 'No API key matches' }).waitFor());
  assert.equal(new URL(page.url()).pathname, '/console/login');

  await page.getByLabel('API key').fill(server.keys.producer.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await alert.filter({ hasText: 'read scope' }).waitFor();
  assert.equal((await context.cookies()).length, 0, 'no session for a refused key');

  // By keyboard alone: focus shows where it is, the field has it, Enter submits.
  await page.getByLabel('API key').focus();
  await page.keyboard.press('Tab');
  const focusRing = await page.evaluate(() => {
    const style = getComputedStyle(document.activeElement);
    return { text: document.activeElement.textContent, outline: style.outlineStyle, width: style.outlineWidth };
  });
  assert.equal(focusRing.text, 'Sign in');
  assert.notEqual(focusRing.outline, 'none', 'a visible focus ring');
  await page.keyboard.press('Shift+Tab');
  await page.getByLabel('API key').fill('');
  await page.keyboard.type(server.keys.reader.secret);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${server.url}/console/events?tenant_id=bloom`);
  await page.locator('table.data-table tbody tr').first().waitFor();
  await page.locator('#session-who').filter({ hasText: server.keys.reader.id }).waitFor();

  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'sealtrail_session');
  assert.ok(session, `a session cookie, got ${JSON.stringify(cookies)}`);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  assert.ok(session.expires > Date.now() / 1000, 'the cookie expires, and not yet');
  assert.equal(await page.evaluate(() => document.cookie.includes('sealtrail_session')), false, 'scripts cannot read it');

  const phoneVisitor = await openPage(browser, PHONE);
  await phoneVisitor.page.goto(`${server.url}/console/login`);
  await screenshot(phoneVisitor.page, 'login');
  await phoneVisitor.context.close();
  assertNoProblems(visitor);
  await context.close();
});

test('the console knows every filter the API has (its list is a copy of the server\'s)', async () => {
  const { body } = await server.request('admin', '/v1/openapi.json');
  const names = (path) =>
    body.paths[path].get.parameters.filter((p) => p.in === 'query').map((p) => p.name);
  const notFilters = new Set(['order', 'limit', 'cursor', 'include_archived', 'since']);
  assert.deepEqual(names('/v1/events').filter((n) => !notFilters.has(n)).sort(), [...FILTER_PARAMS].sort());
  assert.deepEqual(names('/v1/stream').filter((n) => !notFilters.has(n)).sort(), [...STREAM_FILTER_PARAMS].sort());
});

test('events: the filter lives in the URL, a reload shows the same fields and rows, and the next page continues', async () => {
  const { page } = admin;
  await page.goto(`${server.url}/console/events`);
  await page.locator('table.data-table tbody tr').first().waitFor();
  // The page size applies at once; the filter fields when applied.
  await page.getByLabel('Per page').selectOption(String(PAGE_SIZE));
  await page.waitForURL((url) => url.searchParams.get('limit') === String(PAGE_SIZE));
  await page.getByLabel('Tenant').fill('bloom');
  await page.getByLabel('Action', { exact: true }).fill('guest.rsvp.*');
  await page.getByLabel('Search').fill('RSVP');
  await page.getByRole('button', { name: 'Apply filter' }).click();
  await page.waitForURL((url) => url.searchParams.get('action') === 'guest.rsvp.*');
  const query = new URL(page.url()).searchParams;
  assert.equal(query.get('tenant_id'), 'bloom');
  assert.equal(query.get('text'), 'RSVP');
  assert.equal(query.get('limit'), String(PAGE_SIZE));
  await page.locator('.result-status').filter({ hasText: `${PAGE_SIZE} events` }).waitFor();

  const first = await rowIds(page);
  assert.equal(first.length, PAGE_SIZE);
  const api = await server.request('admin', `/v1/events?tenant_id=bloom&action=guest.rsvp.*&text=RSVP&limit=${PAGE_SIZE}`);
  assert.deepEqual(first, api.body.events.map((e) => e.id), 'the rows the API gives for that filter');
  const cells = await page.locator('tbody td[data-label="Tenant"]').allTextContents();
  assert.ok(cells.every((t) => t === 'bloom'));

  await page.reload();
  await page.locator('.result-status').filter({ hasText: `${PAGE_SIZE} events` }).waitFor();
  assert.equal(await page.getByLabel('Tenant').inputValue(), 'bloom');
  assert.equal(await page.getByLabel('Action', { exact: true }).inputValue(), 'guest.rsvp.*');
  assert.equal(await page.getByLabel('Search').inputValue(), 'RSVP');
  assert.equal(await page.getByLabel('Per page').inputValue(), String(PAGE_SIZE));
  assert.deepEqual(await rowIds(page), first, 'a reload shows the same rows');

  const seen = new Set(first);
  const pages = [first];
  for (;;) {
    const next = page.getByRole('link', { name: 'Next page »' });
    if ((await next.count()) === 0) break;
    const before = page.url();
    await next.click();
    await page.waitForURL((url) => url.href !== before && url.searchParams.has('cursor'));
    await page.locator('.result-status').filter({ hasText: 'on this page' }).waitFor();
    const ids = await rowIds(page);
    for (const id of ids) {
      assert.ok(!seen.has(id), 'each page brings events not shown before');
      seen.add(id);
    }
    pages.push(ids);
  }
  assert.deepEqual(pages.map((p) => p.length), [20, 20, 10]);
  assert.equal(seen.size, BLOOM_RSVPS, 'paging reaches every matching event once');

  // The page's URL (with its cursor) is the view: reloading it shows that page again.
  await page.reload();
  await page.locator('.result-status').filter({ hasText: 'on this page' }).waitFor();
  assert.deepEqual(await rowIds(page), pages[2]);
  await page.goBack();
  await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length === n, 20);
  assert.deepEqual(await rowIds(page), pages[1], 'Back shows the previous page');

  // The keyboard is enough: type in a field, Enter applies the filter.
  await page.getByLabel('Search').focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('seat');
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.searchParams.get('text') === 'seat' && !url.searchParams.has('cursor'));

  // Leaving out the access log's records (the console's own reads among them).
  await page.goto(`${server.url}/console/events?exclude_action=audit_log.*&limit=200`);
  await page.locator('tbody tr').first().waitFor();
  assert.equal(await page.getByLabel('Leave out action').inputValue(), 'audit_log.*');
  const actions = await page.locator('tbody td[data-label="Action"]').allTextContents();
  assert.ok(actions.length > 0 && actions.every((a) => !a.startsWith('audit_log.')), actions.join(', '));
  const withAccess = await server.request('admin', '/v1/events?action=audit_log.*&limit=1');
  assert.equal(withAccess.body.events.length, 1, 'there are access records to leave out');

  await capture('events', '/console/events?tenant_id=bloom&action=guest.*&limit=20', (p) => p.locator('tbody tr').first().waitFor());
  assertNoProblems(admin, phone);
});

test('live tail: a new event is at the top within a second, and the tail resumes after a dropped connection', async () => {
  const proxy = await startCuttableProxy(server.port);
  const { page } = admin;
  try {
    // Through the proxy, whose connections the test can cut (the cookie is the host's).
    await page.goto(`${proxy.url}/console/events?tenant_id=bloom`);
    await page.locator('tbody tr').first().waitFor();
    await page.getByRole('switch', { name: 'Live tail' }).check();
    await page.waitForURL((url) => url.searchParams.get('live') === '1');
    await page.locator('#live-status').filter({ hasText: 'Live: connected' }).waitFor();
    // Record, by the wall clock the test also reads, when each row enters the table.
    await page.evaluate(() => {
      window.arrivals = {};
      new MutationObserver((records) => {
        for (const record of records) {
          for (const node of record.addedNodes) {
            if (node.dataset?.eventId && !(node.dataset.eventId in window.arrivals)) window.arrivals[node.dataset.eventId] = Date.now();
          }
        }
      }).observe(document.querySelector('tbody'), { childList: true });
    });

    const ingestAndTime = async (resourceId) => {
      const [receipt] = await server.ingest('admin', [{ tenant_id: 'bloom', action: 'guest.seat.assigned', resource_type: 'guest', resource_id: resourceId, user_id: 'coord:ines.marques' }]);
      return { id: receipt.id, answeredAt: Date.now() };
    };
    const arrival = (id) => page.waitForFunction((eventId) => window.arrivals[eventId], id, { timeout: WAIT_MS }).then((h) => h.jsonValue());
    const firstRow = () => page.locator('tbody tr').first().getAttribute('data-event-id');

    const live = await ingestAndTime('g-live-1');
    const arrivedAt = await arrival(live.id);
    assert.ok(arrivedAt - live.answeredAt < LIVE_ROW_WITHIN_MS, `the row appeared ${arrivedAt - live.answeredAt} ms after the ingest answer`);
    assert.equal(await firstRow(), live.id, 'the new event is the top row');

    // A dropped connection: the page says so, an event arrives meanwhile, and once the
    // network is back the browser resumes after the last seq it had (Last-Event-ID).
    proxy.cut();
    await page.locator('#live-status').filter({ hasText: 'Reconnecting' }).waitFor();
    const missed = await ingestAndTime('g-live-2');
    proxy.restore();
    await arrival(missed.id);
    await page.locator('#live-status').filter({ hasText: 'Live: connected' }).waitFor();
    // Above it may come the record of the new subscription (the access log is in the tail too).
    const afterGap = await rowIds(page);
    assert.ok(afterGap.indexOf(missed.id) < afterGap.indexOf(live.id), 'the event from the gap is above the earlier ones');

    const again = await ingestAndTime('g-live-3');
    const againAt = await arrival(again.id);
    assert.ok(againAt - again.answeredAt < LIVE_ROW_WITHIN_MS, `after resuming, ${againAt - again.answeredAt} ms`);
    assert.equal(await firstRow(), again.id);
    const ids = await rowIds(page);
    assert.equal(new Set(ids).size, ids.length, 'no event shown twice');

    // Reload keeps the tail on (it is in the URL).
    await page.reload();
    await page.locator('#live-status').filter({ hasText: 'Live: connected' }).waitFor();
    assert.equal(await page.getByRole('switch', { name: 'Live tail' }).isChecked(), true);
    await page.getByRole('switch', { name: 'Live tail' }).uncheck();
    await page.waitForURL((url) => !url.searchParams.has('live'));
  } finally {
    await page.goto('about:blank'); // off the proxy's origin before it goes away
    await proxy.close();
  }
  // The cut shows as failed network loads (the stream's, its retries'); nothing else may
  // have gone wrong.
  const cut = (problem) => /Failed to load resource: net::ERR_/.test(problem);
  admin.problems.splice(0, admin.problems.length, ...admin.problems.filter((p) => !cut(p)));
  assertNoProblems(admin);
});

test('overview: volume by severity, top actions and actors as charts, and the integrity status', async () => {
  const { page } = admin;
  await page.goto(`${server.url}/console/`);
  const integrity = page.locator('[data-integrity="checkpoint"]');
  await integrity.filter({ hasText: 'Signature verified in this browser' }).waitFor();
  await page.locator('[data-integrity="verification"]').filter({ hasText: 'Passed' }).waitFor();
  await page.locator('.bar-list').first().waitFor();
  const actions = await page.locator('section', { has: page.getByRole('heading', { name: 'Top actions' }) }).locator('.bar-list li').allTextContents();
  assert.ok(actions.some((t) => t.includes('vendor.contract.signed')), `top actions: ${actions}`);
  assert.ok(!actions.some((t) => t.includes('audit_log.')), 'access records left out by default');
  const actors = await page.locator('section', { has: page.getByRole('heading', { name: 'Top actors' }) }).locator('.bar-list li').allTextContents();
  assert.ok(actors.some((t) => t.includes('coord:marta')), `top actors: ${actors}`);
  assert.ok(await page.locator('figure.chart svg rect').count() > 0, 'the volume chart has bars');
  assert.ok(await page.locator('figure.chart svg[role="img"] title').count() > 0, 'and a title for screen readers');

  await capture('overview', '/console/', (p) => p.locator('[data-integrity="verification"]').filter({ hasText: 'Passed' }).waitFor().then(() => p.locator('figure.chart').waitFor()));
  assertNoProblems(admin, phone);
});

test('sinks: state, last error and dead letters with replay for an admin key; a plain message for others', async () => {
  await eventually('the webhook sink dead-lettered the dietary change and the other one failed', async () => {
    const { body } = await server.request('admin', '/v1/sinks');
    return body.find((s) => s.name === 'caterer-hook')?.dead_letters >= 1 && body.find((s) => s.name === 'search')?.last_error;
  });
  const { page } = admin;
  await page.goto(`${server.url}/console/sinks`);
  const card = page.locator('[data-sink="caterer-hook"]');
  await card.locator('table tbody tr').first().waitFor();
  assert.match(await card.locator('table tbody').textContent(), /400.*unknown guest/);
  assert.equal(await card.locator('td[data-label="Seq"]').first().textContent(), String(dietary.seq));
  // A receiver that cannot be reached: retries, and the last error says why.
  const unreachable = page.locator('[data-sink="search"]');
  await unreachable.locator('.last-error').waitFor();
  assert.match(await unreachable.locator('.badge').textContent(), /retrying|circuit open|trying again/);
  await card.getByRole('button', { name: /Replay all/ }).click();
  await card.locator('.replay-result').filter({ hasText: 'queued to be sent again' }).waitFor();
  await eventually('the receiver got the replayed event', () => receiver.requests.length >= 2);

  await capture('sinks', '/console/sinks', (p) => p.locator('[data-sink="caterer-hook"] table tbody tr').first().waitFor());

  const reader = await openPage(browser, DESKTOP);
  await signIn(reader.page, server.url, server.keys.reader.secret, '/console/sinks');
  await reader.page.getByText('Sinks are shown to admin keys only.').waitFor();
  assertNoProblems(admin, phone, reader);
  await reader.context.close();
});

test('access: the reads of a resource and of a key, including one made earlier through the API', async () => {
  const read = await server.request('reader', '/v1/events?resource_type=guest&resource_id=4711');
  assert.equal(read.status, 200);
  const { page } = admin;
  await page.goto(`${server.url}/console/access`);
  await page.getByLabel('Resource id').fill('4711');
  await page.getByRole('button', { name: 'Show reads' }).click();
  await page.waitForURL((url) => url.searchParams.get('resource_id') === '4711');
  const row = page.locator('tbody tr', { has: page.locator('td[data-label="Key"]', { hasText: server.keys.reader.id }) });
  await row.first().waitFor();
  assert.match(await row.first().locator('td[data-label="Read"]').textContent(), /queried events/);
  assert.match(await row.first().locator('td[data-label="What"]').textContent(), /^guest 4711$/);

  await page.goto(`${server.url}/console/access?key_id=${server.keys.reader.id}`);
  await page.locator('tbody tr').first().waitFor();
  const keys = await page.locator('td[data-label="Key"]').allTextContents();
  assert.ok(keys.length > 0 && keys.every((k) => k === server.keys.reader.id), `only the reader's reads: ${keys}`);

  await capture('access', '/console/access?resource_id=4711', (p) => p.locator('tbody tr').first().waitFor());
  assertNoProblems(admin, phone);
});

test('a tenant-bound key sees only its tenant', async () => {
  const bound = await openPage(browser, DESKTOP);
  const { page } = bound;
  await signIn(page, server.url, server.keys.bloomReader.secret, '/console/events?limit=200');
  await page.locator('tbody tr').first().waitFor();
  assert.equal(await page.getByLabel('Tenant').inputValue(), 'bloom');
  assert.equal(await page.getByLabel('Tenant').getAttribute('readonly'), '');
  const tenants = new Set(await page.locator('td[data-label="Tenant"]').allTextContents());
  assert.deepEqual([...tenants], ['bloom']);

  await page.goto(`${server.url}/console/events?tenant_id=lakeside`);
  await page.locator('.notice-error').waitFor();
  assert.equal(await page.locator('tbody tr').count(), 0);

  await page.goto(`${server.url}/console/events/${lakesideIds[0]}`);
  await page.getByText(`There is no event ${lakesideIds[0]}`).waitFor();

  await page.goto(`${server.url}/console/`);
  await page.locator('.bar-list').first().waitFor();
  const actions = await page.locator('.bar-list').first().textContent();
  assert.ok(!actions.includes('vendor.contract.signed'), 'no other tenant in the counts');
  assertNoProblems(bound);
  await bound.context.close();
});

test('event: the integrity panel says Intact, and NOT intact once the stored record is edited', async () => {
  const { page } = admin;
  const verdict = page.locator('#integrity-verdict');
  await page.goto(`${server.url}/console/events/${dietary.id}`);
  await verdict.waitFor();
  assert.equal(await verdict.getAttribute('data-integrity-state'), 'intact', await verdict.textContent());
  assert.match(await verdict.textContent(), /^\W*Intact$/);
  assert.equal(await page.locator('.check-line.check-pass').count(), 4);
  const labels = await page.locator('.check-line strong').allTextContents();
  assert.deepEqual(labels.map((l) => l.replace(/\d+/g, 'N').replace(/by .*/, 'by')), [
    'Leaf hash',
    'Inclusion proof to tree size N',
    'Checkpoint signature by',
    'Record matches the shown event',
  ]);
  const change = page.locator('.diff-table tbody tr').first();
  assert.equal(await change.locator('.diff-before').textContent(), 'none');
  assert.equal(await change.locator('.diff-after').textContent(), 'vegetarian');
  await page.getByText('Guest called: vegetarian since spring').waitFor();
  await capture('event-intact', `/console/events/${dietary.id}`, (p) => p.locator('[data-integrity-state="intact"]').waitFor());

  const edited = await editLogDatabase(
    server.dataDir,
    "UPDATE events SET record = CAST(replace(CAST(record AS TEXT), 'vegetarian', 'vegan') AS BLOB) WHERE seq = ?",
    [dietary.seq],
  );
  assert.equal(edited, 1);

  await page.reload();
  await verdict.waitFor();
  assert.equal(await verdict.getAttribute('data-integrity-state'), 'not-intact', await verdict.textContent());
  assert.match(await verdict.textContent(), /NOT intact: .*changed after it was written/);
  assert.equal(await page.locator('.check-line[data-check="leaf"].check-fail').count(), 1);
  assert.equal(await page.locator('.check-line[data-check="inclusion"].check-fail').count(), 1);
  assert.equal(await change.locator('.diff-after').textContent(), 'vegan', 'the page shows what is stored now');
  await capture('event-not-intact', `/console/events/${dietary.id}`, (p) => p.locator('[data-integrity-state="not-intact"]').waitFor());

  // The server's own full verification, asked for from the overview, finds it too.
  await page.goto(`${server.url}/console/`);
  await page.getByRole('button', { name: 'Verify the whole log now' }).click();
  await page.locator('[data-integrity="verification"]').filter({ hasText: 'FAILED' }).waitFor();
  assertNoProblems(admin, phone);
});

test('sign out: the pages ask to sign in again and the old cookie no longer opens the API', async () => {
  const visitor = await openPage(browser, DESKTOP);
  const { page, context } = visitor;
  await signIn(page, server.url, server.keys.reader.secret, '/console/events');
  const { value } = (await context.cookies()).find((c) => c.name === 'sealtrail_session');
  const withCookie = (path) => fetch(`${server.url}${path}`, { headers: { cookie: `sealtrail_session=${value}` }, redirect: 'manual' });
  assert.equal((await withCookie('/v1/events?limit=1')).status, 200, 'the cookie opens the API while signed in');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.pathname === '/console/login');
  assert.equal((await context.cookies()).some((c) => c.name === 'sealtrail_session'), false, 'the cookie is cleared');
  await page.goto(`${server.url}/console/events`);
  assert.equal(new URL(page.url()).pathname, '/console/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/console/events');

  assert.equal((await withCookie('/v1/events?limit=1')).status, 401, 'the old cookie value is refused');
  assert.equal((await withCookie('/console/session')).status, 401);
  assert.equal((await withCookie('/console/events')).status, 303);

  // Signing in again never leaves the console, whatever `next` says.
  for (const next of ['https://evil.example/', '//evil.example/console/', '/v1/events']) {
    await page.goto(`${server.url}/console/login?next=${encodeURIComponent(next)}`);
    await page.getByLabel('API key').fill(server.keys.reader.secret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${server.url}/console/`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL((url) => url.pathname === '/console/login');
  }
  assertNoProblems(visitor);
  await context.close();
});
