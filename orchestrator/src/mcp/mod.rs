//! MCP: the sandboxed analyst as Model Context Protocol tools, for any agent
//! (Claude Desktop, IDEs, other agents), through the official Rust SDK (`rmcp`).
//!
//! Every query an MCP client sends goes through [`crate::runs::Runs`] like
//! `POST /runs`: the same SQL policy, sandbox, limits, grants, fairness and records
//! (a run made here is recorded with origin `mcp` and its principal).
//!
//! - [`analyst`]: the server ([`Analyst`]): tools `list_datasets`, `describe_dataset`,
//!   `run_sql`, `run_plan`, `get_run`, and `ask` when a model is configured; each
//!   dataset's schema as a resource. A query that is refused or fails is a tool error
//!   (`isError: true`) with the message `/runs` gives, so the calling model can
//!   correct itself; protocol errors are for malformed calls only.
//! - [`transport`]: streamable HTTP at `/mcp` (stateless; the caller is authenticated
//!   by the API's edge, which puts its [`crate::auth::Caller`] in the request), with
//!   `Origin` checked against an allow-list; and stdio (`orchestrator mcp`), where the
//!   caller is the local user.
//!
//! May use: the run and chat services, [`crate::auth::Caller`], [`crate::access`],
//! the datasets, the plan schema, errors. Knows nothing of the API's router or state.

pub mod analyst;
pub mod transport;

pub use self::analyst::Analyst;
pub use self::transport::{http_service, origin_allowed, serve_stdio};
