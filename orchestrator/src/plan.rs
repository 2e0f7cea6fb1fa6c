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
//! The plan's schema lives here only: the serde types below and [`json_schema`] (served
//! at `GET /schemas/plan`), which a test keeps in agreement.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

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

/// A filter's value: one scalar, or an array of scalars (no objects, no nesting).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    One(Scalar),
    List(Vec<Scalar>),
}

/// A JSON string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
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

/// A plan and the SQL it compiled to.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPlan {
    pub plan: QueryPlan,
    pub sql: String,
}

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
    fn at(path: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError { path: Some(path.into()), message: message.into() }
    }
}

/// What a plan is checked against: the dataset's tables, each with its column names
/// in order, and the service's row cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanScope {
    /// Table name → its column names (in order), as the plan is checked against them.
    pub tables: Vec<(String, Vec<String>)>,
    /// The largest `limit` a plan may ask for.
    pub max_rows: u64,
}

/// Parses `plan` strictly (unknown fields refused with their path), checks it against
/// `scope` and compiles it to one `SELECT` statement.
pub fn compile(plan: &Value, scope: &PlanScope) -> Result<CompiledPlan, PlanError> {
    let plan: QueryPlan = serde_path_to_error::deserialize(plan).map_err(|e| {
        let path = e.path().to_string();
        PlanError { path: (path != ".").then_some(path), message: e.into_inner().to_string() }
    })?;
    compile_plan(plan, scope)
}

/// Checks an already typed plan against `scope` and compiles it.
pub fn compile_plan(plan: QueryPlan, scope: &PlanScope) -> Result<CompiledPlan, PlanError> {
    let sql = to_sql(&plan, scope)?;
    Ok(CompiledPlan { plan, sql })
}

