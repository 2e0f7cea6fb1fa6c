//! `SANDBOX_PROVIDER=k8s` end to end: the orchestrator talks through a kubeconfig to
//! the loopback API server of `fake_kube`, which runs each Job's container as the
//! real `runner-host exec`. Every test name contains `k8s`:
//! `cargo test --release k8s` runs them all.
//!
//! Each fault a real cluster produces is injected into the fake server, and each
//! test asserts the exact outcome within the run's deadline: none waits for a
//! timeout to report a fault that was already visible.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use orchestrator::config::ProviderKind;
use orchestrator::sandbox::k8s::K8sProvider;
use serde_json::{Value, json};

use crate::fake_kube::{FakeKube, Faults, NAMESPACE, write_kubeconfig};
use crate::support::{
    Csv, TestServer, client, datasets_dir, request, test_config, validate_strictly, workspace_binary,
};

fn seed() -> Value {
    json!({"dataset_id": "support", "query_type": "sql", "sql": "SELECT COUNT(*) AS ticket_count FROM tickets"})
}

fn tickets() -> usize {
    Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len()
}

fn k8s_config(c: &mut orchestrator::Config, kubeconfig: &std::path::Path) {
    c.sandbox_provider = ProviderKind::K8s;
    c.k8s.kubeconfig = Some(kubeconfig.to_path_buf());
    c.k8s.k8s_namespace = Some(NAMESPACE.to_string());
    c.k8s.runner_image = "csv-analyst-runner:dev".to_string();
    c.k8s.k8s_pod_start_timeout_seconds = 3;
    c.k8s.k8s_job_deadline_grace_seconds = 2;
}

async fn server(fake: &FakeKube, customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
    let kubeconfig = fake.kubeconfig.clone();
    TestServer::start(move |c| {
        k8s_config(c, &kubeconfig);
        customize(c);
    })
    .await
}

/// A client of the fake API server, as kubectl is.
async fn kubectl(fake: &FakeKube) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&fake.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// What `kubectl -n csv-analyst get jobs -l app.kubernetes.io/name=csv-analyst-runner` lists.
async fn kubectl_get_jobs(fake: &FakeKube) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(kubectl(fake).await, NAMESPACE);
    jobs.list(&ListParams::default().labels("app.kubernetes.io/name=csv-analyst-runner")).await.unwrap().items
}

fn error_of(body: &Value) -> (String, String) {
    let error = &body["result"]["error"];
    (error["type"].as_str().unwrap_or("<none>").to_string(), error["message"].as_str().unwrap_or("").to_string())
}

/// Polls `condition` every 20 ms for up to `limit`; panics naming `what` if it never holds.
async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the fake runs a pod (its container started).
async fn wait_for_running_pod(fake: &FakeKube) {
    wait_for("a running pod", Duration::from_secs(10), || {
        fake.pods().iter().any(|p| p["status"]["phase"] == "Running")
    })
    .await;
}

