//! The store's contract, run against both backends: SQLite (the default) and a real
//! PostgreSQL ([`crate::postgres`]). Then what only a shared store does: replicas
//! that start together migrate once, a lost replica's runs end as REPLICA_LOST once
//! their lease passes while a live replica's stay running, a shutdown interrupts only
//! its own replica's runs, and retention runs on one replica at a time.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::store::{
    PostgresStore, QueryType, Run, RunState, SqliteStore, Store, StoredSql, Thread, Timings, TokenRecord, Turn,
    UploadRecord, now,
};
use protocol::{ErrorType, RunResult};
use serde_json::json;

use crate::postgres::Postgres;

fn run(id: &str, owner: &str, status: RunState) -> Run {
    Run {
        run_id: id.into(),
        status,
        dataset_id: "support".into(),
        dataset_version_hash: Some("sha256:abc".into()),
        query_type: QueryType::Sql,
        sql: StoredSql::new("SELECT COUNT(*) AS n FROM tickets"),
        plan: None,
        tables: vec!["tickets".into()],
        result: None,
        error: None,
        sandbox_provider: "local".into(),
        job_name: None,
        request_id: Some(format!("req-{id}")),
        turn_id: None,
        created_at: now(),
        started_at: Some(now()),
        finished_at: None,
        timings: Timings { queued_ms: Some(1.25), run_ms: None, total_ms: None },
        principal: Some(owner.into()),
        token_id: None,
        origin: Some("api".into()),
    }
}

