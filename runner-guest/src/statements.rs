//! From the SQL text to the one statement DataFusion plans, in the dialect
//! csv-analyst documents (docs/sql.md).
//!
//! The guest does not trust the host's policy, so it bounds the statement's shape
//! itself before parsing (`sql_bounds`, the rules the policy applies too), then
//! parses with DataFusion's parser and rewrites what people and models write in
//! DuckDB's or PostgreSQL's spelling where DataFusion would answer wrongly or not at
//! all:
//! - `FROM t [WHERE …] [LIMIT …]` without a select list is `SELECT * FROM t …`
//!   (DuckDB's FROM-first form), never rows of zero columns;
//! - `ORDER BY ALL` orders by every column of the select list, left to right;
//! - table function names fold to lower case unless quoted (`GENERATE_SERIES(1, 3)`);
//! - DuckDB's and PostgreSQL's names and operators for functions DataFusion has under
//!   other spellings (`crate::spellings`);
//! - `SHOW TABLES`, `SHOW COLUMNS FROM t`, `DESCRIBE t`, `PRAGMA show_tables` and
//!   `PRAGMA table_info('t')` become queries over `information_schema`, which
//!   `crate::information_schema` answers from the dataset's own schema.

use std::ops::ControlFlow;

use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, OrderByExpr, OrderByKind, OrderByOptions, Query, SelectItem, SetExpr,
    Statement, TableFactor, Value, VisitMut, VisitorMut, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use protocol::{ErrorType, RunError};
use sql_bounds::Class;

use crate::errors::classify;
use crate::spellings;

/// Parses `sql` into the statement to plan. `tables` are the dataset's tables.
pub fn prepare(state: &SessionState, sql: &str, tables: &[String]) -> Result<DfStatement, RunError> {
    bounded(sql)?;
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = match state.sql_to_statement(sql, &dialect) {
        Ok(statement) => statement,
        // DuckDB's FROM-first form with clauses but no select list (`FROM t WHERE …
        // LIMIT …`) does not parse here; with `SELECT *` in front it is the same query.
        Err(e) => match starts_with_from(sql).then(|| state.sql_to_statement(&format!("SELECT * {sql}"), &dialect)) {
            Some(Ok(statement)) => statement,
            _ => {
                let (error_type, message) = classify(&e, tables);
                return Err(RunError { error_type, message });
            }
        },
    };
    if let Some(introspection) = introspection(&statement, tables)? {
        statement = state.sql_to_statement(&introspection, &dialect).map_err(|e| RunError {
            error_type: ErrorType::Internal,
            message: format!("the introspection query does not parse: {e}"),
        })?;
    }
    rewrite(&mut statement)?;
    Ok(statement)
}

/// The statement's shape, checked on its tokens before any parse.
fn bounded(sql: &str) -> Result<(), RunError> {
    // A statement that does not tokenize is the parser's to report.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    sql_bounds::precheck(tokens.iter().map(class))
}

/// Whether the statement's first word is FROM.
fn starts_with_from(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return false;
    };
    let first = tokens.iter().find(|t| !matches!(t, Token::Whitespace(_)));
    matches!(first, Some(Token::Word(word)) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("FROM"))
}

fn class(token: &Token) -> Class<'_> {
    match token {
        Token::Whitespace(_) => Class::Skip,
        Token::LParen | Token::LBracket | Token::LBrace => Class::Open,
        Token::RParen | Token::RBracket | Token::RBrace => Class::Close,
        Token::Period => Class::Period,
        Token::Word(word) => Class::Word { value: &word.value, quoted: word.quote_style.is_some() },
        Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark | Token::AtSign => Class::PrefixSymbol,
        _ => Class::Other,
    }
}

fn not_allowed(message: impl Into<String>) -> RunError {
    RunError { error_type: ErrorType::SqlNotAllowed, message: message.into() }
}

