// The chat (the Ask tab): sending a question and streaming its turn (stage, steps,
// tokens, warnings, errors) into #conversation, showing the turn's run in the result
// panel, Stop, a new conversation, and the chat box's keys.
//
// May import: state.js, api.js, dom.js, format.js, words.js, event-stream.js, result.js,
// tabs.js, history.js.

import { state } from './state.js';
import { ApiError, postForEvents, readJson } from './api.js';
import { $, el, clear, show } from './dom.js';
import { plural, truncateLabel } from './format.js';
import { STATUS_WORDS, errorWords } from './words.js';
import { readEvents } from './event-stream.js';
import { enrichRun, showRun } from './result.js';
import { setMode } from './tabs.js';
import { loadRun, refreshHistory } from './history.js';

export function newThread() {
  if (state.chat) state.chat.controller.abort();
  state.threadId = null;
  clear($('conversation'));
  $('chat-stage').textContent = '';
}

export function askPrompt(prompt) {
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
    const response = await postForEvents('/chat/stream', body, controller.signal);
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
      // query_type, sql, plan: the names since the second release; turns recorded
      // before it carry query_mode, compiled_sql, plan_json.
      queryType: details.query_type || details.query_mode || 'sql',
      sql: details.sql || details.compiled_sql || '',
      sqlTruncated: false,
      plan: details.plan || details.plan_json || null,
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

/** Send (Stop while a turn streams), Enter in the chat box, and New conversation. */
export function wireChat() {
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
}