fn to_sql(plan: &QueryPlan, scope: &PlanScope) -> Result<String, PlanError> {
    let table = scope.table(&plan.table)?;
    if plan.select.is_empty() {
        return Err(PlanError::at("select", "select needs at least one column or aggregate"));
    }

    let mut grouped: Vec<&str> = Vec::new();
    for (i, name) in plan.group_by.iter().enumerate() {
        let path = format!("group_by[{i}]");
        let column = table.column(name, &path)?;
        if grouped.contains(&column) {
            return Err(PlanError::at(path, format!("column {column:?} is already in group_by")));
        }
        grouped.push(column);
    }
    let grouping = !grouped.is_empty() || plan.select.iter().any(|item| item.agg.is_some());

    let mut select_sql = Vec::new();
    let mut output_names: Vec<&str> = Vec::new();
    let mut aliases: Vec<&str> = Vec::new();
    for (i, item) in plan.select.iter().enumerate() {
        let path = format!("select[{i}]");
        if let Some(alias) = &item.alias
            && alias.is_empty()
        {
            return Err(PlanError::at(format!("{path}.as"), "an alias must not be empty"));
        }
        let (sql, output) = match item.agg {
            None => {
                let name = item.column.as_deref().ok_or_else(|| {
                    PlanError::at(
                        &path,
                        "a select item needs \"column\" (a column of the table) or \"agg\" (an aggregate)",
                    )
                })?;
                let column_path = format!("{path}.column");
                let column = table.column(name, &column_path)?;
                if grouping && !grouped.contains(&column) {
                    return Err(PlanError::at(
                        column_path,
                        format!(
                            "column {column:?} is selected without an aggregate while the plan aggregates, so it \
                             must be in group_by (which has: {})",
                            list_or_none(&grouped)
                        ),
                    ));
                }
                match item.alias.as_deref() {
                    Some(alias) => (format!("{} AS {}", quote_identifier(column), quote_identifier(alias)), alias),
                    None => (quote_identifier(column), column),
                }
            }
            Some(agg) => {
                let alias = item.alias.as_deref().ok_or_else(|| {
                    PlanError::at(&path, format!("the {} aggregate needs an alias: add \"as\"", agg.name()))
                })?;
                let column = match item.column.as_deref() {
                    Some(name) => Some(table.column(name, &format!("{path}.column"))?),
                    None if agg == Aggregate::Count => None,
                    None => return Err(PlanError::at(&path, format!("the {} aggregate needs a column", agg.name()))),
                };
                (format!("{} AS {}", agg.sql(column), quote_identifier(alias)), alias)
            }
        };
        if output_names.contains(&output) {
            return Err(PlanError::at(
                path,
                format!("the select has two output columns named {output:?}; give one of them another alias (\"as\")"),
            ));
        }
        output_names.push(output);
        if let Some(alias) = item.alias.as_deref() {
            aliases.push(alias);
        }
        select_sql.push(sql);
    }

    let mut sql = format!("SELECT {} FROM {}", select_sql.join(", "), quote_identifier(table.name));

    if !plan.filters.is_empty() {
        let conditions =
            plan.filters.iter().enumerate().map(|(i, f)| filter_sql(f, i, &table)).collect::<Result<Vec<_>, _>>()?;
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }

    if !grouped.is_empty() {
        let columns: Vec<String> = grouped.iter().map(|c| quote_identifier(c)).collect();
        sql.push_str(" GROUP BY ");
        sql.push_str(&columns.join(", "));
    }

    if !plan.order_by.is_empty() {
        let mut keys = Vec::new();
        for (i, order) in plan.order_by.iter().enumerate() {
            let path = format!("order_by[{i}].column");
            let target = if aliases.contains(&order.column.as_str()) {
                order.column.as_str()
            } else {
                let column = table.column(&order.column, &path).map_err(|mut e| {
                    if !aliases.is_empty() {
                        e.message.push_str(&format!("; the select's aliases are: {}", aliases.join(", ")));
                    }
                    e
                })?;
                if grouping && !grouped.contains(&column) {
                    return Err(PlanError::at(
                        path,
                        format!(
                            "the plan aggregates, so order_by may name an alias of the select or a column of \
                             group_by; {column:?} is neither (group_by has: {}; aliases: {})",
                            list_or_none(&grouped),
                            list_or_none(&aliases)
                        ),
                    ));
                }
                column
            };
            let direction = match order.direction {
                Direction::Asc => "ASC",
                Direction::Desc => "DESC",
            };
            keys.push(format!("{} {direction}", quote_identifier(target)));
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(&keys.join(", "));
    }

    if let Some(limit) = plan.limit {
        if limit == 0 || limit > scope.max_rows {
            return Err(PlanError::at(
                "limit",
                format!("limit must be between 1 and {} (the service's MAX_ROWS), got {limit}", scope.max_rows),
            ));
        }
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    Ok(sql)
}

fn filter_sql(filter: &Filter, index: usize, table: &Table<'_>) -> Result<String, PlanError> {
    let path = format!("filters[{index}]");
    let value_path = format!("{path}.value");
    let column = quote_identifier(table.column(&filter.column, &format!("{path}.column"))?);
    let op = filter.op;
    let name = op.name();
    let needs_value = || PlanError::at(&path, format!("{name} needs a \"value\""));
    match op {
        FilterOp::Eq | FilterOp::NotEq | FilterOp::Lt | FilterOp::LtEq | FilterOp::Gt | FilterOp::GtEq => {
            let scalar = match filter.value.as_ref().ok_or_else(needs_value)? {
                FilterValue::One(scalar) => scalar,
                FilterValue::List(_) => {
                    return Err(PlanError::at(
                        value_path,
                        format!(
                            "{name} takes one value (a string, number or boolean), not an array; for several values \
                             use in"
                        ),
                    ));
                }
            };
            let operator = match op {
                FilterOp::Eq => "=",
                FilterOp::NotEq => "<>",
                FilterOp::Lt => "<",
                FilterOp::LtEq => "<=",
                FilterOp::Gt => ">",
                _ => ">=",
            };
            Ok(format!("{column} {operator} {}", scalar.sql()))
        }
        FilterOp::In => {
            let values = match filter.value.as_ref().ok_or_else(needs_value)? {
                FilterValue::List(values) if !values.is_empty() => values,
                _ => return Err(PlanError::at(value_path, "in takes a non-empty array of values")),
            };
            if values.len() > MAX_IN_VALUES {
                return Err(PlanError::at(
                    value_path,
                    format!("in takes at most {MAX_IN_VALUES} values, got {}", values.len()),
                ));
            }
            let values: Vec<String> = values.iter().map(Scalar::sql).collect();
            Ok(format!("{column} IN ({})", values.join(", ")))
        }
        FilterOp::Between => match filter.value.as_ref().ok_or_else(needs_value)? {
            FilterValue::List(values) if values.len() == 2 => {
                Ok(format!("{column} BETWEEN {} AND {}", values[0].sql(), values[1].sql()))
            }
            FilterValue::List(values) => Err(PlanError::at(
                value_path,
                format!("between takes an array of two values [low, high], got {}", values.len()),
            )),
            FilterValue::One(_) => {
                Err(PlanError::at(value_path, "between takes an array of two values [low, high], got one value"))
            }
        },
        FilterOp::Contains | FilterOp::StartsWith | FilterOp::EndsWith => {
            let text = match filter.value.as_ref().ok_or_else(needs_value)? {
                FilterValue::One(Scalar::String(text)) => text,
                other => {
                    return Err(PlanError::at(value_path, format!("{name} takes a string, got {}", other.kind())));
                }
            };
            let escaped = escape_like(text);
            let pattern = match op {
                FilterOp::Contains => format!("%{escaped}%"),
                FilterOp::StartsWith => format!("{escaped}%"),
                _ => format!("%{escaped}"),
            };
            Ok(format!("{column} LIKE {} ESCAPE '\\'", string_literal(&pattern)))
        }
        FilterOp::IsNull | FilterOp::IsNotNull => {
            if filter.value.is_some() {
                return Err(PlanError::at(value_path, format!("{name} takes no value; remove \"value\"")));
            }
            let test = if op == FilterOp::IsNull { "IS NULL" } else { "IS NOT NULL" };
            Ok(format!("{column} {test}"))
        }
    }
}

/// A table of the scope, with its exact name.
struct Table<'s> {
    name: &'s str,
    columns: &'s [String],
}

impl PlanScope {
    fn table(&self, name: &str) -> Result<Table<'_>, PlanError> {
        let names: Vec<&str> = self.tables.iter().map(|(table, _)| table.as_str()).collect();
        let index = resolve(&names, name).map_err(|problem| {
            let message = match problem {
                Unresolved::Unknown => {
                    format!("unknown table {name:?}; the dataset's tables are: {}", list_or_none(&names))
                }
                Unresolved::Ambiguous(matches) => format!(
                    "table {name:?} matches several tables when case is ignored ({}); use the exact name",
                    matches.join(", ")
                ),
            };
            PlanError::at("table", message)
        })?;
        let (name, columns) = &self.tables[index];
        Ok(Table { name, columns })
    }
}

