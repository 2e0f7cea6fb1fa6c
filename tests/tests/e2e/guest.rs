//! The DataFusion guest's answers, in the real sandbox, checked against the CSV
//! files parsed independently; and the limits that contain hostile SQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunStatus};
use serde_json::{Value, json};

use crate::support::{
    Csv, assert_close, datasets_dir, foreign_corpora, num, query, request, run_request, sandbox, scratch,
};

fn tickets() -> Csv {
    Csv::load(&datasets_dir().join("support/tickets.csv"))
}

#[test]
fn aggregates_by_group_match_the_csv() {
    let t = tickets();
    let (p, h, s) = (t.col("priority"), t.col("resolution_time_hours"), t.col("sla_met"));
    let mut expected: BTreeMap<&str, (u64, f64, u64, u64)> = BTreeMap::new();
    for row in &t.rows {
        let e = expected.entry(row[p].as_str()).or_default();
        e.0 += 1;
        if !row[h].is_empty() {
            e.1 += row[h].parse::<f64>().unwrap();
            e.2 += 1;
        }
        e.3 += u64::from(row[s] == "true");
    }
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT priority, COUNT(*) AS n, AVG(resolution_time_hours) AS avg_hours,
                SUM(CASE WHEN sla_met THEN 1 ELSE 0 END) AS met
         FROM tickets GROUP BY priority ORDER BY priority",
    );
    assert_eq!(r.columns, vec!["priority", "n", "avg_hours", "met"]);
    assert_eq!(r.column_types, vec!["VARCHAR", "BIGINT", "DOUBLE", "BIGINT"]);
    assert_eq!(r.rows.len(), expected.len());
    for (row, (priority, (n, sum, with_hours, met))) in r.rows.iter().zip(&expected) {
        assert_eq!(row[0], json!(priority));
        assert_eq!(row[1], json!(n));
        assert_close(num(&row[2]), sum / *with_hours as f64, priority);
        assert_eq!(row[3], json!(met));
    }
}

#[test]
fn joins_across_the_ecommerce_tables_match_the_csv() {
    let dir = datasets_dir().join("ecommerce");
    let (orders, items, inventory) = (
        Csv::load(&dir.join("orders.csv")),
        Csv::load(&dir.join("order_items.csv")),
        Csv::load(&dir.join("inventory.csv")),
    );
    let status_of: HashMap<&str, &str> = orders.values("order_id").zip(orders.values("status")).collect();
    let category_of: HashMap<&str, &str> = inventory.values("product_id").zip(inventory.values("category")).collect();
    let mut units_by_status: BTreeMap<&str, i64> = BTreeMap::new();
    let mut units_by_category: BTreeMap<&str, i64> = BTreeMap::new();
    for ((order, product), quantity) in
        items.values("order_id").zip(items.values("product_id")).zip(items.values("quantity"))
    {
        let q: i64 = quantity.parse().unwrap();
        *units_by_status.entry(status_of[order]).or_default() += q;
        *units_by_category.entry(category_of[product]).or_default() += q;
    }

    let r = query(
        &datasets_dir(),
        "ecommerce",
        "SELECT o.status, SUM(i.quantity) AS units
         FROM orders o JOIN order_items i ON o.order_id = i.order_id
         GROUP BY o.status ORDER BY o.status",
    );
    let got: Vec<(String, i64)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap().to_string(), row[1].as_i64().unwrap())).collect();
    let want: Vec<(String, i64)> = units_by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want);

    // Three tables, dataset-qualified names.
    let r = query(
        &datasets_dir(),
        "ecommerce",
        "SELECT inv.category, SUM(i.quantity) AS units
         FROM ecommerce.order_items i
         JOIN ecommerce.orders o ON o.order_id = i.order_id
         JOIN ecommerce.inventory inv ON inv.product_id = i.product_id
         GROUP BY inv.category ORDER BY inv.category",
    );
    let got: Vec<(String, i64)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap().to_string(), row[1].as_i64().unwrap())).collect();
    let want: Vec<(String, i64)> = units_by_category.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want);

    // The keys are consistent: every order total is the sum of its discounted lines.
    let r = query(
        &datasets_dir(),
        "ecommerce",
        "SELECT COUNT(*) FROM orders o
         JOIN (SELECT order_id, SUM(ROUND(quantity * price * (1 - discount / 100.0), 2)) AS s
               FROM order_items GROUP BY order_id) x ON o.order_id = x.order_id
         WHERE ABS(o.total - x.s) > 0.011",
    );
    assert_eq!(r.rows, vec![vec![json!(0)]]);
}

