//! The SQL dialect docs/sql.md documents, end to end through `POST /runs`: where
//! csv-analyst answers differently from DataFusion (NULL order, casts, division,
//! FROM-first, nested values, introspection), every answer exact; and the guest's
//! own bound on parsing, past the policy.

use std::time::{Duration, Instant};

use protocol::ErrorType;
use serde_json::{Value, json};

use crate::support::{TestServer, datasets_dir, request, run_request};

/// Runs `sql` on `dataset` and returns the run's JSON.
pub(crate) async fn run(server: &TestServer, dataset: &str, sql: &str) -> Value {
    let (code, body) = server.post_run(json!({"dataset_id": dataset, "sql": sql})).await;
    assert_eq!(code, 200, "{sql}: {body}");
    body
}

pub(crate) async fn rows(server: &TestServer, dataset: &str, sql: &str) -> Value {
    let body = run(server, dataset, sql).await;
    assert_eq!(body["status"], "succeeded", "{sql}: {body}");
    body["result"]["rows"].clone()
}

/// The error type of a run that did not succeed, and its message.
pub(crate) async fn failure(server: &TestServer, dataset: &str, sql: &str) -> (String, String) {
    let body = run(server, dataset, sql).await;
    assert_ne!(body["status"], "succeeded", "{sql} succeeded: {body}");
    let error = &body["result"]["error"];
    (error["type"].as_str().unwrap_or_default().to_string(), error["message"].as_str().unwrap_or_default().to_string())
}

const WITH_NULLS: &str = "(VALUES (1), (NULL), (3), (2)) t(x)";