/// The value of a metric line such as `csv_analyst_runs_in_flight 0`.
async fn metric(server: &TestServer, name: &str) -> Option<f64> {
    let (_, text) = server.get("/metrics").await;
    text.as_str().unwrap().lines().find_map(|line| line.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// The Jobs the fake still has that have not finished (no terminal condition).
fn active_jobs(fake: &FakeKube) -> Vec<String> {
    fake.jobs()
        .iter()
        .filter(|job| {
            !job["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        })
        .map(|job| job["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn background_deletion_of(job: &str) -> Vec<(String, Option<String>)> {
    vec![(job.to_string(), Some("Background".to_string()))]
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_seed_query_runs_as_a_job_that_stays_visible() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |_| {}).await;
    let (code, ready) = server.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(
        ready["sandbox"],
        "Kubernetes API reachable (v1.33.0-fake), namespace csv-analyst exists, the service account may create, \
         watch and delete Jobs, watch pods and events, and read pod logs there; runner image csv-analyst-runner:dev"
    );

    let (code, body) = server.post_run(seed()).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["result"]["rows"], json!([[tickets()]]));
    assert_eq!(body["details"]["sandbox_provider"], "k8s");
    let run_id = body["run_id"].as_str().unwrap();
    let job_name = body["details"]["job_name"].as_str().unwrap().to_string();
    assert_eq!(job_name, format!("csv-analyst-run-{}", run_id.replace('-', "")));

    let jobs = kubectl_get_jobs(&fake).await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some(job_name.as_str()));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "csv-analyst-runner");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "csv-analyst-orchestrator");
    assert_eq!(labels["csv-analyst.io/run-id"], run_id);
    assert_eq!(job.metadata.annotations.as_ref().unwrap()["csv-analyst.io/run-id"], run_id);
    assert_eq!(job.spec.as_ref().unwrap().ttl_seconds_after_finished, Some(300), "kept for kubectl get jobs");

    // What the provider did: one Job created, the log of that Job's pod read, no delete;
    // and what it returned is the line the runner printed in that pod, not a
    // re-computation or a stale record.
    assert_eq!(fake.created(), vec![job_name.clone()]);
    let pods = fake.pods();
    assert_eq!(pods.len(), 1, "one pod for the one Job");
    let pod_name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(pods[0]["metadata"]["labels"]["job-name"], json!(job_name));
    assert_eq!(pods[0]["metadata"]["labels"]["csv-analyst.io/run-id"], json!(run_id), "the label the provider selects");
    let reads = fake.log_reads();
    assert!(!reads.is_empty() && reads.iter().all(|(pod, _)| *pod == pod_name), "{reads:?}");
    let printed: protocol::RunResult = serde_json::from_str(reads.last().unwrap().1.trim()).unwrap();
    assert_eq!(body["result"]["rows"], json!(printed.rows));
    assert_eq!(body["result"]["columns"], json!(printed.columns));
    assert_eq!(body["result"]["stats"]["peak_memory_bytes"], json!(printed.stats.peak_memory_bytes));
    assert!(fake.deletions().is_empty(), "K8S_DELETE_JOBS=false leaves cleanup to the TTL");
    // The runner is told what the service's files hash to, and checked them.
    let env = &fake.jobs()[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let request_json = env.as_array().unwrap().iter().find(|v| v["name"] == "RUNNER_REQUEST_JSON").unwrap();
    let request: protocol::RunRequest = serde_json::from_str(request_json["value"].as_str().unwrap()).unwrap();
    let registry = protocol::registry::Registry::load(&datasets_dir()).unwrap();
    let expected = request.expected_version.expect("runner Jobs check their files");
    assert_eq!(Some(expected.version_hash), registry.dataset("support").unwrap().version_hash.clone());
    assert_eq!(expected.manifest_dir, "");

    let (_, record) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(record["details"]["job_name"], json!(job_name));
    assert_eq!(record["details"]["sandbox_provider"], "k8s");
    assert_eq!(metric(&server, "csv_analyst_runs_in_flight").await, Some(0.0));
    // The line scripts/k8s-checklist.sh reads.
    assert_eq!(metric(&server, "csv_analyst_runs_total{status=\"succeeded\",provider=\"k8s\"}").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_runner_whose_files_differ_from_the_services_refuses_to_answer() {
    // The service's copy of the datasets has one more ticket than the runner's.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(datasets_dir()).arg(copy.path()).status().unwrap();
    assert!(status.success());
    let services = copy.path().join("datasets");
    let tickets_csv = services.join("support/tickets.csv");
    let mut text = std::fs::read_to_string(&tickets_csv).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&last);
    text.push('\n');
    std::fs::write(&tickets_csv, text).unwrap();

    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.datasets_dir = services.clone()).await;
    let (code, body) = server.post_run(seed()).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "failed", "never an answer over other files: {body}");
    let (error_type, message) = error_of(&body);
    assert_eq!(error_type, "DATASET_ERROR");
    assert!(message.contains("not the ones the service described"), "{message}");
    assert_eq!(body["result"]["rows"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_query_errors_come_back_through_the_job() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(json!({"dataset_id": "ecommerce", "sql": "SELECT nope FROM orders"})).await;
    assert_eq!(body["status"], "failed");
    assert_eq!(error_of(&body).0, "SQL_PLAN_ERROR");
    let (_, body) = server
        .post_run(json!({"dataset_id": "support", "sql": "SELECT COUNT(*) FROM tickets a, tickets b, tickets c", "timeout_seconds": 1}))
        .await;
    assert_eq!(body["status"], "timed_out", "the runner's own deadline: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_image_pull_failure_fails_fast_and_deletes_the_job() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| {
        c.k8s.runner_image = "registry.invalid/fault/image-pull:nope".into();
        c.k8s.k8s_pod_start_timeout_seconds = 60;
        c.run_timeout_seconds = 30.0;
    })
    .await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(body["status"], "failed");
    let (kind, message) = error_of(&body);
    assert_eq!(kind, "SANDBOX_ERROR");
    assert!(message.contains("registry.invalid/fault/image-pull:nope cannot start: ErrImagePull"), "{message}");
    let job = body["details"]["job_name"].as_str().unwrap();
    assert_eq!(fake.deletions(), background_deletion_of(job), "given up on, so deleted whatever K8S_DELETE_JOBS says");
    assert!(fake.jobs().is_empty() && fake.pods().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_unschedulable_pod_fails_with_the_schedulers_reason() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "fault/unschedulable".into()).await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(message.contains("did not start within 3 s") && message.contains("Insufficient memory"), "{message}");
    let job = body["details"]["job_name"].as_str().unwrap();
    assert_eq!(fake.deletions(), background_deletion_of(job));
    assert!(fake.jobs().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_deadline_exceeded_is_timed_out() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| {
        c.k8s.runner_image = "fault/hang".into();
        c.run_timeout_seconds = 1.0;
    })
    .await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert_eq!(body["status"], "timed_out", "{body}");
    let (kind, message) = error_of(&body);
    assert_eq!(kind, "TIMEOUT");
    assert_eq!(message, "the Job ran past its deadline: Job was active longer than specified deadline");
    assert!(active_jobs(&fake).is_empty(), "Kubernetes stopped it; the failed Job stays for its TTL");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_oom_killed_container_is_a_memory_limit() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "fault/oom".into()).await;
    let (_, body) = server.post_run(seed()).await;
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "MEMORY_LIMIT"));
    assert!(message.contains("killed for using more than its memory limit (512Mi)"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_runner_output_without_a_result_line_is_a_sandbox_error() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "fault/garbage".into()).await;
    let (_, body) = server.post_run(seed()).await;
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.starts_with("the runner printed 2 lines and none is a result: thread 'main' panicked"),
        "{message}"
    );
}

