// The events page: a filter bar whose state is the URL, a keyset-paged table, and a live
// tail that streams new matching events in at the top.

import { api, ApiError } from './api.js';
import { h, notice, replace, textField, selectField } from './dom.js';
import {
  PAGE_SIZES,
  SEVERITIES,
  eventsUrlQuery,
  readEventsUrl,
  severityList,
} from './filters.js';
import { localInputToRfc3339, rfc3339ToLocalInput, severityBadge, timeElement } from './format.js';
import { LiveTail } from './live.js';
import { dataTable, tableRow } from './table.js';

/** The filter's free-text fields, each one text input under its parameter's name. */
const TEXT_FILTERS = ['text', 'action', 'exclude_action', 'user_id', 'resource_type', 'resource_id'];

/** Where the filter bar starts folded (as app.css's phone layout). */
const PHONE_MEDIA = '(max-width: 600px)';

/** Rows the table holds at most while live tail adds to it; the oldest go beyond this. */
const MAX_TABLE_ROWS = 1000;

export const title = 'Events';

const columns = [
  { label: 'When', class: 'col-time', cell: (e) => timeElement(e.occurred_at) },
  { label: 'Severity', class: 'col-severity', cell: (e) => severityBadge(e.severity) },
  {
    label: 'Action',
    class: 'col-action',
    cell: (e) => h('a', { href: `/console/events/${encodeURIComponent(e.id)}`, class: 'mono' }, e.action),
  },
  { label: 'Actor', cell: (e) => e.user_id ?? h('span', { class: 'muted' }, e.actor_type) },
  {
    label: 'Resource',
    cell: (e) => h('span', {}, e.resource_type, e.resource_id ? h('span', { class: 'muted' }, ` ${e.resource_id}`) : null),
  },
  { label: 'Tenant', cell: (e) => e.tenant_id },
  { label: 'Outcome', cell: (e) => h('span', { class: e.outcome === 'failure' ? 'outcome-failure' : 'muted' }, e.outcome) },
];

/** The page. Returns a function that stops what it started (the live stream). */
export function render(main, { session }) {
  const page = new EventsPage(main, session);
  page.start();
  return () => page.stop();
}

class EventsPage {
  constructor(main, session) {
    this.main = main;
    this.session = session;
    this.state = readEventsUrl(location.search);
    this.live = null;
    this.seen = new Set();
    this.loadToken = 0;
    this.onPopState = () => {
      this.state = readEventsUrl(location.search);
      this.fillForm();
      this.load();
    };
  }

  /** The page size sits by the results, yet belongs to the filter's form (form="…"). */
  buildPageSize() {
    const field = selectField({
      id: 'f-limit',
      label: 'Per page',
      name: 'limit',
      value: String(this.state.limit),
      options: PAGE_SIZES.map((n) => [String(n), String(n)]),
    });
    field.classList.add('field-inline');
    const select = field.querySelector('select');
    select.setAttribute('form', 'events-filter');
    select.addEventListener('change', () => this.form.requestSubmit());
    return field;
  }

  start() {
    this.form = this.buildForm();
    this.status = h('div', { class: 'result-status', role: 'status', 'aria-live': 'polite' });
    this.liveStatus = h('span', { class: 'live-status', id: 'live-status', role: 'status', 'aria-live': 'polite' });
    this.results = h('div', { class: 'results' });
    this.pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
    replace(
      this.main,
      h('div', { class: 'page-head' }, h('h1', {}, 'Events'), this.liveControl()),
      this.form,
      h('div', { class: 'result-bar' }, this.status, this.buildPageSize()),
      this.results,
      this.pager,
    );
    this.fillForm();
    this.foldFiltersOnPhone();
    window.addEventListener('popstate', this.onPopState);
    this.load();
  }

  stop() {
    window.removeEventListener('popstate', this.onPopState);
    this.stopLive();
  }

  // -- The filter bar ------------------------------------------------------------------

