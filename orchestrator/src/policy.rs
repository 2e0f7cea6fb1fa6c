//! The SQL policy: what the orchestrator lets through to a sandbox.
//!
//! A query is parsed with DataFusion's SQL parser crate (sqlparser, generic dialect)
//! before any sandbox starts, and must be:
//! - exactly one statement;
//! - a query: `SELECT`, `WITH ... SELECT`, `VALUES`, or `EXPLAIN [ANALYZE] [VERBOSE]`
//!   of one (EXPLAIN shows the plan; EXPLAIN ANALYZE runs the query under the same
//!   limits), with no `SELECT ... INTO`, no locking clauses;
//! - reading only tables of the requested dataset, named `table` or
//!   `dataset.table` (CTE names are fine), never a file path or URL;
//! - using no table functions but `generate_series`, `range` and `unnest`.
//!
//! Parsing is bounded twice: at most [`MAX_TOKENS`] tokens, and a parser recursion
//! limit of [`RECURSION_LIMIT`], so a deeply nested query is an error, never a stack
//! overflow. The check runs on a thread with a large stack of its own for the same
//! reason. The guest repeats its own checks (DataFusion's `SQLOptions`): this layer
//! exists to refuse early, with a clear message, and to not depend on the guest.

use std::collections::HashSet;
use std::ops::ControlFlow;

use protocol::ErrorType;
use sqlparser::ast::{
    DescribeAlias, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

/// Tokens a query may have (whitespace and comments not counted).
pub const MAX_TOKENS: usize = 20_000;
/// How deep the parser may recurse (nested expressions, subqueries).
pub const RECURSION_LIMIT: usize = 64;
/// Table functions that compute rows rather than read them.
const ALLOWED_TABLE_FUNCTIONS: [&str; 3] = ["generate_series", "range", "unnest"];
/// Stack of the thread the check runs on.
const CHECK_STACK_BYTES: usize = 64 * 1024 * 1024;

const ALLOWED: &str = "only read-only queries are allowed: SELECT, WITH ... SELECT, VALUES, or EXPLAIN of one";

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error_type: ErrorType,
    pub message: String,
}

impl Refusal {
    fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        Refusal { error_type, message: message.into() }
    }

    fn not_allowed(message: impl Into<String>) -> Self {
        Refusal::new(ErrorType::SqlNotAllowed, message)
    }
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

/// Checks `sql` against the policy for `scope`.
pub fn check(sql: &str, scope: &Scope) -> Result<Approved, Refusal> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("sql-policy".into())
            .stack_size(CHECK_STACK_BYTES)
            .spawn_scoped(s, || check_here(sql, scope))
            .map_err(|e| Refusal::new(ErrorType::Internal, format!("cannot start the policy check: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(Refusal::new(ErrorType::Internal, "the SQL policy check panicked")))
    })
}

