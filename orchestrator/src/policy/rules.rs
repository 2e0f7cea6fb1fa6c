//! The rules of what is allowed, checked on the calling thread ([`check_here`]):
//! the query is parsed within the bounds of `super::parse`, then must be one
//! statement, a query (or EXPLAIN of one), reading only the scope's tables (CTE names
//! are fine), never a file path or URL, with no table functions but those that
//! compute rows.
//!
//! Uses `super::verdict` and `super::parse`; knows nothing of threads or time.

use std::collections::HashSet;
use std::ops::ControlFlow;

use protocol::{ErrorType, RunError};
use sqlparser::ast::{
    DescribeAlias, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{TokenWithSpan, Tokenizer};

use super::parse::{RECURSION_LIMIT, leading_keyword, parse_refusal, precheck};
use super::verdict::{Approved, Scope, not_allowed, refusal};

/// Table functions that compute rows rather than read them.
const ALLOWED_TABLE_FUNCTIONS: [&str; 3] = ["generate_series", "range", "unnest"];

const ALLOWED: &str = "only read-only queries are allowed: SELECT, WITH ... SELECT, VALUES, or EXPLAIN of one";

/// Checks `sql` against the policy for `scope` on this thread, without a time budget.
pub(super) fn check_here(sql: &str, scope: &Scope) -> Result<Approved, RunError> {
    let dialect = GenericDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| refusal(ErrorType::SqlParseError, e.to_string()))?;
    precheck(tokens.iter().map(|t| &t.token))?;
    let leading = leading_keyword(tokens.iter().map(|t| &t.token));
    let statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|error| match leading {
            // `CREATE EXTERNAL TABLE ... STORED AS CSV` and friends do not even parse
            // in the generic dialect: what matters is that they are not queries.
            Some(word) if STATEMENT_KEYWORDS.contains(&word.as_str()) => {
                not_allowed(format!("{word} statements are not allowed; {ALLOWED}"))
            }
            _ => parse_refusal(error),
        })?;
    let statement = match statements.as_slice() {
        [] => return Err(refusal(ErrorType::SqlParseError, "the query is empty")),
        [one] => one,
        many => {
            return Err(not_allowed(format!("exactly one statement is allowed, got {}; {ALLOWED}", many.len())));
        }
    };

    let (query, explain) = match statement {
        Statement::Query(query) => (query.as_ref(), false),
        Statement::Explain { describe_alias: DescribeAlias::Explain, statement, .. } => match statement.as_ref() {
            Statement::Query(query) => (query.as_ref(), true),
            other => {
                return Err(not_allowed(format!("EXPLAIN {} is not allowed; {ALLOWED}", kind(other))));
            }
        },
        other => {
            return Err(not_allowed(format!("{} is not allowed; {ALLOWED}", kind(other))));
        }
    };

    let mut checker = Checker { scope, ctes: HashSet::new(), tables: Vec::new() };
    if let ControlFlow::Break(refusal) = query.visit(&mut checker) {
        return Err(refusal);
    }
    Ok(Approved { tables: checker.tables, explain })
}

/// Words that start statements which are not queries.
const STATEMENT_KEYWORDS: [&str; 31] = [
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "CALL",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DELETE",
    "DESCRIBE",
    "DETACH",
    "DROP",
    "EXECUTE",
    "EXPORT",
    "GRANT",
    "IMPORT",
    "INSERT",
    "INSTALL",
    "LOAD",
    "MERGE",
    "PRAGMA",
    "PREPARE",
    "REPLACE",
    "REVOKE",
    "ROLLBACK",
    "SET",
    "SHOW",
    "TRUNCATE",
    "UPDATE",
    "USE",
];

/// The statement's kind as a user would name it: `DELETE`, `CREATE TABLE`, ...
fn kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if ["CREATE", "DROP", "ALTER", "SHOW", "COPY"].contains(first) => {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "this statement".to_string(),
    }
}

struct Checker<'a> {
    scope: &'a Scope,
    ctes: HashSet<String>,
    tables: Vec<String>,
}