/// The scans tell the planner their files' sizes, so a hash join is built on the
/// small product table whichever side the query names it on.
#[test]
fn joins_build_their_hash_table_on_the_smaller_table() {
    for sql in [
        "EXPLAIN SELECT inv.category, COUNT(*) FROM order_items i JOIN inventory inv \
         ON inv.product_id = i.product_id GROUP BY inv.category",
        "EXPLAIN SELECT inv.category, COUNT(*) FROM inventory inv JOIN order_items i \
         ON inv.product_id = i.product_id GROUP BY inv.category",
    ] {
        let r = run_request(&datasets_dir(), request(&datasets_dir(), "ecommerce", sql));
        assert_eq!(r.status, RunStatus::Success, "{:?}", r.error);
        let plan = r
            .rows
            .iter()
            .find(|row| row[0] == json!("physical_plan"))
            .and_then(|row| row[1].as_str())
            .unwrap_or_else(|| panic!("no physical plan in {:?}", r.rows))
            .to_string();
        let join = &plan[plan.find("HashJoinExec").unwrap_or_else(|| panic!("no hash join in {plan}"))..];
        assert!(join.starts_with("HashJoinExec: mode=CollectLeft"), "{plan}");
        // The first child of a CollectLeft join is its build side.
        let build = join.find("table=inventory").unwrap_or_else(|| panic!("{plan}"));
        let probe = join.find("table=order_items").unwrap_or_else(|| panic!("{plan}"));
        assert!(build < probe, "order_items is the build side:\n{plan}");
    }
}

#[test]
fn window_functions_work() {
    let t = tickets();
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT ticket_id, LAG(ticket_id) OVER (ORDER BY ticket_id) AS previous,
                ROW_NUMBER() OVER (ORDER BY ticket_id) AS n
         FROM tickets ORDER BY ticket_id LIMIT 3",
    );
    let ids: Vec<i64> = t.values("ticket_id").take(3).map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        r.rows,
        vec![
            vec![json!(ids[0]), Value::Null, json!(1)],
            vec![json!(ids[1]), json!(ids[0]), json!(2)],
            vec![json!(ids[2]), json!(ids[1]), json!(3)]
        ]
    );

    // The first ticket of each agent, by creation time.
    let mut first: BTreeMap<i64, (&str, i64)> = BTreeMap::new();
    for ((agent, created), id) in t.values("agent_id").zip(t.values("created_at")).zip(t.values("ticket_id")) {
        let (agent, id) = (agent.parse::<i64>().unwrap(), id.parse::<i64>().unwrap());
        let e = first.entry(agent).or_insert((created, id));
        if (created, id) < *e {
            *e = (created, id);
        }
    }
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT agent_id, ticket_id FROM (
           SELECT agent_id, ticket_id, RANK() OVER (PARTITION BY agent_id ORDER BY created_at, ticket_id) AS r
           FROM tickets) WHERE r = 1 ORDER BY agent_id",
    );
    let got: Vec<(i64, i64)> = r.rows.iter().map(|row| (row[0].as_i64().unwrap(), row[1].as_i64().unwrap())).collect();
    let want: Vec<(i64, i64)> = first.iter().map(|(a, (_, id))| (*a, *id)).collect();
    assert_eq!(got, want);
}

#[test]
fn nulls_are_counted_compared_and_returned_as_json_null() {
    let t = tickets();
    let non_empty = |col: &str| t.values(col).filter(|v| !v.is_empty()).count() as u64;
    let r = query(&datasets_dir(), "support", "SELECT COUNT(*), COUNT(resolved_at), COUNT(csat_score) FROM tickets");
    assert_eq!(
        r.rows,
        vec![vec![json!(t.rows.len()), json!(non_empty("resolved_at")), json!(non_empty("csat_score"))]]
    );

    let r = query(&datasets_dir(), "support", "SELECT DISTINCT status FROM tickets WHERE resolved_at IS NULL");
    assert_eq!(r.rows, vec![vec![json!("Open")]], "only open tickets lack a resolution time");

    let r = query(
        &datasets_dir(),
        "support",
        "SELECT resolved_at, csat_score, COALESCE(csat_score, -1) AS c FROM tickets WHERE status = 'Open' LIMIT 1",
    );
    assert_eq!(r.rows, vec![vec![Value::Null, Value::Null, json!(-1)]]);
}

