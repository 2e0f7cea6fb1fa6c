// Datasets: the picker, the dataset card (name, description, tables, prompt chips)
// and the schema panel (tables, columns, sample rows, Preview buttons); the chosen
// dataset in the URL's #dataset=.
//
// May import: state.js, api.js, dom.js, format.js, words.js, table.js, chat.js (a chip
// asks its prompt; a new dataset starts a new conversation), runs.js (Preview runs).

import { state } from './state.js';
import { api, getToken } from './api.js';
import { $, el, clear } from './dom.js';
import { plural } from './format.js';
import { errorNodes } from './words.js';
import { sampleTable } from './table.js';
import { askPrompt, newThread } from './chat.js';
import { runCurrent, setSql } from './runs.js';

/**
 * Lists the datasets in the picker and selects one: the URL's `#dataset=`, else the
 * first. False when the list could not be loaded (the card says why), or the caller
 * signed in or out meanwhile (the reload that follows lists theirs).
 */
export async function loadDatasets() {
  const asked = getToken();
  let datasets;
  try {
    const body = await api('/datasets');
    datasets = Array.isArray(body.datasets) ? body.datasets : [];
  } catch (e) {
    if (getToken() !== asked) return false;
    $('dataset-name').textContent = 'The datasets could not be loaded';
    $('dataset-description').textContent = `${e.type}: ${e.message}`;
    return false;
  }
  if (getToken() !== asked) return false;
  state.datasets = datasets;
  const picker = $('dataset-picker');
  clear(picker);
  for (const dataset of state.datasets) {
    picker.append(el('option', { value: dataset.id, text: `${dataset.name || dataset.id} (${dataset.id})` }));
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get('dataset');
  const first = state.datasets.find((d) => d.id === wanted) || state.datasets[0];
  if (first) selectDataset(first.id, { keepThread: false });
  else clearDatasets(state.me && state.me.authConfigured ? 'No datasets are open to you' : 'No datasets are registered');
  return true;
}

/**
 * No dataset chosen: an empty picker, card and schema, and `words` as the card's
 * title (the caller may use none, or must sign in first).
 */
export function clearDatasets(words) {
  if (state.dataset) newThread();
  state.datasets = [];
  state.dataset = null;
  state.schema = null;
  clear($('dataset-picker'));
  $('dataset-name').textContent = words;
  $('dataset-description').textContent = '';
  $('dataset-tables').textContent = '';
  clear($('prompt-chips'));
  clear($('schema'));
}

/** Choosing in the picker selects that dataset (and starts a new conversation). */
export function wirePicker() {
  $('dataset-picker').addEventListener('change', (event) => selectDataset(event.target.value, { keepThread: false }));
}

export function selectDataset(id, { keepThread }) {
  const dataset = state.datasets.find((d) => d.id === id);
  if (!dataset) return;
  const changed = !state.dataset || state.dataset.id !== id;
  state.dataset = dataset;
  $('dataset-picker').value = id;
  history.replaceState(null, '', `#dataset=${encodeURIComponent(id)}`);
  if (changed && !keepThread) newThread();
  renderAbout(dataset);
  if (changed) loadSchema(dataset.id);
}

function renderAbout(dataset) {
  $('dataset-name').textContent = dataset.name || dataset.id;
  $('dataset-description').textContent = dataset.description || '';
  const tables = Array.isArray(dataset.tables) ? dataset.tables : [];
  $('dataset-tables').textContent = tables
    .map((t) => (typeof t.row_count === 'number' ? `${t.name} (${plural(t.row_count, 'row', 'rows')})` : t.name))
    .join(' · ');
  const chips = $('prompt-chips');
  clear(chips);
  const prompts = Array.isArray(dataset.prompts) ? dataset.prompts : [];
  for (const prompt of prompts) {
    chips.append(
      el('button', {
        type: 'button',
        class: 'chip',
        'data-testid': 'prompt-chip',
        text: prompt,
        onclick: () => askPrompt(String(prompt)),
      }),
    );
  }
  if (prompts.length === 0) chips.append(el('span', { class: 'muted small', text: 'This dataset has no example prompts.' }));
  $('sql-editor').placeholder = tables.length ? `SELECT * FROM ${tables[0].name} LIMIT 20` : 'SELECT 1';
}

async function loadSchema(datasetId) {
  const box = $('schema');
  clear(box);
  box.append(el('p', { class: 'muted small', text: 'Reading the schema…' }));
  state.schema = null;
  let schema;
  try {
    schema = await api(`/datasets/${encodeURIComponent(datasetId)}/schema`);
  } catch (e) {
    if (!state.dataset || state.dataset.id !== datasetId) return;
    clear(box);
    box.append(el('div', { class: 'error' }, errorNodes(e.type, e.message)));
    return;
  }
  if (!state.dataset || state.dataset.id !== datasetId) return;
  state.schema = schema;
  renderSchema(schema);
}

function renderSchema(schema) {
  const box = $('schema');
  clear(box);
  const tables = Array.isArray(schema.tables) ? schema.tables : [];
  const described = new Map(((state.dataset && state.dataset.tables) || []).map((t) => [t.name, t]));
  tables.forEach((table, index) => {
    const columns = Array.isArray(table.columns) ? table.columns : [];
    const info = described.get(table.name) || {};
    const summary = el(
      'summary',
      null,
      el('span', { text: table.name }),
      el('span', {
        class: 'muted',
        text: [typeof table.row_count === 'number' ? plural(table.row_count, 'row', 'rows') : null, plural(columns.length, 'column', 'columns')]
          .filter(Boolean)
          .join(' · '),
      }),
    );
    const items = columns.map((c) =>
      el(
        'li',
        null,
        el('span', { class: 'col-name', text: c.name }),
        ' ',
        el('span', { class: 'col-type', text: c.type }),
        c.description ? el('span', { class: 'col-desc', text: c.description }) : null,
      ),
    );
    const details = el(
      'details',
      { 'data-table': table.name },
      summary,
      info.description ? el('p', { class: 'muted small', text: info.description }) : null,
      table.error ? el('div', { class: 'error' }, errorNodes(table.error.type, table.error.message)) : null,
      el('ul', { class: 'columns' }, items),
      sampleTable(columns, Array.isArray(table.sample_rows) ? table.sample_rows : []),
      el(
        'div',
        { class: 'table-actions' },
        el('button', {
          type: 'button',
          class: 'link',
          text: `Preview ${table.name}`,
          onclick: () => {
            setSql(`SELECT * FROM ${quoteIdent(table.name)} LIMIT 50`);
            runCurrent();
          },
        }),
      ),
    );
    if (index === 0) details.open = true;
    box.append(details);
  });
  if (tables.length === 0) box.append(el('p', { class: 'muted small', text: 'No tables.' }));
}

function quoteIdent(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${String(name).replace(/"/g, '""')}"`;
}
