// Who read what: the access log. Every read made with a key is an audit_log.* event in the
// tenant it read (sealtrail-server app/access.rs, app/system.rs): user_id "key:<key id>",
// the resource read as its resource (when the read named one, or was of one event), and in
// details the key id, the filter as given, the result count and the event id.

import { api, ApiError } from './api.js';
import { h, notice, replace, textField } from './dom.js';
import { timeElement } from './format.js';
import { dataTable } from './table.js';

export const title = 'Access';

const ACCESS_ACTIONS = 'audit_log.*';
const PAGE_SIZE = 50;
const KEY_PREFIX = 'key:';

/** What each kind of read is, in words. */
const READ_KINDS = {
  'audit_log.read': 'queried events',
  'audit_log.read_event': 'read one event',
  'audit_log.stats': 'counted events',
  'audit_log.search': 'searched',
  'audit_log.subscribe': 'followed live',
  'audit_log.proof': 'asked for a proof',
  'audit_log.console_signed_in': 'signed in to the console',
  'audit_log.console_signed_out': 'signed out of the console',
};

function readUrl(search) {
  const query = new URLSearchParams(search);
  const get = (name) => (query.get(name) ?? '').trim();
  return { resourceId: get('resource_id'), keyId: get('key_id'), tenant: get('tenant_id'), cursor: get('cursor') };
}

function urlOf({ resourceId, keyId, tenant, cursor }) {
  const query = new URLSearchParams();
  if (resourceId) query.set('resource_id', resourceId);
  if (keyId) query.set('key_id', keyId);
  if (tenant) query.set('tenant_id', tenant);
  if (cursor) query.set('cursor', cursor);
  const text = query.toString();
  return `/console/access${text ? `?${text}` : ''}`;
}

export function render(main, { session }) {
  const state = readUrl(location.search);
  const bound = session.tenant_id;
  const form = h(
    'form',
    { class: 'filter-bar', role: 'search', 'aria-label': 'Find reads', method: 'get', action: '/console/access' },
    h(
      'div',
      { class: 'filter-grid' },
      textField({ id: 'a-resource', label: 'Resource id', name: 'resource_id', value: state.resourceId, placeholder: 'e.g. 4711', hint: 'Reads of this resource’s events.' }),
      textField({ id: 'a-key', label: 'Key id', name: 'key_id', value: state.keyId, placeholder: 'e.g. 4b5c7e37b3c3', hint: 'Reads made with this API key.' }),
      bound ? null : textField({ id: 'a-tenant', label: 'Tenant', name: 'tenant_id', value: state.tenant, placeholder: 'all tenants' }),
    ),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'button button-primary' }, 'Show reads')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const text = (name) => String(data.get(name) ?? '').trim();
    location.assign(urlOf({ resourceId: text('resource_id'), keyId: text('key_id').replace(/^key:/, ''), tenant: bound ? '' : text('tenant_id') }));
  });
  const results = h('div', { class: 'results' }, h('p', { class: 'muted' }, 'Loading…'));
  const intro = h(
    'p',
    { class: 'muted' },
    'Every read made with a key is recorded in the log before it is answered — including the reads this page makes.',
  );
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, 'Access')), intro, form, results);
  load(results, state, bound);
  return () => {};
}

async function load(results, state, bound) {
  const query = { action: ACCESS_ACTIONS, limit: PAGE_SIZE, cursor: state.cursor };
  if (state.resourceId) query.resource_id = state.resourceId;
  if (state.keyId) query.user_id = `${KEY_PREFIX}${state.keyId}`;
  if (state.tenant && !bound) query.tenant_id = state.tenant;
  let page;
  try {
    page = await api('/v1/events', { query });
  } catch (error) {
    const hint = error instanceof ApiError && error.field ? ` (${error.field})` : '';
    replace(results, notice('error', `The access log could not be read${hint}: ${error.message}`));
    return;
  }
  const subject = [state.resourceId && `resource ${state.resourceId}`, state.keyId && `key ${state.keyId}`].filter(Boolean).join(' by ');
  const table = dataTable({
    caption: subject ? `Reads of ${subject}` : 'All reads, newest first',
    columns: [
      { label: 'When', class: 'col-time', cell: (e) => h('a', { href: `/console/events/${encodeURIComponent(e.id)}` }, timeElement(e.occurred_at)) },
      { label: 'Key', cell: (e) => keyCell(e, state) },
      { label: 'Read', class: 'nowrap', cell: (e) => READ_KINDS[e.action] ?? e.action },
      { label: 'What', class: 'col-wide', cell: (e) => whatCell(e) },
      { label: 'Returned', class: 'num', cell: (e) => (e.details?.result_count ?? '—').toString() },
      { label: 'Tenant', cell: (e) => e.tenant_id },
      { label: 'From', cell: (e) => e.ip_address ?? h('span', { class: 'muted' }, '—') },
    ],
    rows: page.events,
    empty: subject ? `No reads of ${subject} are recorded.` : 'No reads are recorded.',
  });
  const pager = [];
  if (state.cursor) pager.push(h('a', { class: 'button', href: urlOf({ ...state, cursor: '' }) }, '« Newest'));
  if (page.next_cursor) pager.push(h('a', { class: 'button', rel: 'next', href: urlOf({ ...state, cursor: page.next_cursor }) }, 'Older reads »'));
  replace(results, table.element, h('nav', { class: 'pager', 'aria-label': 'Pages' }, pager));
}

function keyCell(event, state) {
  const keyId = event.details?.key_id ?? (event.user_id?.startsWith(KEY_PREFIX) ? event.user_id.slice(KEY_PREFIX.length) : event.user_id);
  if (!keyId) return h('span', { class: 'muted' }, '—');
  return h('a', { href: urlOf({ keyId, resourceId: state.resourceId, tenant: state.tenant }), class: 'mono' }, keyId);
}

/** Filter parameters that say nothing about what was read. */
const PAGING_PARAMS = new Set(['limit', 'cursor', 'order']);

/** The resource, the event read, or the filter as the reader gave it. */
function whatCell(event) {
  const parts = [];
  const named = event.resource_type && event.resource_type !== 'audit_log';
  if (named) {
    // "unknown": the read named a resource id without its type.
    const kind = event.resource_type === 'unknown' ? 'resource' : event.resource_type;
    parts.push(h('span', {}, kind, event.resource_id ? h('code', {}, ` ${event.resource_id}`) : null));
  }
  const eventId = event.details?.event_id;
  if (eventId) parts.push(h('a', { href: `/console/events/${encodeURIComponent(eventId)}`, class: 'mono small' }, `event ${eventId.slice(0, 13)}…`));
  const filter = event.details?.filter;
  if (filter && typeof filter === 'object' && !eventId) {
    const text = Object.entries(filter)
      .filter(([k]) => !PAGING_PARAMS.has(k) && !(named && (k === 'resource_type' || k === 'resource_id')))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    if (text) parts.push(h('span', { class: 'mono small muted' }, text));
  }
  return parts.length ? h('span', { class: 'what' }, parts.map((p, i) => (i ? [' · ', p] : p))) : h('span', { class: 'muted' }, 'everything');
}
