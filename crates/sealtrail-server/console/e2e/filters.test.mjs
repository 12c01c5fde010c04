// Unit tests of the events page's URL state (assets/filters.js, no DOM): a view survives the
// round trip through its URL, and only known, non-empty parameters reach the API.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_PAGE_SIZE,
  FILTER_PARAMS,
  STREAM_FILTER_PARAMS,
  eventsUrlQuery,
  pick,
  readEventsUrl,
  severityList,
  withinTimeRange,
} from '../assets/filters.js';

test('a view round-trips through its URL', () => {
  const state = {
    filter: { tenant_id: 'bloom', severity: 'warning,critical', action: 'guest.*', text: 'rsvp', from: '2026-12-01T00:00:00.000Z' },
    limit: 20,
    cursor: 'opaque+/=cursor',
    live: false,
  };
  assert.deepEqual(readEventsUrl(eventsUrlQuery(state)), state);
  assert.deepEqual(readEventsUrl(eventsUrlQuery({ ...state, cursor: '', live: true })), { ...state, cursor: '', live: true });
});

test('defaults stay out of the URL, and junk in it falls back to them', () => {
  assert.equal(eventsUrlQuery({ filter: {}, limit: DEFAULT_PAGE_SIZE, cursor: '', live: false }), '');
  const read = readEventsUrl('?limit=7&live=yes&unknown=1&action=%20&user_id=u-1');
  assert.deepEqual(read, { filter: { user_id: 'u-1' }, limit: DEFAULT_PAGE_SIZE, cursor: '', live: false });
});

test('the stream gets the filter without its time range; empty values are dropped', () => {
  assert.deepEqual(STREAM_FILTER_PARAMS, FILTER_PARAMS.filter((p) => p !== 'from' && p !== 'to'));
  assert.deepEqual(pick({ tenant_id: 'bloom', from: 'x', to: 'y', action: '' }, STREAM_FILTER_PARAMS), { tenant_id: 'bloom' });
});

test('severities are read in their canonical order, unknown ones dropped', () => {
  assert.deepEqual(severityList('critical, info,loud'), ['info', 'critical']);
  assert.deepEqual(severityList(undefined), []);
});

test('a live event is kept only inside the time range: from inclusive, to exclusive', () => {
  const at = (t) => ({ occurred_at: t });
  const filter = { from: '2026-12-04T10:00:00Z', to: '2026-12-04T11:00:00Z' };
  assert.equal(withinTimeRange(at('2026-12-04T10:00:00.000000Z'), filter), true);
  assert.equal(withinTimeRange(at('2026-12-04T11:00:00.000000Z'), filter), false);
  assert.equal(withinTimeRange(at('2026-12-04T09:59:59.999999Z'), filter), false);
  assert.equal(withinTimeRange(at('2026-12-04T09:00:00Z'), {}), true);
});
