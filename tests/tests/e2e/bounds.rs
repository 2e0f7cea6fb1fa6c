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
    // ones past 20 at once (but for the two the probe reserve takes from one
    // address), the timeout the rest.
    let mut stalled: Vec<TcpStream> = (0..30)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&address).ok()?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(stream)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Past the cap, /healthz from the same address waits for a free connection slot
    // (this address holds its share of the probe reserve too): the stalled ones end
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

/// A connection from `source` (a loopback address: all of 127.0.0.0/8 is local on
/// Linux) to `server` that sends half a request and stalls.
async fn half_request_from(source: &str, server: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(server.parse().unwrap()).await.unwrap();
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    stream
}

/// How many of `streams` the server closed (EOF, a reset, or a response and EOF)
/// within `within`, waiting on all of them at once.
fn closed_within(streams: &mut [TcpStream], within: Duration) -> usize {
    std::thread::scope(|scope| {
        let waits: Vec<_> = streams
            .iter_mut()
            .map(|stream| {
                scope.spawn(move || {
                    let deadline = Instant::now() + within;
                    let mut buffer = [0u8; 1024];
                    loop {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return false;
                        }
                        stream.set_read_timeout(Some(left)).unwrap();
                        match stream.read(&mut buffer) {
                            Ok(0) => return true,
                            Ok(_) => continue,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                return false;
                            }
                            Err(_) => return true,
                        }
                    }
                })
            })
            .collect();
        waits.into_iter().map(|wait| wait.join().unwrap()).filter(|&closed| closed).count()
    })
}

