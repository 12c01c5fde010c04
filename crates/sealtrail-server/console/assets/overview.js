// The overview: volume over time by severity, the top actions and actors, and the log's
// integrity (latest signed checkpoint, checked here, and the last full verification).
//
// Every read the console makes is itself recorded as an audit_log.* event, so left alone the
// console's own reads would fill these charts. By default they are left out
// (exclude_action=audit_log.*); a switch brings them back.

import { api } from './api.js';
import { barList, stackedBarChart } from './charts.js';
import { h, notice, replace, selectField, textField } from './dom.js';
import { ago, formatCount, formatSeconds, formatTime, plural, timeElement } from './format.js';
import { SEVERITIES } from './filters.js';
import { checkSignedCheckpoint } from './verify.js';

export const title = 'Overview';

const ACCESS_ACTIONS = 'audit_log.*';
const TOP_ENTRIES = 8;
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** The periods offered: how far back, and the bucket size. */
const RANGES = {
  '24h': { label: 'Last 24 hours', span: DAY_MS, interval: 'hour' },
  '7d': { label: 'Last 7 days', span: 7 * DAY_MS, interval: 'hour' },
  '30d': { label: 'Last 30 days', span: 30 * DAY_MS, interval: 'day' },
};

const SERIES = SEVERITIES.map((key) => ({ key, label: key }));

function readUrl(search) {
  const query = new URLSearchParams(search);
  const range = RANGES[query.get('range')] ? query.get('range') : '24h';
  return { range, tenant: (query.get('tenant_id') ?? '').trim(), includeAccess: query.get('access') === '1' };
}

function urlOf({ range, tenant, includeAccess }) {
  const query = new URLSearchParams();
  if (range !== '24h') query.set('range', range);
  if (tenant) query.set('tenant_id', tenant);
  if (includeAccess) query.set('access', '1');
  const text = query.toString();
  return `/console/${text ? `?${text}` : ''}`;
}

export function render(main, { session }) {
  const state = readUrl(location.search);
  const bound = session.tenant_id;
  const form = h(
    'form',
    { class: 'filter-bar filter-inline', 'aria-label': 'Overview period', method: 'get', action: '/console/' },
    h(
      'div',
      { class: 'filter-grid' },
      selectField({ id: 'o-range', label: 'Period', name: 'range', value: state.range, options: Object.entries(RANGES).map(([k, r]) => [k, r.label]) }),
      bound
        ? textField({ id: 'o-tenant', label: 'Tenant', name: 'tenant_shown', value: bound, readonly: true })
        : textField({ id: 'o-tenant', label: 'Tenant', name: 'tenant_id', value: state.tenant, placeholder: 'all tenants' }),
      h(
        'div',
        { class: 'field check-field' },
        h('span', { class: 'check' }, h('input', { type: 'checkbox', id: 'o-access', name: 'access', value: '1', checked: state.includeAccess }), h('label', { for: 'o-access' }, 'Include access records (audit_log.*)')),
      ),
    ),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'button button-primary' }, 'Show')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.assign(urlOf({ range: data.get('range'), tenant: bound ? '' : String(data.get('tenant_id') ?? '').trim(), includeAccess: data.get('access') === '1' }));
  });

  const volume = h('section', { class: 'card span-2', 'aria-labelledby': 'volume-title' }, h('h2', { id: 'volume-title' }, 'Volume by severity'), h('p', { class: 'muted' }, 'Loading…'));
  const actions = h('section', { class: 'card', 'aria-labelledby': 'actions-title' }, h('h2', { id: 'actions-title' }, 'Top actions'), h('p', { class: 'muted' }, 'Loading…'));
  const actors = h('section', { class: 'card', 'aria-labelledby': 'actors-title' }, h('h2', { id: 'actors-title' }, 'Top actors'), h('p', { class: 'muted' }, 'Loading…'));
  const integrity = h('section', { class: 'card span-2', 'aria-labelledby': 'log-integrity-title' }, h('h2', { id: 'log-integrity-title' }, 'Integrity'), h('p', { class: 'muted' }, 'Loading…'));
  const totals = h('div', { class: 'totals', role: 'status', 'aria-live': 'polite' });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, 'Overview')), form, totals, h('div', { class: 'overview-grid' }, integrity, volume, actions, actors));

  loadIntegrity(integrity, session);
  loadStats({ state, bound, volume, actions, actors, totals });
  return () => {};
}

// -- Counts ------------------------------------------------------------------------------