/// A runner that writes a warning before its result line still has its result read.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_runner_warning_before_the_result_does_not_hide_it() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "csv-analyst-runner:fault/warning".into()).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["result"]["rows"], json!([[tickets()]]));
    let (_, log) = fake.log_reads().pop().unwrap();
    assert!(log.starts_with("runner-host: warning: "), "the log held the warning first: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_forbidden_names_the_missing_rbac_permission() {
    let forbidden = HashSet::from([("create".to_string(), "jobs".to_string())]);
    let fake = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    let server = TestServer::start_unready({
        let kubeconfig = fake.kubeconfig.clone();
        move |c| k8s_config(c, &kubeconfig)
    })
    .await;
    let (_, body) = server.post_run(seed()).await;
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.contains("403 Forbidden") && message.contains("RBAC verb \"create\" on \"jobs.batch\""),
        "{message}"
    );
    assert!(fake.created().is_empty() && fake.deletions().is_empty(), "nothing created, nothing to delete");

    let forbidden = HashSet::from([("get".to_string(), "pods/log".to_string())]);
    let fake = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    let second = TestServer::start_unready({
        let kubeconfig = fake.kubeconfig.clone();
        move |c| k8s_config(c, &kubeconfig)
    })
    .await;
    let (_, body) = second.post_run(seed()).await;
    let (_, message) = error_of(&body);
    assert!(message.contains("RBAC verb \"get\" on \"pods/log\""), "{message}");

    // Events are an aid: a run goes on without them (and /readyz says what is missing).
    let forbidden =
        HashSet::from([("list".to_string(), "events".to_string()), ("watch".to_string(), "events".to_string())]);
    let fake = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    let third = TestServer::start_unready({
        let kubeconfig = fake.kubeconfig.clone();
        move |c| k8s_config(c, &kubeconfig)
    })
    .await;
    let (_, body) = third.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    let (code, ready) = third.get("/readyz").await;
    assert_eq!(
        (code, ready["reason"].as_str()),
        (
            503,
            Some(
                "the service account may not list events, watch events in namespace csv-analyst (RBAC); the chart's Role \
         grants what runs need"
            )
        )
    );
}

/// `/readyz` is cheap: its Kubernetes checks run at most once per few seconds
/// (`READY_CACHE_FOR`), however many probes come, and a failure names its check.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_readyz_asks_the_api_server_once_for_many_probes() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = self::server(&fake, |_| {}).await;
    let namespace_reads = || fake.requests().iter().filter(|r| r.verb == "get" && r.resource == "namespaces").count();
    // The start-up's answer ages out; then one check.
    tokio::time::sleep(orchestrator::readiness::READY_CACHE_FOR).await;
    let before = namespace_reads();
    let (code, body) = server.get("/readyz").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ready")), "{body}");
    assert_eq!(namespace_reads(), before + 1, "a check reads the namespace");
    let probes = futures::future::join_all((0..10).map(|_| server.get("/readyz"))).await;
    assert!(probes.iter().all(|(code, _)| *code == 200));
    assert_eq!(namespace_reads(), before + 1, "ten more probes, no more API calls");

    fake.delete_namespace(NAMESPACE);
    tokio::time::sleep(orchestrator::readiness::READY_CACHE_FOR).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!((code, body["failed_check"].as_str()), (503, Some("sandbox")), "{body}");
}