/// A client whose connections come from `source` and are not kept for reuse.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `csv_analyst_connections_refused_total{reason}` as the probe listener reports it.
async fn refused_for(client: &reqwest::Client, probes: &str, reason: &str) -> u64 {
    let metrics = client.get(format!("{probes}/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("csv_analyst_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.parse().unwrap())
}

/// `GET url` answers `code` within a second.
async fn answers_fast(client: &reqwest::Client, url: &str, code: u16) -> Value {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(response.status().as_u16(), code, "{url}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{url} took {took:?}");
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wave_of_half_requests_cannot_silence_the_probes_or_other_addresses() {
    let server = TestServer::start(|c| {
        // Each stalled connection is held this long (the default is 10 s): the wave
        // outlasts the test even on a busy machine.
        c.http_header_timeout_seconds = 60.0;
        c.max_connections = 16;
        c.max_connections_per_address = 8;
        c.probe_listen_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let address = addr(&server);
    let probes = server.probe_url.clone().expect("a probe listener");
    let (here, other) = (client_from("127.0.0.1"), client_from("127.0.0.2"));

    // A wave of 20 half requests from 127.0.0.3: it keeps its 8, the 12 past the
    // per-address cap are closed at once, the 8 stay open (until the header timeout).
    let mut wave = Vec::new();
    for _ in 0..20 {
        wave.push(half_request_from("127.0.0.3", &address).await);
    }
    // Exactly 12 closed: the 8 within the cap are still open a second later.
    assert_eq!(closed_within(&mut wave, Duration::from_secs(1)), 12, "the connections past the cap close at once");

    // The probe listener answers; so does the main listener, for another address.
    answers_fast(&here, &format!("{probes}/healthz"), 200).await;
    assert_eq!(answers_fast(&here, &format!("{probes}/readyz"), 200).await["status"], "ready");
    answers_fast(&other, &format!("{}/healthz", server.url), 200).await;
    let response = other.post(format!("{}/runs", server.url)).json(&seed()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "succeeded");

    // Three more addresses take all of MAX_CONNECTIONS (16) and more. The probes
    // still answer on both listeners; past the budget the main listener serves only
    // them: anything else is a clear 503.
    for source in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        for _ in 0..8 {
            wave.push(half_request_from(source, &address).await);
        }
    }
    // The server accepts them in its own time (a busy machine may take a while): wait
    // until it has refused one for the global budget, so every slot is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused_for(&here, &probes, "connection_limit").await == 0 {
        assert!(Instant::now() < deadline, "the wave never filled MAX_CONNECTIONS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers_fast(&here, &format!("{probes}/healthz"), 200).await;
    answers_fast(&here, &format!("{probes}/readyz"), 200).await;
    answers_fast(&other, &format!("{}/healthz", server.url), 200).await;
    answers_fast(&other, &format!("{}/readyz", server.url), 200).await;
    let started = Instant::now();
    let response = other.post(format!("{}/runs", server.url)).json(&seed()).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()).as_deref(), Some("1"));
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "CONNECTION_LIMIT");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The probe listener serves nothing else.
    let body = answers_fast(&here, &format!("{probes}/datasets"), 404).await;
    assert_eq!(body["error"]["type"], "NOT_FOUND");

    answers_fast(&here, &format!("{probes}/metrics"), 200).await;
    assert!(refused_for(&here, &probes, "address_limit").await >= 12);

    // Once the wave goes, the main listener serves everything again.
    drop(wave);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = other.post(format!("{}/runs", server.url)).json(&seed()).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the budget never came back: {}", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let response = raw("GET /runs/%FF%FE HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("content-type: application/json"), "{response}");
    assert!(response.contains("\"INVALID_REQUEST\""), "{response}");

    // Made-up methods are counted as `other`, not as a new series each.
    for method in ["FOO", "BAR", "BAZ"] {
        let response = raw(&format!("{method} /runs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
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

/// One client floods a 4 MiB store with 1,500 refused 15 KB queries, 16 at a time:
/// its share bounds it (429s), each refusal is recorded compactly, and at the cap the
/// oldest refusals make room. Another client's runs succeed before, during and after
/// the flood, nobody gets a 503, the succeeded runs outlive the refusals, a chat turn
/// whose run was pruned still reads, and the store stays within its cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_queries_never_fills_the_store_for_anyone() {
    const CAP: u64 = 4 * 1024 * 1024;
    const FLOOD: usize = 1_500;
    const AT_ONCE: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.sqlite");
    let server = TestServer::start_in(dir, |c| {
        c.run_store_max_mb = CAP / (1024 * 1024);
        c.max_concurrent_runs = Some(4);
        c.max_runs_per_client = Some(4);
    })
    .await;
    let started = Instant::now();
    let url = server.url.clone();
    // The quiet client's runs: each result about 50 KB (200 rows of 12 columns).
    let quiet_run = move || {
        let url = url.clone();
        async move {
            let response = client()
                .post(format!("{url}/runs"))
                .header("x-client-id", "quiet")
                .json(&json!({"dataset_id": "sensors", "sql": "SELECT * FROM sensors"}))
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "the quiet client: {body}");
            body["run_id"].as_str().unwrap().to_string()
        }
    };
    // A chat turn whose (refused) run is the oldest refusal: pruned first.
    let response = client()
        .post(format!("{}/chat", server.url))
        .header("x-client-id", "quiet")
        .json(&json!({"dataset_id": "support", "message": "SQL: DROP TABLE tickets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let turn: Value = response.json().await.unwrap();
    assert_eq!(turn["status"], "rejected", "{turn}");
    let turn_run = turn["details"]["attempts"][0]["run_id"].as_str().unwrap().to_string();
    let (code, _) = server.get(&format!("/runs/{turn_run}")).await;
    assert_eq!(code, 200);
    // About half of the store in succeeded runs, before the flood: with the refusals
    // (about 1.7 KB each as stored) more than the store holds.
    let mut kept = Vec::new();
    for _ in 0..40 {
        kept.push(quiet_run().await);
    }

    let sql = format!("DELETE FROM tickets WHERE category = '{}'", "x".repeat(15_000));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..AT_ONCE {
        let (url, sql, next) = (server.url.clone(), sql.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            // (request index, run id) of each refusal recorded, and the 429s.
            let mut refused = Vec::new();
            let mut limited = 0;
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= FLOOD {
                    break;
                }
                loop {
                    let response = client()
                        .post(format!("{url}/runs"))
                        .header("x-client-id", "flood")
                        .json(&json!({"dataset_id": "support", "sql": sql}))
                        .send()
                        .await
                        .unwrap();
                    let code = response.status().as_u16();
                    let body: Value = response.json().await.unwrap();
                    match code {
                        // Over its share: sent again, so that every query is recorded in the end.
                        429 => {
                            assert_eq!(body["error"]["type"], "CLIENT_LIMIT", "{body}");
                            limited += 1;
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        200 => {
                            assert_eq!(body["status"], "rejected", "{body}");
                            refused.push((index, body["run_id"].as_str().unwrap().to_string()));
                            break;
                        }
                        _ => panic!("the flooding client got {code}: {body}"),
                    }
                }
            }
            (refused, limited)
        }));
    }
    // The quiet client goes on meanwhile.
    let mut during = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        kept.push(quiet_run().await);
        during += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = Vec::new();
    let mut limited = 0;
    for worker in workers {
        let (ids, n) = worker.await.unwrap();
        refused.extend(ids);
        limited += n;
    }
    refused.sort();
    assert_eq!(refused.len(), FLOOD);
    assert!(during >= 1, "the quiet client ran during the flood");
    assert!(limited > 0, "{AT_ONCE} at once over a share of 4: some got 429 before anything was written");
    // At the cap now: the quiet client is still served.
    kept.push(quiet_run().await);

    // The oldest refusals made room; every succeeded run was kept; the newest refusal
    // is there, compact: a 1 KiB prefix, the length, no rows.
    let mut pruned = Vec::new();
    for (index, run_id) in &refused {
        let response = client().get(format!("{}/runs/{run_id}", server.url)).send().await.unwrap();
        match response.status().as_u16() {
            404 => pruned.push(*index),
            200 => {}
            code => panic!("GET /runs/{run_id}: {code}"),
        }
    }
    assert!(!pruned.is_empty(), "the store reached its cap and pruned refusals");
    assert!(pruned.iter().all(|&i| i < FLOOD - 100), "the newest refusals were kept; pruned: {pruned:?}");
    for run_id in &kept {
        let (code, run) = server.get(&format!("/runs/{run_id}")).await;
        assert_eq!((code, run["status"].as_str()), (200, Some("succeeded")), "{run_id}");
    }
    // The chat turn still reads, without its pruned run.
    let (code, _) = server.get(&format!("/runs/{turn_run}")).await;
    assert_eq!(code, 404, "the chat turn's refused run was the oldest refusal");
    let (code, view) = server.get(&format!("/chat/turns/{}", turn["turn_id"].as_str().unwrap())).await;
    assert_eq!((code, view["attempts"].clone()), (200, json!([])), "{view}");
    let (code, messages) = server.get(&format!("/threads/{}/messages", turn["thread_id"].as_str().unwrap())).await;
    assert_eq!((code, messages["messages"].as_array().map(Vec::len)), (200, Some(2)), "{messages}");
    let (code, newest) = server.get(&format!("/runs/{}", refused.last().unwrap().1)).await;
    assert_eq!(code, 200, "{newest}");
    assert_eq!(newest["details"]["sql_truncated"], true);
    assert_eq!(newest["details"]["sql_bytes"], sql.len());
    assert!(newest["details"]["sql"].as_str().unwrap().len() <= 1024);
    assert_eq!(newest["result"]["rows"], json!([]));
    assert_eq!(newest["result"]["error"]["type"], "SQL_NOT_ALLOWED");

    let wal = path.with_extension("sqlite-wal");
    let on_disk: u64 = [&path, &wal].iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(on_disk <= CAP + CAP / 8, "the store takes {on_disk} bytes for a cap of {CAP}");
    let (code, list) = server.get("/runs?limit=500").await;
    assert_eq!((code, list["runs"].as_array().unwrap().len()), (200, 500));
    assert_healthy(&server).await;
    let took = started.elapsed();
    std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "flood: {} refusals ({} pruned), {limited} 429s, {during} quiet runs during it, {on_disk} bytes on disk, \
             {took:?}\n",
            refused.len(),
            pruned.len()
        )
        .as_bytes(),
    )
    .unwrap();
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
        // Its 120 concurrent clients all come from 127.0.0.1.
        .env("MAX_CONNECTIONS_PER_ADDRESS", "0")
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