#[test]
fn timestamps_and_dates_come_back_as_iso_strings() {
    let t = tickets();
    let created: Vec<&str> = t.values("created_at").collect();
    let iso = |s: &str| s.replacen(' ', "T", 1);
    let r = query(&datasets_dir(), "support", "SELECT MIN(created_at), MAX(created_at) FROM tickets");
    assert_eq!(r.column_types, vec!["TIMESTAMP", "TIMESTAMP"]);
    assert_eq!(
        r.rows,
        vec![vec![json!(iso(created.iter().min().unwrap())), json!(iso(created.iter().max().unwrap()))]]
    );

    let in_december = created.iter().filter(|c| c.starts_with("2025-12")).count();
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT COUNT(*) FROM tickets
         WHERE created_at >= TIMESTAMP '2025-12-01 00:00:00' AND created_at < TIMESTAMP '2026-01-01 00:00:00'",
    );
    assert_eq!(r.rows, vec![vec![json!(in_december)]]);

    let mut per_month: BTreeMap<String, u64> = BTreeMap::new();
    for c in &created {
        *per_month.entry(format!("{}-01T00:00:00", &c[..7])).or_default() += 1;
    }
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT date_trunc('month', created_at) AS m, COUNT(*) FROM tickets GROUP BY m ORDER BY m",
    );
    let got: Vec<(String, u64)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap().to_string(), row[1].as_u64().unwrap())).collect();
    assert_eq!(got, per_month.into_iter().collect::<Vec<_>>());

    let orders = Csv::load(&datasets_dir().join("ecommerce/orders.csv"));
    let first_date = orders.values("order_date").min().unwrap().to_string();
    let r = query(&datasets_dir(), "ecommerce", "SELECT MIN(order_date) FROM orders");
    assert_eq!(r.column_types, vec!["DATE"]);
    assert_eq!(r.rows, vec![vec![json!(first_date)]]);
}

#[test]
fn booleans_are_json_booleans() {
    let t = tickets();
    let met = t.values("sla_met").filter(|v| *v == "true").count();
    let r =
        query(&datasets_dir(), "support", "SELECT sla_met, COUNT(*) FROM tickets GROUP BY sla_met ORDER BY sla_met");
    assert_eq!(r.column_types[0], "BOOLEAN");
    assert_eq!(r.rows, vec![vec![json!(false), json!(t.rows.len() - met)], vec![json!(true), json!(met)]]);
    let r = query(&datasets_dir(), "ecommerce", "SELECT COUNT(*) FROM orders WHERE returned AND status <> 'returned'");
    assert_eq!(r.rows, vec![vec![json!(0)]]);
}

#[test]
fn literal_values_keep_their_natural_json_types() {
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT 1 AS i, 2.5 AS f, 'x' AS s, true AS b, NULL AS n, CAST(12.34 AS DECIMAL(10,2)) AS d,
                DATE '2026-01-02' AS day, CAST('NaN' AS DOUBLE) AS nan",
    );
    assert_eq!(
        r.rows,
        vec![vec![
            json!(1),
            json!(2.5),
            json!("x"),
            json!(true),
            Value::Null,
            json!(12.34),
            json!("2026-01-02"),
            Value::Null
        ]]
    );
    let r = query(&datasets_dir(), "support", "VALUES (1, 'a'), (2, 'b')");
    assert_eq!(r.rows, vec![vec![json!(1), json!("a")], vec![json!(2), json!("b")]]);
}

#[test]
fn undeclared_columns_are_inferred() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(
        dir.path().join("d/things.csv"),
        "id,price,flag,at,day,label\n1,2.5,true,2025-01-01 10:00:00,2025-01-01,a\n2,,False,,2025-02-03,\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("registry.json"),
        r#"{"datasets":[{"id":"d","files":[{"name":"things.csv","path":"d/things.csv"}]}]}"#,
    )
    .unwrap();
    let r = query(dir.path(), "d", "SELECT * FROM things ORDER BY id");
    assert_eq!(r.column_types, vec!["BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMP", "DATE", "VARCHAR"]);
    assert_eq!(
        r.rows,
        vec![
            vec![json!(1), json!(2.5), json!(true), json!("2025-01-01T10:00:00"), json!("2025-01-01"), json!("a")],
            vec![json!(2), Value::Null, json!(false), Value::Null, json!("2025-02-03"), Value::Null],
        ]
    );
}

