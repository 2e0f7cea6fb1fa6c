// The result panel (#result-panel): the view of a run made from the API's run record,
// and its display: status badge, error, row count, timings, CSV link, chart, table and
// "What ran" (metadata, plan, SQL, attempts). Also redraws the chart on resize, and
// follows the panel's links to the service (the CSV, a run's record) with the token
// when one is set: a plain link could not carry its header.
//
// May import: state.js, api.js, dom.js, format.js, words.js, chart.js, table.js.

import { state } from './state.js';
import { api, fetchBlob, getToken } from './api.js';
import { $, el, appendAll, clear, show } from './dom.js';
import { formatMs, plural } from './format.js';
import { STATUS_WORDS, errorNodes } from './words.js';
import { renderChart } from './chart.js';
import { renderTable } from './table.js';

/** The parts of a run the panel shows, from `POST /runs` or `GET /runs/{id}`. */
export function runView(run) {
  const details = run.details || {};
  return {
    runId: run.run_id || null,
    status: run.status || 'failed',
    result: run.result || null,
    error: (run.result && run.result.error) || run.error || null,
    datasetId: details.dataset_id || run.dataset_id || null,
    versionHash: details.dataset_version_hash || null,
    queryType: details.query_type || 'sql',
    sql: details.sql || '',
    sqlTruncated: details.sql_truncated === true,
    plan: details.plan || null,
    queuedMs: details.queued_ms,
    totalMs: details.total_ms,
    attempts: null,
    turnStatus: null,
  };
}

/** Clears the result panel and says what is happening. */
export function beginResult(words) {
  const panel = $('result-panel');
  panel.dataset.state = 'running';
  panel.dataset.runId = '';
  panel.dataset.status = 'running';
  state.shown = null;
  setBadge('running', words);
  $('row-count').textContent = '';
  $('timings').textContent = '';
  show($('download-csv'), false);
  $('link-state').textContent = '';
  show($('error'), false);
  clear($('error'));
  show($('truncated'), false);
  renderChart(null);
  clear($('result-table'));
  show($('table-wrap'), false);
  show($('what-ran'), false);
}

function setBadge(status, words) {
  const badge = $('run-status');
  badge.className = `badge ${status}`;
  badge.textContent = words || STATUS_WORDS[status] || status;
}

/** Empties the result panel and hides it, as when the page opened. */
export function clearResult() {
  beginResult('');
  const panel = $('result-panel');
  panel.dataset.state = 'idle';
  panel.dataset.status = '';
}

/** An error that is not a run (a 4xx or 5xx, a network failure, bad plan JSON). */
export function showRequestError(type, message) {
  const panel = $('result-panel');
  panel.dataset.state = 'done';
  panel.dataset.status = 'error';
  setBadge('failed', 'Not run');
  const box = $('error');
  clear(box);
  appendAll(box, errorNodes(type, message));
  show(box, true);
}

/** Shows a run: its status, error, chart, rows and what ran. */
export function showRun(view) {
  state.shown = view;
  const panel = $('result-panel');
  panel.dataset.state = 'rendering';
  const result = view.result;
  setBadge(view.turnStatus || view.status);

  const error = view.error;
  const box = $('error');
  clear(box);
  if (error) appendAll(box, errorNodes(error.type, error.message));
  else if (view.status !== 'succeeded' && !result) appendAll(box, errorNodes(null, `The run is ${view.status}.`));
  show(box, box.firstChild !== null);

  if (result && !result.error) {
    const rows = Array.isArray(result.rows) ? result.rows : [];
    const count = typeof result.row_count === 'number' ? result.row_count : rows.length;
    $('row-count').textContent = plural(count, 'row', 'rows');
    const truncated = $('truncated');
    truncated.textContent = result.truncated
      ? `Only the first ${plural(count, 'row is', 'rows are')} shown: the result was cut at the service\u2019s row limit (MAX_ROWS) or output cap. Aggregate or add a LIMIT to see all of it.`
      : '';
    show(truncated, result.truncated === true);
    renderTable(result);
    renderChart(result);
  } else {
    $('row-count').textContent = '';
    show($('truncated'), false);
    renderChart(null);
    clear($('result-table'));
    show($('table-wrap'), false);
  }
  $('timings').textContent = timingWords(view);

  const download = $('download-csv');
  if (view.runId && view.status === 'succeeded' && result && !result.error) {
    download.href = `/runs/${encodeURIComponent(view.runId)}/result.csv`;
    download.setAttribute('download', `run-${view.runId}.csv`);
    show(download, true);
  } else {
    download.removeAttribute('href');
    show(download, false);
  }
  renderWhatRan(view);
  panel.dataset.runId = view.runId || '';
  panel.dataset.status = view.turnStatus || view.status;
  panel.dataset.state = 'done';
}

