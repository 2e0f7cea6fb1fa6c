//! Data bigger than a run's memory: sorts, aggregates, DISTINCT and windows over 2M
//! rows at a 48 MiB cap spill to the run's scratch directory and answer as the same
//! query does with memory to spare; too little scratch disk is SPILL_LIMIT; and the
//! scratch directory is gone after every run, however it ended (an answer, an error,
//! a timeout, a client that hung up), with several runs spilling at once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunResult, RunStatus};
use serde_json::{Value, json};

use crate::support::{TestServer, cache_dir, client, scratch, workspace_binary};

/// Rows of the generated `events` table.
const ROWS: u64 = 2_000_000;
/// Distinct `event_id`s: each appears twice.
const EVENT_IDS: u64 = 1_000_000;
/// Distinct `user_id`s.
const USERS: u64 = 50_000;
/// The run's memory cap: a fraction of what the queries below need.
const SMALL_MEMORY_MB: &str = "48";

/// A 1M-group aggregate, ordered by its result.
const AGGREGATE: &str =
    "SELECT event_id, SUM(amount) AS s, COUNT(*) AS n FROM events GROUP BY event_id ORDER BY s DESC, event_id LIMIT 3";
/// A sort of every row, read from its middle.
const SORT_OFFSET: &str = "SELECT event_id, amount FROM events ORDER BY amount DESC, event_id LIMIT 5 OFFSET 1000000";
/// A large DISTINCT.
const DISTINCT: &str = "SELECT COUNT(*) AS n FROM (SELECT DISTINCT event_id, amount FROM events)";
/// A window over every row.
const WINDOW: &str = "SELECT user_id, event_id, amount FROM (SELECT user_id, event_id, amount, \
    ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY amount DESC, event_id) AS rn FROM events) \
    WHERE rn = 1 ORDER BY user_id LIMIT 4";

/// Row `i`: `event_id` a permutation of 0..1M in each half, an integer `amount`
/// (sums are exact), a `user_id` and a day.
fn event(i: u64) -> (u64, u64, u64, u32) {
    let event_id = (i * 48_271) % EVENT_IDS;
    let amount = (i.wrapping_mul(2_654_435_761) >> 7) % 100_000;
    let user_id = (i * 31 + i / 7) % USERS;
    (event_id, user_id, amount, (i % 28) as u32 + 1)
}

/// The datasets folder holding `events` (made once, kept under target/tmp).
fn events_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("spill-events-v1");
        let csv = dir.join("events.csv");
        if !dir.join("registry.json").exists() {
            let partial = dir.join("events.csv.partial");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
            writeln!(out, "event_id,user_id,amount,day").unwrap();
            for i in 0..ROWS {
                let (event_id, user_id, amount, day) = event(i);
                writeln!(out, "{event_id},{user_id},{amount},2026-01-{day:02}").unwrap();
            }
            out.into_inner().unwrap().sync_all().unwrap();
            std::fs::rename(&partial, &csv).unwrap();
            std::fs::write(
                dir.join("registry.json"),
                r#"{"datasets":[{"id":"big","files":[{"name":"events.csv","path":"events.csv",
                    "schema":{"event_id":{"type":"BIGINT"},"user_id":{"type":"BIGINT"},
                              "amount":{"type":"BIGINT"},"day":{"type":"DATE"}}}]}]}"#,
            )
            .unwrap();
        }
        dir
    })
    .clone()
}

/// The aggregate's answer, computed here without any engine.
fn aggregate_answer() -> Vec<Vec<Value>> {
    let mut sums: HashMap<u64, (u64, u64)> = HashMap::with_capacity(EVENT_IDS as usize);
    for i in 0..ROWS {
        let (event_id, _, amount, _) = event(i);
        let entry = sums.entry(event_id).or_default();
        entry.0 += amount;
        entry.1 += 1;
    }
    let mut groups: Vec<(u64, u64, u64)> = sums.into_iter().map(|(id, (s, n))| (id, s, n)).collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups.iter().take(3).map(|(id, s, n)| vec![json!(id), json!(s), json!(n)]).collect()
}

/// A fresh spill root of the test's own.
fn spill_root() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("spill-root-").tempdir_in(scratch("spill-roots")).unwrap()
}