fn ids(runs: &[Run]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

fn answer(n: i64) -> RunResult {
    RunResult::success(vec!["n".into()], vec!["Int64".into()], vec![vec![json!(n)]], false)
}

/// Everything a backend must do alike.
async fn contract(store: &dyn Store) {
    store.check().await.expect("the store answers");

    // Runs: written running, finished, read back whole; lists newest first, without
    // results, by owner.
    let mut r1 = run("r1", "alice", RunState::Running);
    store.insert(&r1).await.unwrap();
    assert_eq!(store.get("r1").await.unwrap(), Some(r1.clone()));
    r1.job_name = Some("job-r1".into());
    r1.timings.run_ms = Some(12.5);
    r1.timings.total_ms = Some(14.0);
    r1.finish_with(answer(42));
    store.finish(&r1).await.unwrap();
    assert_eq!(store.get("r1").await.unwrap(), Some(r1.clone()), "a finished run reads back as it was recorded");

    let mut r2 = run("r2", "bob", RunState::Running);
    r2.refuse("DROP TABLE tickets", ErrorType::SqlNotAllowed, "only SELECT");
    store.insert(&r2).await.unwrap();
    let stored = store.get("r2").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.error.map(|e| e.error_type)),
        (RunState::Rejected, Some(ErrorType::SqlNotAllowed))
    );
    let mut r3 = run("r3", "alice", RunState::Running);
    r3.plan = Some(json!({"select": ["n"]}));
    r3.query_type = QueryType::Plan;
    store.insert(&r3).await.unwrap();
    r3.finish_with(RunResult::failure(ErrorType::Timeout, "ran past 1 s"));
    store.finish(&r3).await.unwrap();
    assert_eq!(store.get("r3").await.unwrap().unwrap().status, RunState::TimedOut);
    assert_eq!(store.get("nope").await.unwrap(), None);

    let all = store.list(10, None).await.unwrap();
    assert_eq!(ids(&all), ["r3", "r2", "r1"]);
    assert!(all.iter().all(|r| r.result.is_none()), "lists carry no results");
    assert_eq!(ids(&store.list(10, Some("alice".into())).await.unwrap()), ["r3", "r1"]);
    assert_eq!(ids(&store.list(1, None).await.unwrap()), ["r3"]);

    // Threads and turns; the runs a turn made, oldest first, with their results.
    let thread = Thread {
        thread_id: "th1".into(),
        dataset_id: "support".into(),
        title: "tickets".into(),
        created_at: now(),
        updated_at: now(),
        principal: Some("alice".into()),
    };
    store.create_thread(&thread).await.unwrap();
    let other = Thread {
        thread_id: "th2".into(),
        principal: Some("bob".into()),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        ..thread.clone()
    };
    store.create_thread(&other).await.unwrap();
    assert_eq!(store.thread("th1").await.unwrap(), Some(thread.clone()));
    let mut turns = Vec::new();
    for (i, question) in ["how many?", "and open ones?"].iter().enumerate() {
        let mut turn = Turn {
            turn_id: format!("tu{i}"),
            thread_id: "th1".into(),
            status: "running".into(),
            user_message: question.to_string(),
            assistant_message: None,
            response: None,
            context: None,
            created_at: now(),
            finished_at: None,
        };
        store.insert_turn(&turn).await.unwrap();
        let mut made = run(&format!("tr{i}"), "alice", RunState::Running);
        made.turn_id = Some(turn.turn_id.clone());
        store.insert(&made).await.unwrap();
        made.finish_with(answer(i as i64));
        store.finish(&made).await.unwrap();
        turn.status = "succeeded".into();
        turn.assistant_message = Some(format!("answer {i}"));
        turn.response = Some(json!({"rows": [[i]]}));
        turn.context = Some(json!([{"role": "user", "content": question}]));
        turn.finished_at = Some(now());
        store.finish_turn(&turn).await.unwrap();
        turns.push(turn);
    }
    assert_eq!(store.turn("tu0").await.unwrap(), Some(turns[0].clone()));
    assert_eq!(store.turns("th1", 10).await.unwrap(), turns);
    assert_eq!(store.turns("th1", 1).await.unwrap(), turns[1..].to_vec(), "the newest turns, oldest first");
    let made = store.runs_of_turn("tu1").await.unwrap();
    assert_eq!((ids(&made), made[0].result.clone()), (vec!["tr1"], Some(answer(1))));
    let threads = store.threads(10, None).await.unwrap();
    assert_eq!(threads.iter().map(|t| t.thread_id.as_str()).collect::<Vec<_>>(), ["th1", "th2"], "updated first");
    assert_eq!(store.threads(10, Some("bob".into())).await.unwrap(), vec![other]);
    assert!(store.delete_thread("th1").await.unwrap());
    assert!(!store.delete_thread("th1").await.unwrap());
    assert_eq!(store.turn("tu0").await.unwrap(), None, "a thread's turns go with it");
    assert_eq!(ids(&store.runs_of_turn("tu0").await.unwrap()), ["tr0"], "its runs stay, as runs");

    // Tokens: kept, listed newest first, revoked once (the first time stays).
    let token = |id: &str, at: &str| TokenRecord {
        token_id: id.into(),
        subject: "carol".into(),
        datasets: vec!["support".into()],
        admin: false,
        secret_sha256: "ab".repeat(32),
        created_at: at.into(),
        expires_at: None,
        revoked_at: None,
    };
    store.insert_token(&token("tk1", "2026-12-01T00:00:00Z")).await.unwrap();
    store.insert_token(&token("tk2", "2026-12-02T00:00:00Z")).await.unwrap();
    assert_eq!(store.token("tk1").await.unwrap(), Some(token("tk1", "2026-12-01T00:00:00Z")));
    let listed: Vec<String> = store.tokens().await.unwrap().into_iter().map(|t| t.token_id).collect();
    assert_eq!(listed, ["tk2", "tk1"]);
    assert!(store.revoke_token("tk1", "2026-12-03T00:00:00Z").await.unwrap());
    assert!(store.revoke_token("tk1", "2026-12-04T00:00:00Z").await.unwrap());
    assert_eq!(store.token("tk1").await.unwrap().unwrap().revoked_at.as_deref(), Some("2026-12-03T00:00:00Z"));
    assert!(!store.revoke_token("absent", "2026-12-03T00:00:00Z").await.unwrap());

    // Uploads' records: one per id.
    let upload = UploadRecord {
        dataset_id: "sales_2026".into(),
        owner: "carol".into(),
        description: "sales".into(),
        tables: vec!["orders".into(), "items".into()],
        version_hash: "sha256:def".into(),
        size_bytes: 5 << 30,
        created_at: now(),
    };
    assert!(store.insert_upload(&upload).await.unwrap());
    assert!(!store.insert_upload(&UploadRecord { owner: "mallory".into(), ..upload.clone() }).await.unwrap());
    assert_eq!(store.uploads().await.unwrap(), vec![upload]);
    assert!(store.delete_upload("sales_2026").await.unwrap());
    assert!(!store.delete_upload("sales_2026").await.unwrap());

    // Retention keeps the newest, never a run still running; shutdown interrupts.
    let running = run("r9", "alice", RunState::Running);
    store.insert(&running).await.unwrap();
    assert_eq!(store.size().await.unwrap().0, 6);
    assert_eq!(store.prune(2, None).await.unwrap(), 4);
    assert_eq!(ids(&store.list(10, None).await.unwrap()), ["r9", "tr1"]);
    assert_eq!(store.prune(0, None).await.unwrap(), 1, "only finished runs are pruned");
    assert_eq!(store.interrupt_running("the service stopped").await.unwrap(), 1);
    let interrupted = store.get("r9").await.unwrap().unwrap();
    assert_eq!(interrupted.status, RunState::Interrupted);
    assert_eq!(interrupted.error.unwrap().message, "the service stopped");
    let (runs, bytes) = store.size().await.unwrap();
    assert_eq!(runs, 1);
    assert!(bytes > 0);
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SqliteStore::open(&dir.path().join("runs.sqlite")).unwrap();
    contract(&store).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(postgres) = Postgres::start(false) else { return };
    let store = PostgresStore::connect(&postgres.url, None, "replica-a".into(), Duration::from_secs(30)).await.unwrap();
    contract(&store).await;
}

