//! The csv-analyst orchestrator: the HTTP service that accepts SQL over curated CSV
//! datasets and runs it in a WebAssembly sandbox — in-process (the `local`
//! provider) or as one Kubernetes Job per run (`k8s`).
//!
//! - [`config`]: every setting, as flags and environment variables.
//! - [`app`]: the state and the router; [`runs`] and [`datasets`]: what the
//!   handlers call; [`error`]: the JSON errors.
//! - [`policy`]: the SQL policy, checked before any sandbox starts.
//! - [`sandbox`]: the providers; [`store`]: the SQLite run store;
//!   [`catalog`]: the datasets; [`metrics`]: Prometheus.
//! - [`server`]: start-up, serving, graceful shutdown.

pub mod app;
pub mod catalog;
pub mod config;
pub mod datasets;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod runs;
pub mod sandbox;
pub mod server;
pub mod store;

pub use config::Config;
