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
// connects history.js to datasets.js, and starts the page. No module imports it.
//
// May import: any module of the page. It imports history.js, datasets.js,
// readiness.js, tabs.js, chat.js, runs.js and result.js (and through them the rest).

import { connectHistory, refreshHistory } from './history.js';
import { loadDatasets, selectDataset, wirePicker } from './datasets.js';
import { loadReadiness } from './readiness.js';
import { setMode, wireTabs } from './tabs.js';
import { wireChat } from './chat.js';
import { wireEditors } from './runs.js';
import { wireResize } from './result.js';

connectHistory({ selectDataset });

function wireControls() {
  wirePicker();
  wireTabs();
  wireChat();
  wireEditors();
  wireResize();
}

async function start() {
  wireControls();
  setMode('sql', { auto: true });
  loadReadiness();
  if (await loadDatasets()) refreshHistory();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