/** Every bucket start from `start` up to now, so quiet periods show as gaps, not nothing. */
function bucketStarts(start, interval, now) {
  const step = interval === 'hour' ? HOUR_MS : DAY_MS;
  const starts = [];
  for (let at = start; at <= now; at += step) starts.push(at);
  return starts;
}

function floorTo(ms, interval) {
  const step = interval === 'hour' ? HOUR_MS : DAY_MS;
  return Math.floor(ms / step) * step; // buckets are UTC hours and days
}

const hourLabel = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
const dayLabel = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

async function loadStats({ state, bound, volume, actions, actors, totals }) {
  const range = RANGES[state.range];
  const now = Date.now();
  const start = floorTo(now - range.span, range.interval) + (range.interval === 'hour' ? HOUR_MS : DAY_MS);
  const base = {
    from: new Date(start).toISOString(),
    ...(bound || !state.tenant ? {} : { tenant_id: state.tenant }),
    ...(state.includeAccess ? {} : { exclude_action: ACCESS_ACTIONS }),
  };
  const stats = (query) => api('/v1/stats', { query: { ...base, ...query } });
  let results;
  try {
    results = await Promise.all([
      stats({ group_by: 'severity', interval: range.interval }),
      stats({ group_by: 'action', top: TOP_ENTRIES }),
      stats({ group_by: 'user_id', top: TOP_ENTRIES }),
    ]);
  } catch (error) {
    for (const section of [volume, actions, actors]) {
      replace(section, section.firstChild, notice('error', `The counts could not be loaded: ${error.message}`));
    }
    return;
  }
  const [bySeverity, byAction, byUser] = results;

  // Volume.
  const rows = bySeverity.rows;
  const counts = new Map();
  const sums = Object.fromEntries(SEVERITIES.map((k) => [k, 0]));
  for (const row of rows) {
    const at = Date.parse(row.bucket);
    if (!counts.has(at)) counts.set(at, {});
    counts.get(at)[row.key] = (counts.get(at)[row.key] ?? 0) + row.count;
    if (row.key in sums) sums[row.key] += row.count;
  }
  const label = range.interval === 'hour' ? hourLabel : dayLabel;
  const buckets = bucketStarts(start, range.interval, now).map((at) => ({
    label: label.format(new Date(at)),
    long: range.interval === 'hour' ? formatTime(new Date(at).toISOString()) : dayLabel.format(new Date(at)),
    values: counts.get(at) ?? {},
  }));
  const total = SEVERITIES.reduce((n, k) => n + sums[k], 0);
  const width = Math.max(280, Math.min(volume.clientWidth - 32, 1100));
  replace(
    volume,
    h('h2', { id: 'volume-title' }, 'Volume by severity'),
    total
      ? stackedBarChart({
          title: `Events per ${range.interval}, ${range.label.toLowerCase()}, by severity`,
          description: `${formatCount(total)} events: ${SEVERITIES.map((k) => `${formatCount(sums[k])} ${k}`).join(', ')}.`,
          buckets,
          series: SERIES,
          width,
        })
      : h('p', { class: 'empty' }, 'No events in this period.'),
  );
  replace(
    totals,
    totalTile('Events', total, ''),
    totalTile('Warnings', sums.warning, 'warning'),
    totalTile('Critical', sums.critical, 'critical'),
    h('p', { class: 'muted small totals-note' }, state.includeAccess ? 'Access records included.' : 'Access records (audit_log.*) left out.'),
  );

  // Top actions.
  const actionRows = byAction.rows
    .sort((a, b) => b.count - a.count)
    .slice(0, TOP_ENTRIES)
    .map((row) => ({ ...row, href: `/console/events?${new URLSearchParams({ ...eventsScope(state, bound), action: row.key })}` }));
  replace(actions, h('h2', { id: 'actions-title' }, 'Top actions'), barList({ label: 'Top actions', rows: actionRows, empty: 'No actions in this period.' }));

  // Top actors.
  const actorRows = byUser.rows
    .sort((a, b) => b.count - a.count)
    .slice(0, TOP_ENTRIES)
    .map((row) =>
      row.key === ''
        ? { key: '(no user)', count: row.count }
        : { ...row, href: `/console/events?${new URLSearchParams({ ...eventsScope(state, bound), user_id: row.key })}` },
    );
  replace(actors, h('h2', { id: 'actors-title' }, 'Top actors'), barList({ label: 'Top actors', rows: actorRows, empty: 'No actors in this period.' }));
}

