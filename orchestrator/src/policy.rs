//! The SQL policy: what the orchestrator lets through to a sandbox.
//!
//! A query is parsed with sqlparser (generic dialect) before any sandbox starts,
//! and must be:
//! - exactly one statement;
//! - a query: `SELECT`, `WITH ... SELECT`, `VALUES`, or `EXPLAIN [ANALYZE] [VERBOSE]`
//!   of one (EXPLAIN shows the plan; EXPLAIN ANALYZE runs the query under the same
//!   limits), with no `SELECT ... INTO`, no locking clauses;
//! - reading only tables of the requested dataset, named `table` or
//!   `dataset.table` (CTE names are fine), never a file path or URL;
//! - using no table functions but `generate_series`, `range` and `unnest`.
//!
//! The check runs on the host, outside the sandbox, on whatever a client sends, so
//! it is bounded on its own:
//! - in size: at most [`MAX_TOKENS`] tokens;
//! - in shape, by an inexpensive pass over the tokens before parsing: brackets
//!   nested at most [`MAX_BRACKET_DEPTH`] deep, at most [`MAX_PREFIX_RUN`] prefix
//!   operators in a row (`NOT NOT ...`, `- - ...`, `CASE CASE ...`), compound names
//!   of at most [`MAX_NAME_PARTS`] parts (`a.b.c...`);
//! - in depth: a parser recursion limit of [`RECURSION_LIMIT`], so a deeply nested
//!   query is an error, never a stack overflow (each check runs on a thread with a
//!   large stack of its own for the same reason);
//! - in time and CPU: at most [`CHECKERS`] checks run at once, and a caller waits at
//!   most [`CHECK_BUDGET`] (for a free checker and the check together). A query that
//!   is not checked by then is refused at once (`SQL_NOT_ALLOWED`, "too complex");
//!   its check cannot be killed, so it keeps its checker until it ends, which bounds
//!   the CPU such queries can take to [`CHECKERS`] cores. [`checker_status`] counts
//!   those overrunning checks.
//!
//! sqlparser before 0.64 took time exponential in the length of some short inputs
//! (`SELECT x-not-b.x-not-b.…`: 183 bytes, 18 s); 0.64 memoizes failed speculative
//! parses. The budget does not depend on knowing every such shape. This parser is
//! independent of the guest's (DataFusion's pin): the guest re-parses under its own
//! deadline. The guest repeats its own checks (DataFusion's `SQLOptions`): this
//! layer exists to refuse early, with a clear message, and to not depend on the
//! guest.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunError};
use sqlparser::ast::{
    DescribeAlias, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Tokens a query may have (whitespace and comments not counted).
pub const MAX_TOKENS: usize = 20_000;
/// How deep the parser may recurse (nested expressions, subqueries).
pub const RECURSION_LIMIT: usize = 64;
/// How deep brackets (`(`, `[`, `{`) may nest; checked before parsing.
pub const MAX_BRACKET_DEPTH: usize = 32;
/// Prefix operators (`NOT`, unary `-`, `CASE`, `INTERVAL`, ...) in a row, at most.
pub const MAX_PREFIX_RUN: usize = 10;
/// Parts of a compound name (`dataset.table.column.field`), at most.
pub const MAX_NAME_PARTS: usize = 8;
/// How long a caller waits for its query's check, a free checker included.
pub const CHECK_BUDGET: Duration = Duration::from_millis(500);
/// Checks that may run at once (each on a thread of its own).
pub const CHECKERS: usize = 2;
/// Table functions that compute rows rather than read them.
const ALLOWED_TABLE_FUNCTIONS: [&str; 3] = ["generate_series", "range", "unnest"];
/// Stack of the thread a check runs on.
const CHECK_STACK_BYTES: usize = 64 * 1024 * 1024;

const ALLOWED: &str = "only read-only queries are allowed: SELECT, WITH ... SELECT, VALUES, or EXPLAIN of one";

/// A refusal is a [`RunError`]: the same type and message a sandbox would give.
fn refusal(error_type: ErrorType, message: impl Into<String>) -> RunError {
    RunError { error_type, message: message.into() }
}

fn not_allowed(message: impl Into<String>) -> RunError {
    refusal(ErrorType::SqlNotAllowed, message)
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

/// Checks `sql` against the policy for `scope`, within [`CHECK_BUDGET`].
///
/// Blocks the calling thread for at most the budget (call it off the async
/// runtime, e.g. with `spawn_blocking`).
pub fn check(sql: &str, scope: &Scope) -> Result<Approved, RunError> {
    CHECKER_POOL.run(CHECK_BUDGET, sql.to_string(), scope.clone(), check_here)
}

/// The state of the policy's checkers, for readiness reports and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerStatus {
    /// Checkers in all ([`CHECKERS`]).
    pub checkers: usize,
    /// Checkers running a check now, overrunning ones included.
    pub busy: usize,
    /// Checks still running whose caller was refused because they overran the
    /// budget. While every checker is held by one, every query is refused.
    pub overrunning: usize,
}

/// How the policy's checkers are doing.
pub fn checker_status() -> CheckerStatus {
    CHECKER_POOL.status()
}

static CHECKER_POOL: CheckerPool = CheckerPool::new(CHECKERS);

/// At most `size` checks at once, each on a thread of its own. A check whose
/// caller stopped waiting keeps its place until it ends: a thread cannot be killed,
/// and the place it holds is what bounds the CPU that overrunning checks take.
struct CheckerPool {
    size: usize,
    busy: Mutex<usize>,
    freed: Condvar,
    overrunning: AtomicUsize,
}

/// One check, shared by its caller and its thread.
struct Job {
    state: Mutex<JobState>,
    done: Condvar,
}

enum JobState {
    Running,
    Finished(Result<Approved, RunError>),
    /// The caller stopped waiting; the thread still runs.
    Abandoned,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CheckerPool {
    const fn new(size: usize) -> CheckerPool {
        CheckerPool { size, busy: Mutex::new(0), freed: Condvar::new(), overrunning: AtomicUsize::new(0) }
    }

    fn status(&self) -> CheckerStatus {
        CheckerStatus {
            checkers: self.size,
            busy: *lock(&self.busy),
            overrunning: self.overrunning.load(Ordering::SeqCst),
        }
    }

    /// Runs `work(sql, scope)` on a checker thread and waits for it at most `budget`.
    fn run(
        &'static self,
        budget: Duration,
        sql: String,
        scope: Scope,
        work: fn(&str, &Scope) -> Result<Approved, RunError>,
    ) -> Result<Approved, RunError> {
        let deadline = Instant::now() + budget;
        let too_complex = || not_allowed(format!("the query is too complex to check within {} ms", budget.as_millis()));
        if !self.take_place(deadline) {
            let overrunning = self.overrunning.load(Ordering::SeqCst);
            return Err(not_allowed(format!(
                "the query could not be checked within {} ms: the SQL checkers are busy \
                 ({overrunning} of {} with queries too complex to check); try again later",
                budget.as_millis(),
                self.size
            )));
        }
        let job = Arc::new(Job { state: Mutex::new(JobState::Running), done: Condvar::new() });
        let thread_job = job.clone();
        let spawned =
            std::thread::Builder::new().name("sql-policy".into()).stack_size(CHECK_STACK_BYTES).spawn(move || {
                let result = std::panic::catch_unwind(|| work(&sql, &scope))
                    .unwrap_or_else(|_| Err(refusal(ErrorType::Internal, "the SQL policy check panicked")));
                let mut state = lock(&thread_job.state);
                let abandoned = matches!(*state, JobState::Abandoned);
                if abandoned {
                    self.overrunning.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!("an SQL policy check that overran its budget has ended");
                }
                // Freed before the caller hears back, so a caller that got its answer
                // never sees its own check still holding a checker.
                self.free_place();
                if !abandoned {
                    *state = JobState::Finished(result);
                    thread_job.done.notify_all();
                }
            });
        if let Err(e) = spawned {
            self.free_place();
            return Err(refusal(ErrorType::Internal, format!("cannot start the policy check: {e}")));
        }
        let state = lock(&job.state);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (mut state, _) = job
            .done
            .wait_timeout_while(state, timeout, |s| matches!(s, JobState::Running))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::mem::replace(&mut *state, JobState::Abandoned) {
            JobState::Finished(result) => result,
            JobState::Running => {
                self.overrunning.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(budget_ms = budget.as_millis() as u64, "an SQL policy check overran its budget");
                Err(too_complex())
            }
            JobState::Abandoned => Err(too_complex()),
        }
    }

    /// Waits until `deadline` for a free place; false if none came.
    fn take_place(&self, deadline: Instant) -> bool {
        let busy = lock(&self.busy);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (mut busy, _) = self
            .freed
            .wait_timeout_while(busy, timeout, |busy| *busy >= self.size)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *busy >= self.size {
            return false;
        }
        *busy += 1;
        true
    }

    fn free_place(&self) {
        *lock(&self.busy) -= 1;
        self.freed.notify_one();
    }
}

fn check_here(sql: &str, scope: &Scope) -> Result<Approved, RunError> {
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

/// The inexpensive pass before parsing: one look at each token, refusing sizes and
/// shapes no real query has and on which a parser's work can grow fast.
fn precheck<'a>(tokens: impl Iterator<Item = &'a Token>) -> Result<(), RunError> {
    let mut counted = 0;
    let mut depth = 0usize;
    let mut prefix_run = 0;
    let mut name_parts = 0;
    let mut after_period = false;
    for token in tokens.filter(|t| !matches!(t, Token::Whitespace(_))) {
        counted += 1;
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(refusal(
                        ErrorType::SqlParseError,
                        format!("the query is nested too deeply (more than {MAX_BRACKET_DEPTH} levels of brackets)"),
                    ));
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        prefix_run = if is_prefix_operator(token) { prefix_run + 1 } else { 0 };
        if prefix_run > MAX_PREFIX_RUN {
            return Err(not_allowed(format!(
                "the query has more than {MAX_PREFIX_RUN} operators in a row (NOT, -, CASE, ...)"
            )));
        }
        match token {
            Token::Word(_) if after_period => name_parts += 1,
            Token::Word(_) => name_parts = 1,
            Token::Period => {}
            _ => name_parts = 0,
        }
        after_period = matches!(token, Token::Period);
        if name_parts > MAX_NAME_PARTS {
            return Err(not_allowed(format!("the query has a name of more than {MAX_NAME_PARTS} parts (a.b.c...)")));
        }
    }
    if counted > MAX_TOKENS {
        return Err(not_allowed(format!("the query has {counted} tokens; at most {MAX_TOKENS} are allowed")));
    }
    Ok(())
}

/// Tokens that start an expression without being one: chains of them are what
/// makes a parser try alternatives within alternatives.
fn is_prefix_operator(token: &Token) -> bool {
    match token {
        Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark | Token::AtSign => true,
        Token::Word(word) if word.quote_style.is_none() => matches!(
            word.keyword,
            Keyword::NOT
                | Keyword::CASE
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::INTERVAL
                | Keyword::EXISTS
                | Keyword::PRIOR
                | Keyword::IF
        ),
        _ => false,
    }
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
fn leading_keyword<'a>(mut tokens: impl Iterator<Item = &'a Token>) -> Option<String> {
    match tokens.find(|t| !matches!(t, Token::Whitespace(_)))? {
        Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_uppercase()),
        _ => None,
    }
}

fn parse_refusal(error: ParserError) -> RunError {
    let message = match error {
        ParserError::RecursionLimitExceeded => {
            format!("the query is nested too deeply (the parser's limit is {RECURSION_LIMIT} levels)")
        }
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
    };
    refusal(ErrorType::SqlParseError, message)
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

    fn refused(sql: &str) -> RunError {
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

    /// Shapes on which sqlparser 0.62's work grew exponentially with their length
    /// (seconds at 100-200 bytes), and others of the same families.
    fn hostile_shapes() -> Vec<(&'static str, String)> {
        let mut shapes = Vec::new();
        for n in [22, 30, 64, 400] {
            shapes.push(("x-not-b. chain", format!("SELECT {}", "x-not-b.".repeat(n))));
            shapes.push(("case-tab-minus chain", format!("SELECT {}", "case\t-".repeat(n))));
            shapes.push(("case-minus chain", format!("SELECT {}c", "case-".repeat(n))));
            shapes.push(("x-not- chain", format!("SELECT {}", "x-not-".repeat(n))));
            shapes.push(("interval- chain", format!("SELECT {}", "interval-".repeat(n))));
            shapes.push(("interval chain", format!("SELECT {}", "interval ".repeat(n))));
            shapes.push(("IF compound chain", format!("IF {}", "a.".repeat(n))));
            shapes.push(("derived tables", format!("SELECT 1 FROM {}", "((SELECT 1 FROM ".repeat(n))));
            shapes.push(("open parens", format!("SELECT 1 FROM {}", "(".repeat(n))));
            shapes.push(("nested calls", format!("SELECT {}1{}", "f(".repeat(n), ")".repeat(n))));
            shapes.push(("NOT chain", format!("SELECT {}1", "NOT ".repeat(n))));
            shapes.push(("unary minus chain", format!("SELECT {}1", "- ".repeat(n))));
            shapes
                .push(("dotted keywords", format!("SELECT * FROM t GROUP BY {}", "current_datetimestamp.".repeat(n))));
        }
        shapes
    }

    #[test]
    fn hostile_shapes_are_answered_within_the_budget() {
        for (family, sql) in hostile_shapes() {
            let started = Instant::now();
            let outcome = check(&sql, &scope());
            let elapsed = started.elapsed();
            assert!(elapsed < CHECK_BUDGET + Duration::from_secs(1), "{family} ({} bytes): {elapsed:?}", sql.len());
            // The parser answers them (0.64 memoizes), or the pre-check refuses them:
            // none reaches the budget. (A few are valid SQL: `f(f(...(1)))`, `NOT NOT 1`.)
            if let Err(refusal) = outcome {
                assert!(
                    matches!(refusal.error_type, ErrorType::SqlParseError | ErrorType::SqlNotAllowed)
                        && !refusal.message.contains("too complex"),
                    "{family} ({} bytes): {refusal:?}",
                    sql.len()
                );
            }
        }
        assert_eq!(checker_status().overrunning, 0);
    }

    #[test]
    fn the_precheck_refuses_absurd_shapes_before_parsing() {
        let deep = format!("SELECT {}1{}", "(".repeat(MAX_BRACKET_DEPTH + 1), ")".repeat(MAX_BRACKET_DEPTH + 1));
        let r = refused(&deep);
        assert_eq!(r.error_type, ErrorType::SqlParseError);
        assert_eq!(r.message, "the query is nested too deeply (more than 32 levels of brackets)");
        let deep = format!("SELECT {}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(refused(&deep).message, "the query is nested too deeply (more than 32 levels of brackets)");
        let fine = format!("SELECT {}1{} FROM orders", "(".repeat(20), ")".repeat(20));
        assert_eq!(allowed(&fine).tables, vec!["orders"]);

        for run in ["NOT ", "- ", "+ ", "~ ", "CASE ", "NOT -", "INTERVAL "] {
            let sql = format!("SELECT {}1", run.repeat(11));
            let r = refused(&sql);
            assert_eq!(r.error_type, ErrorType::SqlNotAllowed, "{sql}");
            assert_eq!(r.message, "the query has more than 10 operators in a row (NOT, -, CASE, ...)", "{sql}");
        }
        allowed("SELECT NOT NOT - -1 FROM orders");
        allowed(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM order_items) THEN -1 ELSE CASE WHEN NOT - 1 < 0 THEN 1 END END",
        );

        let r = refused(&format!("SELECT {}", ["a"; 9].join(".")));
        assert_eq!(r.message, "the query has a name of more than 8 parts (a.b.c...)");
        assert_eq!(allowed("SELECT a.b.c.d.e.f.g.h FROM orders").tables, vec!["orders"]);
    }

    fn slow_check(sql: &str, _scope: &Scope) -> Result<Approved, RunError> {
        let ms: u64 = sql.parse().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        Ok(Approved { tables: vec![], explain: false })
    }

    fn pool(size: usize) -> &'static CheckerPool {
        Box::leak(Box::new(CheckerPool::new(size)))
    }

    #[test]
    fn a_check_past_the_budget_is_refused_at_once_and_keeps_its_checker_until_it_ends() {
        let pool = pool(2);
        let budget = Duration::from_millis(200);
        let started = Instant::now();
        let r = pool.run(budget, "1500".into(), scope(), slow_check).expect_err("overran");
        let waited = started.elapsed();
        assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
        assert_eq!(r.message, "the query is too complex to check within 200 ms");
        assert!(waited >= budget && waited < budget + Duration::from_millis(300), "{waited:?}");
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 1, overrunning: 1 });

        // The other checker still serves.
        assert!(pool.run(budget, "0".into(), scope(), slow_check).is_ok());
        // With both held by overrunning checks, callers are refused within the budget.
        let _ = pool.run(budget, "1500".into(), scope(), slow_check).expect_err("overran");
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 2, overrunning: 2 });
        let started = Instant::now();
        let r = pool.run(budget, "0".into(), scope(), slow_check).expect_err("busy");
        assert!(started.elapsed() < budget + Duration::from_millis(300));
        assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
        assert_eq!(
            r.message,
            "the query could not be checked within 200 ms: the SQL checkers are busy \
             (2 of 2 with queries too complex to check); try again later"
        );

        // Once the overrunning checks end, their checkers are free again.
        std::thread::sleep(Duration::from_millis(1_800));
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 0, overrunning: 0 });
        assert!(pool.run(budget, "0".into(), scope(), slow_check).is_ok());
    }

    #[test]
    fn a_waiting_caller_gets_a_checker_as_soon_as_one_is_free() {
        let pool = pool(1);
        let first = std::thread::spawn(|| pool.run(Duration::from_secs(2), "300".into(), scope(), slow_check));
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        assert!(pool.run(Duration::from_secs(2), "0".into(), scope(), slow_check).is_ok());
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(first.join().unwrap().is_ok());
        assert_eq!(pool.status(), CheckerStatus { checkers: 1, busy: 0, overrunning: 0 });
    }

    #[test]
    fn the_real_check_is_bounded_by_the_budget_too() {
        // A large query (18 000 tokens) cannot be parsed in a millisecond.
        let big = format!("SELECT {} FROM orders", vec!["1"; 9_000].join(" + "));
        let pool = pool(1);
        let started = Instant::now();
        let r = pool.run(Duration::from_millis(1), big.clone(), scope(), check_here).expect_err("overran");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(r.message, "the query is too complex to check within 1 ms");
        // Given time, the same check answers.
        let approved = pool.run(Duration::from_secs(5), big, scope(), check_here).unwrap();
        assert_eq!(approved.tables, vec!["orders"]);
    }

    #[test]
    fn a_panicking_check_is_an_internal_error_and_frees_its_checker() {
        fn panics(_: &str, _: &Scope) -> Result<Approved, RunError> {
            panic!("boom")
        }
        let pool = pool(1);
        let r = pool.run(Duration::from_secs(1), String::new(), scope(), panics).expect_err("panicked");
        assert_eq!(r, refusal(ErrorType::Internal, "the SQL policy check panicked"));
        assert_eq!(pool.status().busy, 0);
    }
}
