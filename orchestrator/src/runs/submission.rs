//! What a caller asks of a run: the `POST /runs` body ([`RunSubmission`]), the
//! query in it ([`Query`]) and who asked ([`Origin`]).

use serde::Deserialize;
use serde_json::Value;

use crate::access::Principal;
use crate::error::Error;
use crate::store::QueryType;

/// `POST /runs`. Unknown fields are ignored (and not stored).
#[derive(Debug, Clone, Deserialize)]
pub struct RunSubmission {
    pub dataset_id: String,
    /// `sql` (the default) or `plan`.
    #[serde(default)]
    pub query_type: Option<String>,
    #[serde(default)]
    pub sql: Option<String>,
    #[serde(default)]
    pub plan: Option<Value>,
    /// Fewer rows than the service's MAX_ROWS, if wanted.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// A shorter timeout than the service's RUN_TIMEOUT_SECONDS, if wanted.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// The query of a submission, checked for shape (not yet by the policy).
#[derive(Debug, Clone)]
pub enum Query {
    Sql(String),
    Plan(Value),
}

impl RunSubmission {
    pub fn query(&self) -> Result<Query, Error> {
        let query_type = match self.query_type.as_deref() {
            None => QueryType::Sql,
            Some(text) => QueryType::parse(text).ok_or_else(|| {
                Error::invalid(format!("query_type {text:?} is not supported: use \"sql\" (the default) or \"plan\""))
            })?,
        };
        match (query_type, &self.sql, &self.plan) {
            (QueryType::Sql, Some(sql), None) if sql.trim().is_empty() => Err(Error::invalid("sql must not be empty")),
            (QueryType::Sql, Some(sql), None) => Ok(Query::Sql(sql.clone())),
            (QueryType::Sql, None, _) => {
                Err(Error::invalid("sql is required (or send \"query_type\": \"plan\" with a plan)"))
            }
            (QueryType::Sql, Some(_), Some(_)) => Err(Error::invalid("send either sql or a plan, not both")),
            (QueryType::Plan, None, Some(plan)) => Ok(Query::Plan(plan.clone())),
            (QueryType::Plan, _, None) => Err(Error::invalid("query_type \"plan\" needs a plan (GET /schemas/plan)")),
            (QueryType::Plan, Some(_), Some(_)) => Err(Error::invalid("send either sql or a plan, not both")),
        }
    }
}

/// Who asked for a run, for its record, its span, its grants and per-client fairness.
#[derive(Debug, Clone)]
pub struct Origin {
    pub request_id: Option<String>,
    pub turn_id: Option<String>,
    /// The fairness key (`crate::auth::Caller::client`); `None` for the service's own
    /// queries.
    pub client: Option<String>,
    /// Who asked: the run is theirs, on a dataset they may use.
    pub principal: Principal,
    /// Where: `api`, `chat` or `mcp`, recorded with the run.
    pub channel: &'static str,
}