function eventsScope(state, bound) {
  return !bound && state.tenant ? { tenant_id: state.tenant } : {};
}

function totalTile(label, count, kind) {
  return h('div', { class: ['total-tile', kind ? `total-${kind}` : null] }, h('span', { class: 'total-count' }, formatCount(count)), h('span', { class: 'total-label' }, label));
}

// -- Integrity ---------------------------------------------------------------------------

async function loadIntegrity(section, session) {
  let integrity;
  let key;
  try {
    [integrity, key] = await Promise.all([api('/v1/integrity'), api('/v1/public-key')]);
  } catch (error) {
    replace(section, h('h2', { id: 'log-integrity-title' }, 'Integrity'), notice('error', `The integrity status could not be loaded: ${error.message}`));
    return;
  }
  let signature;
  try {
    signature = await checkSignedCheckpoint(integrity.checkpoint, key);
  } catch (error) {
    signature = { ok: false, detail: `could not be checked: ${error.message}` };
  }
  showIntegrity(section, session, integrity, signature);
}

function showIntegrity(section, session, { checkpoint, verification, verify_every_secs: every }, signature) {
  const canVerify = session.scopes.includes('admin') && !session.tenant_id;
  const verifyButton = canVerify
    ? h('button', { type: 'button', class: 'button', onclick: () => runVerification(section, session, verifyButton) }, 'Verify the whole log now')
    : null;
  replace(
    section,
    h('h2', { id: 'log-integrity-title' }, 'Integrity'),
    h(
      'div',
      { class: 'integrity-grid' },
      h(
        'div',
        { class: 'integrity-item', 'data-integrity': 'checkpoint' },
        h('h3', {}, 'Latest checkpoint'),
        h('p', { class: 'big' }, plural(checkpoint.tree_size, 'event')),
        h('p', {}, 'Signed ', timeElement(checkpoint.signed_at), h('span', { class: 'muted' }, ` (${ago(checkpoint.signed_at)})`)),
        h('p', {}, 'Root ', h('code', { class: 'hash', title: checkpoint.root_hash }, `${checkpoint.root_hash.slice(0, 16)}…`)),
        h(
          'p',
          { class: ['status-line', signature.ok ? 'status-ok' : 'status-bad'] },
          signature.ok ? '✓ Signature verified in this browser' : `✗ Signature NOT verified: ${signature.detail}`,
        ),
      ),
      h(
        'div',
        { class: 'integrity-item', 'data-integrity': 'verification' },
        h('h3', {}, 'Last full verification'),
        verificationSummary(verification),
        h('p', { class: 'muted small' }, every ? `The server verifies the whole log every ${formatSeconds(every)}.` : 'The server verifies the whole log only when asked.'),
        verifyButton,
      ),
    ),
  );
}

function verificationSummary(verification) {
  if (!verification) {
    return h('p', { class: 'muted' }, 'No full verification has been recorded yet.');
  }
  const when = h('p', {}, 'Finished ', timeElement(verification.finished_at), h('span', { class: 'muted' }, ` (${ago(verification.finished_at)})`));
  if (verification.ok) {
    return h(
      'div',
      {},
      h('p', { class: 'status-line status-ok big' }, '✓ Passed'),
      h('p', {}, `${plural(verification.events - (verification.bodies_removed ?? 0), 'event')} rehashed${verification.bodies_removed ? ` and ${plural(verification.bodies_removed, 'event')} whose bodies retention removed checked by their leaf hashes` : ''}, the tree rebuilt to size ${formatCount(verification.tree_size)}, ${plural(verification.checkpoints ?? 0, 'signed checkpoint')} reproduced.`),
      when,
    );
  }
  return h(
    'div',
    {},
    h('p', { class: 'status-line status-bad big' }, '✗ FAILED'),
    h('p', { class: 'status-bad' }, verification.problem ?? 'The log does not verify.'),
    h('p', {}, `Checked ${plural(verification.events, 'event')} up to tree size ${formatCount(verification.tree_size)}.`),
    when,
  );
}

async function runVerification(section, session, button) {
  button.disabled = true;
  button.textContent = 'Verifying…';
  try {
    await api('/v1/integrity/verify', { method: 'POST' });
  } catch (error) {
    button.disabled = false;
    button.textContent = 'Verify the whole log now';
    button.after(notice('error', `The verification could not run: ${error.message}`));
    return;
  }
  loadIntegrity(section, session);
}
