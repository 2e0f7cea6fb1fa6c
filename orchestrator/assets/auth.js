// Who is using the page: the sign-in box in the top bar (#signin). `GET /me` says who
// the service takes the caller for and whether the page should offer a token box
// (`sign_in`: "token"); api.js keeps the token and sends it on every request. The box
// shows the person signed in (and whether they are an admin) with Sign out, or the
// token field and Sign in; nothing in single-user mode. Signing in or out, or a token
// the service stops accepting (any request's 401), reloads who the caller is and then
// the datasets and history, through the function the entry module hands in.
//
// May import: state.js, api.js, dom.js. Reloading the datasets and history is the
// entry module's (they sit above this module's concerns), handed in through
// connectAuth() as history.js gets selectDataset.

import { state } from './state.js';
import { api, clearToken, getToken, onUnauthorized, setToken } from './api.js';
import { $, el, clear, show } from './dom.js';

/** What this module calls above itself, set once by the entry module. */
const hooks = { reload: null };

/** Hands in the function that reloads the datasets and history for the new caller. */
export function connectAuth({ reload }) {
  hooks.reload = reload;
}

/** No identities configured: one person, who needs no box. */
const SINGLE_USER = { authConfigured: false, subject: 'local', kind: 'local', admin: false, datasets: '*', signIn: 'none', denied: false };

/** Auth configured and anonymous callers refused: only a token gets in. */
const DENIED = { authConfigured: true, subject: 'anonymous', kind: 'anonymous', admin: false, datasets: [], signIn: 'token', denied: true };

/** A request of this module's own is in flight: its 401 is this module's to show. */
let busy = false;

/** What the box says went wrong (a refused token), until the next sign-in or sign-out. */
let errorText = '';

function fromBody(body) {
  return {
    authConfigured: body.auth_configured === true,
    subject: String(body.subject || 'anonymous'),
    kind: String(body.kind || 'anonymous'),
    admin: body.admin === true,
    datasets: body.datasets === '*' ? '*' : Array.isArray(body.datasets) ? body.datasets.map(String) : [],
    signIn: body.sign_in === 'token' ? 'token' : 'none',
    denied: false,
  };
}

/**
 * `GET /me` into state.me, and the box drawn for it. A stored token the service
 * refuses is dropped and /me asked again without it; the refusal stays in the box.
 * state.me is null when /me failed otherwise (the box says why).
 */
export async function loadMe() {
  busy = true;
  try {
    state.me = await askMe();
  } finally {
    busy = false;
  }
  render();
  return state.me;
}

async function askMe() {
  const sent = getToken();
  try {
    return fromBody(await api('/me'));
  } catch (e) {
    if (e.status === 401) {
      errorText = e.message;
      if (!sent) return DENIED;
      clearToken();
      return askMe();
    }
    // A service without identities has no /me.
    if (e.status === 404) return SINGLE_USER;
    errorText = `Who you are could not be checked: ${e.message}`;
    return null;
  }
}

/** The person signed in: by a token or an authenticating proxy, not anonymous, not the single user. */
function signedIn(me) {
  return Boolean(me) && me.kind !== 'anonymous' && me.kind !== 'local' && me.subject !== 'local';
}

function scopeWords(me) {
  if (me.datasets === '*') return 'May use every dataset';
  if (me.datasets.length === 0) return 'May use no dataset';
  return `May use: ${me.datasets.join(', ')}`;
}

function render() {
  const me = state.me;
  const token = getToken();
  const named = signedIn(me);
  const offerForm = Boolean(me) && me.signIn === 'token' && me.kind === 'anonymous';

  const subject = $('signin-subject');
  clear(subject);
  subject.removeAttribute('title');
  delete subject.dataset.subject;
  delete subject.dataset.admin;
  if (named) {
    subject.append(`Signed in as ${me.subject}`);
    if (me.admin) subject.append(' ', el('span', { class: 'admin-mark', text: 'admin' }));
    subject.title = scopeWords(me);
    subject.dataset.subject = me.subject;
    if (me.admin) subject.dataset.admin = 'true';
  }
  show(subject, named);
  // A stored token can always be dropped, even when /me could not say whose it is.
  show($('signout'), Boolean(token) && (named || !me));
  show($('signin-form'), offerForm);
  const error = $('signin-error');
  error.textContent = errorText;
  show(error, errorText !== '');
  show($('signin'), named || offerForm || Boolean(token) || errorText !== '');
}

async function reload() {
  if (hooks.reload) await hooks.reload();
}

async function signIn(event) {
  event.preventDefault();
  if (busy) return;
  const input = $('signin-token');
  const token = input.value.trim();
  if (!token || !/^[\x21-\x7e]+$/.test(token)) {
    errorText = token ? 'A token is letters, digits and punctuation, without spaces.' : 'Paste a token first.';
    render();
    input.focus();
    return;
  }
  errorText = '';
  setToken(token);
  busy = true;
  $('signin-submit').disabled = true;
  let me = null;
  try {
    me = fromBody(await api('/me'));
  } catch (e) {
    clearToken();
    errorText = e.message || e.type;
  } finally {
    busy = false;
    $('signin-submit').disabled = false;
  }
  if (!me) {
    render();
    input.focus();
    input.select();
    return;
  }
  input.value = '';
  state.me = me;
  render();
  if (!$('signout').hidden) $('signout').focus();
  await reload();
}

async function signOut() {
  if (busy) return;
  clearToken();
  errorText = '';
  await loadMe();
  if (!$('signin-form').hidden) $('signin-token').focus();
  await reload();
}

/** A 401 to any request: a dropped token makes the caller anonymous (reloaded); none at all, the box asks for one. */
function unauthorized({ message, hadToken }) {
  if (busy) return;
  errorText = message;
  if (!hadToken) {
    render();
    return;
  }
  loadMe().then(reload);
}

/** The box's Sign in and Sign out, and the service's 401s. */
export function wireAuth() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  onUnauthorized(unauthorized);
}
