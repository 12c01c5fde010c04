// One event: every field, what changed as before/after, the reason, and the integrity panel,
// which checks in this browser that the record shown is the one the signed log holds.

import { api, ApiError } from './api.js';
import { h, notice, replace } from './dom.js';
import { jsonText, severityBadge, timeElement } from './format.js';
import { notVerified, verifyEvent } from './verify.js';

export const title = 'Event';

/** The page for /console/events/{id}. */
export function render(main, { params }) {
  const id = decodeURIComponent(params[0]);
  replace(main, backLink(), h('h1', {}, 'Event'), h('p', { class: 'muted' }, 'Loading…'));
  load(main, id);
  return () => {};
}

/** A dotted name that may wrap after its dots on a narrow screen (<wbr>, not markup text). */
function breakable(name) {
  return name.split('.').flatMap((part, i) => (i ? ['.', h('wbr'), part] : [part]));
}

function backLink() {
  return h('p', { class: 'breadcrumb' }, h('a', { href: '/console/events' }, '← Events'));
}

async function load(main, id) {
  // The proof and the key are fetched together; the key's failure only fails the panel.
  const keyRequest = api('/v1/public-key').then(
    (key) => ({ key }),
    (error) => ({ error }),
  );
  let proven;
  try {
    proven = await api(`/v1/events/${encodeURIComponent(id)}`, { query: { record: 'true' } });
  } catch (error) {
    const text =
      error instanceof ApiError && error.status === 404
        ? `There is no event ${id}, or not in a tenant this key may read.`
        : `The event could not be loaded: ${error.message}`;
    replace(main, backLink(), h('h1', {}, 'Event'), notice('error', text));
    return;
  }
  const event = proven.event;
  document.title = `${event.action} · Sealtrail`;
  const panel = h('section', { class: 'integrity card', 'aria-labelledby': 'integrity-title' });
  replace(
    main,
    backLink(),
    h(
      'div',
      { class: 'page-head event-head' },
      h('h1', { class: 'mono' }, breakable(event.action)),
      h('span', { class: 'head-badges' }, severityBadge(event.severity), h('span', { class: ['badge', `outcome-${event.outcome}`] }, event.outcome)),
    ),
    h(
      'div',
      { class: 'event-layout' },
      h('div', { class: 'event-main' }, fieldsSection(event), reasonSection(event), changesSection(event), detailsSection(event)),
      panel,
    ),
  );
  runIntegrity(panel, id, proven, keyRequest);
}

// -- Fields ------------------------------------------------------------------------------

function fieldsSection(event) {
  const rows = [
    ['Event id', h('code', {}, event.id)],
    ['Seq', String(event.seq)],
    ['Tenant', event.tenant_id],
    ['Occurred', timeElement(event.occurred_at)],
    ['Received', timeElement(event.received_at)],
    ['Actor', event.user_id ? h('span', {}, event.user_id, h('span', { class: 'muted' }, ` (${event.actor_type})`)) : event.actor_type],
    [
      'Resource',
      h(
        'span',
        {},
        event.resource_type,
        event.resource_id ? h('span', {}, ' ', h('code', {}, event.resource_id)) : null,
      ),
    ],
    ['IP address', event.ip_address],
    ['User agent', event.user_agent],
    ['Request id', event.request_id ? h('code', {}, event.request_id) : null],
    ['Source', event.source ? `${event.source} #${event.source_seq}` : null],
    ['Leaf hash', h('code', { class: 'hash' }, event.leaf_hash)],
  ];
  const list = h(
    'dl',
    { class: 'fields' },
    rows.map(([label, value]) => [h('dt', {}, label), h('dd', {}, value ?? h('span', { class: 'muted' }, '—'))]),
  );
  const readers = event.resource_id
    ? h(
        'p',
        { class: 'card-foot' },
        h('a', { href: `/console/access?resource_id=${encodeURIComponent(event.resource_id)}` }, `Who read ${event.resource_type} ${event.resource_id}`),
      )
    : null;
  return h('section', { class: 'card', 'aria-labelledby': 'fields-title' }, h('h2', { id: 'fields-title' }, 'Fields'), list, readers);
}

function reasonSection(event) {
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'reason-title' },
    h('h2', { id: 'reason-title' }, 'Reason'),
    event.reason ? h('p', { class: 'reason' }, event.reason) : h('p', { class: 'muted' }, 'No reason was given.'),
  );
}

function changeValue(value, side) {
  if (value === undefined || value === null) return h('span', { class: 'muted' }, value === null ? 'null' : '(absent)');
  return h('pre', { class: ['diff-value', `diff-${side}`] }, jsonText(value));
}

