//! The csv-analyst orchestrator: the HTTP service that accepts SQL (or a question in
//! words) over curated CSV datasets and runs it in a WebAssembly sandbox —
//! in-process (the `local` provider) or as one Kubernetes Job per run (`k8s`).
//!
//! - [`config`]: every setting, as flags and environment variables.
//! - [`api`]: the router and the thin HTTP handlers; [`page`]: the web page.
//! - [`state`]: the one state the handlers share.
//! - [`runs`]: a run, its record and its views; [`datasets`]: listings and schemas;
//!   [`chat`]: the analyst agent, threads and turns; [`plan`]: JSON query plans.
//! - [`error`]: the domain errors (HTTP-free; [`api::error`] maps them).
//! - [`policy`]: the SQL policy, checked before any sandbox starts.
//! - [`sandbox`]: the providers; [`store`]: the SQLite run store;
//!   [`catalog`]: the datasets; [`llm`]: model clients; [`metrics`]: Prometheus.
//! - [`server`]: start-up, serving, graceful shutdown.

pub mod api;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod datasets;
pub mod error;
pub mod llm;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod policy;
pub mod runs;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod store;

pub use config::Config;
