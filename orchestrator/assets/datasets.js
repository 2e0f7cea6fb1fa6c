// Datasets: the picker (uploads marked, with Delete for those the caller may remove),
// the dataset card (name, description, who uploaded it, tables, prompt chips), the
// schema panel (tables, columns, sample rows, Preview buttons) and the upload panel
// (files dropped or chosen, sent as `POST /datasets`; the new dataset's tables shown
// and the dataset chosen); the chosen dataset in the URL's #dataset=.
//
// May import: state.js, api.js, dom.js, format.js, words.js, table.js, chat.js (a chip
// asks its prompt; a new dataset starts a new conversation), runs.js (Preview runs).

import { state } from './state.js';
import { api, apiDelete, getToken, postForm } from './api.js';
import { $, el, appendAll, clear, show } from './dom.js';
import { formatBytes, plural, relativeTime } from './format.js';
import { errorNodes } from './words.js';
import { sampleTable } from './table.js';
import { askPrompt, newThread } from './chat.js';
import { runCurrent, setSql } from './runs.js';

/**
 * Lists the datasets in the picker (uploads marked) and selects one: `wantedId`, else
 * the URL's `#dataset=`, else the first. False when the list could not be loaded (the
 * card says why), or the caller signed in or out meanwhile (the reload that follows
 * lists theirs).
 */
export async function loadDatasets(wantedId) {
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
    const uploaded = dataset.source === 'uploaded';
    const text = `${dataset.name || dataset.id} (${dataset.id})${uploaded ? ' (uploaded)' : ''}`;
    picker.append(el('option', { value: dataset.id, 'data-source': uploaded ? 'uploaded' : 'curated', text }));
  }
  const wanted = wantedId || new URLSearchParams(location.hash.slice(1)).get('dataset');
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
  show($('dataset-source'), false);
  $('dataset-tables').textContent = '';
  clear($('prompt-chips'));
  clear($('schema'));
  datasetStatus('');
  show($('upload-result'), false);
  renderActions();
}

/**
 * Choosing in the picker selects that dataset (and starts a new conversation);
 * Delete removes the chosen upload.
 */
export function wirePicker() {
  $('dataset-picker').addEventListener('change', (event) => {
    datasetStatus('');
    selectDataset(event.target.value, { keepThread: false });
  });
  $('dataset-delete').addEventListener('click', deleteChosen);
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
  renderActions();
  if (changed) loadSchema(dataset.id);
}

/** Whether the caller may delete `dataset`: an upload of theirs, or any upload for the admin and the single user. */
function mayDelete(dataset) {
  const me = state.me;
  if (dataset.source !== 'uploaded' || !me) return false;
  return me.admin || me.kind === 'local' || dataset.owner === me.subject;
}

/** The top bar's Delete (for an upload the caller may delete) and Upload (unless the caller must sign in first). */
function renderActions() {
  const dataset = state.dataset;
  const deletable = Boolean(dataset) && mayDelete(dataset);
  const button = $('dataset-delete');
  show(button, deletable);
  if (deletable) button.title = `Delete the uploaded dataset ${dataset.id}`;
  const mayUpload = !(state.me && state.me.denied);
  show($('upload-toggle'), mayUpload);
  if (!mayUpload) openUpload(false);
}

/** What the top bar says of a deletion; `bad` for a refusal. */
function datasetStatus(text, bad) {
  const status = $('dataset-status');
  status.textContent = text;
  status.classList.toggle('bad', Boolean(bad));
}

async function deleteChosen() {
  const dataset = state.dataset;
  if (!dataset || !mayDelete(dataset)) return;
  const name = dataset.name && dataset.name !== dataset.id ? `${dataset.name} (${dataset.id})` : dataset.id;
  if (!window.confirm(`Delete the uploaded dataset ${name}? Its files are removed for good.`)) return;
  const button = $('dataset-delete');
  button.disabled = true;
  datasetStatus(`Deleting ${dataset.id}…`);
  let done = `Deleted ${dataset.id}.`;
  try {
    await apiDelete(`/datasets/${encodeURIComponent(dataset.id)}`);
  } catch (e) {
    if (e.status !== 404) {
      datasetStatus(`${dataset.id} was not deleted: ${e.message}`, true);
      return;
    }
    done = `${dataset.id} was deleted already.`;
  } finally {
    button.disabled = false;
  }
  await loadDatasets();
  datasetStatus(done);
  $('dataset-picker').focus();
}