#[tokio::test]
async fn replicas_on_one_postgres_migrate_once_and_end_a_lost_replicas_runs_after_its_lease() {
    let Some(postgres) = Postgres::start(false) else { return };
    let lease = Duration::from_secs(3);
    let connect = |name: &str| PostgresStore::connect(&postgres.url, None, name.to_string(), lease);
    // Three replicas starting at once: one migrates, the others wait for it.
    let (lost, live, watcher) = tokio::join!(connect("lost"), connect("live"), connect("watcher"));
    let (lost, live, watcher) = (lost.unwrap(), live.unwrap(), watcher.unwrap());
    assert_eq!(postgres.sql("SELECT string_agg(version::text, ',') FROM schema_migrations"), "1");

    lost.insert(&run("orphan", "alice", RunState::Running)).await.unwrap();
    live.insert(&run("held", "alice", RunState::Running)).await.unwrap();
    assert_eq!(watcher.maintain().await.unwrap(), 0, "no lease has passed");
    // `lost` stops renewing (it died); `live` renews every third of the lease (and,
    // like every replica, ends what is past its lease).
    let renewing = {
        let live = live.clone();
        tokio::spawn(async move {
            let mut ended = 0;
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ended += live.maintain().await.unwrap();
            }
            ended
        })
    };
    tokio::time::sleep(lease + Duration::from_millis(1500)).await;
    let ended = watcher.maintain().await.unwrap() + renewing.await.unwrap();
    assert_eq!(ended, 1, "the lost replica's run ended, once");
    let orphan = watcher.get("orphan").await.unwrap().unwrap();
    assert_eq!(orphan.status, RunState::Failed);
    let error = orphan.error.unwrap();
    assert_eq!(error.error_type, ErrorType::ReplicaLost);
    assert!(error.message.contains("replica"), "{}", error.message);
    assert!(orphan.finished_at.is_some());
    assert_eq!(watcher.get("held").await.unwrap().unwrap().status, RunState::Running, "a live replica's run stays");

    // A shutdown interrupts its own replica's runs only.
    watcher.insert(&run("watched", "alice", RunState::Running)).await.unwrap();
    assert_eq!(live.interrupt_running("live stopped").await.unwrap(), 1);
    assert_eq!(watcher.get("held").await.unwrap().unwrap().status, RunState::Interrupted);
    assert_eq!(live.get("watched").await.unwrap().unwrap().status, RunState::Running);

    // Free text keeps its NULs as U+FFFD (PostgreSQL's text cannot hold them).
    let mut nul = run("nul", "alice", RunState::Running);
    nul.sql = StoredSql::new("SELECT 'a\0b'");
    nul.refuse("SELECT 'a\0b'", ErrorType::SqlParseError, "bad \0 byte");
    watcher.insert(&nul).await.unwrap();
    let stored = watcher.get("nul").await.unwrap().unwrap();
    assert_eq!(
        (stored.sql.text.as_str(), stored.error.unwrap().message.as_str()),
        ("SELECT 'a\u{FFFD}b'", "bad \u{FFFD} byte")
    );

    // Retention from every replica at once (one prunes, the others skip or find
    // nothing left): each finished run is deleted once, and none fails.
    for i in 0..20 {
        let mut r = run(&format!("old{i}"), "bob", RunState::Running);
        r.finish_with(answer(i));
        live.insert(&r).await.unwrap();
    }
    let stores: Vec<Arc<dyn Store>> = vec![Arc::new(lost), Arc::new(live), Arc::new(watcher.clone())];
    let pruned = futures::future::join_all(stores.iter().map(|s| s.prune(5, None))).await;
    let pruned: usize = pruned.into_iter().map(Result::unwrap).sum();
    let left = watcher.size().await.unwrap().0 as usize;
    // 24 runs: the newest 5 stay, and so does `watched`, still running.
    assert_eq!((pruned, left), (18, 6));
}
