//! The compiler: [`compile`] and [`compile_plan`] check a [`QueryPlan`] against a
//! [`PlanScope`] and turn it into one `SELECT` statement ([`CompiledPlan`]). The
//! checks that span the parts of a plan (grouping, aliases, ordering, the limit, each
//! operator's value) live here.
//!
//! Uses `super::types`, `super::values`, `super::error`, `super::scope` and
//! `super::sql`; not the JSON schema.

use serde_json::Value;

use super::error::PlanError;
use super::scope::{PlanScope, Table, list_or_none};
use super::sql::{escape_like, quote_identifier, string_literal};
use super::types::{Aggregate, Direction, Filter, FilterOp, MAX_IN_VALUES, QueryPlan};
use super::values::{FilterValue, Scalar};

/// A plan and the SQL it compiled to.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPlan {
    pub plan: QueryPlan,
    pub sql: String,
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
