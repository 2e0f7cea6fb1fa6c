//! DataFusion's errors, sorted into the protocol's closed set of error types.

use std::error::Error;

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use protocol::ErrorType;

use crate::dataset::DatasetError;

/// How DataFusion words a failed argument check of a function with its own coercion.
const COERCION_FAILED: &str = "user-defined coercion failed with: ";

/// The error type and a message for the user. `tables` are the dataset's tables,
/// named in the message when the query asks for another one.
pub fn classify(error: &DataFusionError, tables: &[String]) -> (ErrorType, String) {
    if let Some(dataset) = find_source::<DatasetError>(error) {
        return (ErrorType::DatasetError, dataset.to_string());
    }
    let root = error.find_root();
    match root {
        DataFusionError::SQL(parser_error, _) => (ErrorType::SqlParseError, parser_message(parser_error)),
        DataFusionError::Plan(message) => plan_error(message, tables),
        DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
            (ErrorType::SqlPlanError, root.strip_backtrace())
        }
        DataFusionError::ResourcesExhausted(message) => {
            (ErrorType::MemoryLimit, format!("the query needs more memory than the run's limit allows: {message}"))
        }
        // Our functions' argument checks (`crate::functions`) are planning errors that
        // DataFusion reports as execution errors.
        DataFusionError::Execution(message) if message.contains(COERCION_FAILED) => {
            let reason = message.split(COERCION_FAILED).nth(1).unwrap_or(message);
            (ErrorType::SqlPlanError, reason.trim_start_matches("Error during planning: ").to_string())
        }
        DataFusionError::Internal(_) => (ErrorType::Internal, root.strip_backtrace()),
        _ => (ErrorType::SqlExecutionError, execution_message(root.strip_backtrace())),
    }
}

/// A memory error's message, with what to write instead when a hash join caused it:
/// a hash join keeps its build side (the right input) in memory and cannot spill.
pub fn explain_memory(error_type: ErrorType, message: String) -> String {
    if error_type != ErrorType::MemoryLimit || !message.contains("HashJoinInput") {
        return message;
    }
    format!(
        "{message}; the query's hash join keeps its right input in memory, and it did not fit (joins do not \
         spill): filter each side first, aggregate it to the join's keys (WITH s AS (SELECT key, SUM(x) AS x \
         FROM big GROUP BY key) SELECT ... FROM s JOIN ...), or put the smaller table on the right"
    )
}

/// The unqualified column DataFusion did not find, when that is the error.
pub fn missing_column(error: &DataFusionError) -> Option<String> {
    match error.find_root() {
        DataFusionError::SchemaError(error, _) => match error.as_ref() {
            SchemaError::FieldNotFound { field, .. } if field.relation.is_none() => Some(field.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// An execution error, with what to write instead where there is a known answer.
fn execution_message(message: String) -> String {
    if message.contains("negative count not allowed") {
        return format!(
            "{message}: substr's length must not be negative; for the n characters before position p write \
             substr(s, p - n, n), for the last n characters right(s, n)"
        );
    }
    if let Some(text) = message.split("Error parsing timestamp from '").nth(1).and_then(|rest| rest.split('\'').next())
    {
        return format!(
            "{message}: write a timestamp in full, '{}' as 'YYYY-MM-DD HH:MM:SS' (seconds included), or a date as \
             DATE 'YYYY-MM-DD'",
            text
        );
    }
    message
}

fn plan_error(message: &str, tables: &[String]) -> (ErrorType, String) {
    const REFUSED: [&str; 3] = ["DDL not supported", "DML not supported", "Statement not supported"];
    if REFUSED.iter().any(|prefix| message.starts_with(prefix)) {
        let message = format!("{message}: only read-only queries (SELECT, WITH, VALUES, EXPLAIN) are allowed");
        return (ErrorType::SqlNotAllowed, message);
    }
    if let Some(name) = message.strip_prefix("table '").and_then(|rest| rest.strip_suffix("' not found")) {
        let name = name.rsplit('.').next().unwrap_or(name);
        let message = format!("table '{name}' not found; the dataset's tables are: {}", tables.join(", "));
        return (ErrorType::UnknownTable, message);
    }
    if message.starts_with("table function '") {
        return (
            ErrorType::SqlNotAllowed,
            format!("{message}: table functions other than generate_series, range and unnest are not available"),
        );
    }
    if let Some(name) = message.strip_prefix("Invalid function '").and_then(|rest| rest.split('\'').next()) {
        let instead = match crate::spellings::hint(name) {
            Some(hint) => format!("write {hint} instead"),
            None => match message.split_once("Did you mean '") {
                Some((_, nearest)) => format!(
                    "the nearest function name is '{}'; docs/sql.md lists the DuckDB and PostgreSQL names that work",
                    nearest.trim_end_matches(['?', '\'', '.'])
                ),
                None => "docs/sql.md lists the DuckDB and PostgreSQL names that work".to_string(),
            },
        };
        return (ErrorType::SqlPlanError, format!("there is no function '{name}' here; {instead}"));
    }
    (ErrorType::SqlPlanError, message.to_string())
}

fn parser_message(error: &ParserError) -> String {
    match error {
        ParserError::ParserError(message) | ParserError::TokenizerError(message) => message.clone(),
        ParserError::RecursionLimitExceeded => "the query is nested too deeply for the SQL parser".to_string(),
    }
}

/// The first error of type `T` in `error`'s source chain.
fn find_source<T: Error + 'static>(error: &DataFusionError) -> Option<&T> {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
