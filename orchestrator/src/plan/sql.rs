//! The SQL text a plan compiles to, piece by piece: identifiers double-quoted,
//! string literals single-quoted, LIKE patterns escaped, scalars and aggregates as
//! SQL. Every name and value a plan contributes to its SQL passes through here.
//!
//! Uses `super::types` and `super::values` (what it turns into SQL); nothing else.

use super::types::Aggregate;
use super::values::Scalar;

/// `name` as a SQL identifier: double-quoted, `"` doubled.
pub(super) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal: single-quoted, `'` doubled. (The generic dialect
/// does not treat backslashes in literals as escapes.)
pub(super) fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` as a LIKE pattern matching only itself, with `\` as the escape character.
pub(super) fn escape_like(text: &str) -> String {
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
    pub(super) fn sql(self, column: Option<&str>) -> String {
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

impl Scalar {
    /// The value as a SQL literal.
    pub(super) fn sql(&self) -> String {
        match self {
            Scalar::String(text) => string_literal(text),
            Scalar::Number(number) => number.to_string(),
            Scalar::Bool(true) => "TRUE".to_string(),
            Scalar::Bool(false) => "FALSE".to_string(),
        }
    }
}