impl Checker<'_> {
    fn check_table(&mut self, name: &ObjectName) -> ControlFlow<RunError> {
        let parts: Vec<&Ident> = name
            .0
            .iter()
            .filter_map(|part| match part {
                ObjectNamePart::Identifier(ident) => Some(ident),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        if parts.len() != name.0.len() {
            return ControlFlow::Break(not_allowed(format!("table name {name} is not allowed")));
        }
        if parts.iter().any(|p| looks_like_path(p)) {
            return ControlFlow::Break(not_allowed(format!(
                "{name} looks like a file path or URL; files cannot be queried directly, only the dataset's tables: {}",
                self.scope.tables.join(", ")
            )));
        }
        let table = match parts.as_slice() {
            [table] => {
                if self.ctes.contains(&normalize(table)) {
                    return ControlFlow::Continue(());
                }
                *table
            }
            [dataset, table]
                if normalize(dataset) == self.scope.dataset_id.to_lowercase()
                    || dataset.value == self.scope.dataset_id =>
            {
                *table
            }
            _ => return ControlFlow::Break(self.unknown(&name.to_string())),
        };
        let found = self.scope.tables.iter().find(|t| {
            if table.quote_style.is_some() { **t == table.value } else { t.eq_ignore_ascii_case(&table.value) }
        });
        match found {
            Some(t) => {
                if !self.tables.contains(t) {
                    self.tables.push(t.clone());
                }
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(self.unknown(&name.to_string())),
        }
    }

    fn unknown(&self, name: &str) -> RunError {
        refusal(
            ErrorType::UnknownTable,
            format!(
                "table {name} is not in dataset {:?}; its tables are: {} (also as {}.<table>)",
                self.scope.dataset_id,
                self.scope.tables.join(", "),
                self.scope.dataset_id
            ),
        )
    }
}

/// SQL folds unquoted identifiers to lower case (as DataFusion does); quoted ones stay.
fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn looks_like_path(ident: &Ident) -> bool {
    let v = ident.value.to_lowercase();
    ident.quote_style == Some('\'')
        || v.contains(['/', '\\', ':'])
        || [".csv", ".parquet", ".json", ".arrow", ".avro", ".tsv", ".txt"].iter().any(|ext| v.ends_with(ext))
}

impl Visitor for Checker<'_> {
    type Break = RunError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<RunError> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(normalize(&cte.alias.name));
            }
        }
        if !query.locks.is_empty() || query.for_clause.is_some() || query.settings.is_some() {
            return ControlFlow::Break(not_allowed(format!(
                "locking, FOR and SETTINGS clauses are not allowed; {ALLOWED}"
            )));
        }
        check_body(&query.body)
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<RunError> {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } => {
                // Exactly as the guest finds them: DataFusion looks table functions up
                // by their unquoted lower-case name (`GENERATE_SERIES(…)` and
                // `"generate_series"(…)` fail there), except `unnest`, which is syntax.
                let function = name.to_string();
                let runs_in_guest =
                    ALLOWED_TABLE_FUNCTIONS.contains(&function.as_str()) || function.eq_ignore_ascii_case("unnest");
                if runs_in_guest {
                    ControlFlow::Continue(())
                } else if ALLOWED_TABLE_FUNCTIONS.contains(&function.to_lowercase().trim_matches('"')) {
                    ControlFlow::Break(not_allowed(format!(
                        "table function {name} must be written in lower case without quotes: {}",
                        function.to_lowercase().trim_matches('"')
                    )))
                } else {
                    ControlFlow::Break(not_allowed(format!(
                        "table function {name} is not allowed; only {} compute rows, and the dataset's tables hold the data",
                        ALLOWED_TABLE_FUNCTIONS.join(", ")
                    )))
                }
            }
            TableFactor::Table { name, .. } => self.check_table(name),
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } | TableFactor::UNNEST { .. } => {
                ControlFlow::Continue(())
            }
            TableFactor::Pivot { .. } | TableFactor::Unpivot { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(not_allowed(format!(
                "{} in FROM is not allowed; read the dataset's tables: {}",
                first_word(&other.to_string()),
                self.scope.tables.join(", ")
            ))),
        }
    }
}

/// Only query bodies: no INSERT/UPDATE/DELETE hiding in a query, no SELECT INTO.
fn check_body(body: &SetExpr) -> ControlFlow<RunError> {
    match body {
        SetExpr::Select(select) if select.into.is_some() => {
            ControlFlow::Break(not_allowed(format!("SELECT ... INTO creates a table; {ALLOWED}")))
        }
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => ControlFlow::Continue(()),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        other => ControlFlow::Break(not_allowed(format!(
            "{} is not allowed inside a query; {ALLOWED}",
            first_word(&other.to_string())
        ))),
    }
}

fn first_word(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("this").to_uppercase()
}
