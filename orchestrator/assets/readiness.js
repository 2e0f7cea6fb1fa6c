// The service's readiness: the sandbox and model pills in the top bar (polled until
// the sandbox is ready), the notice that says how to configure a model when there is
// none, and opening on the Ask tab when there is one.
//
// May import: state.js, api.js, dom.js, tabs.js.

import { state } from './state.js';
import { readiness } from './api.js';
import { $, el, clear, show } from './dom.js';
import { setMode } from './tabs.js';

export async function loadReadiness() {
  const readyPill = $('ready-status');
  const { ready, body } = await readiness();
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