/// `/readyz` checks what runs need and says it in words: the namespace exists and
/// the service account may create, watch and delete Jobs (SelfSubjectAccessReviews).
#[tokio::test(flavor = "multi_thread")]
async fn k8s_readyz_checks_the_namespace_and_the_permissions_runs_need() {
    let refused = |pairs: &[(&str, &str)]| -> HashSet<(String, String)> {
        pairs.iter().map(|(v, r)| (v.to_string(), r.to_string())).collect()
    };
    let fake =
        FakeKube::start(Faults { forbidden: refused(&[("create", "jobs"), ("get", "pods/log")]), ..Faults::default() })
            .await;
    let kubeconfig = fake.kubeconfig.clone();
    let server = TestServer::start_unready(move |c| k8s_config(c, &kubeconfig)).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(
        body["reason"],
        "the service account may not create jobs.batch, get pods/log in namespace csv-analyst (RBAC); the chart's \
         Role grants what runs need"
    );

    let fake = FakeKube::start(Faults::default()).await;
    let kubeconfig = fake.kubeconfig.clone();
    let server = TestServer::start_unready(move |c| {
        k8s_config(c, &kubeconfig);
        c.k8s.k8s_namespace = Some("absent".into());
    })
    .await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(
        body["reason"],
        "namespace absent (K8S_NAMESPACE) does not exist; create it, or point K8S_NAMESPACE at the namespace the \
         chart's Role is in"
    );

    let fake = FakeKube::start(Faults { forbidden: refused(&[("get", "namespaces")]), ..Faults::default() }).await;
    let kubeconfig = fake.kubeconfig.clone();
    let server = TestServer::start_unready(move |c| k8s_config(c, &kubeconfig)).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the service account may not read namespace csv-analyst to check that it exists (403")
            && reason.ends_with("it needs RBAC verb \"get\" on \"namespaces\" there (the chart's Role grants it)"),
        "{reason}"
    );

    // A namespace being cleaned up.
    let fake = FakeKube::start(Faults::default()).await;
    let server = self::server(&fake, |_| {}).await;
    fake.delete_namespace(NAMESPACE);
    // The probe's answer is cached for a few seconds (one check serves every probe).
    tokio::time::sleep(orchestrator::readiness::READY_CACHE_FOR).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(body["failed_check"], "sandbox", "{body}");
    assert_eq!(
        (code, body["reason"].as_str()),
        (
            503,
            Some(
                "namespace csv-analyst (K8S_NAMESPACE) does not exist; create it, or point K8S_NAMESPACE at the namespace \
         the chart's Role is in"
            )
        )
    );
}

/// A watch the server closes is resumed from the last resourceVersion (no new
/// list); bookmarks move that resourceVersion on.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_watch_disconnects_are_resumed_from_the_last_resource_version() {
    let fake = FakeKube::start(Faults { drop_watches_after: Some(1), ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    let requests = fake.requests();
    let of = |verb: &str, resource: &str| {
        requests.iter().filter(|r| r.verb == verb && r.resource == resource).cloned().collect::<Vec<_>>()
    };
    assert_eq!(of("list", "jobs").len(), 1, "one list, then watches: {requests:?}");
    let watches = of("watch", "jobs");
    assert!(watches.len() >= 2, "the dropped watch was resumed: {watches:?}");
    assert!(watches.iter().all(|w| w.resource_version.as_deref().is_some_and(|rv| rv != "0")), "{watches:?}");
}

/// A watch that falls out of the server's window (`ERROR` 410 Gone) is listed again
/// and the run still gets its result.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_watches_expired_with_410_gone_are_listed_again() {
    let fake = FakeKube::start(Faults { watch_gone_after: Some(1), ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["result"]["rows"], json!([[tickets()]]));
    let lists = fake.requests().iter().filter(|r| r.verb == "list" && r.resource == "pods").count();
    assert!(lists >= 2, "the pod watch was listed again after 410 Gone ({lists} lists)");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_lagging_pod_log_is_retried() {
    let fake = FakeKube::start(Faults { log_delay: Some(Duration::from_millis(1_200)), ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_delete_jobs_deletes_with_background_propagation() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.k8s_delete_jobs = true).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded");
    let job_name = body["details"]["job_name"].as_str().unwrap().to_string();
    assert_eq!(fake.deletions(), background_deletion_of(&job_name));
    assert!(fake.jobs().is_empty(), "the Job is gone");
    assert!(fake.pods().is_empty(), "and so are its pods");
}

/// 429 (API Priority and Fairness), 503 and 504 on create are retried with backoff
/// (and Retry-After); the 504'd create had stored the Job, so the retry's 409 is it.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_job_creation_is_retried_when_the_api_server_sheds_load() {
    let fake = FakeKube::start(Faults { create_refusals: vec![429, 503, 504], ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "within the run's timeout: {:?}", started.elapsed());
    assert_eq!(fake.create_attempts(), 4, "429, 503, 504 (stored), then 409 for the stored Job");
    let job = body["details"]["job_name"].as_str().unwrap();
    assert_eq!(fake.created(), vec![job.to_string()], "one Job");
}

/// A server that keeps shedding load fails the run within its timeout, creating nothing.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_create_throttled_past_the_runs_timeout_fails_within_it() {
    let fake = FakeKube::start(Faults { create_refusals: vec![429; 1000], ..Faults::default() }).await;
    let server = server(&fake, |c| c.run_timeout_seconds = 3.0).await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.starts_with("the Kubernetes API server kept refusing to create the run's Job for ")
            && message.contains(
                "within the run's 3.0 s timeout (429 TooManyRequests: the server has received too many requests"
            ),
        "{message}"
    );
    assert!(fake.create_attempts() >= 2 && fake.created().is_empty() && fake.deletions().is_empty());
}

/// Pods the Job controller cannot create (a ResourceQuota here) are reported only as
/// `FailedCreate` Events on the Job: the run fails with that message at once.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_pods_that_cannot_be_created_fail_the_run_with_the_jobs_event() {
    let quota = "exceeded quota: runner-quota, requested: limits.memory=512Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi";
    let fake = FakeKube::start(Faults { pod_create_refused: Some(quota.into()), ..Faults::default() }).await;
    let server = server(&fake, |c| c.k8s.k8s_pod_start_timeout_seconds = 30).await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    let job = body["details"]["job_name"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Kubernetes cannot create the runner pod of Job {job} (FailedCreate): Error creating: pods \""
        )) && message.ends_with(&format!("is forbidden: {quota}")),
        "{message}"
    );
    assert_eq!(fake.deletions(), background_deletion_of(job));
    assert!(fake.jobs().is_empty());
    assert!(fake.pods().is_empty(), "no pod was ever created");
    assert!(fake.events().iter().any(|e| e["reason"] == "FailedCreate" && e["involvedObject"]["name"] == job));
}