impl<'s> Table<'s> {
    /// The exact name of column `name`; `path` locates it in the plan for errors.
    fn column(&self, name: &str, path: &str) -> Result<&'s str, PlanError> {
        let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        let index = resolve(&columns, name).map_err(|problem| {
            let message = match problem {
                Unresolved::Unknown => format!(
                    "unknown column {name:?} in table {:?}; its columns are: {}",
                    self.name,
                    list_or_none(&columns)
                ),
                Unresolved::Ambiguous(matches) => format!(
                    "column {name:?} matches several columns of table {:?} when case is ignored ({}); use the \
                     exact name",
                    self.name,
                    matches.join(", ")
                ),
            };
            PlanError::at(path, message)
        })?;
        Ok(self.columns[index].as_str())
    }
}

enum Unresolved<'a> {
    Unknown,
    Ambiguous(Vec<&'a str>),
}

/// The index of `name` in `names`: the exact match, else the only match ignoring case.
fn resolve<'a>(names: &[&'a str], name: &str) -> Result<usize, Unresolved<'a>> {
    if let Some(index) = names.iter().position(|n| *n == name) {
        return Ok(index);
    }
    let folded: Vec<usize> = (0..names.len()).filter(|&i| names[i].to_lowercase() == name.to_lowercase()).collect();
    match folded.as_slice() {
        [index] => Ok(*index),
        [] => Err(Unresolved::Unknown),
        many => Err(Unresolved::Ambiguous(many.iter().map(|&i| names[i]).collect())),
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
}