function changesSection(event) {
  const changes = Array.isArray(event.changes) ? event.changes : null;
  let body;
  if (!event.changes) {
    body = h('p', { class: 'muted' }, 'The event records no changes.');
  } else if (!changes) {
    // Sealed and shredded: the key that opened it is gone.
    body = h('p', { class: 'muted' }, `Not readable: ${jsonText(event.changes)}`);
  } else {
    body = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'data-table diff-table' },
        h('caption', { class: 'visually-hidden' }, 'Changed fields, before and after'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
        h(
          'tbody',
          {},
          changes.map((change) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row', 'data-label': 'Field', class: 'mono' }, change.field),
              h('td', { 'data-label': 'Before' }, changeValue(change.before, 'before')),
              h('td', { 'data-label': 'After' }, changeValue(change.after, 'after')),
            ),
          ),
        ),
      ),
    );
  }
  return h('section', { class: 'card', 'aria-labelledby': 'changes-title' }, h('h2', { id: 'changes-title' }, 'Changes'), body);
}

function detailsSection(event) {
  if (event.details === undefined) return null;
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'details-title' },
    h('h2', { id: 'details-title' }, 'Details'),
    h('pre', { class: 'json' }, jsonText(event.details)),
  );
}

// -- Integrity ---------------------------------------------------------------------------

const MARK = { pass: '✓', fail: '✗', unchecked: '?' };

async function runIntegrity(panel, id, proven, keyRequest) {
  replace(
    panel,
    h('h2', { id: 'integrity-title' }, 'Integrity'),
    h('p', { class: 'muted', role: 'status' }, 'Verifying in this browser…'),
  );
  let verification;
  try {
    const { key, error } = await keyRequest;
    verification = error
      ? notVerified(`the log's public key could not be fetched (${error.message})`)
      : await verifyEvent(proven, key, id);
    showIntegrity(panel, verification, proven, key);
  } catch (error) {
    showIntegrity(panel, notVerified(`verification failed: ${error?.message ?? error}`), proven, null);
  }
}

/** "NOT intact: why" as a headline and its reason below (one sentence to screen readers). */
function verdictText(verdict) {
  const split = verdict.indexOf(': ');
  if (split < 0) return h('span', { class: 'verdict-text' }, h('strong', {}, verdict));
  return h(
    'span',
    { class: 'verdict-text' },
    h('strong', {}, verdict.slice(0, split)),
    h('span', { class: 'visually-hidden' }, ': '),
    h('span', { class: 'verdict-reason' }, verdict.slice(split + 2)),
  );
}

function showIntegrity(panel, verification, proven, key) {
  const { state, verdict, checks } = verification;
  const verdictBox = h(
    'div',
    { class: ['verdict', `verdict-${state}`], role: 'status', 'data-integrity-state': state, id: 'integrity-verdict' },
    h('span', { class: 'verdict-mark', 'aria-hidden': 'true' }, state === 'intact' ? MARK.pass : state === 'not-intact' ? MARK.fail : MARK.unchecked),
    verdictText(verdict),
  );
  const list = h(
    'ul',
    { class: 'checks' },
    checks.map((check) => {
      const kind = check.ok ? 'pass' : check.unchecked ? 'unchecked' : 'fail';
      return h(
        'li',
        { class: ['check-line', `check-${kind}`], 'data-check': check.id },
        h('span', { class: 'check-mark', 'aria-hidden': 'true' }, MARK[kind]),
        h(
          'span',
          { class: 'check-body' },
          h('strong', {}, check.label),
          h('span', { class: 'visually-hidden' }, check.ok ? ': passed. ' : check.unchecked ? ': not checked. ' : ': FAILED. '),
          h('span', { class: 'check-detail' }, check.detail),
        ),
      );
    }),
  );
  const checkpoint = proven?.checkpoint;
  const facts = checkpoint
    ? h(
        'dl',
        { class: 'fields fields-compact' },
        h('dt', {}, 'Checkpoint'),
        h('dd', {}, `tree size ${checkpoint.tree_size}, signed `, timeElement(checkpoint.signed_at)),
        h('dt', {}, 'Log key'),
        h('dd', {}, h('code', { class: 'hash' }, key?.vkey ?? 'unknown')),
      )
    : null;
  replace(
    panel,
    h('h2', { id: 'integrity-title' }, 'Integrity'),
    verdictBox,
    list,
    facts,
    h(
      'p',
      { class: 'muted small' },
      'Computed here with WebCrypto: the record’s SHA-256 leaf hash, the RFC 9162 inclusion proof up to the signed root, and the checkpoint’s Ed25519 signature. Compare the log key with one you keep outside this server.',
    ),
  );
}
