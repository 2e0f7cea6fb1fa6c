//! What a check takes and gives: the [`Scope`] a query may read, what the policy
//! learned about an allowed query ([`Approved`]), and the refusals, which are
//! [`RunError`]s like a sandbox's.
//!
//! Uses nothing else of the policy module.

use protocol::{ErrorType, RunError};

/// A refusal is a [`RunError`]: the same type and message a sandbox would give.
pub(super) fn refusal(error_type: ErrorType, message: impl Into<String>) -> RunError {
    RunError { error_type, message: message.into() }
}

pub(super) fn not_allowed(message: impl Into<String>) -> RunError {
    refusal(ErrorType::SqlNotAllowed, message)
}

/// The dataset a query may read.
#[derive(Debug, Clone)]
pub struct Scope {
    pub dataset_id: String,
    pub tables: Vec<String>,
}

/// What the policy learned about an allowed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The dataset tables the query reads, in first-seen order.
    pub tables: Vec<String>,
    pub explain: bool,
}