#[test]
fn a_file_that_does_not_match_its_schema_is_a_dataset_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "n\n1\nnot a number\n").unwrap();
    std::fs::write(
        dir.path().join("registry.json"),
        r#"{"datasets":[{"id":"d","files":[{"name":"t.csv","path":"t.csv","schema":{"n":{"type":"INTEGER"}}}]}]}"#,
    )
    .unwrap();
    let r = run_request(dir.path(), request(dir.path(), "d", "SELECT SUM(n) FROM t"));
    let error = r.error.unwrap();
    assert_eq!(error.error_type, ErrorType::DatasetError);
    assert!(error.message.contains("table t") && error.message.contains("not a number"), "{}", error.message);
    std::fs::remove_file(dir.path().join("t.csv")).unwrap();
    let r = run_request(dir.path(), request(dir.path(), "d", "SELECT * FROM t"));
    assert_eq!(r.error_type(), Some(ErrorType::DatasetError));
}

/// A one-table dataset `d` whose table `t` is `csv`, with columns `a` (INTEGER) and
/// `b` (VARCHAR).
fn hostile_dataset(csv: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("registry.json"),
        r#"{"datasets":[{"id":"d","files":[{"name":"t.csv","path":"t.csv",
            "schema":{"a":{"type":"INTEGER"},"b":{"type":"VARCHAR"}}}]}]}"#,
    )
    .unwrap();
    dir
}

/// Hostile CSV meets the fast reader: each file gives the error arrow-csv gives (the
/// reader hands such files to it), as a DATASET_ERROR naming the table, or reads as
/// arrow-csv reads it; all within the default memory cap and deadline.
#[test]
fn hostile_csv_files_fail_clearly_within_the_limits() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("a ragged row", b"a,b\n1,x\n2\n3,z\n", "incorrect number of fields for line 3"),
        ("a long row", b"a,b\n1,x\n2,y,extra\n", "incorrect number of fields for line 3"),
        ("invalid UTF-8", b"a,b\n1,x\n2,\xff\xfe\n", "invalid UTF-8 data for line 3"),
        ("a value that is not a number", b"a,b\n1,x\ntwo,y\n", "Error while parsing value 'two'"),
    ];
    for (name, csv, expected) in cases {
        let dir = hostile_dataset(csv);
        let started = Instant::now();
        let r = run_request(dir.path(), request(dir.path(), "d", "SELECT a, b FROM t"));
        let error = r.error.unwrap_or_else(|| panic!("{name}: the run succeeded: {:?}", r.rows));
        assert_eq!(error.error_type, ErrorType::DatasetError, "{name}: {}", error.message);
        assert!(error.message.contains("table t") && error.message.contains(expected), "{name}: {}", error.message);
        assert!(started.elapsed() < Duration::from_secs(10), "{name} took {:?}", started.elapsed());
    }

    // NUL bytes are text like any other; a quote left open runs to the end of the file,
    // as csv-core reads it.
    let dir = hostile_dataset(b"a,b\n1,x\0y\n2,\"open\n3,z\n");
    let r = run_request(dir.path(), request(dir.path(), "d", "SELECT a, b FROM t ORDER BY a"));
    assert_eq!(r.status, RunStatus::Success, "{:?}", r.error);
    assert_eq!(r.rows, vec![vec![json!(1), json!("x\u{0}y")], vec![json!(2), json!("open\n3,z\n")]]);
}

