//! The service's latency and throughput: `POST /runs` with the seed query against an
//! in-process orchestrator (local provider), over loopback HTTP.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Plan;
use crate::measure::quantile;

#[derive(Debug, Default)]
pub struct ServiceRow {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub runs_per_s: Vec<(usize, f64)>,
}

pub fn measure(datasets: &Path, plan: &Plan) -> anyhow::Result<ServiceRow> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(datasets, plan))
}

async fn run(datasets: &Path, plan: &Plan) -> anyhow::Result<ServiceRow> {
    let store = tempfile::tempdir()?;
    // Defaults, whatever the environment says: the figures must not depend on it.
    let mut config = orchestrator::Config::without_env();
    config.datasets_dir = datasets.to_path_buf();
    config.run_store_path = store.path().join("runs.sqlite");
    config.max_concurrent_runs = Some(8);
    // All the benchmark's clients come from one address: one client's share must not
    // cap the concurrency-8 loop (by default it is three quarters of the slots).
    config.max_runs_per_client = Some(8);
    config.queue_timeout_ms = 60_000;
    config.log_level = Some("warn".into());
    let state = orchestrator::server::build_state(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/runs", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orchestrator::server::serve(state, listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let body = json!({"dataset_id": "support", "query_type": "sql", "sql": crate::SEED});

    // Wait until the sandbox is ready, and warm up.
    let ready = url.replace("/runs", "/readyz");
    while client.get(&ready).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..10 {
        post(&client, &url, &body).await?;
    }

    let mut latencies = Vec::with_capacity(plan.latency_requests);
    for _ in 0..plan.latency_requests {
        let started = Instant::now();
        post(&client, &url, &body).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let p50_ms = quantile(&mut latencies, 0.5);
    let p99_ms = quantile(&mut latencies, 0.99);

    let mut runs_per_s = Vec::new();
    for concurrency in [1usize, 2, 8] {
        let done = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(plan.throughput_seconds);
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (client, url, body, done) = (client.clone(), url.clone(), body.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    post(&client, &url, &body).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        runs_per_s.push((concurrency, done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()));
    }
    let _ = stop.send(());
    server.await??;
    Ok(ServiceRow { p50_ms, p99_ms, runs_per_s })
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<()> {
    let response: Value = client.post(url).json(body).send().await?.json().await?;
    anyhow::ensure!(response["status"] == "succeeded", "the run failed: {response}");
    Ok(())
}