/// The query that answers an introspection statement, if `statement` is one.
fn introspection(statement: &DfStatement, tables: &[String]) -> Result<Option<String>, RunError> {
    let DfStatement::Statement(statement) = statement else {
        return Ok(None);
    };
    const TABLES: &str = "SELECT table_name AS name FROM information_schema.tables ORDER BY name";
    let sql = match statement.as_ref() {
        Statement::ShowTables { .. } => TABLES.to_string(),
        Statement::ShowColumns { show_options, .. } => {
            let name = show_options
                .show_in
                .as_ref()
                .and_then(|show_in| show_in.parent_name.as_ref())
                .ok_or_else(|| not_allowed("SHOW COLUMNS needs a table: SHOW COLUMNS FROM t"))?;
            describe(&table_of(name, tables)?)
        }
        Statement::ExplainTable { table_name, .. } => describe(&table_of(table_name, tables)?),
        Statement::Pragma { name, value, .. } => match (name.to_string().to_lowercase().as_str(), value) {
            ("show_tables", None) => TABLES.to_string(),
            ("table_info", Some(value)) => {
                let Value::SingleQuotedString(table) = &value.value else {
                    return Err(not_allowed("PRAGMA table_info takes a table name in quotes: PRAGMA table_info('t')"));
                };
                let name = ObjectName::from(vec![Ident::with_quote('"', table.clone())]);
                table_info(&table_of(&name, tables)?)
            }
            (other, _) => {
                return Err(not_allowed(format!(
                    "PRAGMA {other} is not supported; PRAGMA show_tables and PRAGMA table_info('t') are"
                )));
            }
        },
        _ => return Ok(None),
    };
    Ok(Some(sql))
}

/// `DESCRIBE t` and `SHOW COLUMNS FROM t`, with DuckDB's column names.
fn describe(table: &str) -> String {
    format!(
        "SELECT column_name, data_type AS column_type, is_nullable AS \"null\" \
         FROM information_schema.columns WHERE table_name = {} ORDER BY ordinal_position",
        literal(table)
    )
}