/// Lines longer than the fast reader buffers (16 MiB) go to arrow-csv, which holds the
/// record whole, as it always did: a 20 MB line is read; a 100 MB line needs more than
/// the default 256 MiB and ends the run cleanly at the memory cap.
#[test]
fn very_long_lines_are_read_or_stopped_by_the_memory_cap() {
    for (length, fits) in [(20_000_000, true), (100_000_000, false)] {
        let mut csv = b"a,b\n1,".to_vec();
        csv.resize(csv.len() + length, b'x');
        csv.extend_from_slice(b"\n2,short\n");
        let dir = hostile_dataset(&csv);
        let started = Instant::now();
        let sql = "SELECT COUNT(*) AS n, MAX(length(b)) AS longest FROM t";
        let r = run_request(dir.path(), request(dir.path(), "d", sql));
        if fits {
            assert_eq!(r.status, RunStatus::Success, "{:?}", r.error);
            assert_eq!(r.rows, vec![vec![json!(2), json!(length)]]);
        } else {
            assert_eq!(r.error_type(), Some(ErrorType::MemoryLimit), "{:?}", r.error);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{length}: took {:?}", started.elapsed());
    }
}

#[test]
fn results_are_cut_at_max_rows_and_max_output_bytes() {
    let mut req = request(&datasets_dir(), "support", "SELECT ticket_id, category FROM tickets ORDER BY ticket_id");
    req.max_rows = 5;
    let r = run_request(&datasets_dir(), req);
    assert_eq!((r.row_count, r.rows.len(), r.truncated), (5, 5, true));

    let mut req = request(&datasets_dir(), "support", "SELECT ticket_id, category FROM tickets ORDER BY ticket_id");
    req.max_rows = 1_000;
    req.max_output_bytes = 200;
    let r = run_request(&datasets_dir(), req);
    assert!(r.truncated);
    let size = serde_json::to_string(&r.rows).unwrap().len();
    assert!(size <= 200 && r.row_count >= 5, "{} rows in {size} bytes", r.row_count);

    let mut req = request(&datasets_dir(), "support", "SELECT COUNT(*) FROM tickets");
    req.max_rows = 1;
    let r = run_request(&datasets_dir(), req);
    assert!(!r.truncated, "exactly max_rows rows is not truncated");
}

#[test]
fn the_guest_refuses_what_is_not_a_query_by_itself() {
    // Straight to the sandbox, past the orchestrator's policy: defence in depth.
    for (sql, expected) in [
        ("CREATE TABLE x AS SELECT 1", ErrorType::SqlNotAllowed),
        ("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/data/tickets.csv'", ErrorType::SqlNotAllowed),
        ("INSERT INTO tickets SELECT * FROM tickets", ErrorType::SqlNotAllowed),
        ("DELETE FROM tickets", ErrorType::SqlNotAllowed),
        ("COPY tickets TO '/data/out.csv'", ErrorType::SqlNotAllowed),
        ("SET datafusion.execution.batch_size = 1", ErrorType::SqlNotAllowed),
        ("SELECT * FROM '/data/tickets.csv'", ErrorType::UnknownTable),
        ("SELECT * FROM \"/etc/passwd\"", ErrorType::UnknownTable),
        ("SELECT * FROM orders", ErrorType::UnknownTable),
        ("SELEC 1", ErrorType::SqlParseError),
        ("SELECT nope FROM tickets", ErrorType::SqlPlanError),
        ("SELECT substring('hello', 2, -1)", ErrorType::SqlExecutionError),
    ] {
        let r = run_request(&datasets_dir(), request(&datasets_dir(), "support", sql));
        assert_eq!(r.error_type(), Some(expected), "{sql}: {:?}", r.error);
        assert_eq!(r.status, RunStatus::Error);
    }
    let r = run_request(&datasets_dir(), request(&datasets_dir(), "support", "SELECT * FROM orders"));
    assert!(r.error.unwrap().message.contains("tables are: tickets"));
    let explain =
        run_request(&datasets_dir(), request(&datasets_dir(), "support", "EXPLAIN SELECT COUNT(*) FROM tickets"));
    assert_eq!(explain.columns, vec!["plan_type", "plan"], "{:?}", explain.error);
    let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    let r = run_request(&datasets_dir(), request(&datasets_dir(), "support", &deep));
    assert_eq!(r.error_type(), Some(ErrorType::SqlParseError), "{:?}", r.error);
}

#[test]
fn a_cpu_bomb_stops_at_its_deadline() {
    // Load the guest first: the first load after a build compiles it (minutes).
    sandbox();
    let mut req = request(&datasets_dir(), "support", "SELECT COUNT(*) FROM tickets a, tickets b, tickets c");
    req.timeout_ms = 1_000;
    let started = Instant::now();
    let r = run_request(&datasets_dir(), req);
    let elapsed = started.elapsed();
    assert_eq!(r.status, RunStatus::Timeout, "{r:?}");
    assert_eq!(r.error_type(), Some(ErrorType::Timeout));
    assert!(elapsed < Duration::from_millis(2_000), "took {elapsed:?}");
}

#[test]
fn memory_bombs_stop_at_the_memory_limit() {
    for sql in [
        // Operator memory: DataFusion's pool refuses first.
        "SELECT COUNT(DISTINCT a.ticket_id * 1000000 + b.ticket_id) FROM tickets a JOIN tickets b ON a.category = b.category",
        // Raw allocation: the wasm memory cap refuses.
        "SELECT repeat('x', 100000000) AS big",
        "SELECT a.category, array_agg(b.ticket_id) FROM tickets a JOIN tickets b ON a.category = b.category GROUP BY a.category",
    ] {
        let mut req = request(&datasets_dir(), "support", sql);
        req.memory_limit_bytes = 64 * 1024 * 1024;
        let r = run_request(&datasets_dir(), req);
        assert_eq!(r.error_type(), Some(ErrorType::MemoryLimit), "{sql}: {r:?}");
        // Stopped by this request's cap: the wasm limiter's 64 MiB, or DataFusion's pool
        // sized from it (60 % of 64 MiB is 38.4 MiB).
        let message = &r.error.as_ref().unwrap().message;
        assert!(message.contains("more than 64 MiB") || message.contains("pool_size: 38.4 MB"), "{sql}: {message}");
    }
}

/// An aggregate over a CSV several times larger than the memory cap: the scan streams.
#[test]
fn an_aggregate_over_a_csv_larger_than_memory_succeeds() {
    const SCALE: u32 = 560; // ≈ 300 MB of tickets
    let dir = scratch(&format!("big-support-x{SCALE}"));
    let registry = if dir.join("registry.json").is_file() {
        protocol::registry::Registry::load(&dir).unwrap()
    } else {
        dataset_generator::generate_only(&dir, SCALE, &["support"]).unwrap()
    };
    let rows = registry.datasets[0].files[0].row_count.unwrap();
    let size = std::fs::metadata(dir.join("support/tickets.csv")).unwrap().len();
    let memory_limit = 128 * 1024 * 1024;
    assert!(size > 2 * memory_limit, "{size} bytes");

    let mut req = request(
        &dir,
        "support",
        "SELECT COUNT(*) AS n, SUM(agent_id) AS s, COUNT(DISTINCT priority) AS p FROM tickets",
    );
    req.memory_limit_bytes = memory_limit;
    req.timeout_ms = 120_000;
    let r = run_request(&dir, req.clone());
    assert_eq!(r.status, RunStatus::Success, "{:?}", r.error);
    assert_eq!(r.rows[0][0], json!(rows));
    assert_eq!(r.rows[0][2], json!(4));
    assert_eq!(r.stats.bytes_read, Some(size));

    // The scan streams: the guest's peak (measured: 10.4 MiB, of which 4 MiB is the wasm
    // stack) is far under the 128 MiB cap, and no higher than over the 0.5 MB file.
    let peak = r.stats.peak_memory_bytes.unwrap();
    assert!(peak < 16 * MIB, "peak {peak} over a {size}-byte CSV");
    req.files = request(&datasets_dir(), "support", "SELECT 1").files;
    let small = run_request(&datasets_dir(), req);
    assert_eq!(small.status, RunStatus::Success, "{:?}", small.error);
    let small_peak = small.stats.peak_memory_bytes.unwrap();
    assert!(peak <= small_peak + 2 * MIB, "peak {peak} over {size} bytes, {small_peak} over the seed file");
}

const MIB: u64 = 1024 * 1024;

/// Dataset folders generated by another project: CRLF line ends, True/False, empty
/// fields for NULL, a quoted field holding a comma, a registry with fields we do not
/// know. Always the vendored fixture; `CSV_CORPUS_DIR` as well when set.
#[test]
fn the_foreign_corpus_loads_and_answers_correctly() {
    for corpus in foreign_corpora() {
        foreign_corpus_answers_correctly(&corpus);
    }
}

fn foreign_corpus_answers_correctly(corpus: &Path) {
    let at = corpus.display();
    let t = Csv::load(&corpus.join("support/tickets.csv"));
    let met = t.values("sla_met").filter(|v| *v == "True").count();
    let no_csat = t.values("csat_score").filter(|v| v.is_empty()).count();
    let unresolved = t.values("resolved_at").filter(|v| v.is_empty()).count();
    let r = query(
        corpus,
        "support",
        "SELECT COUNT(*), SUM(CASE WHEN sla_met THEN 1 ELSE 0 END), COUNT(*) - COUNT(csat_score),
                COUNT(*) FILTER (WHERE resolved_at IS NULL) FROM tickets",
    );
    assert_eq!(r.rows, vec![vec![json!(t.rows.len()), json!(met), json!(no_csat), json!(unresolved)]], "{at}");

    let channels: HashSet<&str> = t.values("channel").collect();
    let r = query(corpus, "support", "SELECT DISTINCT channel FROM tickets ORDER BY channel");
    let mut want: Vec<&str> = channels.into_iter().collect();
    want.sort();
    assert_eq!(
        r.rows,
        want.iter().map(|c| vec![json!(c)]).collect::<Vec<_>>(),
        "{at}: quoted fields whole, no carriage returns in the last column"
    );

    let r = query(corpus, "support", "SELECT MIN(created_at) FROM tickets");
    let min = t.values("created_at").min().unwrap().replacen(' ', "T", 1);
    assert_eq!(r.rows, vec![vec![json!(min)]], "{at}");

    let orders = Csv::load(&corpus.join("ecommerce/orders.csv"));
    let items = Csv::load(&corpus.join("ecommerce/order_items.csv"));
    let returned: HashSet<&str> = orders
        .values("order_id")
        .zip(orders.values("returned"))
        .filter(|(_, r)| *r == "True")
        .map(|(id, _)| id)
        .collect();
    let returned_items = items.values("order_id").filter(|id| returned.contains(id)).count();
    let r = query(
        corpus,
        "ecommerce",
        "SELECT COUNT(*) FROM order_items i JOIN orders o ON i.order_id = o.order_id WHERE o.returned",
    );
    assert_eq!(r.rows, vec![vec![json!(returned_items)]], "{at}");
}

/// The rows of a query over the support dataset that must succeed.
fn rows_of(sql: &str) -> Vec<Vec<Value>> {
    query(&datasets_dir(), "support", sql).rows
}

/// The table functions the orchestrator's policy allows, each run by the guest with
/// its exact answer; and the guest's own refusal of any other.
#[test]
fn the_allowed_table_functions_run_in_the_guest() {
    let one_two_three = vec![vec![json!(1)], vec![json!(2)], vec![json!(3)]];
    for sql in [
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM range(1, 4)",
        "SELECT * FROM unnest([1, 2, 3])",
        "SELECT * FROM UNNEST([1, 2, 3])",
        "SELECT unnest([1, 2, 3])",
        "SELECT UNNEST([1, 2, 3])",
        "SELECT x FROM generate_series(1, 3) AS t(x)",
        "SELECT value + 1 FROM range(3) ORDER BY 1",
    ] {
        assert_eq!(rows_of(sql), one_two_three, "{sql}");
    }
    assert_eq!(rows_of("SELECT SUM(value) FROM generate_series(1, 100)"), vec![vec![json!(5050)]]);
    assert_eq!(rows_of("SELECT COUNT(*) FROM range(0, 10, 3)"), vec![vec![json!(4)]]);

    assert_eq!(rows_of("SELECT * FROM GENERATE_SERIES(1, 3)"), one_two_three, "unquoted names fold to lower case");
    assert_eq!(rows_of("SELECT * FROM \"range\"(1, 4)"), one_two_three, "a quoted name is taken as written");

    // Any other table function, and a quoted name in another case: refused by the
    // guest itself, past the policy — which refuses them first.
    for (sql, name) in [
        ("SELECT * FROM read_csv('/data/tickets.csv')", "read_csv"),
        ("SELECT * FROM parquet_metadata('/data/tickets.csv')", "parquet_metadata"),
        ("SELECT * FROM no_such_function(1)", "no_such_function"),
        ("SELECT * FROM READ_CSV('/data/tickets.csv')", "read_csv"),
        ("SELECT * FROM \"GENERATE_SERIES\"(1, 3)", "GENERATE_SERIES"),
    ] {
        let r = run_request(&datasets_dir(), request(&datasets_dir(), "support", sql));
        let error = r.error.unwrap_or_else(|| panic!("{sql} ran: {:?}", r.rows));
        assert_eq!(error.error_type, ErrorType::SqlNotAllowed, "{sql}: {}", error.message);
        assert!(error.message.contains(&format!("table function '{name}'")), "{sql}: {}", error.message);
    }
}

/// One query per DataFusion function package the guest is built with, each with its
/// exact answer (computed from the CSV where it reads one).
#[test]
fn every_function_package_works_in_the_guest() {
    let orders = Csv::load(&datasets_dir().join("ecommerce/orders.csv"));
    let t = tickets();

    // datetime: EXTRACT and date_trunc on a DATE column.
    let mut per_month: BTreeMap<i64, u64> = BTreeMap::new();
    let mut per_trunc: BTreeMap<String, u64> = BTreeMap::new();
    for day in orders.values("order_date") {
        *per_month.entry(day[5..7].parse().unwrap()).or_default() += 1;
        *per_trunc.entry(format!("{}-01T00:00:00", &day[..7])).or_default() += 1;
    }
    let r = query(
        &datasets_dir(),
        "ecommerce",
        "SELECT EXTRACT(MONTH FROM order_date) AS m, COUNT(*) FROM orders GROUP BY m ORDER BY m",
    );
    let got: Vec<(i64, u64)> = r.rows.iter().map(|row| (num(&row[0]) as i64, row[1].as_u64().unwrap())).collect();
    assert_eq!(got, per_month.into_iter().collect::<Vec<_>>());
    let r = query(
        &datasets_dir(),
        "ecommerce",
        "SELECT date_trunc('month', order_date) AS m, COUNT(*) FROM orders GROUP BY m ORDER BY m",
    );
    let got: Vec<(String, u64)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap().to_string(), row[1].as_u64().unwrap())).collect();
    assert_eq!(got, per_trunc.into_iter().collect::<Vec<_>>());

    // string, unicode: over the first three tickets.
    let first: Vec<(&str, &str, &str)> = t
        .values("category")
        .zip(t.values("priority"))
        .zip(t.values("status"))
        .map(|((c, p), s)| (c, p, s))
        .take(3)
        .collect();
    let r = query(
        &datasets_dir(),
        "support",
        "SELECT upper(category), concat(priority, '/', status), substr(category, 2, 3),
                SUBSTRING(category FROM 1 FOR 2), character_length(category)
         FROM tickets ORDER BY ticket_id LIMIT 3",
    );
    let want: Vec<Vec<Value>> = first
        .iter()
        .map(|(c, p, s)| {
            let chars: Vec<char> = c.chars().collect();
            vec![
                json!(c.to_uppercase()),
                json!(format!("{p}/{s}")),
                json!(chars[1..4.min(chars.len())].iter().collect::<String>()),
                json!(chars[..2].iter().collect::<String>()),
                json!(chars.len()),
            ]
        })
        .collect();
    assert_eq!(r.rows, want);
    assert_eq!(
        rows_of("SELECT character_length('héllo'), substr('héllo', 2, 2), SUBSTRING('héllo' FROM 1 FOR 2)"),
        vec![vec![json!(5), json!("él"), json!("hé")]]
    );

    // regex
    let billing = t.values("category").filter(|c| c.starts_with('B')).count();
    assert_eq!(rows_of("SELECT COUNT(*) FROM tickets WHERE regexp_like(category, '^B')"), vec![vec![json!(billing)]]);
    assert_eq!(rows_of("SELECT regexp_replace('a-b-c', '-', '+', 'g')"), vec![vec![json!("a+b+c")]]);

    // crypto, encoding
    assert_eq!(rows_of("SELECT md5('abc')"), vec![vec![json!("900150983cd24fb0d6963f7d28e17f72")]]);
    assert_eq!(
        rows_of("SELECT encode('abc', 'hex'), decode('616263', 'hex') = CAST('abc' AS BYTEA)"),
        vec![vec![json!("616263"), json!(true)]]
    );

    // math
    let r = rows_of("SELECT round(2.567, 2), power(2, 10), sqrt(16.0), abs(-3)");
    assert_close(num(&r[0][0]), 2.57, "round(2.567, 2)");
    assert_close(num(&r[0][1]), 1024.0, "power(2, 10)");
    assert_close(num(&r[0][2]), 4.0, "sqrt(16.0)");
    assert_eq!(r[0][3], json!(3));

    // nested: an array literal and array functions.
    assert_eq!(rows_of("SELECT array_length([1, 2, 3]), cardinality([4, 5])"), vec![vec![json!(3), json!(2)]]);
    assert_eq!(rows_of("SELECT array_element([10, 20, 30], 2)"), vec![vec![json!(20)]]);
    // Lists come back as JSON arrays (json_rows.rs).
    assert_eq!(rows_of("SELECT [1, 2, 3] AS a"), vec![vec![json!([1, 2, 3])]]);
}
