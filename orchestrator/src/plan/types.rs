//! The plan's JSON format: [`QueryPlan`] and its parts as serde reads and writes
//! them (unknown fields refused, with their path), and the names a plan uses for
//! its aggregates and operators.
//!
//! Uses `super::values` (a filter's value) and nothing else of the plan module; it
//! knows nothing of SQL.

use serde::{Deserialize, Deserializer, Serialize};

use super::values::FilterValue;

/// Values an `in` filter may list at most.
pub const MAX_IN_VALUES: usize = 1000;

/// A query over one table, as an agent or the UI sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryPlan {
    /// One of the dataset's tables.
    pub table: String,
    /// What the query returns, in order; at least one item.
    pub select: Vec<SelectItem>,
    /// Conditions on the table's rows, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Columns to group by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<OrderBy>,
    /// Rows at most: 1..=the scope's `max_rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// One item of `select`: a column (`{"column", "as"?}`) or an aggregate
/// (`{"agg", "column"?, "as"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The output column's name.
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
}

/// One condition: `{"column", "op", "value"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    /// Absent for `is_null` / `is_not_null`; an array for `in` and `between`.
    #[serde(default, deserialize_with = "present_value", skip_serializing_if = "Option::is_none")]
    pub value: Option<FilterValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    NotEq,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    LtEq,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    GtEq,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "between")]
    Between,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "startswith")]
    StartsWith,
    #[serde(rename = "endswith")]
    EndsWith,
    #[serde(rename = "is_null")]
    IsNull,
    #[serde(rename = "is_not_null")]
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    /// An alias of the select, or a column of the table.
    pub column: String,
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

impl Aggregate {
    /// The name in a plan (`count_distinct`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::CountDistinct => "count_distinct",
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

impl FilterOp {
    /// The name in a plan (`startswith`, `!=`).
    pub fn name(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::NotEq => "!=",
            FilterOp::Lt => "<",
            FilterOp::LtEq => "<=",
            FilterOp::Gt => ">",
            FilterOp::GtEq => ">=",
            FilterOp::In => "in",
            FilterOp::Between => "between",
            FilterOp::Contains => "contains",
            FilterOp::StartsWith => "startswith",
            FilterOp::EndsWith => "endswith",
            FilterOp::IsNull => "is_null",
            FilterOp::IsNotNull => "is_not_null",
        }
    }
}

/// `value` when present: `null` is refused rather than read as "absent".
fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<FilterValue>, D::Error> {
    FilterValue::deserialize(deserializer).map(Some)
}