  buildForm() {
    const boundTenant = this.session?.tenant_id ?? null;
    const tenantField = boundTenant
      ? textField({ id: 'f-tenant', label: 'Tenant', name: 'tenant_id', value: boundTenant, readonly: true, hint: 'This key sees only its tenant.' })
      : textField({ id: 'f-tenant', label: 'Tenant', name: 'tenant_id', placeholder: 'all tenants' });
    const severity = h(
      'fieldset',
      { class: 'field severity-choice' },
      h('legend', {}, 'Severity'),
      SEVERITIES.map((level) =>
        h(
          'span',
          { class: 'check' },
          h('input', { type: 'checkbox', id: `f-severity-${level}`, name: 'severity', value: level }),
          h('label', { for: `f-severity-${level}` }, level),
        ),
      ),
    );
    this.moreFilters = h(
      'button',
      { type: 'button', class: 'button button-quiet more-filters', 'aria-expanded': 'true', 'aria-controls': 'filter-grid', onclick: () => this.showAllFilters(this.moreFilters.getAttribute('aria-expanded') !== 'true') },
      'Fewer filters',
    );
    const form = h(
      'form',
      { class: 'filter-bar', id: 'events-filter', role: 'search', 'aria-label': 'Filter events', onsubmit: (e) => this.onSubmit(e) },
      h(
        'div',
        { class: 'filter-grid', id: 'filter-grid' },
        textField({ id: 'f-text', label: 'Search', name: 'text', type: 'search', placeholder: 'in action or resource' }),
        tenantField,
        textField({ id: 'f-action', label: 'Action', name: 'action', placeholder: 'guest.* or exact', hint: 'End with * for a prefix.' }),
        textField({ id: 'f-exclude-action', label: 'Leave out action', name: 'exclude_action', placeholder: 'audit_log.*', hint: 'audit_log.* hides the access log’s records.' }),
        textField({ id: 'f-user', label: 'User', name: 'user_id', placeholder: 'user id' }),
        textField({ id: 'f-resource-type', label: 'Resource type', name: 'resource_type' }),
        textField({ id: 'f-resource-id', label: 'Resource id', name: 'resource_id' }),
        textField({ id: 'f-from', label: 'From', name: 'from', type: 'datetime-local', step: '1', wide: true }),
        textField({ id: 'f-to', label: 'To', name: 'to', type: 'datetime-local', step: '1', wide: true, hint: 'Local time; “to” is exclusive.' }),
        severity,
      ),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'button button-primary' }, 'Apply filter'),
        h('button', { type: 'button', class: 'button', onclick: () => this.clearFilter() }, 'Clear'),
        this.moreFilters,
      ),
    );
    return form;
  }

  /** On a phone the bar starts folded to its search box, unless another filter is set. */
  foldFiltersOnPhone() {
    const phone = window.matchMedia(PHONE_MEDIA).matches;
    const others = Object.keys(this.state.filter).some((name) => name !== 'text');
    this.showAllFilters(!phone || others);
  }

  showAllFilters(all) {
    this.form.querySelector('.filter-grid').classList.toggle('filters-folded', !all);
    this.moreFilters.setAttribute('aria-expanded', String(all));
    this.moreFilters.textContent = all ? 'Fewer filters' : 'More filters';
  }

  /** Puts the URL's filter into the form's controls. */
  fillForm() {
    const { filter, limit } = this.state;
    const elements = this.form.elements;
    for (const name of TEXT_FILTERS) {
      elements.namedItem(name).value = filter[name] ?? '';
    }
    if (!this.session?.tenant_id) elements.namedItem('tenant_id').value = filter.tenant_id ?? '';
    elements.namedItem('from').value = rfc3339ToLocalInput(filter.from);
    elements.namedItem('to').value = rfc3339ToLocalInput(filter.to);
    const chosen = new Set(severityList(filter.severity));
    for (const level of SEVERITIES) this.form.querySelector(`#f-severity-${level}`).checked = chosen.has(level);
    elements.namedItem('limit').value = String(limit);
    for (const control of this.form.querySelectorAll('[aria-invalid]')) control.removeAttribute('aria-invalid');
    if (this.liveSwitch) this.liveSwitch.checked = this.state.live;
  }

  /** The filter the form describes. */
  readForm() {
    const elements = this.form.elements;
    const filter = {};
    for (const name of TEXT_FILTERS) {
      const value = elements.namedItem(name).value.trim();
      if (value) filter[name] = value;
    }
    const tenant = elements.namedItem('tenant_id').value.trim();
    if (tenant && !this.session?.tenant_id) filter.tenant_id = tenant;
    const from = localInputToRfc3339(elements.namedItem('from').value);
    const to = localInputToRfc3339(elements.namedItem('to').value);
    // A time the form shows unchanged keeps the URL's exact instant (the input holds seconds).
    if (from) filter.from = rfc3339ToLocalInput(this.state.filter.from) === elements.namedItem('from').value ? this.state.filter.from : from;
    if (to) filter.to = rfc3339ToLocalInput(this.state.filter.to) === elements.namedItem('to').value ? this.state.filter.to : to;
    const severities = SEVERITIES.filter((level) => this.form.querySelector(`#f-severity-${level}`).checked);
    // All three is no filter at all.
    if (severities.length && severities.length < SEVERITIES.length) filter.severity = severities.join(',');
    return { filter, limit: Number(elements.namedItem('limit').value) };
  }

  onSubmit(event) {
    event.preventDefault();
    const { filter, limit } = this.readForm();
    this.navigate({ filter, limit, cursor: '', live: this.state.live });
  }

  clearFilter() {
    this.navigate({ filter: {}, limit: this.state.limit, cursor: '', live: this.state.live });
    this.fillForm();
  }

  /** A new view: its own history entry, so Back returns to the previous one. */
  navigate(state) {
    this.state = state;
    history.pushState(null, '', `${location.pathname}${eventsUrlQuery(state)}`);
    this.load();
  }

  // -- The table and its pages ----------------------------------------------------------

  async load() {
    const token = ++this.loadToken;
    const { filter, limit, cursor } = this.state;
    this.stopLive();
    this.status.textContent = 'Loading…';
    this.results.setAttribute('aria-busy', 'true');
    // A bound key's own tenant is implied; another named in the URL is the server's to refuse.
    const query = { ...filter, limit, cursor };
    let page;
    try {
      page = await api('/v1/events', { query });
    } catch (error) {
      if (token !== this.loadToken) return;
      this.results.removeAttribute('aria-busy');
      this.showError(error);
      return;
    }
    if (token !== this.loadToken) return;
    this.results.removeAttribute('aria-busy');
    this.showPage(page);
    if (this.state.live) this.startLive(page.events);
  }

  showError(error) {
    this.status.textContent = '';
    let message = error.message;
    if (error instanceof ApiError && error.field) {
      const control = this.form.elements.namedItem(error.field);
      if (control && control.setAttribute) control.setAttribute('aria-invalid', 'true');
      message = `${fieldLabel(error.field)}: ${error.message}`;
    }
    if (error instanceof ApiError && error.status === 403) {
      message = `${error.message}${this.session?.tenant_id ? ` (this key sees only tenant ${this.session.tenant_id})` : ''}`;
    }
    replace(this.results, notice('error', `The events could not be loaded. ${message}`));
    replace(this.pager);
  }

  showPage(page) {
    const { filter, cursor } = this.state;
    const filtered = Object.keys(filter).length > 0;
    this.seen = new Set(page.events.map((e) => e.id));
    const table = dataTable({
      caption: filtered ? 'Events matching the filter, newest first' : 'Events, newest first',
      columns,
      rows: page.events,
      empty: filtered ? 'No event matches this filter.' : 'No events yet.',
      rowProps: (e) => ({ dataset: { eventId: e.id, seq: String(e.seq) } }),
      captionHidden: true,
    });
    this.tableBody = table.body;
    this.emptyNote = table.emptyNote;
    replace(this.results, table.element);
    this.rowsDropped = false;
    this.status.textContent = `${page.events.length} event${page.events.length === 1 ? '' : 's'}${cursor ? ' on this page' : ''}${page.next_cursor ? ', more on the next page' : ''}.`;
    this.nextCursor = page.next_cursor;
    this.renderPager();
  }

  renderPager() {
    const links = [];
    if (this.state.cursor) {
      links.push(h('a', { class: 'button', href: `${location.pathname}${eventsUrlQuery({ ...this.state, cursor: '' })}`, onclick: (e) => this.follow(e, '') }, '« Newest'));
    }
    if (this.nextCursor && !this.rowsDropped) {
      links.push(
        h(
          'a',
          {
            class: 'button',
            rel: 'next',
            href: `${location.pathname}${eventsUrlQuery({ ...this.state, cursor: this.nextCursor, live: false })}`,
            onclick: (e) => this.follow(e, this.nextCursor),
          },
          'Next page »',
        ),
      );
    }
    replace(this.pager, links);
  }

  follow(event, cursor) {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button === 1) return; // a new tab
    event.preventDefault();
    // Older pages do not grow: live tail only makes sense on the newest.
    this.navigate({ ...this.state, cursor, live: cursor ? false : this.state.live });
    if (this.liveSwitch) this.liveSwitch.checked = this.state.live;
    this.main.focus();
  }

  // -- Live tail -------------------------------------------------------------------------

  liveControl() {
    this.liveSwitch = h('input', {
      type: 'checkbox',
      role: 'switch',
      id: 'live-tail',
      'aria-describedby': 'live-status',
      onchange: () => this.toggleLive(this.liveSwitch.checked),
    });
    // Following takes the stream scope: a replay is recorded as one subscription, not per
    // tenant and page as queries are, so read alone does not allow it.
    this.canStream = Boolean(this.session?.scopes?.some((s) => s === 'stream' || s === 'admin'));
    if (!this.canStream) {
      this.liveSwitch.disabled = true;
      this.liveStatus.textContent = 'Live tail needs a key with the stream scope.';
    }
    return h(
      'div',
      { class: 'live-control' },
      h('span', { class: 'switch' }, this.liveSwitch, h('label', { for: 'live-tail' }, 'Live tail')),
      this.liveStatus,
    );
  }

  toggleLive(on) {
    // Live tail shows the newest events: switching it on goes to the first page.
    const state = { ...this.state, live: on, cursor: on ? '' : this.state.cursor };
    const changedPage = state.cursor !== this.state.cursor;
    this.state = state;
    history.replaceState(null, '', `${location.pathname}${eventsUrlQuery(state)}`);
    if (changedPage) {
      this.load();
    } else if (on) {
      const shown = [...(this.tableBody?.querySelectorAll('tr') ?? [])].map((tr) => ({ seq: Number(tr.dataset.seq) }));
      this.startLive(shown);
    } else {
      this.stopLive();
    }
  }

  startLive(shownEvents) {
    this.stopLive();
    if (!this.canStream) return;
    // Resume after the newest event shown, so nothing that arrived since the page was read
    // is missed; with none shown, only new events come.
    const since = shownEvents.reduce((max, e) => (e.seq > max ? e.seq : max), 0);
    const filter = { ...this.state.filter };
    this.live = new LiveTail({
      filter,
      since: since || null,
      onEvent: (event) => this.prepend(event),
      onState: (state, detail) => this.showLiveState(state, detail),
    });
    this.live.start();
  }

  stopLive() {
    if (this.live) {
      this.live.stop();
      this.live = null;
    }
    if (this.canStream) {
      this.liveStatus.textContent = '';
      this.liveStatus.dataset.state = 'off';
    }
  }

  showLiveState(state, detail) {
    const text = {
      connecting: 'Connecting…',
      live: 'Live: connected',
      'caught-up': 'Live: connected, up to date',
      reconnecting: 'Reconnecting…',
      ended: detail ?? 'Live tail stopped.',
    }[state];
    this.liveStatus.textContent = text;
    this.liveStatus.dataset.state = state;
    if (state === 'ended') {
      this.liveSwitch.checked = false;
      this.state = { ...this.state, live: false };
      history.replaceState(null, '', `${location.pathname}${eventsUrlQuery(this.state)}`);
      this.live = null;
    }
  }

  prepend(event) {
    if (!this.tableBody || this.seen.has(event.id)) return;
    this.seen.add(event.id);
    const row = tableRow(columns, event, { dataset: { eventId: event.id, seq: String(event.seq) }, class: 'row-new' });
    this.tableBody.prepend(row);
    this.emptyNote.classList.add('hidden');
    while (this.tableBody.rows.length > MAX_TABLE_ROWS) {
      // The oldest rows leave the page and the set of ids seen, which so stays bounded (a
      // resumed stream starts after the newest, so those never come back).
      const oldest = this.tableBody.lastElementChild;
      this.seen.delete(oldest.dataset.eventId);
      oldest.remove();
      if (!this.rowsDropped) {
        // The next page would start after rows no longer shown.
        this.rowsDropped = true;
        this.renderPager();
      }
    }
  }
}

function fieldLabel(field) {
  return {
    tenant_id: 'Tenant',
    severity: 'Severity',
    action: 'Action',
    user_id: 'User',
    resource_type: 'Resource type',
    resource_id: 'Resource id',
    from: 'From',
    to: 'To',
    text: 'Search',
    cursor: 'Page',
    limit: 'Per page',
  }[field] ?? field;
}