/// The Job deleted under a running run (kubectl delete): the run ends at once.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_job_deleted_under_the_run_ends_it_at_once() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = Arc::new(
        server(&fake, |c| {
            c.k8s.runner_image = "fault/hang".into();
            c.run_timeout_seconds = 30.0;
        })
        .await,
    );
    let running = tokio::spawn({
        let server = server.clone();
        async move { server.post_run(seed()).await }
    });
    wait_for_running_pod(&fake).await;
    let job = fake.created()[0].clone();
    let jobs: Api<Job> = Api::namespaced(kubectl(&fake).await, NAMESPACE);
    jobs.delete(&job, &DeleteParams::background()).await.unwrap();
    let deleted_at = Instant::now();
    let (_, body) = running.await.unwrap();
    assert!(deleted_at.elapsed() < Duration::from_secs(2), "ended {:?} after the delete", deleted_at.elapsed());
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert_eq!(
        message,
        format!(
            "the Job {job} was deleted before it finished: by kubectl delete, a TTL or the namespace's deletion; the \
             run has no result"
        )
    );
    assert_eq!(metric(&server, "csv_analyst_runs_in_flight").await, Some(0.0));
}

/// The namespace deleted under a running run: the run ends at once, the same way.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_namespace_clean_up_under_the_run_ends_it_at_once() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = Arc::new(
        server(&fake, |c| {
            c.k8s.runner_image = "fault/hang".into();
            c.run_timeout_seconds = 30.0;
        })
        .await,
    );
    let running = tokio::spawn({
        let server = server.clone();
        async move { server.post_run(seed()).await }
    });
    wait_for_running_pod(&fake).await;
    fake.delete_namespace(NAMESPACE);
    let deleted_at = Instant::now();
    let (_, body) = running.await.unwrap();
    assert!(deleted_at.elapsed() < Duration::from_secs(2), "ended {:?} after the clean-up", deleted_at.elapsed());
    let (kind, message) = error_of(&body);
    assert_eq!(kind, "SANDBOX_ERROR");
    assert!(message.contains("was deleted before it finished"), "{message}");
    // A run after the clean-up is refused by the API server, naming the namespace.
    let (_, body) = server.post_run(seed()).await;
    let (_, message) = error_of(&body);
    assert!(message.contains("(404 NotFound): namespaces \"csv-analyst\" not found"), "{message}");
}

/// The API server goes away mid-run: the run ends as a SANDBOX_ERROR naming it,
/// after a short grace, not as a TIMEOUT at the deadline.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_an_api_server_that_goes_away_mid_run_is_a_sandbox_error_naming_it() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = Arc::new(
        server(&fake, |c| {
            c.k8s.runner_image = "fault/hang".into();
            c.run_timeout_seconds = 60.0;
        })
        .await,
    );
    let running = tokio::spawn({
        let server = server.clone();
        async move { server.post_run(seed()).await }
    });
    wait_for_running_pod(&fake).await;
    fake.go_away();
    let gone_at = Instant::now();
    let (_, body) = running.await.unwrap();
    let grace = orchestrator::sandbox::k8s::follow::API_OUTAGE_GRACE;
    let waited = gone_at.elapsed();
    assert!(waited >= grace && waited < grace + Duration::from_secs(3), "ended {waited:?} after the server left");
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.starts_with(&format!("the Kubernetes API server {} stopped answering during the run (for ", fake.url)),
        "{message}"
    );
    tokio::time::sleep(orchestrator::readiness::READY_CACHE_FOR).await;
    let (code, ready) = server.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("the Kubernetes API server {} is unreachable", fake.url))
    );
}

