//! QueryPlan: a strict JSON query over one table, compiled to SQL by the service.
//!
//! An agent (or the UI) that should not write SQL sends a plan instead:
//!
//! ```json
//! {"table": "tickets",
//!  "select": [{"column": "priority"}, {"agg": "avg", "column": "resolution_hours", "as": "avg_hours"}],
//!  "filters": [{"column": "status", "op": "=", "value": "closed"}],
//!  "group_by": ["priority"], "order_by": [{"column": "avg_hours", "direction": "desc"}], "limit": 10}
//! ```
//!
//! It exists so that a plan can express only what it lists: columns and a few
//! aggregates of one table, ANDed filters with fixed operators, grouping, ordering and
//! a limit — never a raw SQL expression. Every name is checked against the table's
//! columns and double-quoted; every value becomes a literal (strings with `'` doubled,
//! numbers as numbers, booleans as `TRUE`/`FALSE`); the text operators compile to
//! `LIKE ... ESCAPE '\'` with `%`, `_` and `\` of the value escaped, so
//! `contains "50%_off"` matches only that literal text (case-sensitively).
//!
//! Decisions:
//! - `select` is required and non-empty (no implicit "all columns").
//! - An aggregate needs an alias (`"as"`); `count` without a column is `COUNT(*)`.
//! - Names resolve case-sensitively first, then ignoring case (when that is unique).
//! - When the plan aggregates or groups, every selected column without an aggregate,
//!   and every `order_by` entry that is not an alias of the select, must be in `group_by`.
//! - `order_by` names an alias of the select (exact match, checked first) or a column;
//!   `direction` defaults to `asc`.
//! - `limit` is optional (1..=max_rows); without it the service's row cap applies, as
//!   for any SQL (and sets `truncated`).
//! - `"value": null` is refused: test for null with `is_null` / `is_not_null`.
//!
//! The plan's schema lives here only: the serde types ([`QueryPlan`] and its parts)
//! and [`json_schema`] (served at `GET /schemas/plan`), which a test keeps in agreement.
//!
//! The parts, each using only those listed before it:
//! - `values`: a filter's value ([`FilterValue`], [`Scalar`]) and how it is read from JSON;
//! - `types`: the plan's JSON format ([`QueryPlan`] and its parts);
//! - `error`: [`PlanError`];
//! - `scope`: [`PlanScope`], and how a plan's names resolve against it;
//! - `sql`: identifiers, literals and LIKE patterns as SQL text;
//! - `compiler`: [`compile`] and [`compile_plan`], a plan to one `SELECT`;
//! - `schema`: [`json_schema`].
//!
//! May use: nothing of this crate (a plan is compiled against a [`PlanScope`], the
//! tables and columns the caller found for the dataset).

mod compiler;
mod error;
mod schema;
mod scope;
mod sql;
#[cfg(test)]
mod tests;
mod types;
mod values;

pub use compiler::{CompiledPlan, compile, compile_plan};
pub use error::PlanError;
pub use schema::json_schema;
pub use scope::PlanScope;
pub use types::{Aggregate, Direction, Filter, FilterOp, MAX_IN_VALUES, OrderBy, QueryPlan, SelectItem};
pub use values::{FilterValue, Scalar};
