// What the page says for the service's error types and run statuses, and an error as
// nodes (title in words, message, type).
//
// May import: dom.js.

import { el } from './dom.js';

const ERROR_WORDS = {
  SQL_NOT_ALLOWED: 'Refused by the SQL policy: only one read-only query over this dataset may run.',
  UNKNOWN_TABLE: 'Refused: the query reads a table this dataset does not have.',
  SQL_PARSE_ERROR: 'The SQL does not parse.',
  SQL_PLAN_ERROR: 'The query names a column, table or function that does not exist, or mixes types.',
  SQL_EXECUTION_ERROR: 'The query failed while it ran.',
  TIMEOUT: 'The query ran past its time limit.',
  MEMORY_LIMIT: 'The query needed more memory than a run may use.',
  OUTPUT_LIMIT: 'The result was larger than a run may return.',
  SPILL_LIMIT: 'The query needed more scratch disk than a run may spill to.',
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
  INVALID_UPLOAD: 'The upload is not valid.',
  DATASET_EXISTS: 'A dataset with this id exists already: choose another id.',
  UPLOAD_TOO_LARGE: 'The upload is larger than the service accepts.',
  QUOTA_EXCEEDED: 'The upload would take your datasets past your storage quota: delete an upload first.',
  UPLOAD_INVALID: 'A file could not be read as a table.',
  FORBIDDEN: 'You may not do this.',
  UPLOADS_UNAVAILABLE: 'This service does not take uploads.',
};

export const STATUS_WORDS = {
  succeeded: 'Succeeded',
  failed: 'Failed',
  rejected: 'Refused by policy',
  timed_out: 'Timed out',
  cancelled: 'Cancelled',
  running: 'Running',
  interrupted: 'Interrupted',
};

export function errorWords(type) {
  return ERROR_WORDS[type] || 'The request failed.';
}

/** Title, message and type of an error, as nodes. */
export function errorNodes(type, message) {
  return [
    el('span', { class: 'error-title', text: errorWords(type) }),
    message ? el('span', { class: 'error-message', text: message }) : null,
    type ? el('span', { class: 'error-type', text: type }) : null,
  ];
}