/// `PRAGMA table_info('t')`, with DuckDB's (and SQLite's) column names.
fn table_info(table: &str) -> String {
    format!(
        "SELECT ordinal_position - 1 AS cid, column_name AS name, data_type AS type, is_nullable = 'NO' AS notnull, \
         CAST(NULL AS VARCHAR) AS dflt_value, false AS pk \
         FROM information_schema.columns WHERE table_name = {} ORDER BY ordinal_position",
        literal(table)
    )
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The dataset table `name` means: its last part, folded to lower case unless quoted.
fn table_of(name: &ObjectName, tables: &[String]) -> Result<String, RunError> {
    let ident = name.0.last().and_then(ObjectNamePart::as_ident);
    let found = ident.and_then(|ident| {
        tables.iter().find(|t| {
            if ident.quote_style.is_some() { **t == ident.value } else { t.eq_ignore_ascii_case(&ident.value) }
        })
    });
    found.cloned().ok_or_else(|| RunError {
        error_type: ErrorType::UnknownTable,
        message: format!("table {name} not found; the dataset's tables are: {}", tables.join(", ")),
    })
}

/// Rewrites the spellings DataFusion would plan wrongly or not at all.
fn rewrite(statement: &mut DfStatement) -> Result<(), RunError> {
    match statement {
        DfStatement::Statement(statement) => match statement.visit(&mut Dialect) {
            ControlFlow::Break(refusal) => Err(refusal),
            ControlFlow::Continue(()) => Ok(()),
        },
        DfStatement::Explain(explain) => rewrite(&mut explain.statement),
        _ => Ok(()),
    }
}

struct Dialect;

impl VisitorMut for Dialect {
    type Break = RunError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<RunError> {
        select_star_for_from_first(&mut query.body);
        if let Some(order_by) = &mut query.order_by {
            let all = match &order_by.kind {
                OrderByKind::All(options) => Some(options.clone()),
                OrderByKind::Expressions(exprs) => match exprs.as_slice() {
                    [OrderByExpr { expr: Expr::Identifier(ident), options, with_fill: None }]
                        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("all") =>
                    {
                        Some(options.clone())
                    }
                    _ => None,
                },
            };
            if let Some(options) = all {
                order_by.kind = OrderByKind::Expressions(order_by_all(&query.body, options)?);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<RunError> {
        match spellings::respell(expr) {
            Ok(()) => ControlFlow::Continue(()),
            Err(refusal) => ControlFlow::Break(refusal),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<RunError> {
        if let TableFactor::Table { name, args: Some(_), .. } = factor
            && let [ObjectNamePart::Identifier(ident)] = name.0.as_mut_slice()
        {
            // DataFusion looks table functions up by their name as written, quotes
            // included: fold as SQL folds identifiers, and keep a quoted one's case.
            if ident.quote_style.is_none() {
                ident.value = ident.value.to_lowercase();
            }
            ident.quote_style = None;
        }
        ControlFlow::Continue(())
    }
}

/// DuckDB's `FROM t [WHERE …]`, parsed as a select with no select list, is `SELECT *`.
fn select_star_for_from_first(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) if select.projection.is_empty() && !select.from.is_empty() => {
            select.projection = vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())];
        }
        SetExpr::SetOperation { left, right, .. } => {
            select_star_for_from_first(left);
            select_star_for_from_first(right);
        }
        _ => {}
    }
}

/// `ORDER BY ALL`: every column of the select list by position, with the options given.
fn order_by_all(body: &SetExpr, options: OrderByOptions) -> ControlFlow<RunError, Vec<OrderByExpr>> {
    let columns = match body {
        SetExpr::Select(select)
            if !select
                .projection
                .iter()
                .any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) =>
        {
            select.projection.len()
        }
        _ => {
            return ControlFlow::Break(not_allowed(
                "ORDER BY ALL is supported over a select list without *; list the columns or their positions: ORDER BY 1, 2",
            ));
        }
    };
    let by_position = |position: usize| OrderByExpr {
        expr: Expr::value(Value::Number(position.to_string(), false)),
        options: options.clone(),
        with_fill: None,
    };
    ControlFlow::Continue((1..=columns).map(by_position).collect())
}

/// Puts the select-list expression named `name` in place of `name` in WHERE, when that
/// is the only thing `name` can mean: DataFusion found no column `name`, the statement
/// is one SELECT (no subquery, CTE or set operation, so every name resolves against
/// its FROM), and exactly one select-list item is called `name`. Whether anything
/// changed: the caller plans again if so.
pub fn alias_into_where(statement: &mut DfStatement, name: &str) -> bool {
    let DfStatement::Statement(statement) = statement else { return false };
    let mut queries = 0;
    let _ = datafusion::sql::sqlparser::ast::Visit::visit(statement.as_ref(), &mut CountQueries(&mut queries));
    let Statement::Query(query) = statement.as_mut() else { return false };
    if queries != 1 || query.with.is_some() {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return false };
    let mut named = select.projection.iter().filter_map(|item| match item {
        SelectItem::ExprWithAlias { expr, alias } if folded(alias) == name => Some(expr),
        _ => None,
    });
    let (Some(expr), None) = (named.next(), named.next()) else { return false };
    let replacement = Expr::Nested(Box::new(expr.clone()));
    let Some(selection) = select.selection.as_mut() else { return false };
    let mut replaced = false;
    let _ = VisitMut::visit(selection, &mut ReplaceName { name, replacement: &replacement, replaced: &mut replaced });
    replaced
}

/// An identifier as DataFusion resolves it: folded to lower case unless quoted.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

struct CountQueries<'a>(&'a mut usize);

impl datafusion::sql::sqlparser::ast::Visitor for CountQueries<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        *self.0 += 1;
        ControlFlow::Continue(())
    }
}

struct ReplaceName<'a> {
    name: &'a str,
    replacement: &'a Expr,
    replaced: &'a mut bool,
}

impl VisitorMut for ReplaceName<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && folded(ident) == self.name
        {
            *expr = self.replacement.clone();
            *self.replaced = true;
        }
        ControlFlow::Continue(())
    }
}