#[tokio::test(flavor = "multi_thread")]
async fn answers_follow_the_documented_dialect() {
    let server = TestServer::start(|_| {}).await;

    // NULLs sort last both ways, so a top-N is of values; NULLS FIRST still works.
    let q = |order: &str| format!("SELECT x FROM {WITH_NULLS} ORDER BY x {order}");
    assert_eq!(rows(&server, "support", &q("DESC")).await, json!([[3], [2], [1], [null]]));
    assert_eq!(rows(&server, "support", &q("ASC")).await, json!([[1], [2], [3], [null]]));
    assert_eq!(rows(&server, "support", &q("DESC NULLS FIRST")).await, json!([[null], [3], [2], [1]]));
    assert_eq!(rows(&server, "support", &format!("{} LIMIT 1", q("DESC"))).await, json!([[3]]));
    // The top ticket by resolution time has one (the column has NULLs).
    let top = "SELECT resolution_time_hours FROM tickets ORDER BY resolution_time_hours DESC LIMIT 1";
    assert!(rows(&server, "support", top).await[0][0].is_number());

    // Casts to integers round, halves away from zero.
    let casts = "SELECT CAST(2.7 AS INT) a, CAST(-2.7 AS INT) b, CAST(2.5 AS BIGINT) c, CAST(-2.5 AS INT) d, \
                 TRY_CAST(1.5 AS INT) e, 2.4::int f, CAST(CAST(2.55 AS DECIMAL(10,2)) AS INT) g";
    let body = run(&server, "support", casts).await;
    assert_eq!(body["result"]["rows"], json!([[3, -3, 3, -3, 2, 2, 3]]), "{body}");
    assert_eq!(body["result"]["column_types"][0], "INTEGER");

    // Integer division is a fraction; by zero, NULL. The column types say so.
    let body = run(&server, "support", "SELECT 7 / 2 AS half, 7 % 2 AS rest, 1 / 0 AS by_zero").await;
    assert_eq!(body["result"]["rows"], json!([[3.5, 1, null]]), "{body}");
    assert_eq!(body["result"]["column_types"], json!(["DOUBLE", "BIGINT", "DOUBLE"]));
    let average = rows(&server, "support", "SELECT SUM(csat_score) / COUNT(csat_score) FROM tickets").await;
    let exact = rows(&server, "support", "SELECT AVG(csat_score) FROM tickets").await;
    let (a, e) = (average[0][0].as_f64().unwrap(), exact[0][0].as_f64().unwrap());
    assert!((a - e).abs() < 1e-9 && a.fract() != 0.0, "SUM/COUNT {a} vs AVG {e}");
    assert_eq!(rows(&server, "support", "VALUES (7 / 2)").await, json!([[3.5]]));
    assert_eq!(rows(&server, "support", "SELECT CAST(floor(7 / 2) AS BIGINT)").await, json!([[3]]));

    // FROM-first is SELECT *; an answer with no columns is an error.
    let first = rows(&server, "support", "FROM tickets WHERE ticket_id = 100001").await;
    let star = rows(&server, "support", "SELECT * FROM tickets WHERE ticket_id = 100001").await;
    assert_eq!(first, star);
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(rows(&server, "support", "FROM tickets LIMIT 2").await.as_array().unwrap().len(), 2);
    assert_eq!(rows(&server, "support", "FROM tickets SELECT ticket_id LIMIT 1").await, json!([[100001]]));
    let (kind, message) =
        failure(&server, "support", "SELECT * EXCLUDE (ticket_id) FROM (SELECT ticket_id FROM tickets)").await;
    assert_eq!(kind, "SQL_PLAN_ERROR", "{message}");

    // ORDER BY ALL: every column, left to right.
    let by_all = "SELECT category, priority, COUNT(*) AS n FROM tickets GROUP BY 1, 2 ORDER BY ALL DESC LIMIT 1";
    let by_positions =
        "SELECT category, priority, COUNT(*) AS n FROM tickets GROUP BY 1, 2 ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1";
    assert_eq!(rows(&server, "support", by_all).await, rows(&server, "support", by_positions).await);
    let (kind, message) = failure(&server, "support", "SELECT * FROM tickets ORDER BY ALL").await;
    assert_eq!(kind, "SQL_NOT_ALLOWED");
    assert!(message.contains("ORDER BY 1, 2"), "{message}");

    // Nested values are JSON arrays and objects, with their SQL types.
    let body = run(&server, "support", "SELECT [1, 2] AS l, {'a': 1, 'b': ['x']} AS s, map(['k'], [1.5]) AS m").await;
    assert_eq!(body["result"]["rows"], json!([[[1, 2], {"a": 1, "b": ["x"]}, {"k": 1.5}]]), "{body}");
    assert_eq!(
        body["result"]["column_types"],
        json!(["BIGINT[]", "STRUCT(a BIGINT, b VARCHAR[])", "MAP(VARCHAR, DOUBLE)"])
    );

    // Table functions by any unquoted spelling.
    for sql in
        ["SELECT * FROM GENERATE_SERIES(1, 3)", "SELECT * FROM Range(1, 4)", "SELECT * FROM \"generate_series\"(1, 3)"]
    {
        assert_eq!(rows(&server, "support", sql).await, json!([[1], [2], [3]]), "{sql}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_is_answered_from_the_dataset_schema() {
    let server = TestServer::start(|_| {}).await;
    let tables = json!([["inventory"], ["order_items"], ["orders"]]);
    assert_eq!(rows(&server, "ecommerce", "SHOW TABLES").await, tables);
    assert_eq!(rows(&server, "ecommerce", "PRAGMA show_tables").await, tables);

    // The columns and types a query sees (`SELECT *`'s column_types), in order.
    let star = run(&server, "support", "SELECT * FROM tickets LIMIT 0").await;
    let names = star["result"]["columns"].as_array().unwrap().clone();
    let types = star["result"]["column_types"].as_array().unwrap().clone();
    assert_eq!(names.len(), 11);
    for sql in ["DESCRIBE tickets", "DESC Tickets", "SHOW COLUMNS FROM tickets"] {
        let body = run(&server, "support", sql).await;
        assert_eq!(body["result"]["columns"], json!(["column_name", "column_type", "null"]), "{sql}");
        let described = body["result"]["rows"].as_array().unwrap();
        assert_eq!(described.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), names, "{sql}");
        assert_eq!(described.iter().map(|r| r[1].clone()).collect::<Vec<_>>(), types, "{sql}");
    }
    let info = run(&server, "support", "PRAGMA table_info('tickets')").await;
    assert_eq!(info["result"]["columns"], json!(["cid", "name", "type", "notnull", "dflt_value", "pk"]));
    assert_eq!(info["result"]["rows"][0], json!([0, "ticket_id", "BIGINT", false, null, false]));
    let schema = "SELECT table_name, column_name, data_type FROM information_schema.columns \
                  WHERE data_type = 'TIMESTAMP' ORDER BY column_name";
    assert_eq!(
        rows(&server, "support", schema).await,
        json!([["tickets", "created_at", "TIMESTAMP"], ["tickets", "resolved_at", "TIMESTAMP"]])
    );

    let (kind, _) = failure(&server, "support", "DESCRIBE orders").await;
    assert_eq!(kind, "UNKNOWN_TABLE");
    for sql in ["SHOW ALL", "PRAGMA database_list", "SELECT * FROM information_schema.df_settings"] {
        let (kind, message) = failure(&server, "support", sql).await;
        assert_eq!(kind, "SQL_NOT_ALLOWED", "{sql}: {message}");
    }
    server.stop().await;
}

/// A 170-byte chain on which the guest's parser (sqlparser 0.62) took time doubling
/// with each `.not-b` (3 s at 128 bytes): sent to the sandbox directly, past the
/// policy, it is refused by the guest's own pre-check, long before any deadline.
#[test]
fn the_guest_bounds_parsing_on_its_own() {
    let chain = format!("SELECT a{}", ".not-b".repeat(27));
    let mut req = request(&datasets_dir(), "support", &chain);
    req.timeout_ms = 5_000;
    let started = Instant::now();
    let result = run_request(&datasets_dir(), req);
    let error = result.error.unwrap_or_else(|| panic!("the chain ran: {:?}", result.rows));
    assert_eq!(error.error_type, ErrorType::SqlNotAllowed, "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(4), "answered in {:?}", started.elapsed());
    let parse_ms = result.stats.guest_query_ms.unwrap_or(f64::MAX);
    assert!(parse_ms < 100.0, "the guest took {parse_ms} ms to refuse it");
}