/// `name` as a SQL identifier: double-quoted, `"` doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal: single-quoted, `'` doubled. (The generic dialect
/// does not treat backslashes in literals as escapes.)
fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` as a LIKE pattern matching only itself, with `\` as the escape character.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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

    fn sql(self, column: Option<&str>) -> String {
        let Some(column) = column.map(quote_identifier) else {
            return "COUNT(*)".to_string();
        };
        match self {
            Aggregate::Count => format!("COUNT({column})"),
            Aggregate::CountDistinct => format!("COUNT(DISTINCT {column})"),
            Aggregate::Sum => format!("SUM({column})"),
            Aggregate::Avg => format!("AVG({column})"),
            Aggregate::Min => format!("MIN({column})"),
            Aggregate::Max => format!("MAX({column})"),
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

impl Scalar {
    /// The value as a SQL literal.
    fn sql(&self) -> String {
        match self {
            Scalar::String(text) => string_literal(text),
            Scalar::Number(number) => number.to_string(),
            Scalar::Bool(true) => "TRUE".to_string(),
            Scalar::Bool(false) => "FALSE".to_string(),
        }
    }

    fn from_json(value: Value) -> Result<Scalar, String> {
        match value {
            Value::String(text) => Ok(Scalar::String(text)),
            Value::Number(number) => {
                // serde_json prints numbers as `-12`, `1.5` or `1e+300`: keep it that way,
                // whatever features serde_json is built with.
                let text = number.to_string();
                if text.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')) {
                    Ok(Scalar::Number(number))
                } else {
                    Err(format!("the number {text} cannot be used"))
                }
            }
            Value::Bool(b) => Ok(Scalar::Bool(b)),
            other => Err(format!("a value must be a string, number or boolean, not {}", json_kind(&other))),
        }
    }
}

impl FilterValue {
    fn kind(&self) -> &'static str {
        match self {
            FilterValue::List(_) => "an array",
            FilterValue::One(Scalar::String(_)) => "a string",
            FilterValue::One(Scalar::Number(_)) => "a number",
            FilterValue::One(Scalar::Bool(_)) => "a boolean",
        }
    }

    fn from_json(value: Value) -> Result<FilterValue, String> {
        match value {
            Value::Null => Err("null is not a value; test for null with the is_null or is_not_null op".to_string()),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Array(_) | Value::Object(_) | Value::Null => Err(format!(
                        "element {i} is {}; an array holds only strings, numbers and booleans",
                        json_kind(&item)
                    )),
                    scalar => Scalar::from_json(scalar),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(FilterValue::List),
            scalar => Scalar::from_json(scalar).map(FilterValue::One),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Scalar::from_json(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for FilterValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FilterValue::from_json(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// `value` when present: `null` is refused rather than read as "absent".
fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<FilterValue>, D::Error> {
    FilterValue::deserialize(deserializer).map(Some)
}

/// The JSON Schema (draft 2020-12) of a plan, as served at `GET /schemas/plan`.
/// `limit`'s upper bound is the service's MAX_ROWS and is not part of the schema.
pub fn json_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "QueryPlan",
        "description": "A query over one table of a dataset, compiled to SQL by csv-analyst. \
            Names are matched case-sensitively, then ignoring case. No SQL expressions are accepted anywhere.",
        "type": "object",
        "additionalProperties": false,
        "required": ["table", "select"],
        "properties": {
            "table": {"type": "string", "description": "One of the dataset's tables."},
            "select": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/select_item"},
                "description": "The output columns, in order."
            },
            "filters": {
                "type": "array",
                "items": {"$ref": "#/$defs/filter"},
                "description": "Conditions on the rows; all of them must hold (AND)."
            },
            "group_by": {
                "type": "array",
                "items": {"type": "string"},
                "uniqueItems": true,
                "description": "Columns to group by. When the plan aggregates, every selected column without an \
                    aggregate must be listed here."
            },
            "order_by": {"type": "array", "items": {"$ref": "#/$defs/order_by"}},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "description": "Rows at most, up to the service's MAX_ROWS (its cap applies without a limit)."
            }
        },
        "$defs": {
            "scalar": {"type": ["string", "number", "boolean"]},
            "select_item": {
                "oneOf": [
                    {
                        "title": "column",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["column"],
                        "properties": {
                            "column": {"type": "string"},
                            "as": {"type": "string", "minLength": 1, "description": "The output column's name."}
                        }
                    },
                    {
                        "title": "aggregate",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["agg", "as"],
                        "properties": {
                            "agg": {
                                "enum": ["count", "count_distinct", "sum", "avg", "min", "max"],
                                "description": "count without a column counts rows; with one, its non-null values."
                            },
                            "column": {"type": "string"},
                            "as": {"type": "string", "minLength": 1, "description": "The output column's name."}
                        },
                        "if": {"properties": {"agg": {"const": "count"}}},
                        "else": {"required": ["column"]}
                    }
                ]
            },
            "filter": {
                "type": "object",
                "additionalProperties": false,
                "required": ["column", "op"],
                "properties": {
                    "column": {"type": "string"},
                    "op": {
                        "enum": ["=", "!=", "<", "<=", ">", ">=", "in", "between", "contains", "startswith",
                                 "endswith", "is_null", "is_not_null"],
                        "description": "contains/startswith/endswith match the value literally and case-sensitively."
                    },
                    "value": {
                        "anyOf": [
                            {"$ref": "#/$defs/scalar"},
                            {"type": "array", "items": {"$ref": "#/$defs/scalar"}}
                        ]
                    }
                },
                "allOf": [
                    {
                        "if": {"properties": {"op": {"enum": ["=", "!=", "<", "<=", ">", ">="]}}},
                        "then": {"required": ["value"], "properties": {"value": {"$ref": "#/$defs/scalar"}}}
                    },
                    {
                        "if": {"properties": {"op": {"const": "in"}}},
                        "then": {
                            "required": ["value"],
                            "properties": {"value": {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES}}
                        }
                    },
                    {
                        "if": {"properties": {"op": {"const": "between"}}},
                        "then": {
                            "required": ["value"],
                            "properties": {"value": {"type": "array", "minItems": 2, "maxItems": 2}}
                        }
                    },
                    {
                        "if": {"properties": {"op": {"enum": ["contains", "startswith", "endswith"]}}},
                        "then": {"required": ["value"], "properties": {"value": {"type": "string"}}}
                    },
                    {
                        "if": {"properties": {"op": {"enum": ["is_null", "is_not_null"]}}},
                        "then": {"not": {"required": ["value"]}}
                    }
                ]
            },
            "order_by": {
                "type": "object",
                "additionalProperties": false,
                "required": ["column"],
                "properties": {
                    "column": {"type": "string", "description": "An alias of the select, or a column."},
                    "direction": {"enum": ["asc", "desc"], "default": "asc"}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fmt;
    use std::ops::ControlFlow;

    // The guest's parser (DataFusion 55's, 0.62) for what the query means; the policy's
    // (the orchestrator's own sqlparser) must accept it too.
    use sqlparser_guest::ast::{Expr, SetExpr, Statement, Value as SqlValue, visit_expressions};
    use sqlparser_guest::dialect::GenericDialect;
    use sqlparser_guest::parser::Parser;

    use super::*;

    fn scope() -> PlanScope {
        PlanScope {
            tables: vec![
                (
                    "tickets".into(),
                    vec![
                        "ticket_id".into(),
                        "created_at".into(),
                        "category".into(),
                        "priority".into(),
                        "status".into(),
                        "resolution_hours".into(),
                        "sla_met".into(),
                        "Channel".into(),
                        "odd\"name".into(),
                    ],
                ),
                ("Agents".into(), vec!["agent_id".into(), "region".into(), "Region".into()]),
            ],
            max_rows: 1000,
        }
    }

    /// Parses `sql` with the generic dialect of the guest's parser (DataFusion's) and of
    /// the policy's, each of which must give one query; returns the guest's.
    fn parse(sql: &str) -> Statement {
        let policy = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, sql)
            .unwrap_or_else(|e| panic!("the policy's parser refused {sql}: {e}"));
        assert!(matches!(policy.as_slice(), [sqlparser::ast::Statement::Query(_)]), "{sql}");
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
            .unwrap_or_else(|e| panic!("the guest's parser refused {sql}: {e}"));
        assert_eq!(statements.len(), 1, "{sql}");
        let statement = statements.remove(0);
        assert!(matches!(statement, Statement::Query(_)), "{sql}");
        statement
    }

    /// The SQL of a plan that must compile; every compiled query is parsed.
    fn sql(plan: Value) -> String {
        let compiled = compile(&plan, &scope()).unwrap_or_else(|e| panic!("{plan} was refused: {e:?}"));
        parse(&compiled.sql);
        compiled.sql
    }

    fn refused(plan: Value) -> PlanError {
        match compile(&plan, &scope()) {
            Ok(compiled) => panic!("{plan} compiled to {}", compiled.sql),
            Err(e) => e,
        }
    }

    fn refused_at(plan: Value, path: &str, message: &str) {
        let e = refused(plan);
        assert_eq!((e.path.as_deref(), e.message.as_str()), (Some(path), message));
    }

    /// A plan over `tickets` selecting `ticket_id` with one filter.
    fn filtered(filter: Value) -> Value {
        json!({"table": "tickets", "select": [{"column": "ticket_id"}], "filters": [filter]})
    }

    fn string_literals(sql: &str) -> Vec<String> {
        let mut found = Vec::new();
        let _ = visit_expressions(&parse(sql), |expr| {
            if let Expr::Value(v) = expr
                && let SqlValue::SingleQuotedString(s) = &v.value
            {
                found.push(s.clone());
            }
            ControlFlow::<()>::Continue(())
        });
        found
    }

    fn where_clause(sql: &str) -> Expr {
        let Statement::Query(query) = parse(sql) else { unreachable!() };
        let SetExpr::Select(select) = *query.body else { panic!("{sql} is not a plain SELECT") };
        select.selection.expect("a WHERE clause")
    }

    #[test]
    fn every_operator_compiles_to_its_golden_sql() {
        let cases = [
            ("=", json!("High"), r#""priority" = 'High'"#),
            ("!=", json!("High"), r#""priority" <> 'High'"#),
            ("<", json!(10), r#""priority" < 10"#),
            ("<=", json!(-2.5), r#""priority" <= -2.5"#),
            (">", json!(true), r#""priority" > TRUE"#),
            (">=", json!(1e300), r#""priority" >= 1e+300"#),
            ("in", json!(["Low", 2, false]), r#""priority" IN ('Low', 2, FALSE)"#),
            ("between", json!(["2024-01-01", "2024-02-01"]), r#""priority" BETWEEN '2024-01-01' AND '2024-02-01'"#),
            ("contains", json!("50%_off"), r#""priority" LIKE '%50\%\_off%' ESCAPE '\'"#),
            ("startswith", json!("a\\b"), r#""priority" LIKE 'a\\b%' ESCAPE '\'"#),
            ("endswith", json!("it's"), r#""priority" LIKE '%it''s' ESCAPE '\'"#),
            ("is_null", Value::Null, r#""priority" IS NULL"#),
            ("is_not_null", Value::Null, r#""priority" IS NOT NULL"#),
        ];
        for (op, value, condition) in &cases {
            let mut filter = json!({"column": "priority", "op": op});
            if !value.is_null() {
                filter["value"] = value.clone();
            }
            assert_eq!(sql(filtered(filter)), format!(r#"SELECT "ticket_id" FROM "tickets" WHERE {condition}"#));
        }
        let tested: BTreeSet<&str> = cases.iter().map(|(op, _, _)| *op).collect();
        assert_eq!(tested, schema_enum(&json_schema()["$defs"]["filter"]["properties"]["op"]), "an op is untested");
    }

    #[test]
    fn every_aggregate_compiles_to_its_golden_sql() {
        let cases = [
            (json!({"agg": "count", "as": "n"}), r#"COUNT(*) AS "n""#),
            (json!({"agg": "count", "column": "status", "as": "n"}), r#"COUNT("status") AS "n""#),
            (json!({"agg": "count_distinct", "column": "status", "as": "n"}), r#"COUNT(DISTINCT "status") AS "n""#),
            (json!({"agg": "sum", "column": "resolution_hours", "as": "s"}), r#"SUM("resolution_hours") AS "s""#),
            (json!({"agg": "avg", "column": "resolution_hours", "as": "a"}), r#"AVG("resolution_hours") AS "a""#),
            (json!({"agg": "min", "column": "created_at", "as": "first"}), r#"MIN("created_at") AS "first""#),
            (json!({"agg": "max", "column": "created_at", "as": "last"}), r#"MAX("created_at") AS "last""#),
        ];
        for (item, expected) in &cases {
            let plan = json!({"table": "tickets", "select": [item]});
            assert_eq!(sql(plan), format!(r#"SELECT {expected} FROM "tickets""#));
        }
        let tested: BTreeSet<&str> = cases.iter().map(|(item, _)| item["agg"].as_str().unwrap()).collect();
        let aggregate_item = &json_schema()["$defs"]["select_item"]["oneOf"][1];
        assert_eq!(tested, schema_enum(&aggregate_item["properties"]["agg"]), "an aggregate is untested");
    }

    #[test]
    fn a_full_plan_compiles_to_one_statement() {
        let plan = json!({
            "table": "TICKETS",
            "select": [
                {"column": "priority"},
                {"column": "Category", "as": "cat"},
                {"agg": "avg", "column": "resolution_hours", "as": "avg_hours"},
                {"agg": "count", "as": "n"}
            ],
            "filters": [
                {"column": "status", "op": "=", "value": "closed"},
                {"column": "created_at", "op": "between", "value": ["2024-01-01", "2024-07-01"]},
                {"column": "channel", "op": "is_not_null"}
            ],
            "group_by": ["priority", "category"],
            "order_by": [{"column": "avg_hours", "direction": "desc"}, {"column": "priority"}],
            "limit": 10
        });
        assert_eq!(
            sql(plan),
            r#"SELECT "priority", "category" AS "cat", AVG("resolution_hours") AS "avg_hours", COUNT(*) AS "n" FROM "tickets" WHERE "status" = 'closed' AND "created_at" BETWEEN '2024-01-01' AND '2024-07-01' AND "Channel" IS NOT NULL GROUP BY "priority", "category" ORDER BY "avg_hours" DESC, "priority" ASC LIMIT 10"#
        );
    }

    #[test]
    fn a_value_that_looks_like_sql_stays_one_literal() {
        let hostile = "'; DROP TABLE x; --";
        let compiled = sql(filtered(json!({"column": "status", "op": "=", "value": hostile})));
        assert_eq!(compiled, r#"SELECT "ticket_id" FROM "tickets" WHERE "status" = '''; DROP TABLE x; --'"#);
        assert_eq!(string_literals(&compiled), vec![hostile.to_string()]);

        let in_list = sql(filtered(json!({"column": "status", "op": "in", "value": [hostile, "a'b"]})));
        assert_eq!(string_literals(&in_list), vec![hostile.to_string(), "a'b".to_string()]);

        let like = sql(filtered(json!({"column": "status", "op": "contains", "value": hostile})));
        assert_eq!(string_literals(&like), vec![format!("%{hostile}%")]);
    }

    #[test]
    fn text_operators_match_their_value_literally() {
        let compiled = sql(filtered(json!({"column": "status", "op": "contains", "value": "50%_off"})));
        let Expr::Like { negated: false, any: false, pattern, escape_char, .. } = where_clause(&compiled) else {
            panic!("{compiled} has no LIKE");
        };
        let Expr::Value(pattern) = *pattern else { panic!("the pattern is not a literal") };
        assert_eq!(pattern.value, SqlValue::SingleQuotedString(r"%50\%\_off%".to_string()));
        assert_eq!(escape_char.map(|v| v.value), Some(SqlValue::SingleQuotedString(r"\".to_string())));

        assert_eq!(escape_like(r"100% a_b \n"), r"100\% a\_b \\n");
    }

    #[test]
    fn numbers_stay_numbers() {
        let numbers: Value = serde_json::from_str("[0, -7, 1.5e-7, 2.0, 18446744073709551615, -9223372036854775808]")
            .expect("valid JSON");
        assert_eq!(
            sql(filtered(json!({"column": "resolution_hours", "op": "in", "value": numbers}))),
            r#"SELECT "ticket_id" FROM "tickets" WHERE "resolution_hours" IN (0, -7, 1.5e-7, 2.0, 18446744073709551615, -9223372036854775808)"#
        );
    }

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        let compiled =
            sql(json!({"table": "tickets", "select": [{"column": "odd\"name", "as": "x\"; DROP TABLE y; --"}]}));
        assert_eq!(compiled, r#"SELECT "odd""name" AS "x""; DROP TABLE y; --" FROM "tickets""#);
    }

    #[test]
    fn names_resolve_exactly_then_ignoring_case() {
        assert_eq!(
            sql(json!({"table": "agents", "select": [{"column": "AGENT_ID", "as": "id"}, {"column": "Region"}]})),
            r#"SELECT "agent_id" AS "id", "Region" FROM "Agents""#
        );
        refused_at(
            json!({"table": "Agents", "select": [{"column": "REGION"}]}),
            "select[0].column",
            r#"column "REGION" matches several columns of table "Agents" when case is ignored (region, Region); use the exact name"#,
        );
    }

    #[test]
    fn unknown_tables_and_columns_are_refused_naming_what_exists() {
        refused_at(
            json!({"table": "orders", "select": [{"column": "x"}]}),
            "table",
            r#"unknown table "orders"; the dataset's tables are: tickets, Agents"#,
        );
        refused_at(
            json!({"table": "agents", "select": [{"column": "name"}]}),
            "select[0].column",
            r#"unknown column "name" in table "Agents"; its columns are: agent_id, region, Region"#,
        );
        refused_at(
            filtered(json!({"column": "nope", "op": "is_null"})),
            "filters[0].column",
            r#"unknown column "nope" in table "tickets"; its columns are: ticket_id, created_at, category, priority, status, resolution_hours, sla_met, Channel, odd"name"#,
        );
        refused_at(
            json!({"table": "agents", "select": [{"agg": "count", "as": "n"}], "group_by": ["x"]}),
            "group_by[0]",
            r#"unknown column "x" in table "Agents"; its columns are: agent_id, region, Region"#,
        );
        refused_at(
            json!({"table": "agents", "select": [{"column": "agent_id", "as": "id"}], "order_by": [{"column": "ids"}]}),
            "order_by[0].column",
            r#"unknown column "ids" in table "Agents"; its columns are: agent_id, region, Region; the select's aliases are: id"#,
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let cases = [
            (json!({"table": "tickets", "select": [{"column": "status"}], "where": "1=1"}), "where"),
            (
                json!({"table": "tickets", "select": [{"column": "status"}, {"column": "x", "expr": "1"}]}),
                "select[1].expr",
            ),
            (filtered(json!({"colum": "status", "op": "is_null"})), "filters[0].colum"),
            (
                json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"column": "status", "dir": "asc"}]}),
                "order_by[0].dir",
            ),
        ];
        for (plan, path) in cases {
            let e = refused(plan);
            assert_eq!(e.path.as_deref(), Some(path));
            let field = path.rsplit('.').next().unwrap();
            assert!(e.message.starts_with(&format!("unknown field `{field}`, expected ")), "{}", e.message);
        }
    }

    #[test]
    fn malformed_plans_are_refused_with_their_path() {
        let e = refused(json!({"select": [{"column": "status"}]}));
        assert_eq!((e.path, e.message.as_str()), (None, "missing field `table`"));
        let e = refused(json!("SELECT 1"));
        assert_eq!(e.path, None);
        assert_eq!(e.message, r#"invalid type: string "SELECT 1", expected struct QueryPlan"#);
        refused_at(
            json!({"table": "tickets", "select": [{"agg": "median", "column": "x", "as": "m"}]}),
            "select[0].agg",
            "unknown variant `median`, expected one of `count`, `count_distinct`, `sum`, `avg`, `min`, `max`",
        );
        refused_at(
            filtered(json!({"column": "status", "op": "like", "value": "a%"})),
            "filters[0].op",
            "unknown variant `like`, expected one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `between`, `contains`, \
             `startswith`, `endswith`, `is_null`, `is_not_null`",
        );
        refused_at(
            json!({"table": "tickets", "select": []}),
            "select",
            "select needs at least one column or aggregate",
        );
        refused_at(
            json!({"table": "tickets", "select": [{"as": "x"}]}),
            "select[0]",
            r#"a select item needs "column" (a column of the table) or "agg" (an aggregate)"#,
        );
    }

    #[test]
    fn limits_outside_one_to_max_rows_are_refused() {
        let plan = |limit: Value| json!({"table": "tickets", "select": [{"column": "status"}], "limit": limit});
        assert_eq!(sql(plan(json!(1000))), r#"SELECT "status" FROM "tickets" LIMIT 1000"#);
        refused_at(plan(json!(1001)), "limit", "limit must be between 1 and 1000 (the service's MAX_ROWS), got 1001");
        refused_at(plan(json!(0)), "limit", "limit must be between 1 and 1000 (the service's MAX_ROWS), got 0");
        refused_at(plan(json!(-1)), "limit", "invalid value: integer `-1`, expected u64");
        refused_at(plan(json!("10")), "limit", r#"invalid type: string "10", expected u64"#);
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused() {
        let value = |op: &str, value: Value| filtered(json!({"column": "status", "op": op, "value": value}));
        refused_at(value("in", json!([])), "filters[0].value", "in takes a non-empty array of values");
        refused_at(value("in", json!("a")), "filters[0].value", "in takes a non-empty array of values");
        refused_at(
            value("in", json!(vec![1; MAX_IN_VALUES + 1])),
            "filters[0].value",
            "in takes at most 1000 values, got 1001",
        );
        refused_at(
            value("between", json!([1, 2, 3])),
            "filters[0].value",
            "between takes an array of two values [low, high], got 3",
        );
        refused_at(
            value("between", json!(1)),
            "filters[0].value",
            "between takes an array of two values [low, high], got one value",
        );
        refused_at(
            value("=", json!({"raw": "1=1"})),
            "filters[0].value",
            "a value must be a string, number or boolean, not an object",
        );
        refused_at(
            value("in", json!(["a", ["b"]])),
            "filters[0].value",
            "element 1 is an array; an array holds only strings, numbers and booleans",
        );
        refused_at(
            value("in", json!(["a", null])),
            "filters[0].value",
            "element 1 is null; an array holds only strings, numbers and booleans",
        );
        refused_at(
            value("=", Value::Null),
            "filters[0].value",
            "null is not a value; test for null with the is_null or is_not_null op",
        );
        refused_at(
            value("=", json!(["a", "b"])),
            "filters[0].value",
            "= takes one value (a string, number or boolean), not an array; for several values use in",
        );
        refused_at(value("contains", json!(5)), "filters[0].value", "contains takes a string, got a number");
        refused_at(value("startswith", json!(["a"])), "filters[0].value", "startswith takes a string, got an array");
        refused_at(value("is_null", json!("x")), "filters[0].value", r#"is_null takes no value; remove "value""#);
        refused_at(filtered(json!({"column": "status", "op": ">"})), "filters[0]", r#"> needs a "value""#);
    }

    #[test]
    fn aggregates_need_aliases_columns_and_grouping() {
        refused_at(
            json!({"table": "tickets", "select": [{"agg": "count"}]}),
            "select[0]",
            r#"the count aggregate needs an alias: add "as""#,
        );
        refused_at(
            json!({"table": "tickets", "select": [{"agg": "sum", "as": "s"}]}),
            "select[0]",
            "the sum aggregate needs a column",
        );
        refused_at(
            json!({"table": "tickets", "select": [{"column": "status", "as": ""}]}),
            "select[0].as",
            "an alias must not be empty",
        );
        refused_at(
            json!({"table": "tickets", "select": [{"column": "priority"}, {"agg": "count", "as": "n"}]}),
            "select[0].column",
            r#"column "priority" is selected without an aggregate while the plan aggregates, so it must be in group_by (which has: (none))"#,
        );
        refused_at(
            json!({"table": "tickets", "select": [{"column": "status"}], "group_by": ["priority"]}),
            "select[0].column",
            r#"column "status" is selected without an aggregate while the plan aggregates, so it must be in group_by (which has: priority)"#,
        );
        refused_at(
            json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}], "group_by": ["priority"],
                   "order_by": [{"column": "status"}]}),
            "order_by[0].column",
            r#"the plan aggregates, so order_by may name an alias of the select or a column of group_by; "status" is neither (group_by has: priority; aliases: n)"#,
        );
        refused_at(
            json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}], "group_by": ["priority", "PRIORITY"]}),
            "group_by[1]",
            r#"column "priority" is already in group_by"#,
        );
        refused_at(
            json!({"table": "tickets", "select": [{"column": "status"}, {"column": "priority", "as": "status"}]}),
            "select[1]",
            r#"the select has two output columns named "status"; give one of them another alias ("as")"#,
        );
        // Grouped columns need not be selected; ordering by a plain column works without aggregates.
        assert_eq!(
            sql(json!({"table": "tickets", "select": [{"agg": "max", "column": "created_at", "as": "last"}],
                       "group_by": ["priority"], "order_by": [{"column": "priority", "direction": "desc"}]})),
            r#"SELECT MAX("created_at") AS "last" FROM "tickets" GROUP BY "priority" ORDER BY "priority" DESC"#
        );
        assert_eq!(
            sql(json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"column": "created_at"}]})),
            r#"SELECT "status" FROM "tickets" ORDER BY "created_at" ASC"#
        );
    }

    #[test]
    fn a_compiled_plan_serializes_back_to_an_equivalent_plan() {
        let plan = json!({
            "table": "tickets",
            "select": [{"column": "priority"}, {"agg": "count", "as": "n"}],
            "filters": [{"column": "status", "op": "in", "value": ["open", 3, true]},
                        {"column": "sla_met", "op": "is_null"}],
            "group_by": ["priority"],
            "order_by": [{"column": "n", "direction": "desc"}],
            "limit": 5
        });
        let compiled = compile(&plan, &scope()).unwrap();
        let round_trip = serde_json::to_value(&compiled.plan).unwrap();
        assert_eq!(round_trip, plan);
        assert_eq!(compile(&round_trip, &scope()).unwrap().sql, compiled.sql);
    }

    /// The names inside backticks of a serde error, after the first (the offending one):
    /// the fields or variants serde expects.
    fn serde_expected(message: &str) -> BTreeSet<String> {
        message.split('`').skip(1).step_by(2).skip(1).map(str::to_string).collect()
    }

    fn serde_fields<T: for<'de> Deserialize<'de> + fmt::Debug>() -> BTreeSet<String> {
        let e = serde_json::from_value::<T>(json!({"not_a_field": 1})).expect_err("an unknown field is refused");
        serde_expected(&e.to_string())
    }

    fn serde_variants<T: for<'de> Deserialize<'de> + fmt::Debug>() -> BTreeSet<String> {
        let e = serde_json::from_value::<T>(json!("not_a_variant")).expect_err("an unknown variant is refused");
        serde_expected(&e.to_string())
    }

    fn schema_properties(object: &Value) -> BTreeSet<String> {
        assert_eq!(object["additionalProperties"], json!(false), "{object}");
        object["properties"].as_object().expect("properties").keys().cloned().collect()
    }

    fn schema_enum(property: &Value) -> BTreeSet<&str> {
        property["enum"].as_array().expect("an enum").iter().map(|v| v.as_str().expect("a string")).collect()
    }

    #[test]
    fn the_json_schema_and_the_serde_types_agree() {
        let schema = json_schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let defs = &schema["$defs"];

        assert_eq!(schema_properties(&schema), serde_fields::<QueryPlan>());
        assert_eq!(schema_properties(&defs["filter"]), serde_fields::<Filter>());
        assert_eq!(schema_properties(&defs["order_by"]), serde_fields::<OrderBy>());
        let select_shapes = defs["select_item"]["oneOf"].as_array().unwrap();
        let select_properties: BTreeSet<String> = select_shapes.iter().flat_map(schema_properties).collect();
        assert_eq!(select_properties, serde_fields::<SelectItem>());

        let names = |set: BTreeSet<&str>| set.into_iter().map(str::to_string).collect::<BTreeSet<String>>();
        assert_eq!(names(schema_enum(&defs["filter"]["properties"]["op"])), serde_variants::<FilterOp>());
        assert_eq!(names(schema_enum(&select_shapes[1]["properties"]["agg"])), serde_variants::<Aggregate>());
        assert_eq!(names(schema_enum(&defs["order_by"]["properties"]["direction"])), serde_variants::<Direction>());

        // What the schema requires, serde requires too.
        let required = |object: &Value| -> Vec<String> {
            object["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(required(&schema), ["table", "select"]);
        assert_eq!(required(&defs["filter"]), ["column", "op"]);
        assert_eq!(required(&defs["order_by"]), ["column"]);
        for missing in ["table", "select"] {
            let mut plan = json!({"table": "tickets", "select": [{"column": "status"}]});
            plan.as_object_mut().unwrap().remove(missing);
            assert_eq!(refused(plan).message, format!("missing field `{missing}`"));
        }
        refused_at(
            json!({"table": "tickets", "select": [{"column": "status"}], "filters": [{"op": "is_null"}]}),
            "filters[0]",
            "missing field `column`",
        );
        refused_at(
            json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"direction": "asc"}]}),
            "order_by[0]",
            "missing field `column`",
        );

        // The op names the compiler prints are the plan's names.
        let all_ops = [
            FilterOp::Eq,
            FilterOp::NotEq,
            FilterOp::Lt,
            FilterOp::LtEq,
            FilterOp::Gt,
            FilterOp::GtEq,
            FilterOp::In,
            FilterOp::Between,
            FilterOp::Contains,
            FilterOp::StartsWith,
            FilterOp::EndsWith,
            FilterOp::IsNull,
            FilterOp::IsNotNull,
        ];
        for op in all_ops {
            assert_eq!(serde_json::to_value(op).unwrap(), json!(op.name()));
        }
        let all_aggregates = [
            Aggregate::Count,
            Aggregate::CountDistinct,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
        ];
        for agg in all_aggregates {
            assert_eq!(serde_json::to_value(agg).unwrap(), json!(agg.name()));
        }
    }
}
