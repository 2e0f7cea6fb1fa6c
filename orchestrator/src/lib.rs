//! The csv-analyst orchestrator: the HTTP service that accepts SQL (or a question in
//! words) over curated and uploaded CSV and Parquet datasets and runs it in a WebAssembly sandbox —
//! in-process (the `local` provider) or as one Kubernetes Job per run (`k8s`).
//!
//! Its modules are one-way layers; each uses only those below it
//! (docs/architecture.md draws them, and a test fails on an import cycle):
//!
//! 1. Leaves: [`config`] (every setting, as flags and environment variables),
//!    [`error`] (the domain errors, HTTP-free), [`metrics`] (Prometheus),
//!    [`access`] (what a principal may see and do: grants, ownership).
//! 2. Knowledge of data: [`datasets`] (the catalogue and its views), [`policy`] (the
//!    SQL policy, checked before any sandbox starts), [`plan`] (JSON query plans).
//! 3. Execution: [`sandbox`] (the providers: in-process, or a Kubernetes Job per run).
//! 4. Records: [`store`] (the `Store` trait, SQLite; runs, threads, turns).
//! 5. Services: [`runs`] (admission, policy, sandbox, record), [`chat`] (the analyst
//!    agent, threads and turns), [`llm`] (model clients), [`auth`] (who is calling:
//!    the admin token, the service's own tokens, OIDC JWTs, trusted proxies),
//!    [`uploads`] (datasets people bring, typed in the sandbox).
//! 6. Edges: [`api`] (the router and thin handlers), [`mcp`] (the MCP server, over
//!    HTTP at `/mcp` and stdio), [`page`] (the web page),
//!    [`state`] (what the handlers share), [`connections`] (the accept loop's
//!    connection budget), [`server`] (the composition root: start-up, serving,
//!    graceful shutdown).

pub mod access;
pub mod api;
pub mod auth;
pub mod chat;
pub mod config;
pub mod connections;
pub mod datasets;
pub mod error;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod policy;
pub mod readiness;
pub mod runs;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod store;
pub mod uploads;

pub use config::Config;
