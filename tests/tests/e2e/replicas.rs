//! More than one replica on one PostgreSQL (a real server, [`crate::postgres`]): what
//! one replica records, the others serve — runs, threads, tokens and their
//! revocation; a replica killed mid-run leaves its run `failed` with REPLICA_LOST,
//! seen from another, once the lease passes; and a PostgreSQL restart under a stream
//! of runs loses none that was answered 200, while the requests during the outage get
//! a quick 503 STORE_UNAVAILABLE.

use std::time::{Duration, Instant};

use orchestrator::config::ApiKey;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::postgres::Postgres;
use crate::support::{BinaryService, TestServer, call, client};

const ADMIN: &str = "admin-token-of-the-replica-tests-0123456789";
const COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM tickets";
const SLOW: &str = "SELECT COUNT(*) FROM tickets a, tickets b, tickets c";

async fn replica(postgres: &Postgres, fake: &FakeLlm) -> TestServer {
    replica_with_uploads(postgres, fake, None).await
}

async fn replica_with_uploads(postgres: &Postgres, fake: &FakeLlm, uploads: Option<&std::path::Path>) -> TestServer {
    let (url, base, uploads) = (postgres.url.clone(), fake.openai_base_url(), uploads.map(|p| p.to_path_buf()));
    TestServer::start(move |c| {
        c.run_store_url = Some(ApiKey::new(url));
        if uploads.is_some() {
            c.uploads_dir = uploads;
        }
        c.auth.admin_token = Some(ApiKey::new(ADMIN));
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Openai;
        c.llm.openai_base_url = Some(base);
        c.llm.openai_api_key = Some("sk-test-not-a-real-key".into());
        c.llm.llm_timeout_seconds = 5.0;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_postgres_share_runs_threads_and_tokens() {
    let Some(postgres) = Postgres::start(false) else { return };
    let fake = FakeLlm::start().await;
    let a = replica(&postgres, &fake).await;
    let b = replica(&postgres, &fake).await;
    use reqwest::Method;

    // A token minted on A works on B.
    let (status, minted) = call(
        &a.url,
        Method::POST,
        "/admin/tokens",
        Some(ADMIN),
        Some(json!({"subject": "dana", "datasets": ["support"]})),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let (token, token_id) = (minted["token"].as_str().unwrap(), minted["token_id"].as_str().unwrap());
    let (status, me) = call(&b.url, Method::GET, "/me", Some(token), None).await;
    assert_eq!((status, me["subject"].as_str()), (200, Some("dana")), "{me}");

    // A run made on A is read on B, whole, and listed there as dana's.
    let body = json!({"dataset_id": "support", "sql": COUNT_SQL});
    let (status, made) = call(&a.url, Method::POST, "/runs", Some(token), Some(body)).await;
    assert_eq!((status, made["status"].as_str()), (200, Some("succeeded")), "{made}");
    let run_id = made["run_id"].as_str().unwrap();
    let (status, read) = call(&b.url, Method::GET, &format!("/runs/{run_id}"), Some(token), None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!((&read["result"]["rows"], &read["details"]["principal"]), (&made["result"]["rows"], &json!("dana")));
    let (_, listed) = call(&b.url, Method::GET, "/runs", Some(token), None).await;
    assert_eq!(listed["runs"][0]["run_id"], json!(run_id), "{listed}");

    // A thread begun on A goes on on B: B's model request carries A's turn, and B
    // serves A's finished turn and the whole thread.
    fake.script([
        Reply::tool_call("run_sql", json!({ "sql": COUNT_SQL }).to_string()),
        Reply::text("Counted them on A."),
    ]);
    let question = json!({"dataset_id": "support", "message": "How many tickets are there?"});
    let (status, first) = call(&a.url, Method::POST, "/chat", Some(token), Some(question)).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("succeeded")), "{first}");
    let (thread_id, turn_id) = (first["thread_id"].as_str().unwrap(), first["turn_id"].as_str().unwrap());
    fake.script([Reply::text("Still the same count, from B.")]);
    let follow = json!({"dataset_id": "support", "message": "And again?", "thread_id": thread_id});
    let (status, second) = call(&b.url, Method::POST, "/chat", Some(token), Some(follow)).await;
    assert_eq!((status, second["thread_id"].as_str()), (200, Some(thread_id)), "{second}");
    let sent_by_b = fake.requests().last().unwrap().body.to_string();
    assert!(sent_by_b.contains("How many tickets are there?") && sent_by_b.contains(COUNT_SQL), "{sent_by_b}");
    let (status, turn) = call(&b.url, Method::GET, &format!("/chat/turns/{turn_id}"), Some(token), None).await;
    assert_eq!((status, turn["assistant_message"].as_str()), (200, Some("Counted them on A.")), "{turn}");
    let (_, messages) = call(&b.url, Method::GET, &format!("/threads/{thread_id}/messages"), Some(token), None).await;
    let contents: Vec<&str> =
        messages["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(
        contents,
        ["How many tickets are there?", "Counted them on A.", "And again?", "Still the same count, from B."]
    );

    // Revoked on A, the token is refused on B within 5 s (at once: every request
    // reads the token's record).
    let (status, _) = call(&a.url, Method::DELETE, &format!("/admin/tokens/{token_id}"), Some(ADMIN), None).await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    loop {
        let (status, body) = call(&b.url, Method::GET, "/runs", Some(token), None).await;
        if status == 401 {
            assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
            break;
        }
        assert!(revoked.elapsed() < Duration::from_secs(5), "B still accepts a token revoked on A: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicas share UPLOADS_DIR (a ReadWriteMany volume) and the uploads' records: an
/// upload made on A is listed and answered on B within seconds, and so is its
/// deletion.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_made_on_one_replica_is_served_by_another_and_so_is_its_deletion() {
    let Some(postgres) = Postgres::start(false) else { return };
    let fake = FakeLlm::start().await;
    let shared = tempfile::tempdir().unwrap();
    let a = replica_with_uploads(&postgres, &fake, Some(shared.path())).await;
    let b = replica_with_uploads(&postgres, &fake, Some(shared.path())).await;
    use reqwest::Method;
    let body = json!({"subject": "erin", "datasets": ["support"]});
    let (status, minted) = call(&a.url, Method::POST, "/admin/tokens", Some(ADMIN), Some(body)).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();

    let csv = b"city,sales\nOslo,3\nLima,4\n".to_vec();
    let form = crate::uploads::form("shared_sales", &[("sales.csv", csv)]);
    let (status, body) = crate::uploads::upload(&a.url, Some(token), form).await;
    assert_eq!(status, 201, "{body}");
    let sql = json!({"dataset_id": "shared_sales", "sql": "SELECT SUM(sales) AS s FROM sales"});
    let published = Instant::now();
    loop {
        let (status, run) = call(&b.url, Method::POST, "/runs", Some(token), Some(sql.clone())).await;
        if status == 200 {
            assert_eq!((run["status"].as_str(), &run["result"]["rows"]), (Some("succeeded"), &json!([[7]])), "{run}");
            break;
        }
        assert_eq!(run["error"]["type"], "UNKNOWN_DATASET", "{run}");
        assert!(published.elapsed() < Duration::from_secs(10), "B never listed A's upload");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, _) = call(&a.url, Method::DELETE, "/datasets/shared_sales", Some(token), None).await;
    assert_eq!(status, 204);
    let deleted = Instant::now();
    loop {
        let (status, run) = call(&b.url, Method::POST, "/runs", Some(token), Some(sql.clone())).await;
        if status == 404 {
            assert_eq!(run["error"]["type"], "UNKNOWN_DATASET", "{run}");
            break;
        }
        assert!(deleted.elapsed() < Duration::from_secs(10), "B still serves the deleted upload: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_run_leaves_its_run_failed_with_replica_lost_seen_from_another() {
    let Some(postgres) = Postgres::start(false) else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("RUN_STORE_URL", postgres.url.as_str()), ("RUN_LEASE_SECONDS", "3"), ("RUN_TIMEOUT_SECONDS", "60")];
    let a = BinaryService::start(dir_a.path(), &env);
    let b = BinaryService::start(dir_b.path(), &env);
    a.wait_ready().await;
    b.wait_ready().await;

    let url = a.url.clone();
    let in_flight = tokio::spawn(async move {
        let body = json!({"dataset_id": "support", "sql": SLOW});
        client().post(format!("{url}/runs")).json(&body).send().await
    });
    // B sees A's run running (A recorded it), then A dies.
    let asked = Instant::now();
    let run_id = loop {
        assert!(asked.elapsed() < Duration::from_secs(30), "A's run never showed on B");
        let (_, list) = call(&b.url, reqwest::Method::GET, "/runs", None, None).await;
        if let Some(run) = list["runs"].as_array().unwrap().first() {
            assert_eq!(run["status"], "running", "{run}");
            break run["run_id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    a.signal("KILL");
    let killed = Instant::now();
    assert!(in_flight.await.unwrap().is_err(), "the connection died with A");
    drop(a);

    let (_, record) = call(&b.url, reqwest::Method::GET, &format!("/runs/{run_id}"), None, None).await;
    assert_eq!(record["status"], "running", "within its lease, the run is A's: {record}");
    let record = loop {
        let (_, record) = call(&b.url, reqwest::Method::GET, &format!("/runs/{run_id}"), None, None).await;
        if record["status"] != "running" {
            break record;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "the run stayed running: {record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waited = killed.elapsed();
    assert_eq!((record["status"].as_str(), record["error"]["type"].as_str()), (Some("failed"), Some("REPLICA_LOST")));
    assert!(record["details"]["finished_at"].is_string(), "{record}");
    // A renewed every 2 s: at least 4 s of its 6 s lease were left at the kill.
    assert!(waited >= Duration::from_secs(3), "ended {waited:?} after the kill: before the lease could pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_during_a_stream_of_runs_loses_none_that_was_answered() {
    // fsync on: what PostgreSQL acknowledged must survive its restart.
    let Some(postgres) = Postgres::start(true) else { return };
    let url = postgres.url.clone();
    let server = TestServer::start(move |c| {
        c.run_store_url = Some(ApiKey::new(url));
        // Three callers from one address (two streams and the recovery probe), each
        // with a run at a time.
        c.max_runs_per_client = Some(3);
        c.max_concurrent_runs = Some(3);
    })
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (server.url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers: Vec<(u16, Value, Duration)> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let asked = Instant::now();
                    let body = json!({"dataset_id": "support", "sql": COUNT_SQL});
                    let (status, body) = call(&url, reqwest::Method::POST, "/runs", None, Some(body)).await;
                    answers.push((status, body, asked.elapsed()));
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| postgres.stop());
    tokio::time::sleep(orchestrator::readiness::READY_CACHE_FOR).await;
    // Not ready, and it says why (the probe's answer is at most READY_CACHE_FOR old).
    let (code, ready) = server.get("/readyz").await;
    assert_eq!((code, ready["failed_check"].as_str()), (503, Some("store")), "{ready}");
    tokio::task::block_in_place(|| postgres.start_again());
    let restarted = Instant::now();
    // The service finds the database again on its own.
    loop {
        let (status, _) = call(
            &server.url,
            reqwest::Method::POST,
            "/runs",
            None,
            Some(json!({"dataset_id": "support", "sql": COUNT_SQL})),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(restarted.elapsed() < Duration::from_secs(15), "the service did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }

    let answered: Vec<&Value> = answers.iter().filter(|(s, _, _)| *s == 200).map(|(_, b, _)| b).collect();
    let refused: Vec<&(u16, Value, Duration)> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(answered.len() >= 6 && !refused.is_empty(), "{} answered, {} refused", answered.len(), refused.len());
    for (status, body, took) in &refused {
        assert_eq!(
            (*status, body["error"]["type"].as_str()),
            (503, Some("STORE_UNAVAILABLE")),
            "a request during the outage: {body}"
        );
        assert!(*took < Duration::from_secs(8), "a 503 took {took:?}: requests pile up");
    }
    // Every run answered 200 is recorded, with its answer.
    let expected = &answered[0]["result"]["rows"];
    for body in answered {
        let run_id = body["run_id"].as_str().unwrap();
        let (status, record) = server.get(&format!("/runs/{run_id}")).await;
        assert_eq!((status, record["status"].as_str()), (200, Some("succeeded")), "run {run_id}: {record}");
        assert_eq!(&record["result"]["rows"], expected);
    }
}