function timingWords(view) {
  const parts = [];
  const result = view.result;
  if (result && typeof result.exec_time_ms === 'number' && view.status !== 'rejected') parts.push(`${formatMs(result.exec_time_ms)} in the sandbox`);
  const total = formatMs(view.totalMs);
  if (total) parts.push(`${total} in all`);
  const queued = formatMs(view.queuedMs);
  if (queued && view.queuedMs >= 1) parts.push(`${queued} queued`);
  return parts.join(' · ');
}

function renderWhatRan(view) {
  const meta = $('run-meta');
  clear(meta);
  const add = (label, value) => {
    if (value === null || value === undefined || value === '') return;
    meta.append(el('dt', { text: label }), el('dd', null, value));
  };
  if (view.runId) {
    add('Run', el('a', { href: `/runs/${encodeURIComponent(view.runId)}`, target: '_blank', rel: 'noopener', 'data-testid': 'run-link', text: view.runId }));
  }
  add('Dataset', view.datasetId);
  add('Version', view.versionHash);
  add('Query type', view.queryType);
  add('Status', STATUS_WORDS[view.status] || view.status);

  const planBlock = $('shown-plan-block');
  if (view.plan) {
    $('shown-plan').textContent = JSON.stringify(view.plan, null, 2);
    show(planBlock, true);
  } else {
    $('shown-plan').textContent = '';
    show(planBlock, false);
  }
  show($('edit-plan'), Boolean(view.plan));
  $('shown-sql').textContent = view.sql || '';
  show($('shown-sql'), Boolean(view.sql));
  show($('copy-sql'), Boolean(view.sql));
  show($('edit-sql'), Boolean(view.sql));
  if (view.sqlTruncated) add('Note', 'The stored SQL is a prefix of a longer query.');

  const attempts = $('attempts');
  clear(attempts);
  const list = Array.isArray(view.attempts) ? view.attempts : [];
  for (const attempt of list) {
    attempts.append(
      el(
        'li',
        null,
        attempt.run_id
          ? el('a', { href: `/runs/${encodeURIComponent(attempt.run_id)}`, target: '_blank', rel: 'noopener', text: String(attempt.run_id).slice(0, 8) })
          : 'no run',
        ' ',
        el('span', { class: `status-${attempt.status}`, text: STATUS_WORDS[attempt.status] || String(attempt.status || '') }),
        attempt.error_type ? ` (${attempt.error_type})` : '',
      ),
    );
  }
  show($('attempts-block'), list.length > 0);
  show($('what-ran'), Boolean(view.sql || view.plan || view.runId));
}

/** Fills the version hash and timings of a chat turn's run from its record. */
export async function enrichRun(view) {
  try {
    const full = runView(await api(`/runs/${encodeURIComponent(view.runId)}`));
    if (state.shown !== view) return;
    view.versionHash = full.versionHash;
    view.totalMs = full.totalMs;
    view.queuedMs = full.queuedMs;
    view.datasetId = full.datasetId || view.datasetId;
    if (!view.sql) view.sql = full.sql;
    renderWhatRan(view);
    $('timings').textContent = timingWords(view);
  } catch (_) {
    // The turn's own data is already shown.
  }
}

/**
 * With a token, a click on a link of the panel to the service (Download CSV, a run's
 * record) fetches it with the token instead: the CSV is saved under the link's
 * `download` name, a record opens in a new tab. Without one the links work as links.
 */
export function wireServiceLinks() {
  $('result-panel').addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[href^="/runs/"]') : null;
    if (!link || !getToken() || event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    followWithToken(link);
  });
}

async function followWithToken(link) {
  const note = $('link-state');
  const name = link.getAttribute('download');
  note.textContent = name ? 'Downloading…' : 'Opening…';
  let blob;
  try {
    blob = await fetchBlob(link.getAttribute('href'));
  } catch (e) {
    note.textContent = `${name ? 'The download' : 'The record'} failed: ${e.message} (${e.type})`;
    return;
  }
  note.textContent = '';
  const url = URL.createObjectURL(blob);
  const temporary = el('a', { href: url, hidden: true });
  if (name) temporary.setAttribute('download', name);
  else temporary.setAttribute('target', '_blank');
  document.body.append(temporary);
  temporary.click();
  temporary.remove();
  // The download or the new tab has the blob by then.
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** Redraws the shown run's chart at the new width, once the window stops resizing. */
export function wireResize() {
  window.addEventListener('resize', () => {
    clearTimeout(state.resizeTimer);
    state.resizeTimer = setTimeout(() => {
      if (state.shown) renderChart(state.shown.result);
    }, 150);
  });
}
