// The API client: every request the page makes to the service (its JSON API, the
// readiness check and the chat's event stream), and ApiError, the service's error
// type and message as an exception.
//
// May import nothing of ours (a leaf).

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
    response = await fetch(path, options);
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
  return fetch(path, {
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
 * `GET /readyz`: `{ ready, body }`, ready when it answered 2xx, body its JSON (null
 * when the answer is not JSON or the service could not be reached).
 */
export async function readiness() {
  let body = null;
  let ready = false;
  try {
    const response = await fetch('/readyz', { headers: { Accept: 'application/json' } });
    ready = response.ok;
    body = await response.json().catch(() => null);
  } catch (_) {
    body = null;
  }
  return { ready, body };
}
