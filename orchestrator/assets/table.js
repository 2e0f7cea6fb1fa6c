// Tables of values: the cell of a value (the NULL badge, the empty string, numbers
// aligned right), the result table (#result-table) and the schema's sample rows.
//
// May import: dom.js, format.js.

import { $, el, clear, show } from './dom.js';
import { cellText, columnKind } from './format.js';

function valueCell(value, numeric) {
  const text = cellText(value);
  if (text === null) return el('td', { class: numeric ? 'num' : null }, el('span', { class: 'null', text: 'NULL' }));
  if (text === '') return el('td', { class: 'empty', title: 'empty string' });
  const isNumber = numeric || typeof value === 'number';
  return el('td', { class: isNumber ? 'num' : null, title: text.length > 60 ? text : null, text });
}

export function renderTable(result) {
  const table = $('result-table');
  clear(table);
  const columns = Array.isArray(result.columns) ? result.columns : [];
  const types = Array.isArray(result.column_types) ? result.column_types : [];
  const numeric = columns.map((_, i) => columnKind(types[i]) === 'number');
  const head = el(
    'tr',
    null,
    columns.map((name, i) => el('th', { class: numeric[i] ? 'num' : null, scope: 'col' }, String(name), types[i] ? el('span', { class: 'type', text: types[i] }) : null)),
  );
  const rows = Array.isArray(result.rows) ? result.rows : [];
  const body = rows.map((row) => el('tr', null, columns.map((_, i) => valueCell(Array.isArray(row) ? row[i] : undefined, numeric[i]))));
  table.append(el('thead', null, head), el('tbody', null, body));
  show($('table-wrap'), true);
}

export function sampleTable(columns, rows) {
  if (rows.length === 0) return null;
  const head = el('tr', null, columns.map((c) => el('th', { text: c.name })));
  const body = rows.map((row) => el('tr', null, columns.map((c, i) => valueCell(row[i], columnKind(c.type) === 'number'))));
  return el(
    'div',
    { class: 'samples', 'data-testid': 'sample-rows' },
    el('table', null, el('thead', null, head), el('tbody', null, body)),
  );
}
