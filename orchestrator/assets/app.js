// csv-analyst's page: pick a dataset, ask in words or write SQL (or a plan), and see
// the rows, a chart chosen by fixed rules, and exactly what ran.
//
// Plain browser JavaScript in ES modules, no framework and no build step; served from
// the binary under a strict Content-Security-Policy. Every string that comes from a
// dataset, a model or a user reaches the document through textContent, Text nodes or
// setAttribute, never as HTML. Charts are SVG drawn here: no code from anywhere else
// ever runs.
//
// This is the entry module, the one index.html loads: it wires every view's controls,
// connects history.js to datasets.js and auth.js to the reload of what the caller
// sees, and starts the page: who the caller is first, then their datasets and history.
// No module imports it.
//
// May import: any module of the page. It imports history.js, datasets.js, auth.js,
// readiness.js, tabs.js, chat.js, runs.js and result.js (and through them the rest).

import { state } from './state.js';
import { clearHistory, connectHistory, refreshHistory } from './history.js';
import { clearDatasets, loadDatasets, selectDataset, wirePicker, wireUpload } from './datasets.js';
import { connectAuth, loadMe, wireAuth } from './auth.js';
import { loadReadiness } from './readiness.js';
import { setMode, wireTabs } from './tabs.js';
import { wireChat } from './chat.js';
import { wireEditors } from './runs.js';
import { clearResult, wireResize, wireServiceLinks } from './result.js';

connectHistory({ selectDataset });
connectAuth({ reload: loadForCaller });

function wireControls() {
  wireAuth();
  wirePicker();
  wireUpload();
  wireTabs();
  wireChat();
  wireEditors();
  wireResize();
  wireServiceLinks();
}

/**
 * What the caller (state.me) may see, from scratch: their datasets (the URL's one
 * again if they may use it, in a new conversation) and their history. Nothing but a
 * request to sign in when the service lets no anonymous caller in.
 */
async function loadForCaller() {
  clearResult();
  if (state.me && state.me.denied) {
    clearDatasets('Sign in to see the datasets');
    clearHistory('Sign in to see your history.');
    return;
  }
  clearDatasets('Loading datasets…');
  if (await loadDatasets()) await refreshHistory();
}

async function start() {
  wireControls();
  setMode('sql', { auto: true });
  loadReadiness();
  await loadMe();
  await loadForCaller();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
