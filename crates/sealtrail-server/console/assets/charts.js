// Charts drawn by the page as inline SVG: no library, no network. Colours come from CSS
// classes (app.css, "Charts"), sizes from SVG attributes — never style attributes, which
// the console's Content-Security-Policy refuses. Each chart has a text title and
// description for screen readers, and a table of the same numbers beside it.

import { h, s } from './dom.js';
import { formatCount } from './format.js';

const DEFAULT_CHART_WIDTH = 720;
const CHART_HEIGHT = 220;
const MARGIN = { top: 12, right: 8, bottom: 28, left: 44 };
const Y_TICKS = 4;
/** Room for one x-axis label, in pixels. */
const X_LABEL_PX = 84;

/** A round step (1, 2, 5 × 10^n, at least 1) with `ticks` steps reaching `max`. */
export function niceStep(max, ticks) {
  const raw = Math.max(max, 1) / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= raw) return Math.max(1, step * magnitude);
  return 10 * magnitude;
}

/**
 * A stacked bar chart: one bar per bucket, one segment per series.
 * Drawn for `width` pixels (the space it gets), so that its text keeps its size on a phone.
 * @param {{title: string, description: string, buckets: {label: string, long: string, values: Record<string, number>}[],
 *          series: {key: string, label: string}[], width?: number}} options
 */
export function stackedBarChart({ title, description, buckets, series, width = DEFAULT_CHART_WIDTH }) {
  const chartWidth = Math.round(width);
  const titleId = `chart-title-${Math.random().toString(36).slice(2)}`;
  const descId = `${titleId}-desc`;
  const innerWidth = chartWidth - MARGIN.left - MARGIN.right;
  const innerHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const totals = buckets.map((b) => series.reduce((n, ser) => n + (b.values[ser.key] ?? 0), 0));
  const step = niceStep(Math.max(0, ...totals), Y_TICKS);
  const top = step * Y_TICKS;
  const slot = innerWidth / Math.max(buckets.length, 1);
  const barWidth = Math.max(1, slot * 0.72);
  const y = (value) => MARGIN.top + innerHeight - (value / top) * innerHeight;

  const grid = [];
  for (let i = 0; i <= Y_TICKS; i++) {
    const value = step * i;
    const at = y(value);
    grid.push(
      s('line', { x1: MARGIN.left, x2: chartWidth - MARGIN.right, y1: at, y2: at, class: 'chart-grid' }),
      s('text', { x: MARGIN.left - 6, y: at + 4, 'text-anchor': 'end', class: 'chart-axis' }, formatCount(Math.round(value))),
    );
  }

  const bars = buckets.map((bucket, i) => {
    let base = 0;
    const x = MARGIN.left + i * slot + (slot - barWidth) / 2;
    const segments = series.map((ser) => {
      const value = bucket.values[ser.key] ?? 0;
      if (!value) return null;
      const rect = s(
        'rect',
        { x: x.toFixed(2), y: y(base + value).toFixed(2), width: barWidth.toFixed(2), height: (y(base) - y(base + value)).toFixed(2), class: `chart-${ser.key}` },
        s('title', {}, `${bucket.long}: ${formatCount(value)} ${ser.label}`),
      );
      base += value;
      return rect;
    });
    return s('g', {}, segments);
  });

  const every = Math.max(1, Math.ceil(buckets.length / Math.max(2, Math.floor(innerWidth / X_LABEL_PX))));
  const xLabels = buckets.map((bucket, i) =>
    i % every === 0
      ? s('text', { x: (MARGIN.left + i * slot + slot / 2).toFixed(2), y: CHART_HEIGHT - 8, 'text-anchor': 'middle', class: 'chart-axis' }, bucket.label)
      : null,
  );

  const svg = s(
    'svg',
    { viewBox: `0 0 ${chartWidth} ${CHART_HEIGHT}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`, class: 'chart-svg' },
    s('title', { id: titleId }, title),
    s('desc', { id: descId }, description),
    grid,
    bars,
    s('line', { x1: MARGIN.left, x2: chartWidth - MARGIN.right, y1: y(0), y2: y(0), class: 'chart-baseline' }),
    xLabels,
  );

  const legend = h(
    'ul',
    { class: 'chart-legend' },
    series.map((ser) => h('li', {}, h('span', { class: ['swatch', `swatch-${ser.key}`], 'aria-hidden': 'true' }), ser.label)),
  );

  const table = h(
    'details',
    { class: 'chart-data' },
    h('summary', {}, 'Show the numbers'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'data-table compact' },
        h('caption', { class: 'visually-hidden' }, title),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Period'), series.map((ser) => h('th', { scope: 'col', class: 'num' }, ser.label)))),
        h(
          'tbody',
          {},
          buckets
            .filter((_, i) => totals[i] > 0)
            .map((bucket) =>
              h(
                'tr',
                {},
                h('td', { 'data-label': 'Period' }, bucket.long),
                series.map((ser) => h('td', { 'data-label': ser.label, class: 'num' }, formatCount(bucket.values[ser.key] ?? 0))),
              ),
            ),
        ),
      ),
    ),
  );

  return h('figure', { class: 'chart' }, svg, legend, table);
}

/**
 * A ranked list with a bar per entry (top actions, top actors).
 * @param {{label: string, rows: {key: string, count: number, href?: string}[], empty: string}} options
 */
export function barList({ label, rows, empty }) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const max = Math.max(...rows.map((r) => r.count));
  return h(
    'ol',
    { class: 'bar-list', 'aria-label': label },
    rows.map((row) =>
      h(
        'li',
        {},
        h(
          'span',
          { class: 'bar-label' },
          row.href ? h('a', { href: row.href, class: 'mono' }, row.key) : h('span', { class: 'mono' }, row.key),
          h('span', { class: 'bar-count' }, formatCount(row.count)),
        ),
        s(
          'svg',
          { viewBox: '0 0 100 6', preserveAspectRatio: 'none', class: 'bar-track', 'aria-hidden': 'true', focusable: 'false' },
          s('rect', { x: 0, y: 0, width: 100, height: 6, rx: 1.5, class: 'bar-bg' }),
          s('rect', { x: 0, y: 0, width: Math.max(0.5, (row.count / max) * 100).toFixed(2), height: 6, rx: 1.5, class: 'bar-fill' }),
        ),
      ),
    ),
  );
}