/// What a spill root holds.
fn left_in(root: &Path) -> Vec<String> {
    std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// `runner-host run` over `events` with `--memory-mb` and `--spill-max-mb`.
fn runner_host(sql: &str, memory_mb: &str, spill_mb: &str, spill_dir: &Path) -> RunResult {
    let output = Command::new(workspace_binary("runner-host"))
        .env_clear()
        .args(["run", "--dataset", "big", "--timeout-ms", "120000", "--max-rows", "10"])
        .args(["--memory-mb", memory_mb, "--spill-max-mb", spill_mb])
        .arg("--datasets-dir")
        .arg(events_dir())
        .arg("--spill-dir")
        .arg(spill_dir)
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--sql", sql])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{sql}: not a result ({e}): {}", String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn runner_host_run_spills_sorts_aggregates_distinct_and_windows_and_answers_as_with_memory_to_spare() {
    let root = spill_root();
    for sql in [AGGREGATE, SORT_OFFSET, DISTINCT, WINDOW] {
        let started = Instant::now();
        let small = runner_host(sql, SMALL_MEMORY_MB, "1024", root.path());
        let took = started.elapsed();
        assert_eq!(small.status, RunStatus::Success, "{sql}: {:?}", small.error);
        let spilled = small.stats.spilled_bytes.unwrap_or(0);
        assert!(spilled > 0, "{sql}: at {SMALL_MEMORY_MB} MiB the query spills");
        assert_eq!(left_in(root.path()), Vec::<String>::new(), "{sql}: the scratch directory is removed");
        let roomy = runner_host(sql, "2048", "0", root.path());
        assert_eq!(roomy.status, RunStatus::Success, "{sql}: {:?}", roomy.error);
        assert_eq!(roomy.stats.spilled_bytes, None, "spilling off: nothing to report");
        assert_eq!((&small.columns, &small.rows), (&roomy.columns, &roomy.rows), "{sql}");
        assert!(!small.rows.is_empty(), "{sql}");
        eprintln!("spill: {sql}: {took:?} at {SMALL_MEMORY_MB} MiB, {} MiB spilled", spilled >> 20);
    }
    // The engine's answer is the right one, not only the same one twice.
    assert_eq!(runner_host(AGGREGATE, SMALL_MEMORY_MB, "1024", root.path()).rows, aggregate_answer());

    // Spilling is what answers: off, the same query at the same cap runs out of memory.
    let off = runner_host(AGGREGATE, SMALL_MEMORY_MB, "0", root.path());
    assert_eq!(off.error_type(), Some(ErrorType::MemoryLimit), "{:?}", off.error);

    // A join does not spill: its build side did not fit, and the message says what
    // to write instead.
    let join = "SELECT COUNT(*) AS n FROM events a JOIN events b ON a.event_id = b.event_id";
    let refused = runner_host(join, SMALL_MEMORY_MB, "1024", root.path());
    assert_eq!(refused.error_type(), Some(ErrorType::MemoryLimit), "{:?}", refused.error);
    let message = &refused.error.as_ref().unwrap().message;
    assert!(message.contains("hash join") && message.contains("aggregate it to the join's keys"), "{message}");
    assert_eq!(left_in(root.path()), Vec::<String>::new());
}

#[test]
fn a_query_needing_more_scratch_than_the_cap_is_a_spill_limit_and_leaves_nothing() {
    let root = spill_root();
    let result = runner_host(AGGREGATE, SMALL_MEMORY_MB, "1", root.path());
    assert_eq!(result.error_type(), Some(ErrorType::SpillLimit), "{:?}", result.error);
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("more than 1 MiB of scratch disk") && message.contains("RUN_SPILL_MAX_MB"), "{message}");
    assert!(result.stats.spilled_bytes.unwrap() <= 1024 * 1024, "never past the cap");
    assert_eq!(left_in(root.path()), Vec::<String>::new());
}

/// A service over `events` at the small cap, spilling under `root`.
async fn service(root: &Path, slots: usize) -> TestServer {
    let root = root.to_path_buf();
    TestServer::start(move |config| {
        config.datasets_dir = events_dir();
        config.run_memory_limit_mb = SMALL_MEMORY_MB.parse().unwrap();
        config.run_spill_dir = Some(root);
        config.run_timeout_seconds = 120.0;
        config.max_concurrent_runs = Some(slots);
        config.max_runs_per_client = Some(slots);
        config.queue_timeout_ms = 120_000;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn post_runs_spills_at_a_small_memory_cap_and_runs_spilling_at_once_stay_within_their_caps() {
    let root = spill_root();
    let server = service(root.path(), 3).await;
    let (status, body) = server.post_run(json!({"dataset_id": "big", "sql": AGGREGATE})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["result"]["rows"], json!(aggregate_answer()));
    assert!(body["result"]["stats"]["spilled_bytes"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(left_in(root.path()), Vec::<String>::new());

    // Three runs spilling at once: each in a directory of its own, at most one per
    // slot, each under the cap, all gone at the end.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (root, watching) = (root.path().to_path_buf(), watching.clone());
        std::thread::spawn(move || {
            let (mut most_dirs, mut most_bytes) = (0, 0u64);
            while watching.load(Ordering::SeqCst) {
                let dirs = left_in(&root);
                let bytes: u64 = dirs.iter().map(|d| tree_size(&root.join(d))).sum();
                most_dirs = most_dirs.max(dirs.len());
                most_bytes = most_bytes.max(bytes);
                std::thread::sleep(Duration::from_millis(20));
            }
            (most_dirs, most_bytes)
        })
    };
    let runs = [AGGREGATE, DISTINCT, WINDOW].map(|sql| {
        let url = server.url.clone();
        tokio::spawn(async move {
            let response =
                client().post(format!("{url}/runs")).json(&json!({"dataset_id": "big", "sql": sql})).send().await;
            response.unwrap().json::<Value>().await.unwrap()
        })
    });
    for run in runs {
        let body = run.await.unwrap();
        assert_eq!(body["status"], "succeeded", "{body}");
    }
    watching.store(false, Ordering::SeqCst);
    let (most_dirs, most_bytes) = watcher.join().unwrap();
    assert!((1..=3).contains(&most_dirs), "{most_dirs} scratch directories at once for 3 slots");
    assert!(most_bytes <= 3 * 2048 * 1024 * 1024, "{most_bytes} bytes spilled at once");
    assert_eq!(left_in(root.path()), Vec::<String>::new());

    // A run that times out mid-spill, and one whose client hangs up: nothing is left.
    let (_, body) = server.post_run(json!({"dataset_id": "big", "sql": WINDOW, "timeout_seconds": 0.5})).await;
    assert_eq!(
        (body["status"].as_str(), body["error"]["type"].as_str()),
        (Some("timed_out"), Some("TIMEOUT")),
        "{body}"
    );
    assert_eq!(left_in(root.path()), Vec::<String>::new(), "the timed-out run's directory is removed");
    let hung_up = client()
        .post(format!("{}/runs", server.url))
        .json(&json!({"dataset_id": "big", "sql": AGGREGATE}))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !left_in(root.path()).is_empty() {
        assert!(Instant::now() < deadline, "the run whose client hung up never cleaned up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tree_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// A `runner-host run` killed mid-spill leaves its scratch directory; the next process
/// to start on the same spill root removes it (and never a live one's).
#[test]
fn a_process_killed_mid_spill_leaves_a_directory_the_next_start_removes() {
    let root = spill_root();
    // The module compiled and cached first (minutes after a build), so the run below
    // starts spilling at once.
    assert_eq!(runner_host("SELECT 1 AS one", SMALL_MEMORY_MB, "1024", root.path()).rows, vec![vec![json!(1)]]);
    let mut child = Command::new(workspace_binary("runner-host"))
        .env_clear()
        .args(["run", "--dataset", "big", "--timeout-ms", "120000", "--memory-mb", SMALL_MEMORY_MB])
        .arg("--datasets-dir")
        .arg(events_dir())
        .arg("--spill-dir")
        .arg(root.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--sql", WINDOW])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has spilled something.
    let deadline = Instant::now() + Duration::from_secs(120);
    while left_in(root.path()).iter().map(|d| tree_size(&root.path().join(d))).sum::<u64>() == 0 {
        assert!(Instant::now() < deadline, "the run never spilled");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it spilled");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = left_in(root.path());
    assert_eq!(left.len(), 1, "the killed run's directory is left behind: {left:?}");

    let next = runner_host("SELECT COUNT(*) AS n FROM events", SMALL_MEMORY_MB, "1024", root.path());
    assert_eq!(next.rows, vec![vec![json!(ROWS)]], "{:?}", next.error);
    assert_eq!(left_in(root.path()), Vec::<String>::new(), "the next start removed it");
}
