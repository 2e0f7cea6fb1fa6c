//! The analyst agent: a question in words, answered with numbers from the data.
//!
//! A chat turn belongs to a thread, and a thread to one dataset. A message starting
//! `SQL:` runs that SQL and one starting `PLAN:` runs that JSON plan, with no model;
//! any other message goes to the model (`LLM_PROVIDER`), which may call three tools
//! bound to the thread's dataset — `run_sql`, `run_plan`, `describe_column` — within
//! strict budgets (model calls, queries, wall-clock). Every query takes the same
//! path as `POST /runs` ([`crate::runs::Runs::execute`]) and is recorded as a run linked to
//! its turn. The answer's numbers are checked against the turn's results
//! ([`grounding`]); the exact messages sent to the model are stored with the turn.
//!
//! A turn is owned by a task of its own: a client that goes away does not leave it
//! half-recorded. `/chat/stream` cancels the turn when its client disconnects (the
//! model request is dropped at once) and records it `cancelled`.
//!
//! May use: the run service (`crate::runs`), `crate::llm`, the store, the datasets'
//! views, config, metrics and errors. Knows nothing of HTTP.

pub mod agent;
pub mod context;
pub mod grounding;
pub mod service;
pub mod turn;

pub use self::service::Chat;
pub use self::turn::{ChatRequest, ChatResponse, PreparedTurn, Progress, ProgressSink, QueryMode};
