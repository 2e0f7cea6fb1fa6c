//! The MCP server, end to end, driven by the official Python SDK (`mcp-python`: the
//! `mcp` package in a venv, installed by .ci/run) on the real binary: over streamable
//! HTTP with a token's grants, and over stdio as a desktop client starts it. The
//! client script is tests/mcp/client.py; it prints what it saw and this checks it.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    BinaryService, Csv, cache_dir, client, datasets_dir, require_tool, wait_until_ready, workspace, workspace_binary,
};

const ADMIN: &str = "admin-token-of-the-mcp-tests-0123456789";

/// Runs tests/mcp/client.py with `args` (and `env`), and returns its report.
fn python_client(args: &[&str], env: &[(&str, String)]) -> Option<Value> {
    let python = require_tool("mcp-python")?;
    let output = Command::new(python)
        .arg(workspace().join("tests/mcp/client.py"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the MCP client failed:\n{stderr}");
    Some(serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}")))
}

/// `SELECT priority, COUNT(*) … GROUP BY priority ORDER BY priority`, from the CSV.
fn priority_counts() -> Value {
    let csv = Csv::load(&datasets_dir().join("support/tickets.csv"));
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for priority in csv.values("priority") {
        *counts.entry(priority.to_string()).or_default() += 1;
    }
    json!(counts.into_iter().map(|(p, n)| json!([p, n])).collect::<Vec<_>>())
}

fn ticket_count() -> u64 {
    Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len() as u64
}

fn text<'a>(report: &'a Value, key: &str) -> &'a str {
    report[key]["text"].as_str().unwrap_or_else(|| panic!("{key}: {}", report[key]))
}

