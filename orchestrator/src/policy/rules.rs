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
    DescribeAlias, Ident, ObjectName, ObjectNamePart, Query, SetExpr, ShowStatementOptions, Statement, TableFactor,
    Visit, Visitor,
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
    let mut parsed = Parser::new(&dialect).with_recursion_limit(RECURSION_LIMIT).with_tokens_with_locations(tokens);
    let statements = match parsed.parse_statements() {
        // DuckDB's FROM-first form with clauses but no select list (`FROM t WHERE …`)
        // is `SELECT * FROM t WHERE …`, as the guest reads it.
        Err(error) if leading.as_deref() == Some("FROM") => Parser::new(&dialect)
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(&format!("SELECT * {sql}"))
            .and_then(|mut parser| parser.parse_statements())
            .map_err(|_| error),
        other => other,
    };
    let statements = statements.map_err(|error| match leading {
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
        other => return introspection(other, scope),
    };

    let mut checker = Checker { scope, ctes: HashSet::new(), tables: Vec::new() };
    if let ControlFlow::Break(refusal) = query.visit(&mut checker) {
        return Err(refusal);
    }
    Ok(Approved { tables: checker.tables, explain })
}

/// The read-only statements that describe the dataset (`SHOW TABLES`, `SHOW COLUMNS
/// FROM t`, `DESCRIBE t`, `PRAGMA show_tables`, `PRAGMA table_info('t')`): the guest
/// answers them from the dataset's schema. Any other statement is refused.
fn introspection(statement: &Statement, scope: &Scope) -> Result<Approved, RunError> {
    let table = match statement {
        Statement::ShowTables {
            terse: false,
            history: false,
            extended: false,
            full: false,
            external: false,
            show_options,
        } if is_plain(show_options) => None,
        Statement::ShowColumns { extended: false, full: false, show_options }
            if show_options.starts_with.is_none()
                && show_options.limit.is_none()
                && show_options.filter_position.is_none() =>
        {
            match show_options.show_in.as_ref().and_then(|show_in| show_in.parent_name.as_ref()) {
                Some(name) => Some(name),
                None => {
                    return Err(not_allowed(format!(
                        "SHOW COLUMNS needs a table: SHOW COLUMNS FROM t; {INTROSPECTION}"
                    )));
                }
            }
        }
        Statement::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            hive_format: None,
            table_name,
            ..
        } => Some(table_name),
        Statement::Explain { describe_alias: DescribeAlias::Describe | DescribeAlias::Desc, .. } => {
            return Err(not_allowed(format!(
                "DESCRIBE of a query is not supported; use EXPLAIN for its plan, or run it with LIMIT 0 to see its columns; {INTROSPECTION}"
            )));
        }
        Statement::Pragma { name, value, .. } => {
            let pragma = name.to_string().to_lowercase();
            match (pragma.as_str(), value) {
                ("show_tables", None) => None,
                ("table_info", Some(value)) => {
                    let table = match &value.value {
                        sqlparser::ast::Value::SingleQuotedString(table) => table.clone(),
                        _ => {
                            return Err(not_allowed(format!(
                                "PRAGMA table_info takes a table name in quotes: PRAGMA table_info('t'); {INTROSPECTION}"
                            )));
                        }
                    };
                    let name = ObjectName::from(vec![Ident::with_quote('"', table)]);
                    return described(&name, scope);
                }
                _ => {
                    return Err(not_allowed(format!(
                        "PRAGMA {pragma} is not allowed; only PRAGMA show_tables and PRAGMA table_info('t') are; {INTROSPECTION}"
                    )));
                }
            }
        }
        other => return Err(not_allowed(format!("{} is not allowed; {ALLOWED}; {INTROSPECTION}", kind(other)))),
    };
    match table {
        Some(name) => described(name, scope),
        None => Ok(Approved { tables: Vec::new(), explain: false }),
    }
}

/// The approval of a statement that describes one table of the scope.
fn described(name: &ObjectName, scope: &Scope) -> Result<Approved, RunError> {
    let mut checker = Checker { scope, ctes: HashSet::new(), tables: Vec::new() };
    if let ControlFlow::Break(refusal) = checker.check_table(name) {
        return Err(refusal);
    }
    if checker.tables.is_empty() {
        return Err(checker.unknown(&name.to_string()));
    }
    Ok(Approved { tables: checker.tables, explain: false })
}

fn is_plain(options: &ShowStatementOptions) -> bool {
    options.show_in.is_none()
        && options.starts_with.is_none()
        && options.limit.is_none()
        && options.filter_position.is_none()
}

/// What describes the dataset, for the refusals of statements that do not.
const INTROSPECTION: &str =
    "to see the dataset use SHOW TABLES, DESCRIBE t, or SELECT ... FROM information_schema.columns";

/// The views of `information_schema` the guest provides.
const INFORMATION_SCHEMA_TABLES: [&str; 2] = ["tables", "columns"];

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
            [schema, view] if normalize(schema) == "information_schema" => {
                return if INFORMATION_SCHEMA_TABLES.contains(&normalize(view).as_str()) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(not_allowed(format!(
                        "{name} is not available; information_schema has: {}",
                        INFORMATION_SCHEMA_TABLES.join(", ")
                    )))
                };
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
                // The guest folds an unquoted table function name to lower case, as
                // SQL does; a quoted one is taken as written.
                let function = match name.0.as_slice() {
                    [ObjectNamePart::Identifier(ident)] => normalize(ident),
                    _ => name.to_string(),
                };
                if ALLOWED_TABLE_FUNCTIONS.contains(&function.as_str()) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(not_allowed(format!(
                        "table function {name} is not allowed; only {} compute rows, and the dataset's tables hold the data: {}",
                        ALLOWED_TABLE_FUNCTIONS.join(", "),
                        self.scope.tables.join(", ")
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
