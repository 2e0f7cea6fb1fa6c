// The SQL and plan editors and their runs: running what the current editor holds
// (POST /runs) into the result panel, the example plan, Ctrl+Enter, and the actions
// under "What ran" (copy the SQL, edit and re-run it, edit the plan).
//
// May import: state.js, api.js, dom.js, format.js, result.js, tabs.js, history.js.

import { state } from './state.js';
import { api, postJson, readJson } from './api.js';
import { $ } from './dom.js';
import { columnKind } from './format.js';
import { beginResult, runView, showRequestError, showRun } from './result.js';
import { setMode } from './tabs.js';
import { refreshHistory } from './history.js';

export function setSql(sql) {
  $('sql-editor').value = sql || '';
  setMode('sql');
  $('sql-editor').focus();
}

async function insertPlanExample() {
  let example = null;
  try {
    const schema = await api('/schemas/plan');
    if (Array.isArray(schema.examples) && schema.examples.length > 0) example = schema.examples[0];
  } catch (_) {
    example = null;
  }
  if (!example) {
    const table = state.schema && state.schema.tables && state.schema.tables[0];
    const text = table && table.columns.find((c) => columnKind(c.type) === 'text');
    example = {
      table: table ? table.name : 'table',
      select: [{ column: text ? text.name : 'column' }, { agg: 'count', as: 'n' }],
      group_by: [text ? text.name : 'column'],
      order_by: [{ column: 'n', direction: 'desc' }],
      limit: 20,
    };
  }
  $('plan-editor').value = JSON.stringify(example, null, 2);
  $('plan-editor').focus();
}

async function copyText(text) {
  const done = (words) => {
    $('copy-state').textContent = words;
    setTimeout(() => {
      $('copy-state').textContent = '';
    }, 2000);
  };
  try {
    await navigator.clipboard.writeText(text);
    done('Copied.');
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($('shown-sql'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    done('Selected: press Ctrl+C (⌘+C) to copy.');
  }
}

export async function runCurrent() {
  if (state.running || !state.dataset) return;
  let body;
  if (state.mode === 'plan') {
    const text = $('plan-editor').value.trim();
    let plan;
    try {
      plan = JSON.parse(text);
    } catch (e) {
      showRequestError('PLAN_JSON', `The plan is not valid JSON: ${e.message}`);
      return;
    }
    body = { dataset_id: state.dataset.id, query_type: 'plan', plan };
  } else {
    setMode('sql');
    const sql = $('sql-editor').value;
    if (!sql.trim()) {
      showRequestError('INVALID_REQUEST', 'Write a query first.');
      $('sql-editor').focus();
      return;
    }
    body = { dataset_id: state.dataset.id, query_type: 'sql', sql };
  }
  state.running = true;
  $('run-sql').disabled = true;
  beginResult('Running…');
  try {
    const response = await postJson('/runs', body);
    const run = await readJson(response);
    showRun(runView(run));
  } catch (e) {
    showRequestError(e.type || 'NETWORK', e.message);
  } finally {
    state.running = false;
    $('run-sql').disabled = false;
    refreshHistory();
  }
}

/** The Run button, Ctrl+Enter (⌘+Enter) in the editors, the example plan, and the "What ran" actions. */
export function wireEditors() {
  $('run-sql').addEventListener('click', runCurrent);
  for (const id of ['sql-editor', 'plan-editor']) {
    $(id).addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        runCurrent();
      }
    });
  }
  $('plan-example').addEventListener('click', insertPlanExample);

  $('copy-sql').addEventListener('click', () => copyText($('shown-sql').textContent));
  $('edit-sql').addEventListener('click', () => {
    setSql(state.shown ? state.shown.sql : '');
    $('sql-editor').scrollIntoView({ block: 'nearest' });
  });
  $('edit-plan').addEventListener('click', () => {
    if (!state.shown || !state.shown.plan) return;
    $('plan-editor').value = JSON.stringify(state.shown.plan, null, 2);
    setMode('plan');
    $('plan-editor').focus();
  });
}
