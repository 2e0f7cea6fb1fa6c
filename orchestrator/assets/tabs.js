// The mode tabs (Ask, SQL, Plan): which pane and actions show, the Run button's label,
// focusing the current editor, and the tabs' clicks and arrow keys.
//
// May import: state.js, dom.js.

import { state } from './state.js';
import { $, show } from './dom.js';

export function setMode(mode, options) {
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

function focusEditor() {
  if (state.mode === 'ask') $('chat-input').focus();
  else if (state.mode === 'sql') $('sql-editor').focus();
  else $('plan-editor').focus();
}

/** Clicking a tab selects it; the left and right arrows move between tabs. */
export function wireTabs() {
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
}
