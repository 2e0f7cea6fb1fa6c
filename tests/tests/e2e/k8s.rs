//! `SANDBOX_PROVIDER=k8s` end to end: the orchestrator talks through a kubeconfig to
//! the loopback API server of `fake_kube`, which runs each Job's container as the
//! real `runner-host exec`. Every test name contains `k8s`:
//! `cargo test --release k8s` runs them all.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use orchestrator::config::ProviderKind;
use serde_json::{Value, json};

use crate::fake_kube::{FakeKube, Faults, NAMESPACE, write_kubeconfig};
use crate::support::{Csv, TestServer, datasets_dir, validate_strictly, workspace_binary};

fn seed() -> Value {
    json!({"dataset_id": "support", "query_type": "sql", "sql": "SELECT COUNT(*) AS ticket_count FROM tickets"})
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

/// What `kubectl -n csv-analyst get jobs -l app.kubernetes.io/name=csv-analyst-runner` lists.
async fn kubectl_get_jobs(fake: &FakeKube) -> Vec<Job> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&fake.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let jobs: Api<Job> = Api::namespaced(client, NAMESPACE);
    jobs.list(&ListParams::default().labels("app.kubernetes.io/name=csv-analyst-runner")).await.unwrap().items
}

fn error_of(body: &Value) -> (String, String) {
    let error = &body["result"]["error"];
    (error["type"].as_str().unwrap_or("<none>").to_string(), error["message"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_seed_query_runs_as_a_job_that_stays_visible() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |_| {}).await;
    let (_, ready) = server.get("/readyz").await;
    assert!(ready["sandbox"].as_str().unwrap().contains("Kubernetes API reachable (v1.33.0-fake)"), "{ready}");

    let (code, body) = server.post_run(seed()).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "succeeded", "{body}");
    let tickets = Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len();
    assert_eq!(body["result"]["rows"], json!([[tickets]]));
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
    let status = job.status.as_ref().unwrap();
    assert_eq!(status.succeeded, Some(1), "COMPLETIONS 1/1");
    assert!(status.conditions.as_ref().unwrap().iter().any(|c| c.type_ == "Complete" && c.status == "True"));
    assert_eq!(job.spec.as_ref().unwrap().ttl_seconds_after_finished, Some(300), "kept for kubectl get jobs");
    assert!(fake.deletions().is_empty(), "K8S_DELETE_JOBS=false leaves cleanup to the TTL");

    let (_, record) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(record["job_name"], json!(job_name));
    assert_eq!(record["sandbox_provider"], "k8s");
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
async fn k8s_image_pull_failure_fails_fast() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| {
        c.k8s.runner_image = "registry.invalid/fault/image-pull:nope".into();
        c.k8s.k8s_pod_start_timeout_seconds = 60;
        c.run_timeout_seconds = 30.0;
    })
    .await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(body["status"], "failed");
    let (kind, message) = error_of(&body);
    assert_eq!(kind, "SANDBOX_ERROR");
    assert!(message.contains("registry.invalid/fault/image-pull:nope cannot start: ErrImagePull"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_unschedulable_pod_fails_with_the_schedulers_reason() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "fault/unschedulable".into()).await;
    let started = Instant::now();
    let (_, body) = server.post_run(seed()).await;
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(message.contains("did not start within 3 s") && message.contains("Insufficient memory"), "{message}");
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
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(body["status"], "timed_out", "{body}");
    let (kind, message) = error_of(&body);
    assert_eq!(kind, "TIMEOUT");
    assert!(message.contains("deadline"), "{message}");
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
async fn k8s_runner_output_that_is_not_one_json_line_is_a_sandbox_error() {
    let fake = FakeKube::start(Faults::default()).await;
    let server = server(&fake, |c| c.k8s.runner_image = "fault/garbage".into()).await;
    let (_, body) = server.post_run(seed()).await;
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(message.contains("the runner printed 2 lines"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_forbidden_names_the_missing_rbac_permission() {
    let forbidden = HashSet::from([("create".to_string(), "jobs".to_string())]);
    let fake = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(seed()).await;
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(
        message.contains("403 Forbidden") && message.contains("RBAC verb \"create\" on \"jobs.batch\""),
        "{message}"
    );

    let forbidden = HashSet::from([("get".to_string(), "pods/log".to_string())]);
    let fake = FakeKube::start(Faults { forbidden, ..Faults::default() }).await;
    let second = self::server(&fake, |_| {}).await;
    let (_, body) = second.post_run(seed()).await;
    let (_, message) = error_of(&body);
    assert!(message.contains("RBAC verb \"get\" on \"pods/log\""), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_watch_disconnects_are_resumed() {
    let fake = FakeKube::start(Faults { drop_watches_after: Some(1), ..Faults::default() }).await;
    let server = server(&fake, |_| {}).await;
    let (_, body) = server.post_run(seed()).await;
    assert_eq!(body["status"], "succeeded", "{body}");
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
    assert_eq!(fake.deletions(), vec![(job_name, Some("Background".to_string()))]);
    assert!(fake.jobs().is_empty(), "the Job is gone");
    assert!(fake.pods().is_empty(), "and so are its pods");
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_unreachable_api_server_makes_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{closed_port}"));
    let server = TestServer::start_unready(move |c| k8s_config(c, &kubeconfig)).await;
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(body["reason"].as_str().unwrap().contains("unreachable"), "{body}");
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 200, "liveness does not depend on the cluster");
    let (code, body) = server.post_run(seed()).await;
    assert_eq!(code, 200);
    let (kind, message) = error_of(&body);
    assert_eq!((body["status"].as_str(), kind.as_str()), (Some("failed"), "SANDBOX_ERROR"));
    assert!(message.contains("cannot be reached to create jobs.batch"), "{message}");
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
