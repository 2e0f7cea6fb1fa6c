//! [`PlanError`]: why a plan was refused, and where in the plan.
//!
//! Uses nothing else of the plan module.

/// Why a plan was refused. `path` points at the offending part of the plan
/// (`filters[0].colum`, `select[1].column`, `limit`), when there is one; `message`
/// does not repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub path: Option<String>,
    pub message: String,
}

impl PlanError {
    pub(super) fn at(path: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError { path: Some(path.into()), message: message.into() }
    }
}