/** Who uploaded the dataset, its size and when. */
function uploadWords(dataset) {
  const who = dataset.owner && state.me && dataset.owner === state.me.subject ? 'you' : dataset.owner;
  return [
    who ? `Uploaded by ${who}` : 'Uploaded',
    typeof dataset.size_bytes === 'number' ? formatBytes(dataset.size_bytes) : null,
    dataset.created_at ? relativeTime(dataset.created_at) : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

function renderAbout(dataset) {
  $('dataset-name').textContent = dataset.name || dataset.id;
  $('dataset-description').textContent = dataset.description || '';
  const uploaded = dataset.source === 'uploaded';
  $('dataset-source').textContent = uploaded ? uploadWords(dataset) : '';
  show($('dataset-source'), uploaded);
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

// Uploads: the panel the top bar's Upload opens.

const ID_PATTERN = /^[a-z0-9_-]{1,64}$/;
const TABLE_FILE = /\.(csv|parquet)$/i;

/** The chosen files, whether the id was typed (a new file no longer replaces it), the POST in flight. */
const upload = { files: [], idTyped: false, controller: null };

/** A file name as a dataset id: no extension, lower case, other characters as `_`, at most 64. */
function slug(name) {
  return name
    .replace(/\.[^.]*$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '_')
    .replace(/^[_-]+|[_-]+$/g, '')
    .slice(0, 64);
}

function openUpload(open) {
  show($('upload-panel'), open);
  $('upload-toggle').setAttribute('aria-expanded', open ? 'true' : 'false');
}

function uploadStatus(text) {
  $('upload-status').textContent = text;
}

/** The service's error (or the form's complaint, with no type) under the form; none hides it. */
function showUploadError(error) {
  const box = $('upload-error');
  clear(box);
  if (error && error.type) {
    const cut = error.type === 'NETWORK' ? ' An upload larger than the service accepts can also be cut off this way.' : '';
    appendAll(box, errorNodes(error.type, `${error.message}${cut}`));
  } else if (error) {
    box.append(el('span', { class: 'error-title', text: error.message }));
  }
  show(box, Boolean(error));
}

/** The files to upload (only .csv and .parquet ones), listed; the id from the first unless one was typed. */
function chooseFiles(list) {
  const all = Array.from(list || []);
  upload.files = all.filter((file) => TABLE_FILE.test(file.name));
  const skipped = all.filter((file) => !TABLE_FILE.test(file.name)).map((file) => file.name);
  const names = $('upload-file-list');
  clear(names);
  for (const file of upload.files) {
    const size = el('span', { class: 'muted', text: formatBytes(file.size) });
    names.append(el('li', null, el('span', { class: 'file-name', text: file.name }), ' ', size));
  }
  const idField = $('upload-id');
  if (upload.files.length && (!upload.idTyped || !idField.value.trim())) idField.value = slug(upload.files[0].name);
  showUploadError(null);
  show($('upload-result'), false);
  uploadStatus(skipped.length ? `Skipped ${skipped.join(', ')}: only .csv and .parquet files are tables.` : '');
}

function setUploading(busy) {
  for (const id of ['upload-files', 'upload-id', 'upload-description', 'upload-submit']) $(id).disabled = busy;
  show($('upload-cancel'), busy);
  show($('upload-progress'), busy);
  $('upload-form').setAttribute('aria-busy', busy ? 'true' : 'false');
}

/** The form's complaint before anything is sent, with the field to fix focused. */
function refuse(message, field) {
  uploadStatus('');
  showUploadError({ type: null, message });
  field.focus();
}

async function submitUpload(event) {
  event.preventDefault();
  if (upload.controller) return;
  const idField = $('upload-id');
  const id = idField.value.trim();
  idField.value = id;
  if (upload.files.length === 0) return refuse('Choose or drop at least one .csv or .parquet file.', $('upload-files'));
  if (!ID_PATTERN.test(id)) return refuse('The dataset id is 1 to 64 lower-case letters, digits, _ or -.', idField);
  const form = new FormData();
  form.append('id', id);
  const description = $('upload-description').value.trim();
  if (description) form.append('description', description);
  for (const file of upload.files) form.append('file', file, file.name);
  const bytes = upload.files.reduce((sum, file) => sum + file.size, 0);
  showUploadError(null);
  show($('upload-result'), false);
  upload.controller = new AbortController();
  setUploading(true);
  const sending = `${plural(upload.files.length, 'file', 'files')} (${formatBytes(bytes)})`;
  uploadStatus(`Uploading ${sending}; then the service reads every table and infers its columns' types…`);
  let dataset;
  try {
    dataset = await postForm('/datasets', form, upload.controller.signal);
  } catch (e) {
    if (e && e.name === 'AbortError') uploadStatus('Upload cancelled.');
    else {
      uploadStatus('');
      showUploadError(e);
    }
    return;
  } finally {
    upload.controller = null;
    setUploading(false);
  }
  resetUploadForm();
  uploadStatus(`Uploaded ${dataset.id}.`);
  renderUploaded(dataset);
  await loadDatasets(dataset.id);
}

function resetUploadForm() {
  upload.files = [];
  upload.idTyped = false;
  $('upload-form').reset();
  clear($('upload-file-list'));
}

/** The new dataset's tables as the service typed them (from the 201 body). */
function renderUploaded(dataset) {
  const box = $('upload-result');
  clear(box);
  const tables = Array.isArray(dataset.tables) ? dataset.tables : [];
  box.append(
    el(
      'p',
      { class: 'upload-done' },
      el('strong', { text: dataset.name || dataset.id }),
      ` is ready (${plural(tables.length, 'table', 'tables')}) and chosen above: ask away.`,
    ),
  );
  for (const table of tables) {
    const columns = Array.isArray(table.columns) ? table.columns : [];
    const counts = [
      typeof table.row_count === 'number' ? plural(table.row_count, 'row', 'rows') : null,
      plural(columns.length, 'column', 'columns'),
    ];
    const items = columns.map((c) =>
      el('li', null, el('span', { class: 'col-name', text: c.name }), ' ', el('span', { class: 'col-type', text: c.type })),
    );
    box.append(
      el(
        'div',
        { class: 'upload-table', 'data-table': table.name },
        el(
          'h3',
          { class: 'subtitle' },
          el('span', { class: 'col-name', text: table.name }),
          el('span', { class: 'muted small', text: counts.filter(Boolean).join(' · ') }),
        ),
        el('ul', { class: 'columns' }, items),
      ),
    );
  }
  show(box, true);
}

/** Files dropped on the zone are chosen; a file dropped beside it is not opened in place of the page. */
function wireDrop() {
  const zone = $('upload-drop');
  const hasFiles = (event) => Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes('Files');
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (event) => {
      if (!hasFiles(event) || upload.controller) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      zone.classList.add('dragging');
    });
  }
  zone.addEventListener('dragleave', (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    if (upload.controller || !event.dataTransfer) return;
    try {
      $('upload-files').files = event.dataTransfer.files;
    } catch (_) {
      // The list below still shows what was dropped.
    }
    chooseFiles(event.dataTransfer.files);
  });
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (event) => {
      if (!hasFiles(event) || event.defaultPrevented) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'none';
    });
  }
}

/** The top bar's Upload opens and closes the panel; the panel's files, id, Upload and Cancel. */
export function wireUpload() {
  $('upload-toggle').addEventListener('click', () => {
    const open = $('upload-panel').hidden;
    openUpload(open);
    if (open) $('upload-files').focus();
  });
  $('upload-files').addEventListener('change', (event) => chooseFiles(event.target.files));
  $('upload-id').addEventListener('input', (event) => {
    upload.idTyped = event.target.value.trim() !== '';
  });
  $('upload-form').addEventListener('submit', submitUpload);
  $('upload-cancel').addEventListener('click', () => {
    if (upload.controller) upload.controller.abort();
  });
  wireDrop();
}