/// The request travels in an environment variable, which Linux limits to 128 KiB:
/// a 200 KiB query is refused before anything is created, naming the limit. (The
/// fake, like a real node, would fail such a container at start: checked below.)
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_200_kib_query_is_refused_up_front_naming_the_limit() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |_| {}).await;
    let literal = "x".repeat(200 * 1024);
    let sql = format!("SELECT LENGTH('{literal}') AS n FROM tickets LIMIT 1");
    let started = Instant::now();
    let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(code, 200);
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "INVALID_REQUEST"), "{body}");
    assert!(
        message.starts_with("the query is too large to run as a Kubernetes Job: its request is ")
            && message.contains(
                "in the RUNNER_REQUEST_JSON environment variable, which Linux limits to 128 KiB (131051 bytes)"
            ),
        "{message}"
    );
    assert_eq!(fake.create_attempts(), 0, "nothing was created");
    assert_eq!(body["details"]["job_name"], Value::Null);
    assert_eq!(metric(&server, "csv_analyst_runs_in_flight").await, Some(0.0));

    // What would have happened: the Job rendered for that request fails to start.
    let config = test_config(std::path::Path::new("/nonexistent"));
    let mut big = request(&datasets_dir(), "support", &sql);
    big.timeout_ms = 5_000;
    let job = orchestrator::sandbox::k8s::job::build(
        &config,
        NAMESPACE,
        "too-big",
        &big,
        orchestrator::datasets::DataRoot::Curated,
    );
    let jobs: Api<Job> = Api::namespaced(kubectl(&fake).await, NAMESPACE);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for("the oversized Job's pod to fail", Duration::from_secs(10), || {
        fake.pods().iter().any(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    let pod = fake.pods().into_iter().find(|p| p["status"]["phase"] == "Failed").unwrap();
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((terminated["reason"].as_str(), terminated["exitCode"].as_i64()), (Some("StartError"), Some(128)));
    assert!(terminated["message"].as_str().unwrap().contains("argument list too long"), "{terminated}");
}

/// A client that hangs up mid-run: the run still ends once, recorded with its real
/// outcome; the gauge is back to 0 and no Job is left.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_client_that_hangs_up_mid_run_leaves_a_finished_run_and_no_job() {
    // The log comes a second late, so the run is surely going when the client gives up.
    let fake = FakeKube::start(Faults { log_delay: Some(Duration::from_secs(1)), ..Faults::default() }).await;
    let server = server(&fake, |c| c.k8s.k8s_delete_jobs = true).await;
    let hung_up =
        client().post(format!("{}/runs", server.url)).json(&seed()).timeout(Duration::from_millis(300)).send().await;
    assert!(hung_up.is_err(), "the client gave up before the Job finished");
    wait_for("the Job to be deleted", Duration::from_secs(20), || fake.deletions().len() == 1).await;
    let (_, listed) = server.get("/runs").await;
    let run = &listed["runs"][0];
    let run_id = run["run_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let (_, record) = server.get(&format!("/runs/{run_id}")).await;
        if record["status"] != "running" || Instant::now() > deadline {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"]["rows"], json!([[tickets()]]));
    assert_eq!(metric(&server, "csv_analyst_runs_in_flight").await, Some(0.0));
    assert!(fake.jobs().is_empty(), "no Job left behind");
}

/// A run whose future is dropped (a cancelled run, a shutdown) deletes its Job in
/// the background, and its concurrency slot frees up only once the Job is gone.
/// The provider also records pod start times and create errors in the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_a_dropped_run_deletes_its_job_and_frees_its_slot_only_then() {
    let delete_delay = Duration::from_millis(600);
    let fake = FakeKube::start(Faults { delete_delay: Some(delete_delay), ..Faults::default() }).await;
    let store = tempfile::tempdir().unwrap();
    let mut config = test_config(store.path());
    k8s_config(&mut config, &fake.kubeconfig);
    config.k8s.runner_image = "fault/hang".into();
    let provider = Arc::new(K8sProvider::connect(&config).await.unwrap());
    let metrics = orchestrator::metrics::Metrics::default();
    let provider_kind = orchestrator::sandbox::Provider::K8s(Box::new(K8sProvider::connect(&config).await.unwrap()));
    provider_kind.use_metrics(&metrics);
    let slots = Arc::new(tokio::sync::Semaphore::new(1));

    let mut run_request = request(&datasets_dir(), "support", "SELECT COUNT(*) FROM tickets");
    run_request.timeout_ms = 30_000;
    let permit = slots.clone().acquire_owned().await.unwrap();
    let run = tokio::spawn({
        let provider = provider.clone();
        let run_request = run_request.clone();
        async move { provider.run("dropped-run", run_request, orchestrator::datasets::DataRoot::Curated, permit).await }
    });
    wait_for_running_pod(&fake).await;
    run.abort();
    let aborted = Instant::now();
    assert!(run.await.unwrap_err().is_cancelled());
    let job = fake.created()[0].clone();
    // The deletion is in flight (the fake answers it slowly): the slot stays taken.
    tokio::time::sleep(delete_delay / 3).await;
    assert_eq!(slots.available_permits(), 0, "the slot is held while the Job is being deleted");
    // The moment the slot is free, the Job is deleted.
    wait_for("the slot to free up", Duration::from_secs(5), || slots.available_permits() == 1).await;
    assert!(aborted.elapsed() >= delete_delay, "freed only after the delete was answered");
    assert_eq!(fake.deletions(), background_deletion_of(&job));
    assert!(fake.jobs().is_empty() && fake.pods().is_empty());

    // Metrics, through the Provider the service holds.
    let permit = slots.clone().acquire_owned().await.unwrap();
    run_request.timeout_ms = 1_000;
    let execution =
        provider_kind.run("metrics-run", run_request.clone(), orchestrator::datasets::DataRoot::Curated, permit).await;
    assert_eq!(execution.result.error.unwrap().error_type, protocol::ErrorType::Timeout);
    let text = metrics.render();
    assert!(text.contains("csv_analyst_k8s_pod_start_seconds_count 1"), "{text}");
    assert!(text.contains("csv_analyst_k8s_job_create_errors_total 0"), "{text}");
    let forbidden = HashSet::from([("create".to_string(), "jobs".to_string())]);
    let refusing = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    k8s_config(&mut config, &refusing.kubeconfig);
    let refused = orchestrator::sandbox::Provider::K8s(Box::new(K8sProvider::connect(&config).await.unwrap()));
    refused.use_metrics(&metrics);
    let permit = slots.clone().acquire_owned().await.unwrap();
    refused.run("refused-run", run_request, orchestrator::datasets::DataRoot::Curated, permit).await;
    assert!(metrics.render().contains("csv_analyst_k8s_job_create_errors_total 1"));
    assert_eq!(slots.available_permits(), 1, "nothing was created: the slot is free at once");
}

/// Odd run ids: the Job name and labels are valid for the API server (which
/// validates them), and the pods are found by the same sanitised label.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_odd_run_ids_give_valid_jobs_whose_pods_are_found() {
    let fake = FakeKube::start(Faults::default()).await;
    let store = tempfile::tempdir().unwrap();
    let mut config = test_config(store.path());
    k8s_config(&mut config, &fake.kubeconfig);
    let provider = K8sProvider::connect(&config).await.unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    for run_id in ["Run ID/with spaces & ÜTF-8", &"Z".repeat(100)] {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let execution = provider
            .run(
                run_id,
                request(&datasets_dir(), "support", "SELECT COUNT(*) AS n FROM tickets"),
                orchestrator::datasets::DataRoot::Curated,
                permit,
            )
            .await;
        assert_eq!(execution.result.error, None, "{run_id}");
        assert_eq!(execution.result.rows, vec![vec![json!(tickets())]]);
        let job = execution.job_name.unwrap();
        assert!(job.len() <= 63 && job.starts_with("csv-analyst-run-"), "{job}");
    }
    assert_eq!(fake.created().len(), 2);
}

/// KUBECONFIG lists several files as kubectl does (a missing one is skipped), and
/// without K8S_NAMESPACE the Jobs go to the current context's namespace — the one
/// `render-job` defaults to as well.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_kubeconfig_with_several_paths_works_as_for_kubectl() {
    let fake = FakeKube::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let list = std::env::join_paths([dir.path().join("absent"), fake.kubeconfig.clone()]).unwrap();
    let server = server(&fake, |c| {
        c.k8s.kubeconfig = Some(list.clone().into());
        c.k8s.k8s_namespace = None;
    })
    .await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(fake.jobs()[0]["metadata"]["namespace"], NAMESPACE);
    let mut k8s = test_config(dir.path()).k8s;
    k8s.kubeconfig = Some(list.into());
    assert_eq!(orchestrator::sandbox::k8s::job_namespace(&k8s), Ok(NAMESPACE.to_string()));
}

