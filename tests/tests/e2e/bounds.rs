//! The service as bounded as the sandbox: hostile clients outside the guest.
//! Connections that never finish their headers, too many connections, noisy
//! clients, odd paths and request ids, clients that hang up mid-run — each gets a
//! bounded, clear outcome while `/healthz` keeps answering fast.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, client};

/// A query that runs until its deadline: a triple cross join of 6,000 rows.
const BOMB: &str = "SELECT COUNT(*) FROM tickets a, tickets b, tickets c";

fn seed() -> Value {
    json!({"dataset_id": "support", "sql": "SELECT COUNT(*) AS n FROM tickets"})
}

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// `/healthz` answers within a second.
async fn assert_healthy(server: &TestServer) {
    let started = Instant::now();
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "/healthz took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_are_closed_after_the_header_timeout_and_connections_are_capped() {
    let server = TestServer::start(|c| {
        c.http_header_timeout_seconds = 1.0;
        c.max_connections = 20;
    })
    .await;
    let address = addr(&server);
    // 30 connections that send half a request line and stall: the cap closes the
    // ones past 20 at once, the timeout the rest.
    let mut stalled: Vec<TcpStream> = (0..30)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&address).ok()?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(stream)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Past the cap, /healthz waits for a free connection slot: the stalled ones end
    // within the header timeout.
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_millis(500), client().get(format!("{}/healthz", server.url)).send())
                .await
            && response.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the service never freed a connection");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    // Every stalled connection was closed by the server (EOF, or a 408 and EOF)
    // well before the 5 s read timeout: none was left open.
    for stream in &mut stalled {
        let mut buffer = Vec::new();
        let read = stream.read_to_end(&mut buffer);
        let still_open = matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        assert!(!still_open, "a stalled connection was left open: {read:?}");
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_noisy_client_is_refused_before_a_quiet_one_waits() {
    let server = TestServer::start(|c| {
        c.max_concurrent_runs = Some(4);
        c.max_runs_per_client = Some(2);
        c.queue_timeout_ms = 3_000;
        c.run_timeout_seconds = 6.0;
    })
    .await;
    // The noisy client fires 6 bombs at once: 2 are admitted, 4 get 429.
    let mut bombs = Vec::new();
    for _ in 0..6 {
        let url = format!("{}/runs", server.url);
        bombs.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .header("x-client-id", "noisy")
                .json(&json!({"dataset_id": "support", "sql": BOMB}))
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (code, retry, response.json::<Value>().await.unwrap())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A quiet client still gets its answer at once.
    let started = Instant::now();
    let response = client()
        .post(format!("{}/runs", server.url))
        .header("x-client-id", "quiet")
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "succeeded", "{body}");
    // Waiting for a bomb's slot would take its whole 6 s: the quiet run got a free one
    // (the margin is for two busy cores).
    assert!(started.elapsed() < Duration::from_secs(3), "the quiet client waited {:?}", started.elapsed());
    let mut codes = Vec::new();
    for bomb in bombs {
        let (code, retry, body) = bomb.await.unwrap();
        if code == 429 {
            assert_eq!(body["error"]["type"], "CLIENT_LIMIT");
            assert_eq!(retry.as_deref(), Some("1"));
        } else {
            assert_eq!(body["status"], "timed_out", "{body}");
        }
        codes.push(code);
    }
    codes.sort();
    assert_eq!(codes, vec![200, 200, 429, 429, 429, 429]);
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_paths_methods_and_request_ids_get_json_errors_and_bounded_labels() {
    let server = TestServer::start(|_| {}).await;
    let address = addr(&server);
    // An invalid UTF-8 path segment: a JSON 400, not text/plain.
    let raw = |request: &str| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let response = raw("GET /runs/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("content-type: application/json"), "{response}");
    assert!(response.contains("\"INVALID_REQUEST\""), "{response}");

    // Made-up methods are counted as `other`, not as a new series each.
    for method in ["FOO", "BAR", "BAZ"] {
        let response = raw(&format!("{method} /runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    }
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(!metrics.contains("FOO") && !metrics.contains("BAZ"), "{metrics}");
    assert!(metrics.contains(r#"method="other",route="/runs",code="405"} 3"#), "{metrics}");

    // A request id longer than 200 characters is replaced, not echoed.
    let long = "x".repeat(500);
    let response = client().get(format!("{}/healthz", server.url)).header("x-request-id", &long).send().await.unwrap();
    let echoed = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(echoed, long);
    assert!(echoed.len() <= 200);
    let response =
        client().get(format!("{}/healthz", server.url)).header("x-request-id", "my-id-1").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "my-id-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_run_still_gets_its_run_recorded() {
    let server = TestServer::start(|c| c.run_timeout_seconds = 2.0).await;
    let url = format!("{}/runs", server.url);
    let request =
        tokio::spawn(
            async move { client().post(url).json(&json!({"dataset_id": "support", "sql": BOMB})).send().await },
        );
    tokio::time::sleep(Duration::from_millis(500)).await;
    request.abort(); // the client goes away mid-run
    let _ = request.await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = server.get("/runs?limit=1").await;
        let run = &list["runs"][0];
        if run["status"] != "running" {
            assert_eq!(run["status"], "timed_out", "the run got its real outcome: {run}");
            assert_eq!(run["error_type"], "TIMEOUT");
            break;
        }
        assert!(Instant::now() < deadline, "the run stayed running: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("csv_analyst_runs_in_flight 0"), "{metrics}");
    assert!(metrics.contains(r#"csv_analyst_runs_total{status="timed_out",provider="local"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_is_computed_once_however_many_ask_together() {
    let server = TestServer::start(|c| c.max_concurrent_runs = Some(8)).await;
    let mut requests = Vec::new();
    for _ in 0..8 {
        let url = format!("{}/datasets/ecommerce/schema", server.url);
        requests
            .push(tokio::spawn(async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }));
    }
    let mut bodies = Vec::new();
    for request in requests {
        bodies.push(request.await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(bodies[0]["tables"].as_array().unwrap().len(), 3);
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains(r#"route="/datasets/{dataset_id}/schema",code="200"} 8"#), "{metrics}");
    assert!(metrics.contains("csv_analyst_schema_computations_total 1\n"), "{metrics}");
}

/// The client's share is checked before anything is written: a client at its
/// MAX_RUNS_PER_CLIENT gets 429 for a query the policy would refuse too, and the store
/// has no record of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_share_is_refused_before_anything_is_recorded() {
    let server = TestServer::start(|c| {
        c.max_runs_per_client = Some(1);
        c.run_timeout_seconds = 2.0;
    })
    .await;
    let url = format!("{}/runs", server.url);
    let bomb = tokio::spawn(async move {
        let body = json!({"dataset_id": "support", "sql": BOMB});
        client().post(url).header("x-client-id", "busy").json(&body).send().await.unwrap().status().as_u16()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = client()
        .post(format!("{}/runs", server.url))
        .header("x-client-id", "busy")
        .json(&json!({"dataset_id": "support", "sql": "DROP TABLE tickets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "CLIENT_LIMIT", "{body}");
    let (_, list) = server.get("/runs?limit=10").await;
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "only the running bomb is recorded: {list}");
    assert_eq!(runs[0]["sql"], BOMB);
    assert_eq!(bomb.await.unwrap(), 200);
    // Once its run has ended, the client is served again (and refused by the policy).
    let response = client()
        .post(format!("{}/runs", server.url))
        .header("x-client-id", "busy")
        .json(&json!({"dataset_id": "support", "sql": "DROP TABLE tickets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_run_store_refuses_writes_with_503_and_keeps_serving_reads() {
    let server = TestServer::start(|c| c.run_store_max_mb = 1).await;
    let long_sql = format!("SELECT COUNT(*) AS n FROM tickets WHERE category <> '{}'", "x".repeat(12_000));
    let mut refused = None;
    for _ in 0..500 {
        let response = client()
            .post(format!("{}/runs", server.url))
            .header("x-client-id", "filler")
            .json(&json!({"dataset_id": "support", "sql": long_sql}))
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            refused = Some((response.status().as_u16(), response.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (code, body) = refused.expect("a 1 MiB store fills up");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["type"], "STORE_UNAVAILABLE");
    assert!(!body["error"]["message"].as_str().unwrap().contains("runs.sqlite"), "no paths: {body}");
    assert_healthy(&server).await;
    let (code, list) = server.get("/runs?limit=5").await;
    assert_eq!(code, 200);
    assert_eq!(list["runs"].as_array().unwrap().len(), 5);
    let (code, _) = server.get("/datasets").await;
    assert_eq!(code, 200);
}

/// The service's memory under a hostile mix stays within its documented bound
/// (docs/security.md): wide results, 200 KiB SQL bodies, chat turns and
/// `GET /runs?limit=500` over them, from many clients at once.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_memory_stays_bounded_under_a_hostile_mix() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(crate::support::workspace_binary("orchestrator"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATASETS_DIR", crate::support::datasets_dir())
        .env("RUN_STORE_PATH", dir.path().join("runs.sqlite"))
        .env("RUNNER_CACHE_DIR", crate::support::cache_dir())
        .env("LLM_PROVIDER", "none")
        .env("QUEUE_TIMEOUT_MS", "60000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    crate::support::wait_until_ready(&url).await;
    let long_sql = format!("SELECT COUNT(*) AS n FROM tickets WHERE category <> '{}'", "x".repeat(200_000));
    let mut requests = Vec::new();
    for i in 0..120 {
        let (path, body) = match i % 3 {
            0 => ("/runs", json!({"dataset_id": "sensors", "sql": "SELECT * FROM sensors"})),
            1 => ("/runs", json!({"dataset_id": "support", "sql": long_sql})),
            _ => ("/chat", json!({"dataset_id": "support", "message": "SQL: SELECT * FROM tickets"})),
        };
        let target = format!("{url}{path}");
        requests.push(tokio::spawn(async move {
            let response = client().post(target).header("x-client-id", format!("c{i}")).json(&body).send().await;
            response.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    for _ in 0..10 {
        let response = client().get(format!("{url}/runs?limit=500")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    // The documented bound for this mix: well under the chart's 512 Mi.
    assert!(peak_kib < 400 * 1024, "peak RSS {} MiB", peak_kib / 1024);
    std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("peak RSS under the hostile mix: {} MiB\n", peak_kib / 1024).as_bytes(),
    )
    .unwrap();
}
