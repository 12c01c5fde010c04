// How values read on the page: times in the reader's zone (the exact UTC instant in the
// <time> element's datetime), JSON pretty-printed, counts grouped.

import { h } from './dom.js';

const pad = (n) => String(n).padStart(2, '0');

/** "2026-12-04 03:44:51", local time: sortable, and unambiguous in every locale. */
function localDateTime(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

const number = new Intl.NumberFormat();

/** A <time> showing an RFC 3339 instant in local time; null or junk shows a dash. */
export function timeElement(rfc3339) {
  if (!rfc3339) return h('span', { class: 'muted' }, '—');
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return h('span', {}, String(rfc3339));
  return h('time', { datetime: rfc3339, title: rfc3339 }, localDateTime(date));
}

/** Local date and time text of an instant. */
export function formatTime(rfc3339) {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? String(rfc3339) : localDateTime(date);
}

export function formatCount(n) {
  return number.format(n);
}

/** "1 event", "3 events": a count with its noun. */
export function plural(n, noun, nouns = `${noun}s`) {
  return `${number.format(n)} ${n === 1 ? noun : nouns}`;
}

/** How long ago, roughly: "3 min ago". */
export function ago(rfc3339, now = Date.now()) {
  const seconds = Math.round((now - new Date(rfc3339).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

/** A duration in seconds as "12 s", "3 min", "2 h". */
export function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

/** A JSON value as readable text: strings as themselves, the rest pretty-printed. */
export function jsonText(value) {
  if (value === undefined) return '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

/** A severity as a badge. */
export function severityBadge(severity) {
  return h('span', { class: ['badge', `severity-${severity}`] }, severity);
}

/** The RFC 3339 UTC text of a <input type="datetime-local"> value (local time), or ''. */
export function localInputToRfc3339(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/** The <input type="datetime-local" step="1"> value (local time, seconds) of an instant. */
export function rfc3339ToLocalInput(rfc3339) {
  if (!rfc3339) return '';
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return '';
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}
