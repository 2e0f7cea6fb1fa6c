//! The SQL policy: what the orchestrator lets through to a sandbox.
//!
//! A query is parsed with sqlparser (generic dialect) before any sandbox starts,
//! and must be:
//! - exactly one statement;
//! - a query: `SELECT`, `WITH ... SELECT`, `VALUES`, or `EXPLAIN [ANALYZE] [VERBOSE]`
//!   of one (EXPLAIN shows the plan; EXPLAIN ANALYZE runs the query under the same
//!   limits), with no `SELECT ... INTO`, no locking clauses;
//! - reading only tables of the requested dataset, named `table` or
//!   `dataset.table` (CTE names are fine), never a file path or URL;
//! - using no table functions but `generate_series`, `range` and `unnest`.
//!
//! The check runs on the host, outside the sandbox, on whatever a client sends, so
//! it is bounded on its own:
//! - in size: at most [`MAX_TOKENS`] tokens;
//! - in shape, by an inexpensive pass over the tokens before parsing: brackets
//!   nested at most [`MAX_BRACKET_DEPTH`] deep, at most [`MAX_PREFIX_RUN`] prefix
//!   operators in a row (`NOT NOT ...`, `- - ...`, `CASE CASE ...`), compound names
//!   of at most [`MAX_NAME_PARTS`] parts (`a.b.c...`);
//! - in depth: a parser recursion limit of [`RECURSION_LIMIT`], so a deeply nested
//!   query is an error, never a stack overflow (each check runs on a thread with a
//!   large stack of its own for the same reason);
//! - in time and CPU: at most [`CHECKERS`] checks run at once, and a caller waits at
//!   most [`CHECK_BUDGET`] (for a free checker and the check together). A query that
//!   is not checked by then is refused at once (`SQL_NOT_ALLOWED`, "too complex");
//!   its check cannot be killed, so it keeps its checker until it ends, which bounds
//!   the CPU such queries can take to [`CHECKERS`] cores. [`checker_status`] counts
//!   those overrunning checks.
//!
//! sqlparser before 0.64 took time exponential in the length of some short inputs
//! (`SELECT x-not-b.x-not-b.…`: 183 bytes, 18 s); 0.64 memoizes failed speculative
//! parses. The budget does not depend on knowing every such shape. This parser is
//! independent of the guest's (DataFusion's pin): the guest re-parses under its own
//! deadline. The guest repeats its own checks (DataFusion's `SQLOptions`): this
//! layer exists to refuse early, with a clear message, and to not depend on the
//! guest.
//!
//! The parts, each using only those listed before it:
//! - `verdict`: what a check takes and gives ([`Scope`], [`Approved`], refusals);
//! - `parse`: the bounds on parsing (the limits, the pre-check, parser errors);
//! - `rules`: what is allowed, checked on the calling thread;
//! - `pool`: the checker threads and the time budget ([`check`], [`checker_status`]).
//!
//! May use: nothing of this crate: a query is checked against a [`Scope`] (the
//! dataset's id and tables), never against the app's state.

mod parse;
mod pool;
mod rules;
#[cfg(test)]
mod tests;
mod verdict;

pub use parse::{MAX_BRACKET_DEPTH, MAX_NAME_PARTS, MAX_PREFIX_RUN, MAX_TOKENS, RECURSION_LIMIT};
pub use pool::{CHECK_BUDGET, CHECKERS, CheckerStatus, check, checker_status};
pub use verdict::{Approved, Scope};