/// What both transports must show alike.
fn check_common(report: &Value, only_support: bool, with_model: bool) {
    let tools = report["tools"].as_object().unwrap();
    let names: Vec<&str> = tools.keys().map(String::as_str).collect();
    let mut expected_tools = vec!["describe_dataset", "get_run", "list_datasets", "run_plan", "run_sql"];
    if with_model {
        expected_tools.insert(0, "ask");
    }
    assert_eq!(names, expected_tools, "ask only with a model");
    for (name, tool) in tools {
        assert_eq!((tool["read_only"].as_bool(), tool["open_world"].as_bool()), (Some(true), Some(false)), "{name}");
    }
    assert_eq!(tools["run_sql"]["input_properties"], json!(["dataset_id", "max_rows", "sql"]));
    assert!(
        tools["run_sql"]["output_schema"].as_bool().unwrap() && tools["run_plan"]["output_schema"].as_bool().unwrap()
    );
    assert_eq!(tools["run_plan"]["plan_schema_title"], "QueryPlan", "the plan's JSON schema is the input schema");

    let ids: Vec<&str> = report["list_datasets"]["structured"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let expected: &[&str] = if only_support { &["support"] } else { &["support", "ecommerce", "sensors"] };
    assert_eq!(ids, expected);
    assert_eq!(report["describe_dataset"]["structured"]["tables"][0]["name"], "tickets");

    let run = &report["run_sql"];
    assert_eq!(run["is_error"], false, "{run}");
    assert_eq!(run["structured"]["columns"], json!(["priority", "n"]));
    assert_eq!(run["structured"]["rows"], priority_counts());
    assert!(run["text"].as_str().unwrap().contains("priority | n"), "a short text table: {run}");
    let limited = &report["run_sql_max_rows"]["structured"];
    assert_eq!((limited["row_count"].as_u64(), limited["truncated"].as_bool()), (Some(3), Some(true)));

    // Refusals and failures are tool errors with /runs's messages, so a model can correct itself.
    for (key, starts) in [
        ("run_sql_write", "SQL_NOT_ALLOWED: DELETE is not allowed"),
        ("run_sql_ddl", "SQL_NOT_ALLOWED: CREATE TABLE is not allowed"),
        ("run_sql_unknown_dataset", "UNKNOWN_DATASET: no dataset \"nope\""),
        ("run_plan_bad", "INVALID_REQUEST: invalid plan"),
        ("get_run_unknown", "RUN_NOT_FOUND"),
        ("missing_arguments", "failed to deserialize parameters: missing field `sql`"),
        ("wrong_types", "failed to deserialize parameters: invalid type"),
    ] {
        assert_eq!(report[key]["is_error"], true, "{key}: {}", report[key]);
        assert!(text(report, key).starts_with(starts), "{key}: {}", text(report, key));
    }
    assert!(text(report, "run_sql_bad_column").contains("nope"), "{}", report["run_sql_bad_column"]);
    let other = &report["run_sql_other_dataset"];
    if only_support {
        assert!(
            text(report, "run_sql_other_dataset")
                .starts_with("UNKNOWN_DATASET: no dataset \"ecommerce\"; datasets: support")
        );
    } else {
        assert_eq!(other["structured"]["rows"], json!([[1]]), "{other}");
    }
    assert_eq!(report["run_plan"]["structured"]["rows"], json!([[ticket_count()]]), "{}", report["run_plan"]);
    assert!(
        report["unknown_tool"]["protocol_error"].as_str().unwrap().contains("not found"),
        "{}",
        report["unknown_tool"]
    );

    let recorded = &report["get_run"]["structured"];
    assert_eq!(recorded["run_id"], run["structured"]["run_id"]);
    assert_eq!(recorded["details"]["origin"], "mcp");

    let expected_resources: Vec<String> = expected
        .iter()
        .map(|id| format!("csv-analyst://datasets/{id}/schema"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(report["resources"], json!(expected_resources));
    assert_eq!(report["templates"], json!(["csv-analyst://datasets/{dataset_id}/schema"]));
    assert_eq!(report["schema_resource"]["tables"][0]["row_count"], json!(ticket_count()));
    assert!(report["unknown_resource"].as_str().unwrap().contains("no resource"), "{}", report["unknown_resource"]);

    let hundred = &report["hundred_calls"];
    assert!(hundred["succeeded"].as_u64().unwrap() >= 1, "{hundred}");
    assert_eq!(hundred["protocol_errors"], json!([]), "{hundred}");
    for error in hundred["tool_errors"].as_array().unwrap() {
        assert!(["CLIENT_LIMIT", "CAPACITY_EXCEEDED"].contains(&error.as_str().unwrap()), "{hundred}");
    }
}

async fn post_mcp(url: &str, token: Option<&str>, origin: Option<&str>, body: Value) -> (u16, Value, Option<String>) {
    let version = body["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25").to_string();
    let mut request = client()
        .post(format!("{url}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), challenge)
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_over_http_answers_with_the_tokens_grants_and_refuses_what_it_must() {
    let store = tempfile::tempdir().unwrap();
    let service = BinaryService::start(
        store.path(),
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("AUTH_ANONYMOUS", "deny"),
            ("MAX_RUNS_PER_CLIENT", "4"),
            ("MAX_CONCURRENT_RUNS", "6"),
        ],
    );
    wait_until_ready(&service.url).await;
    let mint = |body: Value| {
        let url = service.url.clone();
        async move {
            let response = client().post(format!("{url}/admin/tokens")).bearer_auth(ADMIN).json(&body).send().await;
            let minted: Value = response.unwrap().json().await.unwrap();
            minted["token"].as_str().unwrap().to_string()
        }
    };
    let alice = mint(json!({"subject": "alice", "datasets": ["support"]})).await;

    // The Python SDK, at protocol revision 2025-11-25, with alice's token.
    let endpoint = format!("{}/mcp", service.url);
    let Some(report) = python_client(&["http", &endpoint, "--token", &alice, "--mode", "legacy"], &[]) else { return };
    assert_eq!(report["protocol_version"], "2025-11-25");
    check_common(&report, true, false);
    assert_eq!(report["get_run"]["structured"]["details"]["principal"], "alice");

    // Its runs are alice's, recorded with origin mcp, in GET /runs like any other;
    // refused queries are recorded as rejected, never as succeeded.
    let runs: Value = client()
        .get(format!("{}/runs?limit=500", service.url))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["origin"] == "mcp"), "{runs:?}");
    let hundred = report["hundred_calls"]["succeeded"].as_u64().unwrap() as usize;
    let selects = runs
        .iter()
        .filter(|r| r["sql"].as_str().unwrap().starts_with("SELECT ") && r["sql"].as_str().unwrap().ends_with(" AS i"));
    assert_eq!(selects.filter(|r| r["status"] == "succeeded").count(), hundred);
    for refused in ["DELETE FROM tickets", "CREATE TABLE x AS SELECT 1"] {
        let run = runs.iter().find(|r| r["sql"] == refused).unwrap_or_else(|| panic!("{refused} not recorded"));
        assert_eq!(run["status"], "rejected", "{run}");
    }

    // Another version a client may speak.
    let initialize = |version: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
    };
    let (status, body, _) = post_mcp(&service.url, Some(&alice), None, initialize("2025-06-18")).await;
    assert_eq!((status, body["result"]["protocolVersion"].as_str()), (200, Some("2025-06-18")), "{body}");

    // Without a token (AUTH_ANONYMOUS=deny), with a bad or expired one: 401 with a challenge.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, body, challenge) = post_mcp(&service.url, None, None, list.clone()).await;
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("UNAUTHORIZED")), "{body}");
    assert!(challenge.is_some_and(|c| c.starts_with("Bearer")));
    let expiring = mint(json!({"subject": "bob", "datasets": ["*"], "expires_in_s": 1})).await;
    assert_eq!(post_mcp(&service.url, Some(&expiring), None, list.clone()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body, _) = post_mcp(&service.url, Some(&expiring), None, list.clone()).await;
    assert_eq!(status, 401, "an expired token mid-session: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    // DNS rebinding: a page of a foreign origin is refused; a local one is not.
    let (status, body, _) = post_mcp(&service.url, Some(&alice), Some("https://evil.example"), list.clone()).await;
    assert_eq!((status, body["error"]["type"].as_str()), (403, Some("FORBIDDEN_ORIGIN")), "{body}");
    assert_eq!(post_mcp(&service.url, Some(&alice), Some("http://localhost:3000"), list.clone()).await.0, 200);

    // SQL over the body limit: 413 before anything runs.
    let huge = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "run_sql", "arguments": {"dataset_id": "support", "sql": format!("SELECT '{}'", "x".repeat(300_000))}}});
    let (status, body, _) = post_mcp(&service.url, Some(&alice), None, huge).await;
    assert_eq!((status, body["error"]["type"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")), "{body}");
    // A JSON-RPC batch of 100 calls: refused (MCP dropped batches), nothing run.
    let batch: Vec<Value> = (0..100)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                   "params": {"name": "run_sql", "arguments": {"dataset_id": "support", "sql": "SELECT 1"}}})
        })
        .collect();
    let (status, body, _) = post_mcp(&service.url, Some(&alice), None, json!(batch)).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("INVALID_REQUEST")), "{body}");
    // HTTP misuse gets the service's JSON errors, never plain text or a 5xx.
    let raw = |method: reqwest::Method, accept: &str, content_type: &str, body: String| {
        client()
            .request(method, format!("{}/mcp", service.url))
            .bearer_auth(&alice)
            .header("accept", accept)
            .header("content-type", content_type)
            .body(body)
    };
    let both = "application/json, text/event-stream";
    for (request, status, kind) in [
        (raw(reqwest::Method::GET, both, "application/json", String::new()), 405, "METHOD_NOT_ALLOWED"),
        (raw(reqwest::Method::POST, both, "application/json", "{not json".into()), 400, "INVALID_JSON"),
        (raw(reqwest::Method::POST, "text/html", "application/json", list.to_string()), 406, "NOT_ACCEPTABLE"),
        (raw(reqwest::Method::POST, both, "text/plain", list.to_string()), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ] {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!((got, body["error"]["type"].as_str()), (status, Some(kind)), "{body}");
    }
    assert_eq!(client().get(format!("{}/healthz", service.url)).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_over_stdio_is_the_local_user_and_negotiates_the_newest_revision() {
    use crate::fake_llm::{FakeLlm, Reply};
    let fake = FakeLlm::start().await;
    let count = "SELECT COUNT(*) AS n FROM tickets";
    fake.script([
        Reply::tool_call("run_sql", json!({ "sql": count }).to_string()),
        Reply::text(format!("There are {} tickets.", ticket_count())),
    ]);
    let store = tempfile::tempdir().unwrap();
    let binary = workspace_binary("orchestrator").display().to_string();
    let env = [
        ("LLM_PROVIDER", "openai".to_string()),
        ("OPENAI_BASE_URL", fake.openai_base_url()),
        ("OPENAI_API_KEY", "sk-test-not-a-real-key".to_string()),
        ("DATASETS_DIR", datasets_dir().display().to_string()),
        ("RUN_STORE_PATH", store.path().join("runs.sqlite").display().to_string()),
        ("RUNNER_CACHE_DIR", cache_dir().display().to_string()),
        ("MAX_RUNS_PER_CLIENT", "4".to_string()),
        ("LOG_LEVEL", "debug".to_string()),
    ];
    let Some(report) = python_client(&["stdio", &binary, "--mode", "auto"], &env) else { return };
    // Debug logs went to stderr: stdout carried only the protocol, or nothing would parse.
    assert!(report["protocol_version"].as_str().unwrap() >= "2025-11-25", "{}", report["protocol_version"]);
    check_common(&report, false, true);
    assert_eq!(report["get_run"]["structured"]["details"]["principal"], "local");
    // ask: the agent's grounded answer, with the run it made (recorded with origin mcp).
    let ask = &report["ask"];
    assert_eq!(ask["is_error"], false, "{ask}");
    assert_eq!(ask["text"], format!("There are {} tickets.", ticket_count()));
    assert_eq!(ask["structured"]["result"]["rows"], json!([[ticket_count()]]), "{ask}");
    assert_eq!(ask["structured"]["details"]["sql"], count);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_body_is_timed_out_not_held() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = crate::support::TestServer::start(|c| c.http_header_timeout_seconds = 1.0).await;
    let address = server.url.trim_start_matches("http://").to_string();
    for path in ["/runs", "/mcp"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{\"dataset_id\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "{path}: the connection was held past the body timeout");
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"type\":\"INVALID_REQUEST\""), "{path}: {answer}");
    }
}
