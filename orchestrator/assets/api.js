// The API client: every request the page makes to the service (its JSON API, the
// readiness check, the chat's event stream and the files it downloads) goes through
// request() here, which adds the signed-in person's token as `Authorization: Bearer`.
// The token is kept in sessionStorage (one tab, until it closes). A 401 to a request
// that carried the token drops it: the service no longer accepts it (revoked,
// expired); whoever listens (auth.js) is told, with the service's message. Also
// ApiError, the service's error type and message as an exception.
//
// May import nothing of ours (a leaf).

const TOKEN_KEY = 'csv-analyst-token';

/** The token when sessionStorage cannot be used (storage disabled): this page only. */
let keptToken = null;

/** The token requests carry, or null. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch (_) {
    return keptToken;
  }
}

export function setToken(token) {
  keptToken = token;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch (_) {
    // Kept in keptToken instead.
  }
}

export function clearToken() {
  keptToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // Nothing was stored.
  }
}

const unauthorizedListeners = [];

/**
 * Calls `listener({ message, hadToken })` on every 401: `hadToken` when the request
 * carried the current token (which is dropped by then), else the service wants one.
 */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

/**
 * fetch() with the token, if any, as a bearer header; a 401 tells the listeners. It
 * sets no Content-Type: a FormData body gets the browser's multipart one (with its
 * boundary), a JSON body the one its caller gives (post() below).
 */
export async function request(path, options) {
  const sent = getToken();
  const init = { ...(options || {}) };
  if (sent) {
    const headers = new Headers(init.headers || {});
    headers.set('Authorization', `Bearer ${sent}`);
    init.headers = headers;
  }
  const response = await fetch(path, init);
  if (response.status === 401) noteUnauthorized(response, sent);
  return response;
}

function noteUnauthorized(response, sent) {
  // Another request already dropped this token, or another one was set since.
  if (sent && getToken() !== sent) return;
  if (sent) clearToken();
  response
    .clone()
    .json()
    .catch(() => null)
    .then((body) => {
      const error = body && body.error;
      const message = (error && error.message) || 'The service asks for a token.';
      for (const listener of unauthorizedListeners) listener({ message: String(message), hadToken: Boolean(sent) });
    });
}

export class ApiError extends Error {
  constructor(type, message, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

/** JSON from the service; an ApiError with the service's type and message otherwise. */
export async function api(path, options) {
  let response;
  try {
    response = await request(path, options);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError('NETWORK', `The service could not be reached (${e && e.message ? e.message : e}).`, 0);
  }
  return readJson(response);
}

export async function readJson(response) {
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

/** A POST of a JSON body, asking for an answer of type `accept`. */
function post(path, body, accept, signal) {
  return request(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: accept },
    body: JSON.stringify(body),
    signal,
  });
}

export function postJson(path, body, signal) {
  return post(path, body, 'application/json', signal);
}

/** A POST of a JSON body that asks for a text/event-stream answer (the chat's stream). */
export function postForEvents(path, body, signal) {
  return post(path, body, 'text/event-stream', signal);
}

/**
 * A POST of a FormData body (multipart/form-data, its Content-Type the browser's):
 * JSON back as api(), or an ApiError with the service's type and message.
 */
export function postForm(path, form, signal) {
  return api(path, { method: 'POST', headers: { Accept: 'application/json' }, body: form, signal });
}

/** A DELETE answered with no body (204); an ApiError with the service's type and message otherwise. */
export async function apiDelete(path) {
  let response;
  try {
    response = await request(path, { method: 'DELETE', headers: { Accept: 'application/json' } });
  } catch (e) {
    throw new ApiError('NETWORK', `The service could not be reached (${e && e.message ? e.message : e}).`, 0);
  }
  if (!response.ok) await readJson(response);
}

/**
 * A file of the service (a run's CSV) as a Blob, with the token; an ApiError with
 * the service's type and message when it is refused.
 */
export async function fetchBlob(path) {
  let response;
  try {
    response = await request(path);
  } catch (e) {
    throw new ApiError('NETWORK', `The service could not be reached (${e && e.message ? e.message : e}).`, 0);
  }
  if (!response.ok) await readJson(response);
  return response.blob();
}

/**
 * `GET /readyz`: `{ ready, body }`, ready when it answered 2xx, body its JSON (null
 * when the answer is not JSON or the service could not be reached).
 */
export async function readiness() {
  let body = null;
  let ready = false;
  try {
    const response = await request('/readyz', { headers: { Accept: 'application/json' } });
    ready = response.ok;
    body = await response.json().catch(() => null);
  } catch (_) {
    body = null;
  }
  return { ready, body };
}
