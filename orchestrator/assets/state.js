// The page's shared state: who the caller is, the chosen dataset and its schema, the mode, the thread,
// what is in flight (a run, a chat turn) and the run view the result panel shows.
// Data only; the view modules read and write it.
//
// May import nothing of ours (a leaf).

export const state = {
  me: null, // who the service takes the caller for (from GET /me; see auth.js)
  datasets: [],
  dataset: null, // the chosen dataset (from GET /datasets)
  schema: null, // its GET /datasets/{id}/schema
  llmConfigured: false,
  threadId: null,
  mode: 'sql',
  modeChosen: false, // the user picked a tab: readiness no longer picks one
  chat: null, // { controller } while a turn streams
  running: false, // a POST /runs is in flight
  shown: null, // the run view in the result panel
  resizeTimer: 0,
};
