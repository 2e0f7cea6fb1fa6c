// History: the lists of recent conversations (#threads) and runs (#runs), and loading
// one back: a run into the result panel, a conversation into #conversation.
//
// May import: state.js, api.js, dom.js, format.js, words.js, result.js, tabs.js. Loading
// a run or conversation of another dataset switches the dataset, which datasets.js
// owns; datasets.js sits above this module (its chips and Preview buttons lead to
// modules that import this one), so the entry module hands that function in through
// connectHistory() instead of an import.

import { state } from './state.js';
import { api, getToken } from './api.js';
import { $, el, clear } from './dom.js';
import { relativeTime, truncateLabel } from './format.js';
import { STATUS_WORDS } from './words.js';
import { beginResult, runView, showRequestError, showRun } from './result.js';
import { setMode } from './tabs.js';

/** What this module calls above itself, set once by the entry module. */
const hooks = { selectDataset: null };

/** Hands in datasets.js's selectDataset, called with (id, { keepThread }). */
export function connectHistory({ selectDataset }) {
  hooks.selectDataset = selectDataset;
}

export async function refreshHistory() {
  await Promise.all([loadThreads(), loadRuns()]);
}

/** Both lists emptied, with `words` in each (the caller must sign in first). */
export function clearHistory(words) {
  for (const id of ['threads', 'runs']) {
    clear($(id));
    $(id).append(el('li', { class: 'empty-note', text: words }));
  }
}

async function loadThreads() {
  const list = $('threads');
  const asked = getToken();
  let threads;
  try {
    threads = (await api('/threads?limit=20')).threads || [];
  } catch (e) {
    if (getToken() !== asked) return;
    clear(list);
    list.append(el('li', { class: 'empty-note', text: `Conversations are unavailable (${e.type}).` }));
    return;
  }
  // Asked for someone who has signed in or out since: the reload draws the list.
  if (getToken() !== asked) return;
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
  const asked = getToken();
  let runs;
  try {
    runs = (await api('/runs?limit=20')).runs || [];
  } catch (e) {
    if (getToken() !== asked) return;
    clear(list);
    list.append(el('li', { class: 'empty-note', text: `Runs are unavailable (${e.type}).` }));
    return;
  }
  if (getToken() !== asked) return;
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

export async function loadRun(runId, attempts) {
  beginResult('Loading…');
  try {
    const view = runView(await api(`/runs/${encodeURIComponent(runId)}`));
    if (attempts) view.attempts = attempts;
    if (view.datasetId && state.dataset && view.datasetId !== state.dataset.id && !state.chat) {
      hooks.selectDataset(view.datasetId, { keepThread: false });
    }
    showRun(view);
  } catch (e) {
    showRequestError(e.type, e.message);
  }
}

async function loadThread(thread) {
  if (state.chat) return;
  if (state.dataset && thread.dataset_id !== state.dataset.id) hooks.selectDataset(thread.dataset_id, { keepThread: false });
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

function assistantBubble(content, runId) {
  const text = el('div', { class: 'answer-text', 'data-testid': 'answer', 'data-state': 'done', text: content });
  const foot = el('div', { class: 'turn-foot' });
  if (runId) foot.append(el('button', { type: 'button', class: 'link', text: 'Show its result', onclick: () => loadRun(runId) }));
  return el('div', { class: 'msg assistant' }, text, foot);
}
