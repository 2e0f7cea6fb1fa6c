//! The policy module's tests, through its public API ([`check`] and
//! [`checker_status`]): what is allowed and refused, and with which error, and that
//! hostile shapes are answered within the budget.

use std::time::{Duration, Instant};

use protocol::{ErrorType, RunError};

use super::parse::MAX_BRACKET_DEPTH;
use super::pool::{CHECK_BUDGET, check, checker_status};
use super::verdict::{Approved, Scope};

fn scope() -> Scope {
    Scope { dataset_id: "ecommerce".into(), tables: vec!["orders".into(), "order_items".into(), "inventory".into()] }
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
        shapes.push(("dotted keywords", format!("SELECT * FROM t GROUP BY {}", "current_datetimestamp.".repeat(n))));
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

#[test]
fn introspection_of_the_dataset_is_allowed_and_of_anything_else_refused() {
    for sql in ["SHOW TABLES", "PRAGMA show_tables", "SELECT * FROM information_schema.tables"] {
        assert_eq!(allowed(sql).tables, Vec::<String>::new(), "{sql}");
    }
    let columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'";
    assert_eq!(allowed(columns).tables, Vec::<String>::new());
    for sql in ["DESCRIBE orders", "DESC Orders", "SHOW COLUMNS FROM orders", "PRAGMA table_info('orders')"] {
        assert_eq!(allowed(sql).tables, vec!["orders"], "{sql}");
    }
    for sql in ["DESCRIBE tickets", "SHOW COLUMNS FROM tickets", "PRAGMA table_info('tickets')"] {
        assert_eq!(refused(sql).error_type, ErrorType::UnknownTable, "{sql}");
    }
    for sql in [
        "SHOW ALL",
        "SHOW datafusion.execution.batch_size",
        "SHOW TABLES LIKE 'o%'",
        "PRAGMA database_list",
        "PRAGMA table_info(orders)",
        "DESCRIBE SELECT 1",
        "SELECT * FROM information_schema.df_settings",
    ] {
        let r = refused(sql);
        assert_eq!(r.error_type, ErrorType::SqlNotAllowed, "{sql}: {r:?}");
    }
    // Every refusal of a statement says what to write instead.
    assert!(refused("SHOW ALL").message.contains("SHOW TABLES, DESCRIBE t"), "{}", refused("SHOW ALL").message);
    assert!(refused("DESCRIBE SELECT 1").message.contains("LIMIT 0"));
}

#[test]
fn table_function_names_fold_to_lower_case_unless_quoted() {
    for sql in [
        "SELECT * FROM GENERATE_SERIES(1, 3)",
        "SELECT * FROM Range(3)",
        "SELECT * FROM \"generate_series\"(1, 3)",
        "SELECT * FROM UNNEST([1])",
    ] {
        allowed(sql);
    }
    let r = refused("SELECT * FROM \"GENERATE_SERIES\"(1, 3)");
    assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
    assert!(r.message.contains("only generate_series, range, unnest compute rows"), "{}", r.message);
}

#[test]
fn from_first_queries_are_allowed() {
    assert_eq!(allowed("FROM orders").tables, vec!["orders"]);
    assert_eq!(allowed("FROM orders LIMIT 5").tables, vec!["orders"]);
    assert_eq!(allowed("FROM orders WHERE total > 10 LIMIT 5").tables, vec!["orders"]);
    assert_eq!(allowed("FROM orders SELECT order_id").tables, vec!["orders"]);
    assert_eq!(refused("FROM tickets WHERE x = 1").error_type, ErrorType::UnknownTable);
    assert_eq!(refused("FROM orders WHERE").error_type, ErrorType::SqlParseError);
}

/// The shape on which the guest's parser (sqlparser 0.62) takes time doubling with
/// each `.not-b`: refused by the pre-check both sides share (`sql_bounds`).
#[test]
fn a_keyword_after_a_period_is_refused_before_parsing() {
    let chain = format!("SELECT a{}", ".not-b".repeat(27));
    let r = refused(&chain);
    assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
    assert!(r.message.contains("must be quoted after a period: .\"not\""), "{}", r.message);
    assert_eq!(refused("SELECT o.case FROM orders o").error_type, ErrorType::SqlNotAllowed);
    allowed("SELECT o.\"not\", o.date, o.status FROM orders o");
}
