// The event filter as the console keeps it: in the page's URL, under the API's own
// parameter names, so a view can be bookmarked, shared and reloaded, and the same text
// goes to GET /v1/events, /v1/stats and /v1/stream. The API refuses unknown and empty
// parameters, so only the known ones, with values, ever leave here.

/** The filter parameters of GET /v1/events (EVENT_FILTER_PARAMS in sealtrail-core). */
export const FILTER_PARAMS = ['tenant_id', 'severity', 'action', 'exclude_action', 'user_id', 'resource_type', 'resource_id', 'from', 'to', 'text'];

/** Those the live stream takes too (from and to are not: a stream has no end). */
export const STREAM_FILTER_PARAMS = FILTER_PARAMS.filter((p) => p !== 'from' && p !== 'to');

export const SEVERITIES = ['info', 'warning', 'critical'];

/** Page sizes offered; the API allows up to 1000. */
export const PAGE_SIZES = [20, 50, 100, 200];
export const DEFAULT_PAGE_SIZE = 50;

/**
 * The events page's state from its URL's query.
 * @returns {{filter: Record<string,string>, limit: number, cursor: string, live: boolean}}
 */
export function readEventsUrl(search) {
  const query = new URLSearchParams(search);
  const filter = {};
  for (const name of FILTER_PARAMS) {
    const value = (query.get(name) ?? '').trim();
    if (value) filter[name] = value;
  }
  const limit = Number(query.get('limit'));
  return {
    filter,
    limit: PAGE_SIZES.includes(limit) ? limit : DEFAULT_PAGE_SIZE,
    cursor: query.get('cursor') ?? '',
    live: query.get('live') === '1',
  };
}

/** The events page's URL query for a state (defaults left out, for short URLs). */
export function eventsUrlQuery({ filter, limit, cursor, live }) {
  const query = new URLSearchParams();
  for (const name of FILTER_PARAMS) if (filter[name]) query.set(name, filter[name]);
  if (limit && limit !== DEFAULT_PAGE_SIZE) query.set('limit', String(limit));
  if (cursor) query.set('cursor', cursor);
  if (live) query.set('live', '1');
  const text = query.toString();
  return text ? `?${text}` : '';
}

/** Only the named parameters of `filter` that have values. */
export function pick(filter, names) {
  const out = {};
  for (const name of names) if (filter[name]) out[name] = filter[name];
  return out;
}

/** The severities of a filter's comma list, in the canonical order. */
export function severityList(value) {
  const chosen = new Set(String(value ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  return SEVERITIES.filter((s) => chosen.has(s));
}

/**
 * Whether a live event falls inside the filter's time range, which the stream cannot
 * apply itself (it takes no from/to).
 */
export function withinTimeRange(event, filter) {
  const at = Date.parse(event.occurred_at);
  if (filter.from && !(at >= Date.parse(filter.from))) return false;
  if (filter.to && !(at < Date.parse(filter.to))) return false;
  return true;
}
