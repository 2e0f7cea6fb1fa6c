// csv-analyst's page: pick a dataset, ask in words or write SQL (or a plan), and see
// the rows, a chart chosen by fixed rules, and exactly what ran.
//
// Plain browser JavaScript, no framework and no build step; served from the binary
// under a strict Content-Security-Policy. Every string that comes from a dataset, a
// model or a user reaches the document through textContent, Text nodes or
// setAttribute, never as HTML. Charts are SVG drawn here: no code from anywhere else
// ever runs.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const state = {
    datasets: [],
    dataset: null, // the chosen dataset (from GET /datasets)
    schema: null, // its GET /datasets/{id}/schema
    llmConfigured: false,
    threadId: null,
    mode: 'sql',
    modeChosen: false, // the user picked a tab: readiness no longer picks one
    chat: null, // { controller } while a turn streams
    running: false, // a POST /runs is in flight
    shown: null, // the run view in the result panel
    resizeTimer: 0,
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  /** An element with properties and children; strings become Text nodes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    setProps(node, props);
    appendAll(node, children);
    return node;
  }

  /** An SVG element; attributes through setAttribute only. */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    appendAll(node, children);
    return node;
  }

  function setProps(node, props) {
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
  }

  function appendAll(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  // ---------------------------------------------------------------- formatting

  const integerFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 4 });
  const compactFormat = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });

  function formatNumber(value) {
    if (typeof value !== 'number' || !Number.isFinite(value)) return String(value);
    return Number.isInteger(value) ? integerFormat.format(value) : numberFormat.format(value);
  }

  function formatTick(value) {
    return Math.abs(value) >= 10000 ? compactFormat.format(value) : numberFormat.format(value);
  }

  function plural(n, one, many) {
    return `${formatNumber(n)} ${n === 1 ? one : many}`;
  }

  function formatMs(ms) {
    if (typeof ms !== 'number' || !Number.isFinite(ms)) return null;
    return ms < 10 ? `${ms.toFixed(1)} ms` : ms < 10000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  function relativeTime(text) {
    const when = Date.parse(text);
    if (!Number.isFinite(when)) return text || '';
    const seconds = Math.round((Date.now() - when) / 1000);
    if (seconds < 60) return 'just now';
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return new Date(when).toISOString().slice(0, 10);
  }

  /** A cell's text: null for SQL NULL, JSON for nested values, else as sent. */
  function cellText(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  // Column kinds from SQL (and Arrow) type names.
  function columnKind(type) {
    const t = String(type || '').trim().toUpperCase();
    if (/^(DATE|TIMESTAMP)/.test(t)) return 'time';
    if (/^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|U?INT\d+|FLOAT\d*|DOUBLE|REAL|DECIMAL|NUMERIC)\b/.test(t)) {
      return 'number';
    }
    if (/^(U?INT|FLOAT|DECIMAL)\d/.test(t)) return 'number';
    if (/^(VARCHAR|CHAR|TEXT|STRING|UTF8|LARGEUTF8|UTF8VIEW|BOOLEAN|BOOL)/.test(t)) return 'text';
    return 'other';
  }

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(type, message, status) {
      super(message);
      this.type = type;
      this.status = status;
    }
  }

  /** JSON from the service; an ApiError with the service's type and message otherwise. */
  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError('NETWORK', `The service could not be reached (${e && e.message ? e.message : e}).`, 0);
    }
    return readJson(response);
  }

  async function readJson(response) {
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error;
      throw new ApiError(
        (error && error.type) || `HTTP_${response.status}`,
        (error && error.message) || `The service answered ${response.status}: ${text.slice(0, 300)}`,
        response.status,
      );
    }
    if (body === null) throw new ApiError('INVALID_RESPONSE', 'The service answered with something that is not JSON.', response.status);
    return body;
  }

  function postJson(path, body, signal) {
    return fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  }

  // ---------------------------------------------------------------- errors in words

  const ERROR_WORDS = {
    SQL_NOT_ALLOWED: 'Refused by the SQL policy: only one read-only query over this dataset may run.',
    UNKNOWN_TABLE: 'Refused: the query reads a table this dataset does not have.',
    SQL_PARSE_ERROR: 'The SQL does not parse.',
    SQL_PLAN_ERROR: 'The query names a column, table or function that does not exist, or mixes types.',
    SQL_EXECUTION_ERROR: 'The query failed while it ran.',
    TIMEOUT: 'The query ran past its time limit.',
    MEMORY_LIMIT: 'The query needed more memory than a run may use.',
    OUTPUT_LIMIT: 'The result was larger than a run may return.',
    INVALID_REQUEST: 'The request is not valid.',
    INVALID_JSON: 'The request is not valid JSON.',
    INVALID_PLAN: 'The plan is not valid.',
    PLAN_JSON: 'The plan is not valid JSON.',
    DATASET_ERROR: 'A file of the dataset could not be read.',
    SANDBOX_ERROR: 'The sandbox could not run the query.',
    INTERNAL: 'The sandbox stopped unexpectedly.',
    CAPACITY_EXCEEDED: 'The service is busy; try again in a moment.',
    SANDBOX_NOT_READY: 'The sandbox is still starting; try again in a moment.',
    STORE_UNAVAILABLE: 'The run store is unavailable.',
    UNKNOWN_DATASET: 'This dataset does not exist (any more).',
    RUN_NOT_FOUND: 'This run is not in the store.',
    NOT_FOUND: 'Not found.',
    PAYLOAD_TOO_LARGE: 'The request is too large.',
    LLM_NOT_CONFIGURED: 'No language model is configured.',
    LLM_AUTH_ERROR: 'The language model refused the service\u2019s credentials.',
    LLM_TIMEOUT: 'The language model did not answer in time.',
    LLM_ERROR: 'The language model failed.',
    AGENT_STEP_LIMIT: 'The agent used up its steps before it had an answer.',
    THREAD_DATASET_CONFLICT: 'This conversation belongs to another dataset: start a new one.',
    THREAD_NOT_FOUND: 'This conversation is not in the store (any more).',
    LLM_RATE_LIMITED: 'The language model is rate-limiting the service; try again shortly.',
    LLM_UNAVAILABLE: 'The language model could not be reached.',
    LLM_BAD_REQUEST: 'The language model refused the request.',
    LLM_BAD_RESPONSE: 'The language model answered with something unusable.',
    TOOL_ERROR: 'A step of the agent failed.',
    CANCELLED: 'The turn was cancelled.',
    UNSUPPORTED_MEDIA_TYPE: 'The request was not sent as JSON.',
    METHOD_NOT_ALLOWED: 'The service does not accept this request.',
    STREAM_CUT: 'The answer stopped before it was complete.',
    NETWORK: 'The service could not be reached.',
  };

  const STATUS_WORDS = {
    succeeded: 'Succeeded',
    failed: 'Failed',
    rejected: 'Refused by policy',
    timed_out: 'Timed out',
    cancelled: 'Cancelled',
    running: 'Running',
    interrupted: 'Interrupted',
  };

  function errorWords(type) {
    return ERROR_WORDS[type] || 'The request failed.';
  }

  /** Title, message and type of an error, as nodes. */
  function errorNodes(type, message) {
    return [
      el('span', { class: 'error-title', text: errorWords(type) }),
      message ? el('span', { class: 'error-message', text: message }) : null,
      type ? el('span', { class: 'error-type', text: type }) : null,
    ];
  }

  // ---------------------------------------------------------------- start-up

  async function start() {
    wireControls();
    setMode('sql', { auto: true });
    loadReadiness();
    try {
      const body = await api('/datasets');
      state.datasets = Array.isArray(body.datasets) ? body.datasets : [];
    } catch (e) {
      $('dataset-name').textContent = 'The datasets could not be loaded';
      $('dataset-description').textContent = `${e.type}: ${e.message}`;
      return;
    }
    const picker = $('dataset-picker');
    clear(picker);
    for (const dataset of state.datasets) {
      picker.append(el('option', { value: dataset.id, text: `${dataset.name || dataset.id} (${dataset.id})` }));
    }
    const wanted = new URLSearchParams(location.hash.slice(1)).get('dataset');
    const first = state.datasets.find((d) => d.id === wanted) || state.datasets[0];
    if (first) selectDataset(first.id, { keepThread: false });
    else $('dataset-name').textContent = 'No datasets are registered';
    refreshHistory();
  }

  async function loadReadiness() {
    const readyPill = $('ready-status');
    let body = null;
    let ready = false;
    try {
      const response = await fetch('/readyz', { headers: { Accept: 'application/json' } });
      ready = response.ok;
      body = await response.json().catch(() => null);
    } catch (_) {
      body = null;
    }
    readyPill.className = ready ? 'pill ok' : 'pill warn';
    readyPill.textContent = ready ? 'Sandbox ready' : body ? 'Sandbox starting…' : 'Service unreachable';
    if (body && !ready && body.reason) readyPill.title = String(body.reason);
    const llm = (body && body.llm) || {};
    state.llmConfigured = llm.configured === true;
    const llmPill = $('llm-status');
    if (state.llmConfigured) {
      llmPill.className = 'pill ok';
      const where = llm.base_url_host ? ` @ ${llm.base_url_host}` : '';
      llmPill.textContent = `Model: ${llm.model || '?'} (${llm.provider || '?'}${where})`;
    } else {
      llmPill.className = 'pill warn';
      llmPill.textContent = body ? 'No model configured' : '';
    }
    renderLlmNotice(body !== null);
    if (state.llmConfigured && !state.modeChosen) setMode('ask', { auto: true });
    if (!ready) setTimeout(loadReadiness, 2000);
  }

  function renderLlmNotice(known) {
    const notice = $('llm-notice');
    clear(notice);
    if (state.llmConfigured || !known) {
      show(notice, false);
      return;
    }
    notice.append(
      'No language model is configured, so questions in words cannot be answered. To add one, restart the service with ',
      el('code', { text: 'OPENAI_API_KEY' }),
      ' (or ',
      el('code', { text: 'OPENAI_BASE_URL' }),
      ' pointing at a local OpenAI-compatible server such as Ollama or llama-server) or ',
      el('code', { text: 'ANTHROPIC_API_KEY' }),
      '. Meanwhile the SQL and Plan tabs work fully, and a message that starts with ',
      el('code', { text: 'SQL:' }),
      ' runs that SQL here.',
    );
    show(notice, true);
  }

  // ---------------------------------------------------------------- datasets and schema

  function selectDataset(id, { keepThread }) {
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

  function sampleTable(columns, rows) {
    if (rows.length === 0) return null;
    const head = el('tr', null, columns.map((c) => el('th', { text: c.name })));
    const body = rows.map((row) => el('tr', null, columns.map((c, i) => valueCell(row[i], columnKind(c.type) === 'number'))));
    return el(
      'div',
      { class: 'samples', 'data-testid': 'sample-rows' },
      el('table', null, el('thead', null, head), el('tbody', null, body)),
    );
  }

  function quoteIdent(name) {
    return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${String(name).replace(/"/g, '""')}"`;
  }

  // ---------------------------------------------------------------- modes and keys

  function setMode(mode, options) {
    if (!(options && options.auto)) state.modeChosen = true;
    state.mode = mode;
    for (const tab of document.querySelectorAll('.tabs [role="tab"]')) {
      const selected = tab.dataset.mode === mode;
      tab.setAttribute('aria-selected', selected ? 'true' : 'false');
      tab.tabIndex = selected ? 0 : -1;
    }
    show($('pane-ask'), mode === 'ask');
    show($('pane-sql'), mode === 'sql');
    show($('pane-plan'), mode === 'plan');
    show($('run-actions'), mode !== 'ask');
    $('run-sql').textContent = mode === 'plan' ? 'Run plan' : 'Run';
  }

  function wireControls() {
    $('dataset-picker').addEventListener('change', (event) => selectDataset(event.target.value, { keepThread: false }));
    const tabs = Array.from(document.querySelectorAll('.tabs [role="tab"]'));
    tabs.forEach((tab, index) => {
      tab.addEventListener('click', () => {
        setMode(tab.dataset.mode);
        focusEditor();
      });
      tab.addEventListener('keydown', (event) => {
        if (event.key !== 'ArrowRight' && event.key !== 'ArrowLeft') return;
        const next = tabs[(index + (event.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
        setMode(next.dataset.mode);
        next.focus();
        event.preventDefault();
      });
    });

    $('chat-form').addEventListener('submit', (event) => {
      event.preventDefault();
      if (state.chat) {
        state.chat.controller.abort();
        return;
      }
      sendChat($('chat-input').value);
    });
    $('chat-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        if (!state.chat) sendChat($('chat-input').value);
      }
    });
    $('new-thread').addEventListener('click', () => {
      newThread();
      $('chat-input').focus();
    });

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

    window.addEventListener('resize', () => {
      clearTimeout(state.resizeTimer);
      state.resizeTimer = setTimeout(() => {
        if (state.shown) renderChart(state.shown.result);
      }, 150);
    });
  }

  function focusEditor() {
    if (state.mode === 'ask') $('chat-input').focus();
    else if (state.mode === 'sql') $('sql-editor').focus();
    else $('plan-editor').focus();
  }

  function setSql(sql) {
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

  // ---------------------------------------------------------------- SQL and plan runs

  async function runCurrent() {
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

  /** The parts of a run the panel shows, from `POST /runs` or `GET /runs/{id}`. */
  function runView(run) {
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
  function beginResult(words) {
    const panel = $('result-panel');
    panel.dataset.state = 'running';
    panel.dataset.runId = '';
    panel.dataset.status = 'running';
    state.shown = null;
    setBadge('running', words);
    $('row-count').textContent = '';
    $('timings').textContent = '';
    show($('download-csv'), false);
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

  /** An error that is not a run (a 4xx or 5xx, a network failure, bad plan JSON). */
  function showRequestError(type, message) {
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
  function showRun(view) {
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

  function valueCell(value, numeric) {
    const text = cellText(value);
    if (text === null) return el('td', { class: numeric ? 'num' : null }, el('span', { class: 'null', text: 'NULL' }));
    if (text === '') return el('td', { class: 'empty', title: 'empty string' });
    const isNumber = numeric || typeof value === 'number';
    return el('td', { class: isNumber ? 'num' : null, title: text.length > 60 ? text : null, text });
  }

  function renderTable(result) {
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

  // ---------------------------------------------------------------- charts

  /** The chart the rules give for a result: bar, line, number, or none. */
  function chartFor(result) {
    if (!result || result.error) return { kind: 'none' };
    const columns = Array.isArray(result.columns) ? result.columns : [];
    const rows = Array.isArray(result.rows) ? result.rows : [];
    const kinds = columns.map((_, i) => columnKind((result.column_types || [])[i]));
    if (rows.length === 0) return { kind: 'none' };
    if (columns.length === 1 && rows.length === 1 && kinds[0] === 'number') return { kind: 'number', column: 0 };
    if (columns.length === 2) {
      const text = kinds.indexOf('text');
      const number = kinds.indexOf('number');
      if (text !== -1 && number !== -1) return { kind: 'bar', label: text, value: number };
    }
    const times = kinds.filter((k) => k === 'time').length;
    const numbers = kinds.filter((k) => k === 'number').length;
    if (times === 1 && numbers >= 1 && times + numbers === columns.length && rows.length >= 2) {
      const time = kinds.indexOf('time');
      const points = rows.map((row) => parseTime(row[time]));
      if (points.every(Number.isFinite)) {
        return { kind: 'line', time, series: kinds.map((k, i) => (k === 'number' ? i : -1)).filter((i) => i >= 0), points };
      }
    }
    return { kind: 'none' };
  }

  function parseTime(value) {
    if (value === null || value === undefined) return NaN;
    let text = String(value).trim();
    if (/^\d{4}-\d{2}-\d{2}$/.test(text)) text += 'T00:00:00Z';
    else if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) text = `${text.replace(' ', 'T')}Z`;
    return Date.parse(text);
  }

  function numeric(value) {
    if (typeof value === 'number') return value;
    if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
    return null;
  }

  function renderChart(result) {
    const box = $('chart');
    clear(box);
    const chart = chartFor(result);
    box.dataset.kind = chart.kind;
    if (chart.kind === 'none') {
      show(box, false);
      return;
    }
    show(box, true);
    const width = Math.max(280, Math.floor(box.clientWidth || $('result-panel').clientWidth - 32 || 600));
    if (chart.kind === 'number') {
      const value = result.rows[0][0];
      const number = numeric(value);
      box.append(
        el(
          'div',
          { class: 'big-number', 'data-testid': 'big-number' },
          el('div', { class: 'value', text: number === null ? String(cellText(value) ?? 'NULL') : formatNumber(number) }),
          el('div', { class: 'label', text: String(result.columns[0]) }),
        ),
      );
    } else if (chart.kind === 'bar') {
      box.append(barChart(result, chart, width));
    } else {
      box.append(lineChart(result, chart, width));
    }
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) hi = lo + 1;
    const rough = (hi - lo) / count;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const norm = rough / magnitude;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
    const ticks = [];
    for (let v = Math.floor(lo / step) * step; v <= Math.ceil(hi / step) * step + step / 2; v += step) {
      ticks.push(Number(v.toPrecision(12)));
    }
    return ticks;
  }

  function truncateLabel(text, max) {
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  function barChart(result, chart, width) {
    const rows = result.rows;
    const labels = rows.map((row) => cellText(row[chart.label]) ?? 'NULL');
    const values = rows.map((row) => numeric(row[chart.value]));
    const finite = values.map((v) => (v === null ? 0 : v));
    const lo = Math.min(0, ...finite);
    const hi = Math.max(0, ...finite);
    const ticks = niceTicks(lo, hi, width < 500 ? 3 : 5);
    const domainLo = ticks[0];
    const domainHi = ticks[ticks.length - 1];
    const maxChars = Math.max(6, Math.floor((width * 0.32) / 7));
    const longest = Math.max(...labels.map((l) => Math.min(l.length, maxChars)));
    const labelWidth = Math.min(Math.max(48, longest * 7 + 10), width * 0.34);
    const valueRoom = 64;
    const barHeight = 20;
    const gap = 6;
    const top = 6;
    const axis = 22;
    const plot = Math.max(60, width - labelWidth - valueRoom - 8);
    const height = top + rows.length * (barHeight + gap) + axis;
    const x = (v) => labelWidth + 8 + ((v - domainLo) / (domainHi - domainLo)) * plot;
    const bottom = height - axis;

    const root = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': `Bar chart of ${result.columns[chart.value]} by ${result.columns[chart.label]}`,
      'data-testid': 'bar-chart',
    });
    for (const tick of ticks) {
      root.append(svg('line', { class: 'grid', x1: x(tick), x2: x(tick), y1: top, y2: bottom }));
      root.append(svg('text', { x: x(tick), y: bottom + 15, 'text-anchor': 'middle' }, formatTick(tick)));
    }
    root.append(svg('line', { class: 'axis', x1: x(0), x2: x(0), y1: top, y2: bottom }));
    rows.forEach((_, i) => {
      const y = top + i * (barHeight + gap);
      const v = finite[i];
      const start = Math.min(x(0), x(v));
      const shown = values[i] === null ? 'NULL' : formatNumber(values[i]);
      root.append(
        svg(
          'rect',
          {
            class: v < 0 ? 'bar negative' : 'bar',
            x: start.toFixed(2),
            y,
            width: Math.abs(x(v) - x(0)).toFixed(2),
            height: barHeight,
            rx: 2,
            'data-label': labels[i],
            'data-value': values[i] === null ? 'null' : String(values[i]),
          },
          svg('title', null, `${labels[i]}: ${shown}`),
        ),
      );
      root.append(
        svg('text', { class: 'label', x: labelWidth, y: y + barHeight / 2 + 4, 'text-anchor': 'end' }, truncateLabel(labels[i], maxChars)),
      );
      root.append(svg('text', { class: 'value', x: Math.max(x(0), x(v)) + 5, y: y + barHeight / 2 + 4 }, shown));
    });
    return root;
  }

  function formatTime(ms, spanMs) {
    const iso = new Date(ms).toISOString();
    return spanMs < 2 * 86400000 ? iso.slice(0, 16).replace('T', ' ') : iso.slice(0, 10);
  }

  function lineChart(result, chart, width) {
    const order = chart.points.map((t, i) => [t, i]).sort((a, b) => a[0] - b[0]);
    const times = order.map(([t]) => t);
    const series = chart.series.map((column) => ({
      name: String(result.columns[column]),
      values: order.map(([, i]) => numeric(result.rows[i][column])),
    }));
    const all = series.flatMap((s) => s.values).filter((v) => v !== null);
    const lo = Math.min(0, ...all);
    const hi = Math.max(0, ...all);
    const ticks = niceTicks(lo, hi, 4);
    const domainLo = ticks[0];
    const domainHi = ticks[ticks.length - 1];
    const left = 56;
    const right = 16;
    const legend = 22;
    const top = legend + 8;
    const plotHeight = 200;
    const bottom = top + plotHeight;
    const height = bottom + 26;
    const t0 = times[0];
    const t1 = times[times.length - 1];
    const span = Math.max(1, t1 - t0);
    const x = (t) => left + ((t - t0) / span) * (width - left - right);
    const y = (v) => bottom - ((v - domainLo) / (domainHi - domainLo)) * plotHeight;

    const root = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': `Line chart of ${series.map((s) => s.name).join(', ')} over ${result.columns[chart.time]}`,
      'data-testid': 'line-chart',
    });
    for (const tick of ticks) {
      root.append(svg('line', { class: 'grid', x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
      root.append(svg('text', { x: left - 6, y: y(tick) + 4, 'text-anchor': 'end' }, formatTick(tick)));
    }
    const xTicks = Math.min(times.length, width < 500 ? 3 : 6);
    for (let i = 0; i < xTicks; i++) {
      const t = xTicks === 1 ? t0 : t0 + (span * i) / (xTicks - 1);
      const anchor = i === 0 ? 'start' : i === xTicks - 1 ? 'end' : 'middle';
      root.append(svg('text', { x: x(t), y: bottom + 16, 'text-anchor': anchor }, formatTime(t, span)));
    }
    root.append(svg('line', { class: 'axis', x1: left, x2: width - right, y1: bottom, y2: bottom }));
    series.forEach((s, index) => {
      const color = `series-${index % 6}`;
      let d = '';
      let pen = 'M';
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = 'M';
          return;
        }
        d += `${pen}${x(times[i]).toFixed(1)},${y(v).toFixed(1)} `;
        pen = 'L';
      });
      root.append(svg('path', { class: `series ${color}`, d: d.trim() || 'M0,0', 'data-series': s.name }));
      if (times.length <= 60) {
        s.values.forEach((v, i) => {
          if (v === null) return;
          root.append(
            svg('circle', { class: `point ${color}`, cx: x(times[i]).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, svg('title', null, `${s.name} ${formatTime(times[i], span)}: ${formatNumber(v)}`)),
          );
        });
      }
      const legendX = left + index * Math.max(110, Math.floor((width - left) / Math.max(1, series.length)));
      root.append(svg('circle', { class: `point ${color}`, cx: legendX + 5, cy: 10, r: 5 }));
      root.append(svg('text', { class: 'label', x: legendX + 14, y: 14 }, truncateLabel(s.name, 24)));
    });
    return root;
  }

  // ---------------------------------------------------------------- chat

  function newThread() {
    if (state.chat) state.chat.controller.abort();
    state.threadId = null;
    clear($('conversation'));
    $('chat-stage').textContent = '';
  }

  function askPrompt(prompt) {
    setMode('ask');
    if (!state.llmConfigured) {
      $('chat-input').value = prompt;
      $('chat-input').focus();
      $('llm-notice').scrollIntoView({ block: 'nearest' });
      return;
    }
    if (state.chat) return;
    sendChat(prompt);
  }

  const STAGE_WORDS = {
    preparing: 'Reading the dataset…',
    thinking: 'Thinking…',
    planning: 'Planning…',
    calling_model: 'Asking the model…',
    model: 'Asking the model…',
    running_sql: 'Running SQL…',
    running_query: 'Running the query…',
    running_plan: 'Running the plan…',
    describing_column: 'Looking at a column…',
    answering: 'Writing the answer…',
    summarizing: 'Writing the answer…',
  };

  function stageWords(stage) {
    const key = String(stage || '');
    return STAGE_WORDS[key] || `${key.replace(/_/g, ' ')}…`;
  }

  /** A user bubble and the assistant bubble its answer streams into. */
  function appendTurn(message) {
    const conversation = $('conversation');
    conversation.append(el('div', { class: 'msg user', 'data-testid': 'user-message', text: message }));
    const stage = el('div', { class: 'stage', text: 'Sending…' });
    const steps = el('ul', { class: 'steps' });
    const text = el('div', { class: 'answer-text', 'data-testid': 'answer', 'data-state': 'streaming' });
    const warnings = el('ul', { class: 'warnings', 'data-testid': 'warnings' });
    const errorBox = el('div', { class: 'chat-error', 'data-testid': 'chat-error', hidden: true });
    const foot = el('div', { class: 'turn-foot' });
    const bubble = el('div', { class: 'msg assistant' }, stage, steps, text, warnings, errorBox, foot);
    conversation.append(bubble);
    conversation.scrollTop = conversation.scrollHeight;
    return { bubble, stage, steps, text, warnings, errorBox, foot, tokens: 0, finished: false };
  }

  function assistantBubble(content, runId) {
    const text = el('div', { class: 'answer-text', 'data-testid': 'answer', 'data-state': 'done', text: content });
    const foot = el('div', { class: 'turn-foot' });
    if (runId) foot.append(el('button', { type: 'button', class: 'link', text: 'Show its result', onclick: () => loadRun(runId) }));
    return el('div', { class: 'msg assistant' }, text, foot);
  }

  function showChatError(turn, type, message) {
    clear(turn.errorBox);
    turn.errorBox.append(el('strong', { text: errorWords(type) }), ' ', message || '', type ? ` (${type})` : '');
    show(turn.errorBox, true);
  }

  async function sendChat(raw) {
    const message = String(raw || '').trim();
    if (!message || state.chat || !state.dataset) return;
    setMode('ask');
    $('chat-input').value = '';
    const turn = appendTurn(message);
    const controller = new AbortController();
    state.chat = { controller };
    $('chat-send').textContent = 'Stop';
    $('chat-stage').textContent = 'Answering… (Stop cancels)';
    const body = { dataset_id: state.dataset.id, message };
    if (state.threadId) body.thread_id = state.threadId;
    try {
      const response = await fetch('/chat/stream', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const type = response.headers.get('content-type') || '';
      if (!response.ok || !type.startsWith('text/event-stream')) {
        await readJson(response);
        throw new ApiError('INVALID_RESPONSE', 'The service did not answer with an event stream.', response.status);
      }
      await readEvents(response.body, (event, data) => onChatEvent(turn, event, data));
      if (!turn.finished) showChatError(turn, 'STREAM_CUT', 'The connection closed before the answer was complete.');
    } catch (e) {
      if (e && e.name === 'AbortError') showChatError(turn, null, 'Stopped.');
      else showChatError(turn, e.type || 'NETWORK', e.message);
    } finally {
      turn.text.dataset.state = 'done';
      turn.stage.textContent = '';
      show(turn.stage, false);
      state.chat = null;
      $('chat-send').textContent = 'Send';
      $('chat-stage').textContent = '';
      refreshHistory();
    }
  }

  /** Reads a text/event-stream body, calling `handle(event, data)` per event. */
  async function readEvents(stream, handle) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // Normalise line ends, but keep a trailing CR: its LF may be in the next chunk.
      const keep = buffer.endsWith('\r') ? '\r' : '';
      buffer = buffer.slice(0, buffer.length - keep.length).replace(/\r\n?/g, '\n') + keep;
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatchBlock(block, handle);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatchBlock(buffer.replace(/\r\n?/g, '\n'), handle);
  }

  function dispatchBlock(block, handle) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join('\n'));
    } catch (_) {
      parsed = { content: data.join('\n') };
    }
    handle(event, parsed);
  }

  function onChatEvent(turn, event, data) {
    const conversation = $('conversation');
    switch (event) {
      case 'status':
        turn.stage.textContent = stageWords(data.stage);
        break;
      case 'token':
        if (typeof data.content === 'string') {
          turn.text.append(data.content);
          turn.tokens += 1;
          turn.text.dataset.tokens = String(turn.tokens);
        }
        break;
      case 'tool_call': {
        const input = data.input || {};
        const what = input.sql || (input.plan ? JSON.stringify(input.plan) : input.column ? `${input.table || ''}.${input.column}` : JSON.stringify(input));
        turn.steps.append(el('li', null, `${data.name}: `, el('code', { text: truncateLabel(String(what), 240) })));
        break;
      }
      case 'tool_result': {
        const parts = [STATUS_WORDS[data.status] || String(data.status || 'done')];
        if (typeof data.row_count === 'number') parts.push(plural(data.row_count, 'row', 'rows'));
        const error = data.error;
        if (error) parts.push(typeof error === 'string' ? error : `${error.type || ''} ${error.message || ''}`.trim());
        turn.steps.append(el('li', { text: `\u2192 ${parts.join(', ')}` }));
        break;
      }
      case 'result':
        onChatResult(turn, data);
        break;
      case 'error':
        showChatError(turn, data.type, data.message);
        break;
      case 'done':
        turn.finished = true;
        break;
      default:
        break;
    }
    conversation.scrollTop = conversation.scrollHeight;
  }

  function onChatResult(turn, body) {
    if (body.thread_id) state.threadId = body.thread_id;
    if (typeof body.assistant_message === 'string') turn.text.textContent = body.assistant_message;
    turn.text.dataset.state = 'done';
    clear(turn.warnings);
    for (const warning of Array.isArray(body.warnings) ? body.warnings : []) {
      turn.warnings.append(el('li', { 'data-warning': warning.type, text: warningWords(warning) }));
    }
    if (body.status && body.status !== 'succeeded') {
      turn.foot.append(el('span', { class: 'muted', text: `Turn ${STATUS_WORDS[body.status] || body.status}. ` }));
    }
    if (body.error && body.error.type) showChatError(turn, body.error.type, body.error.message);
    const details = body.details || {};
    if (body.run_id || body.result) {
      const view = {
        runId: body.run_id || null,
        status: body.result && !body.result.error ? 'succeeded' : body.status,
        turnStatus: null,
        result: body.result || null,
        error: (body.result && body.result.error) || null,
        datasetId: state.dataset ? state.dataset.id : null,
        versionHash: null,
        queryType: details.query_mode || 'sql',
        sql: details.compiled_sql || '',
        sqlTruncated: false,
        plan: details.plan_json || null,
        queuedMs: null,
        totalMs: null,
        attempts: details.attempts || null,
      };
      showRun(view);
      if (view.runId) enrichRun(view);
      const runId = body.run_id;
      if (runId) turn.foot.append(el('button', { type: 'button', class: 'link', text: 'Show its result', onclick: () => loadRun(runId) }));
    } else if (Array.isArray(details.attempts) && details.attempts.length > 0) {
      const last = details.attempts[details.attempts.length - 1];
      if (last.run_id) loadRun(last.run_id, details.attempts);
    }
  }

  function warningWords(warning) {
    if (warning.message) return `\u26A0 ${warning.message}`;
    if (warning.type === 'UNGROUNDED_NUMBER') return `\u26A0 ${warning.value} does not appear in the query results: check it.`;
    if (warning.type === 'LLM_SUMMARY_FAILED') return '\u26A0 The model could not summarise; this answer is a plain summary of the result.';
    return `\u26A0 ${warning.type}${warning.value ? `: ${warning.value}` : ''}`;
  }

  /** Fills the version hash and timings of a chat turn's run from its record. */
  async function enrichRun(view) {
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

  // ---------------------------------------------------------------- history

  async function refreshHistory() {
    await Promise.all([loadThreads(), loadRuns()]);
  }

  async function loadThreads() {
    const list = $('threads');
    let threads;
    try {
      threads = (await api('/threads?limit=20')).threads || [];
    } catch (e) {
      clear(list);
      list.append(el('li', { class: 'empty-note', text: `Conversations are unavailable (${e.type}).` }));
      return;
    }
    clear(list);
    for (const thread of threads) {
      list.append(
        el(
          'li',
          null,
          el(
            'button',
            { type: 'button', 'data-thread-id': thread.thread_id, onclick: () => loadThread(thread) },
            el('span', { class: 'title', text: thread.title || '(untitled)' }),
            el('span', { class: 'sub', text: `${thread.dataset_id} · ${relativeTime(thread.updated_at)}` }),
          ),
        ),
      );
    }
    if (threads.length === 0) list.append(el('li', { class: 'empty-note', text: 'No conversations yet.' }));
  }

  async function loadRuns() {
    const list = $('runs');
    let runs;
    try {
      runs = (await api('/runs?limit=20')).runs || [];
    } catch (e) {
      clear(list);
      list.append(el('li', { class: 'empty-note', text: `Runs are unavailable (${e.type}).` }));
      return;
    }
    clear(list);
    for (const run of runs) {
      const sql = String(run.sql || '').replace(/\s+/g, ' ');
      list.append(
        el(
          'li',
          null,
          el(
            'button',
            { type: 'button', 'data-run-id': run.run_id, title: sql, onclick: () => loadRun(run.run_id) },
            el('span', { class: 'title sql' }, el('span', { class: `dot ${run.status}` }), truncateLabel(sql, 90)),
            el(
              'span',
              { class: 'sub', text: [run.dataset_id, STATUS_WORDS[run.status] || run.status, run.error_type, relativeTime(run.created_at)].filter(Boolean).join(' · ') },
            ),
          ),
        ),
      );
    }
    if (runs.length === 0) list.append(el('li', { class: 'empty-note', text: 'No runs yet.' }));
  }

  async function loadRun(runId, attempts) {
    beginResult('Loading…');
    try {
      const view = runView(await api(`/runs/${encodeURIComponent(runId)}`));
      if (attempts) view.attempts = attempts;
      if (view.datasetId && state.dataset && view.datasetId !== state.dataset.id && !state.chat) {
        selectDataset(view.datasetId, { keepThread: false });
      }
      showRun(view);
    } catch (e) {
      showRequestError(e.type, e.message);
    }
  }

  async function loadThread(thread) {
    if (state.chat) return;
    if (state.dataset && thread.dataset_id !== state.dataset.id) selectDataset(thread.dataset_id, { keepThread: false });
    setMode('ask');
    let body;
    try {
      body = await api(`/threads/${encodeURIComponent(thread.thread_id)}/messages`);
    } catch (e) {
      showRequestError(e.type, e.message);
      return;
    }
    clear($('conversation'));
    state.threadId = thread.thread_id;
    let lastRun = null;
    for (const message of Array.isArray(body.messages) ? body.messages : []) {
      if (message.role === 'user') {
        $('conversation').append(el('div', { class: 'msg user', 'data-testid': 'user-message', text: String(message.content || '') }));
      } else {
        $('conversation').append(assistantBubble(String(message.content || ''), message.run_id));
        if (message.run_id) lastRun = message.run_id;
      }
    }
    if (lastRun) loadRun(lastRun);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