/// The fake API server enforces what a real one does: namespaces in every route,
/// and names, labels and quantities validated on create.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_the_fake_api_server_validates_and_scopes_like_a_real_one() {
    let fake = FakeKube::start(Faults::default()).await;
    let kube = kubectl(&fake).await;
    let config = test_config(std::path::Path::new("/nonexistent"));
    let good = orchestrator::sandbox::k8s::job::build(
        &config,
        NAMESPACE,
        "r1",
        &request(&datasets_dir(), "support", "SELECT 1"),
        orchestrator::datasets::DataRoot::Curated,
    );
    let refusal = |result: Result<Job, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    };

    let elsewhere: Api<Job> = Api::namespaced(kube.clone(), "absent");
    let mut in_absent = good.clone();
    in_absent.metadata.namespace = Some("absent".into());
    assert_eq!(
        refusal(elsewhere.create(&PostParams::default(), &in_absent).await),
        (404, "namespaces \"absent\" not found".to_string())
    );
    let mut long_name = good.clone();
    long_name.metadata.name = Some("j".repeat(64));
    let jobs: Api<Job> = Api::namespaced(kube.clone(), NAMESPACE);
    let (code, message) = refusal(jobs.create(&PostParams::default(), &long_name).await);
    assert_eq!(code, 422);
    assert!(message.contains("metadata.name: Invalid value") && message.contains("must be no more than 63 characters"));
    let mut bad_label = good.clone();
    bad_label.metadata.labels.as_mut().unwrap().insert("csv-analyst.io/run-id".into(), "not valid!".into());
    let (code, message) = refusal(jobs.create(&PostParams::default(), &bad_label).await);
    assert_eq!(code, 422);
    assert!(message.contains("metadata.labels: Invalid value: \"not valid!\""), "{message}");
    let mut bad_quantity = good.clone();
    let container = &mut bad_quantity.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0];
    container
        .resources
        .as_mut()
        .unwrap()
        .limits
        .as_mut()
        .unwrap()
        .insert("memory".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("512MB".into()));
    let (code, message) = refusal(jobs.create(&PostParams::default(), &bad_quantity).await);
    assert_eq!(code, 422);
    assert!(message.contains("resources.limits[memory]: Invalid value: \"512MB\""), "{message}");
    assert!(fake.created().is_empty());

    // A valid Job is in its namespace only.
    jobs.create(&PostParams::default(), &good).await.unwrap();
    let name = good.metadata.name.clone().unwrap();
    let in_default: Api<Job> = Api::namespaced(kube.clone(), "default");
    assert!(in_default.get_opt(&name).await.unwrap().is_none());
    assert!(in_default.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert_eq!(jobs.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_unreachable_api_server_makes_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let kubeconfig = write_kubeconfig(dir.path(), &url);
    let server = TestServer::start_unready(move |c| k8s_config(c, &kubeconfig)).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().starts_with(&format!("the Kubernetes API server {url} is unreachable")),
        "{body}"
    );
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 200, "liveness does not depend on the cluster");
    let started = Instant::now();
    let (code, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(2), "a refused connection is not retried");
    assert_eq!(code, 200);
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.contains(&format!("the Kubernetes API server {url} cannot be reached to create jobs.batch")),
        "{message}"
    );
    assert_eq!(metric(&server, "csv_analyst_runs_in_flight").await, Some(0.0));
}

