//! The orchestrator over real HTTP on loopback, with the embedded local sandbox.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BinaryService, Csv, TestServer, client, datasets_dir, foreign_corpora};

fn seed() -> Value {
    json!({"dataset_id": "support", "query_type": "sql", "sql": "SELECT COUNT(*) AS ticket_count FROM tickets"})
}

fn ticket_count() -> usize {
    Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_query_succeeds_and_is_recorded() {
    let server = TestServer::start(|_| {}).await;
    let (code, body) = server.post_run(seed()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["result"]["columns"], json!(["ticket_count"]));
    assert_eq!(body["result"]["rows"], json!([[ticket_count()]]));
    assert_eq!(body["result"]["error"], Value::Null);
    assert_eq!(body["details"]["dataset_id"], "support");
    assert_eq!(body["details"]["query_type"], "sql");
    assert_eq!(body["details"]["sql"], "SELECT COUNT(*) AS ticket_count FROM tickets");
    assert_eq!(body["result"].get("status"), None, "a run has one status: the run's");
    assert_eq!(body["details"]["sandbox_provider"], "local");
    assert_eq!(body["details"]["tables"], json!(["tickets"]));
    let registry = protocol::registry::Registry::load(&datasets_dir()).unwrap();
    let hash = registry.dataset("support").unwrap().version_hash.clone().unwrap();
    assert_eq!(body["details"]["dataset_version_hash"], json!(hash));

    let run_id = body["run_id"].as_str().unwrap();
    let (code, record) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200);
    // GET /runs/{id} is the same view as POST /runs' answer.
    assert_eq!(record, body);
    assert!(record["details"]["finished_at"].is_string() && record["details"]["total_ms"].is_number());
    assert_eq!(record["details"]["sql_truncated"], false);

    let (code, status) = server.get(&format!("/runs/{run_id}/status")).await;
    assert_eq!((code, status), (200, json!({"run_id": run_id, "status": "succeeded"})));

    let (code, list) = server.get("/runs?limit=5").await;
    assert_eq!(code, 200);
    assert_eq!(list["runs"][0]["run_id"], json!(run_id));
    assert_eq!(list["runs"][0]["sql"], seed()["sql"]);
    assert_eq!(list["runs"][0].get("result"), None, "lists carry no rows");

    let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(response.text().await.unwrap(), format!("ticket_count\n{}\n", ticket_count()));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_run_status_is_reachable() {
    let server = TestServer::start(|c| c.run_timeout_seconds = 1.0).await;
    let cases = [
        ("SELECT category, COUNT(*) FROM tickets GROUP BY category", "succeeded", None),
        ("SELECT no_such_column FROM tickets", "failed", Some("SQL_PLAN_ERROR")),
        ("SELEC 1", "failed", Some("SQL_PARSE_ERROR")),
        ("SELECT CAST(category AS INT) FROM tickets", "failed", Some("SQL_EXECUTION_ERROR")),
        ("DELETE FROM tickets", "rejected", Some("SQL_NOT_ALLOWED")),
        ("SELECT * FROM orders", "rejected", Some("UNKNOWN_TABLE")),
        ("SELECT COUNT(*) FROM tickets a, tickets b, tickets c", "timed_out", Some("TIMEOUT")),
    ];
    for (sql, status, error) in cases {
        let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
        assert_eq!(code, 200, "{sql}: {body}");
        assert_eq!(body["status"], status, "{sql}: {body}");
        assert_eq!(body["result"]["error"]["type"], error.map_or(Value::Null, |e| json!(e)), "{sql}");
        let (_, record) = server.get(&format!("/runs/{}", body["run_id"].as_str().unwrap())).await;
        assert_eq!(record["status"], status, "stored status of {sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_allows_queries_and_refuses_the_rest_with_reasons() {
    let server = TestServer::start(|_| {}).await;
    for sql in [
        "SELECT 'update tickets set x = 1; drop table tickets' AS note FROM tickets LIMIT 1",
        "SELECT created_at, resolved_at AS deleted_at FROM tickets WHERE status = 'delete' LIMIT 1",
        "SELECT COUNT(*) FROM support.tickets",
        "WITH open AS (SELECT * FROM tickets WHERE status = 'Open') SELECT COUNT(*) FROM open",
        "EXPLAIN SELECT COUNT(*) FROM tickets",
        "VALUES (1)",
    ] {
        let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "{sql}: {body}");
    }
    for (sql, error, says) in [
        ("DROP TABLE tickets", "SQL_NOT_ALLOWED", "only read-only queries"),
        ("SELECT 1; SELECT 2", "SQL_NOT_ALLOWED", "exactly one statement"),
        ("COPY tickets TO '/tmp/out.csv'", "SQL_NOT_ALLOWED", "read-only"),
        ("SELECT * FROM '/etc/passwd'", "SQL_NOT_ALLOWED", "file path"),
        ("SELECT * FROM read_csv('/data/support/tickets.csv')", "SQL_NOT_ALLOWED", "table function"),
        ("SELECT * FROM ecommerce.orders", "UNKNOWN_TABLE", "its tables are: tickets"),
    ] {
        let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
        assert_eq!(code, 200);
        assert_eq!(body["status"], "rejected", "{sql}");
        assert_eq!(body["result"]["error"]["type"], error, "{sql}");
        let message = body["result"]["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{sql}: {message}");
    }
}

/// The policy and the guest agree: every table function the policy allows runs
/// through the service with its exact answer, whatever its unquoted case, and a
/// quoted name is taken as written (`"GENERATE_SERIES"` is no function), refused by
/// the policy, never allowed and then failed by the guest.
#[tokio::test(flavor = "multi_thread")]
async fn the_table_functions_the_policy_allows_run_end_to_end() {
    let server = TestServer::start(|_| {}).await;
    for sql in [
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM range(1, 4)",
        "SELECT * FROM unnest([1, 2, 3])",
        "SELECT * FROM UNNEST([1, 2, 3])",
        "SELECT unnest([1, 2, 3])",
        "SELECT * FROM GENERATE_SERIES(1, 3)",
        "SELECT * FROM Generate_Series(1, 3)",
        "SELECT * FROM RANGE(1, 4)",
        "SELECT * FROM \"generate_series\"(1, 3)",
    ] {
        let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "{sql}: {body}");
        assert_eq!(body["result"]["rows"], json!([[1], [2], [3]]), "{sql}");
    }
    for sql in ["SELECT * FROM \"GENERATE_SERIES\"(1, 3)", "SELECT * FROM \"Range\"(1, 4)"] {
        let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("rejected")), "{sql}: {body}");
        assert_eq!(body["result"]["error"]["type"], "SQL_NOT_ALLOWED", "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_4xx_errors() {
    let server = TestServer::start(|c| c.max_body_bytes = 4096).await;
    let url = format!("{}/runs", server.url);
    let send = |builder: reqwest::RequestBuilder| async move {
        let response = builder.send().await.unwrap();
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (code, body["error"]["type"].as_str().unwrap_or("<no error type>").to_string())
    };
    let http = client();
    let cases = vec![
        (
            send(http.post(&url).header("content-type", "application/json").body("{\"dataset_id\":")).await,
            (400, "INVALID_JSON"),
        ),
        (send(http.post(&url).json(&json!({"dataset_id": "support"}))).await, (400, "INVALID_REQUEST")),
        (send(http.post(&url).json(&json!({"dataset_id": "support", "sql": 7}))).await, (400, "INVALID_REQUEST")),
        (send(http.post(&url).json(&json!(["not", "an", "object"]))).await, (400, "INVALID_REQUEST")),
        (send(http.post(&url).json(&json!({"dataset_id": "support", "sql": "  "}))).await, (400, "INVALID_REQUEST")),
        (
            send(http.post(&url).json(&json!({"dataset_id": "support", "sql": "SELECT 1", "query_type": "nl"}))).await,
            (400, "INVALID_REQUEST"),
        ),
        (
            send(http.post(&url).json(&json!({"dataset_id": "support", "sql": "SELECT 1", "timeout_seconds": -1})))
                .await,
            (400, "INVALID_REQUEST"),
        ),
        (send(http.post(&url).body("{}")).await, (415, "UNSUPPORTED_MEDIA_TYPE")),
        (
            send(http.post(&url).header("content-type", "text/plain").body("SELECT 1")).await,
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
        (
            send(http.post(&url).json(&json!({"dataset_id": "support", "sql": "x".repeat(5000)}))).await,
            (413, "PAYLOAD_TOO_LARGE"),
        ),
        (send(http.post(&url).json(&json!({"dataset_id": "nope", "sql": "SELECT 1"}))).await, (404, "UNKNOWN_DATASET")),
        (send(http.get(format!("{}/runs/no-such-run", server.url))).await, (404, "RUN_NOT_FOUND")),
        (send(http.get(format!("{}/runs/no-such-run/status", server.url))).await, (404, "RUN_NOT_FOUND")),
        (send(http.get(format!("{}/runs?limit=0", server.url))).await, (400, "INVALID_REQUEST")),
        (send(http.get(format!("{}/runs?limit=ten", server.url))).await, (400, "INVALID_REQUEST")),
        (send(http.get(format!("{}/datasets/nope/schema", server.url))).await, (404, "UNKNOWN_DATASET")),
        (send(http.delete(&url)).await, (405, "METHOD_NOT_ALLOWED")),
        (send(http.get(format!("{}/no/such/route", server.url))).await, (404, "NOT_FOUND")),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!((got.0, got.1.as_str()), want, "case {i}");
    }
    let (code, _) = server.post_run(seed()).await;
    assert_eq!(code, 200, "the service still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_echoed_or_made() {
    let server = TestServer::start(|_| {}).await;
    let response =
        client().get(format!("{}/healthz", server.url)).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let response = client().post(format!("{}/runs", server.url)).json(&seed()).send().await.unwrap();
    let made = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"]["request_id"], json!(made));
}

#[tokio::test(flavor = "multi_thread")]
async fn datasets_and_their_schemas_are_listed() {
    let server = TestServer::start(|_| {}).await;
    let (code, body) = server.get("/datasets").await;
    assert_eq!(code, 200);
    let ids: Vec<&str> = body["datasets"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["support", "ecommerce", "sensors"]);
    let ecommerce = &body["datasets"][1];
    assert!(ecommerce["version_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(!ecommerce["prompts"].as_array().unwrap().is_empty());
    let tables: Vec<&str> =
        ecommerce["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tables, vec!["orders", "order_items", "inventory"]);

    let (code, schema) = server.get("/datasets/ecommerce/schema").await;
    assert_eq!(code, 200, "{schema}");
    let orders = &schema["tables"][0];
    assert_eq!(orders["name"], "orders");
    let csv = Csv::load(&datasets_dir().join("ecommerce/orders.csv"));
    assert_eq!(orders["row_count"], json!(csv.rows.len()));
    let columns: Vec<(&str, &str)> = orders["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("order_id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("order_date", "DATE"),
            ("total", "DOUBLE"),
            ("status", "VARCHAR"),
            ("returned", "BOOLEAN")
        ]
    );
    assert!(!orders["columns"][0]["description"].as_str().unwrap().is_empty());
    let samples = orders["sample_rows"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0][0], json!(csv.rows[0][0].parse::<i64>().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_need_no_llm_key() {
    let server = TestServer::start(|c| {
        c.llm.openai_api_key = None;
        c.llm.anthropic_api_key = None;
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Openai;
    })
    .await;
    let (code, body) = server.get("/healthz").await;
    assert_eq!((code, body), (200, json!({"status": "ok"})));
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["llm"]["provider"], "openai");
    assert_eq!(body["llm"]["configured"], false, "{body}");
    assert_eq!(body["llm"]["model"], "gpt-4o-mini");
    assert!(body["sandbox"].as_str().unwrap().contains("module loaded"));

    server.post_run(seed()).await;
    server.post_run(json!({"dataset_id": "support", "sql": "DROP TABLE tickets"})).await;
    let (code, text) = server.get("/metrics").await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap();
    for line in [
        r#"csv_analyst_runs_total{status="succeeded",provider="local"} 1"#,
        r#"csv_analyst_runs_total{status="rejected",provider="local"} 1"#,
        r#"csv_analyst_run_duration_seconds_count{provider="local"} 2"#,
        "csv_analyst_runs_in_flight 0",
        r#"csv_analyst_http_requests_total{method="POST",route="/runs",code="200"} 2"#,
        r#"csv_analyst_capacity_rejections_total 0"#,
        r#"csv_analyst_build_info{version="0.1.0"} 1"#,
    ] {
        assert!(text.contains(line), "/metrics lacks {line}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_records_survive_a_restart() {
    let server = TestServer::start(|_| {}).await;
    let (_, first) = server.post_run(seed()).await;
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let (_, before) = server.get(&format!("/runs/{run_id}")).await;
    let store = server.stop().await;

    let server = TestServer::start_in(store, |_| {}).await;
    let (code, after) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200);
    assert_eq!(after, before);
    let (_, list) = server.get("/runs").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_parallel_runs_some_timing_out_while_healthz_stays_fast() {
    let server = TestServer::start(|c| {
        c.max_concurrent_runs = Some(4);
        c.queue_timeout_ms = 60_000;
        c.run_timeout_seconds = 1.0;
    })
    .await;
    let mut runs = Vec::new();
    for i in 0..24 {
        let sql = if i % 4 == 0 {
            "SELECT COUNT(*) FROM tickets a, tickets b, tickets c".to_string()
        } else {
            format!("SELECT COUNT(*) FROM tickets WHERE agent_id > {i}")
        };
        let url = server.url.clone();
        runs.push(tokio::spawn(async move {
            let body = json!({"dataset_id": "support", "sql": sql});
            // 24 clients, one run each (one client would meet MAX_RUNS_PER_CLIENT).
            let response = client()
                .post(format!("{url}/runs"))
                .header("x-client-id", format!("client-{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }));
    }
    let mut slowest = Duration::ZERO;
    while !runs.iter().all(|r| r.is_finished()) {
        let started = Instant::now();
        let (code, _) = server.get("/healthz").await;
        assert_eq!(code, 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(slowest < Duration::from_millis(500), "/healthz took {slowest:?} under load");
    let mut statuses = Vec::new();
    for run in runs {
        statuses.push(run.await.unwrap()["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses.iter().filter(|s| *s == "timed_out").count(), 6, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "succeeded").count(), 18, "{statuses:?}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics.as_str().unwrap().contains("csv_analyst_runs_in_flight 0"), "every slot was freed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_service_answers_503_with_retry_after() {
    let server = TestServer::start(|c| {
        c.max_concurrent_runs = Some(1);
        c.max_runs_per_client = Some(4);
        c.queue_timeout_ms = 100;
        c.run_timeout_seconds = 3.0;
    })
    .await;
    let url = server.url.clone();
    let bomb = tokio::spawn(async move {
        let body = json!({"dataset_id": "support", "sql": "SELECT COUNT(*) FROM tickets a, tickets b, tickets c"});
        client().post(format!("{url}/runs")).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = client().post(format!("{}/runs", server.url)).json(&seed()).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "CAPACITY_EXCEEDED");
    assert_eq!(bomb.await.unwrap()["status"], "timed_out");
    let (code, body) = server.post_run(seed()).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "the slot was freed");
}

/// A foreign datasets folder (the vendored fixture, and `CSV_CORPUS_DIR` when set)
/// served as it is, unknown registry fields and all.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_datasets_folder_serves_as_it_is() {
    for corpus in foreign_corpora() {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&corpus, copy.path());
        let dir = copy.path().to_path_buf();
        let server = TestServer::start(move |c| c.datasets_dir = dir).await;
        let (code, body) = server.post_run(seed()).await;
        assert_eq!(code, 200);
        assert_eq!(body["status"], "succeeded", "{}: {body}", corpus.display());
        let expected = Csv::load(&corpus.join("support/tickets.csv")).rows.len();
        assert_eq!(body["result"]["rows"], json!([[expected]]), "{}", corpus.display());
        let (code, schema) = server.get("/datasets/support/schema").await;
        assert_eq!(code, 200);
        let column = &schema["tables"][0]["columns"][1];
        assert_eq!(
            (&column["name"], &column["type"], &column["description"]),
            (&json!("created_at"), &json!("TIMESTAMP"), &json!("Ticket creation timestamp")),
            "{}",
            corpus.display()
        );
        assert!(column["min"].as_str() < column["max"].as_str(), "a date column's range: {column}");
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_runs_before_exiting() {
    let store = tempfile::tempdir().unwrap();
    let process = BinaryService::start(store.path(), &[("RUN_TIMEOUT_SECONDS", "2")]);
    process.wait_ready().await;
    let url = process.url.clone();
    let in_flight = tokio::spawn(async move {
        let body = json!({"dataset_id": "support", "sql": "SELECT COUNT(*) FROM tickets a, tickets b, tickets c"});
        client().post(format!("{url}/runs")).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.signal("TERM");
    let body = in_flight.await.unwrap();
    assert_eq!(body["status"], "timed_out", "the in-flight run got its answer: {body}");
    let status = tokio::task::spawn_blocking(move || {
        let mut process = process;
        process.wait()
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_run_leaves_the_run_marked_interrupted() {
    let store = tempfile::tempdir().unwrap();
    let process = BinaryService::start(store.path(), &[("RUN_TIMEOUT_SECONDS", "30")]);
    process.wait_ready().await;
    let url = process.url.clone();
    let in_flight = tokio::spawn(async move {
        let body = json!({"dataset_id": "support", "sql": "SELECT COUNT(*) FROM tickets a, tickets b, tickets c"});
        client().post(format!("{url}/runs")).json(&body).send().await
    });
    // Wait until the run is recorded as running, then kill the process.
    let run_id = loop {
        let list: Value = client().get(format!("{}/runs", process.url)).send().await.unwrap().json().await.unwrap();
        if let Some(run) = list["runs"].as_array().unwrap().first() {
            assert_eq!(run["status"], "running");
            break run["run_id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    process.signal("KILL");
    assert!(in_flight.await.unwrap().is_err(), "the connection died with the process");
    drop(process);

    let restarted = BinaryService::start(store.path(), &[]);
    restarted.wait_ready().await;
    let record: Value =
        client().get(format!("{}/runs/{run_id}", restarted.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(record["status"], "interrupted");
    assert_eq!(record["error"]["type"], "INTERNAL");
    assert!(record["error"]["message"].as_str().unwrap().contains("stopped while this run was in progress"));
}
