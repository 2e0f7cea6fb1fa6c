//! Runs: accept a query, check it, run it in a sandbox, record it.
//!
//! - [`service::Runs`]: the service every query goes through (`POST /runs`, the chat
//!   agent, next MCP), and the schemas it computes in the sandbox ([`schema`]).
//! - [`admission`]: run slots and each client's share of them.
//! - [`export`]: a run's recorded result as CSV, streamed ([`CsvExport`]).
//! - [`submission`]: what a caller asks ([`RunSubmission`], [`Query`], [`Origin`]);
//!   [`limits`]: the limits every run is held to ([`RunSettings`]) and tighter ones a
//!   request may ask for ([`Limits`]).
//!
//! The run record itself and its views are [`crate::store::run`].
//!
//! May use: the store, the sandbox, the policy and plan compiler, the datasets,
//! metrics and errors. Nothing here knows HTTP.

pub mod admission;
pub mod export;
pub mod limits;
pub mod schema;
pub mod service;
pub mod submission;

pub use self::export::CsvExport;
pub use self::limits::{Limits, RunSettings};
pub use self::service::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, Runs, ms};
pub use self::submission::{Origin, Query, RunSubmission};