/// `orchestrator render-job` prints the Job the provider would create, valid for
/// `kubectl apply -f -` (checked by the schema validator) and locked down.
#[test]
fn k8s_render_job_passes_strict_schema_validation() {
    let output = std::process::Command::new(workspace_binary("orchestrator"))
        .args([
            "render-job",
            "--dataset",
            "support",
            "--sql",
            "SELECT COUNT(*) FROM tickets",
            "--run-id",
            "render-test",
        ])
        // The settings below and defaults for the rest: nothing inherited.
        .env_clear()
        .env("DATASETS_DIR", datasets_dir())
        .env("K8S_NAMESPACE", NAMESPACE)
        .env("K8S_DATASETS_PVC", "csv-analyst-datasets")
        .env("K8S_SERVICE_ACCOUNT_NAME", "csv-analyst-runner")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let yaml = String::from_utf8(output.stdout).unwrap();
    for field in [
        "kind: Job",
        "name: csv-analyst-run-rendertest",
        "namespace: csv-analyst",
        "backoffLimit: 0",
        "activeDeadlineSeconds: 40",
        "ttlSecondsAfterFinished: 300",
        "restartPolicy: Never",
        "automountServiceAccountToken: false",
        "enableServiceLinks: false",
        "runAsNonRoot: true",
        "runAsUser: 1000",
        "runAsGroup: 1000",
        "type: RuntimeDefault",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "terminationMessagePolicy: FallbackToLogsOnError",
        "name: RUNNER_REQUEST_JSON",
        "claimName: csv-analyst-datasets",
        "serviceAccountName: csv-analyst-runner",
        "app.kubernetes.io/name: csv-analyst-runner",
    ] {
        assert!(yaml.contains(field), "render-job output lacks {field:?}:\n{yaml}");
    }
    validate_strictly(&yaml);
}
