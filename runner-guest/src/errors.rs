//! DataFusion's errors, sorted into the protocol's closed set of error types.

use std::error::Error;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use protocol::ErrorType;

use crate::csv_table::DatasetError;

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
        DataFusionError::Internal(_) => (ErrorType::Internal, root.strip_backtrace()),
        _ => (ErrorType::SqlExecutionError, root.strip_backtrace()),
    }
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
