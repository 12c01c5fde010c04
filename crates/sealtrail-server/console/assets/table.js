// Data tables that stay readable at phone width: each cell carries its column's name in
// data-label, and below 720px the CSS turns every row into a card that shows those names
// (app.css, "Responsive tables").

import { h } from './dom.js';

/**
 * @typedef {{label: string, cell: (row: object) => (Node|string|null), class?: string}} Column
 */

/** One <tr> for `row`. */
export function tableRow(columns, row, props = {}) {
  return h(
    'tr',
    props,
    columns.map((column) => h('td', { 'data-label': column.label, class: column.class }, column.cell(row))),
  );
}

/**
 * A table of `rows`; `empty` is shown instead when there are none.
 * @param {{caption: string, columns: Column[], rows: object[], empty?: string,
 *          rowProps?: (row: object) => object, captionHidden?: boolean}} options
 */
export function dataTable({ caption, columns, rows, empty = 'Nothing to show.', rowProps = () => ({}), captionHidden = false }) {
  const body = h('tbody', {}, rows.map((row) => tableRow(columns, row, rowProps(row))));
  const table = h(
    'table',
    { class: 'data-table' },
    h('caption', { class: captionHidden ? 'visually-hidden' : null }, caption),
    h('thead', {}, h('tr', {}, columns.map((column) => h('th', { scope: 'col', class: column.class }, column.label)))),
    body,
  );
  const emptyNote = h('p', { class: ['empty', rows.length ? 'hidden' : null] }, empty);
  return { element: h('div', { class: 'table-wrap' }, table, emptyNote), body, emptyNote };
}