fn check_here(sql: &str, scope: &Scope) -> Result<Approved, Refusal> {
    let dialect = GenericDialect {};
    let tokens =
        Tokenizer::new(&dialect, sql).tokenize().map_err(|e| Refusal::new(ErrorType::SqlParseError, e.to_string()))?;
    let counted = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).count();
    if counted > MAX_TOKENS {
        return Err(Refusal::not_allowed(format!("the query has {counted} tokens; at most {MAX_TOKENS} are allowed")));
    }
    let statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|error| match leading_keyword(&tokens) {
            // `CREATE EXTERNAL TABLE ... STORED AS CSV` and friends do not even parse
            // in the generic dialect: what matters is that they are not queries.
            Some(word) if STATEMENT_KEYWORDS.contains(&word.as_str()) => {
                Refusal::not_allowed(format!("{word} statements are not allowed; {ALLOWED}"))
            }
            _ => parse_refusal(error),
        })?;
    let statement = match statements.as_slice() {
        [] => return Err(Refusal::new(ErrorType::SqlParseError, "the query is empty")),
        [one] => one,
        many => {
            return Err(Refusal::not_allowed(format!(
                "exactly one statement is allowed, got {}; {ALLOWED}",
                many.len()
            )));
        }
    };

    let (query, explain) = match statement {
        Statement::Query(query) => (query.as_ref(), false),
        Statement::Explain { describe_alias: DescribeAlias::Explain, statement, .. } => match statement.as_ref() {
            Statement::Query(query) => (query.as_ref(), true),
            other => {
                return Err(Refusal::not_allowed(format!("EXPLAIN {} is not allowed; {ALLOWED}", kind(other))));
            }
        },
        other => {
            return Err(Refusal::not_allowed(format!("{} is not allowed; {ALLOWED}", kind(other))));
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

/// The first word of the statement, upper-cased, if it starts with a word.
fn leading_keyword(tokens: &[Token]) -> Option<String> {
    match tokens.iter().find(|t| !matches!(t, Token::Whitespace(_)))? {
        Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_uppercase()),
        _ => None,
    }
}

fn parse_refusal(error: ParserError) -> Refusal {
    let message = match error {
        ParserError::RecursionLimitExceeded => {
            format!("the query is nested too deeply (the parser's limit is {RECURSION_LIMIT} levels)")
        }
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
    };
    Refusal::new(ErrorType::SqlParseError, message)
}

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
    fn check_table(&mut self, name: &ObjectName) -> ControlFlow<Refusal> {
        let parts: Vec<&Ident> = name
            .0
            .iter()
            .filter_map(|part| match part {
                ObjectNamePart::Identifier(ident) => Some(ident),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        if parts.len() != name.0.len() {
            return ControlFlow::Break(Refusal::not_allowed(format!("table name {name} is not allowed")));
        }
        if parts.iter().any(|p| looks_like_path(p)) {
            return ControlFlow::Break(Refusal::not_allowed(format!(
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

    fn unknown(&self, name: &str) -> Refusal {
        Refusal::new(
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
    type Break = Refusal;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(normalize(&cte.alias.name));
            }
        }
        if !query.locks.is_empty() || query.for_clause.is_some() || query.settings.is_some() {
            return ControlFlow::Break(Refusal::not_allowed(format!(
                "locking, FOR and SETTINGS clauses are not allowed; {ALLOWED}"
            )));
        }
        check_body(&query.body)
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } => {
                let function = name.to_string().to_lowercase();
                if ALLOWED_TABLE_FUNCTIONS.contains(&function.as_str()) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(Refusal::not_allowed(format!(
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
            other => ControlFlow::Break(Refusal::not_allowed(format!(
                "{} in FROM is not allowed; read the dataset's tables: {}",
                first_word(&other.to_string()),
                self.scope.tables.join(", ")
            ))),
        }
    }
}

/// Only query bodies: no INSERT/UPDATE/DELETE hiding in a query, no SELECT INTO.
fn check_body(body: &SetExpr) -> ControlFlow<Refusal> {
    match body {
        SetExpr::Select(select) if select.into.is_some() => {
            ControlFlow::Break(Refusal::not_allowed(format!("SELECT ... INTO creates a table; {ALLOWED}")))
        }
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => ControlFlow::Continue(()),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        other => ControlFlow::Break(Refusal::not_allowed(format!(
            "{} is not allowed inside a query; {ALLOWED}",
            first_word(&other.to_string())
        ))),
    }
}

fn first_word(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("this").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            dataset_id: "ecommerce".into(),
            tables: vec!["orders".into(), "order_items".into(), "inventory".into()],
        }
    }

    fn allowed(sql: &str) -> Approved {
        check(sql, &scope()).unwrap_or_else(|r| panic!("{sql:?} was refused: {r:?}"))
    }

    fn refused(sql: &str) -> Refusal {
        check(sql, &scope()).expect_err(sql)
    }

    #[test]
    fn plain_queries_are_allowed_and_report_their_tables() {
        assert_eq!(allowed("SELECT COUNT(*) FROM orders").tables, vec!["orders"]);
        let join = allowed(
            "SELECT o.status, SUM(i.price) FROM ecommerce.orders o JOIN order_items i ON o.order_id = i.order_id GROUP BY 1",
        );
        assert_eq!(join.tables, vec!["orders", "order_items"]);
        assert_eq!(allowed("VALUES (1, 'a'), (2, 'b')").tables, Vec::<String>::new());
        assert_eq!(allowed("SELECT 1 UNION ALL SELECT 2").tables, Vec::<String>::new());
        assert!(allowed("EXPLAIN SELECT * FROM inventory").explain);
        assert!(allowed("EXPLAIN ANALYZE SELECT * FROM inventory").explain);
        assert_eq!(allowed("SELECT * FROM ORDERS").tables, vec!["orders"], "unquoted names fold to lower case");
    }

    #[test]
    fn keywords_inside_literals_and_names_are_fine() {
        allowed("SELECT 'update orders set x = 1; drop table orders' AS note FROM orders");
        allowed("SELECT order_date AS created_at, status AS deleted FROM orders WHERE status = 'delete'");
        allowed("SELECT \"update\" FROM (SELECT 1 AS \"update\") t");
    }

    #[test]
    fn ctes_subqueries_and_computed_rows_are_allowed() {
        let q = allowed(
            "WITH big AS (SELECT * FROM orders WHERE total > 100), r AS (SELECT * FROM big) \
             SELECT * FROM r WHERE order_id IN (SELECT order_id FROM order_items)",
        );
        assert_eq!(q.tables, vec!["orders", "order_items"]);
        allowed("SELECT * FROM generate_series(1, 10)");
        allowed("SELECT * FROM range(5)");
    }

    #[test]
    fn statements_that_are_not_queries_are_refused() {
        for sql in [
            "DELETE FROM orders",
            "UPDATE orders SET total = 0",
            "INSERT INTO orders VALUES (1)",
            "DROP TABLE orders",
            "CREATE TABLE x AS SELECT * FROM orders",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "COPY orders TO '/tmp/x.csv'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * INTO copy FROM orders",
            "EXPLAIN DELETE FROM orders",
            "SELECT 1; SELECT 2",
        ] {
            let r = refused(sql);
            assert_eq!(r.error_type, ErrorType::SqlNotAllowed, "{sql}: {r:?}");
            assert!(r.message.contains("read-only") || r.message.contains("INTO"), "{sql}: {}", r.message);
        }
        assert!(refused("DELETE FROM orders").message.starts_with("DELETE is not allowed"));
    }

    #[test]
    fn other_tables_and_files_are_refused() {
        let r = refused("SELECT * FROM tickets");
        assert_eq!(r.error_type, ErrorType::UnknownTable);
        assert!(r.message.contains("orders, order_items, inventory"), "{}", r.message);
        assert_eq!(refused("SELECT * FROM support.tickets").error_type, ErrorType::UnknownTable);
        assert_eq!(refused("SELECT * FROM support.orders").error_type, ErrorType::UnknownTable);
        assert_eq!(refused("SELECT * FROM \"ORDERS\"").error_type, ErrorType::UnknownTable, "quoted names are exact");
        for sql in [
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM \"/data/orders.csv\"",
            "SELECT * FROM 'orders.csv'",
            "SELECT * FROM \"s3://bucket/x.parquet\"",
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM orders JOIN read_parquet('x') ON true",
        ] {
            assert_eq!(refused(sql).error_type, ErrorType::SqlNotAllowed, "{sql}");
        }
    }

    #[test]
    fn parse_errors_and_deep_nesting_are_errors_not_crashes() {
        assert_eq!(refused("SELEC 1").error_type, ErrorType::SqlParseError);
        assert_eq!(refused("").error_type, ErrorType::SqlParseError);
        let deep = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        let r = refused(&deep);
        assert_eq!(r.error_type, ErrorType::SqlParseError);
        assert!(r.message.contains("nested too deeply"), "{}", r.message);
        // A long flat chain parses into a deep tree; the check must survive it.
        let chain = format!("SELECT {} FROM orders", vec!["1"; 9_000].join(" + "));
        assert_eq!(allowed(&chain).tables, vec!["orders"]);
        let too_long = format!("SELECT {} FROM orders", vec!["1"; 12_000].join(" + "));
        assert_eq!(refused(&too_long).error_type, ErrorType::SqlNotAllowed);
    }
}
