//! A Kubernetes API server on loopback, written for the tests: the slice of the
//! REST API the k8s provider uses, and a Job controller and kubelet that *execute*
//! a Job's container by running the real `runner-host exec` with the Job's
//! environment and the datasets folder mapped to `/data`.
//!
//! Served: `GET /version`; create, get, list, watch and delete of Jobs; list and
//! watch of Pods by label; pod logs. Jobs get the conditions a real controller sets
//! (`SuccessCriteriaMet` then `Complete`; `FailureTarget` then `Failed`), pods get
//! `job-name` labels, phases and container states.
//!
//! Faults, chosen by the runner image's name or set on the server:
//! `fault/image-pull`, `fault/unschedulable`, `fault/hang` (runs past
//! activeDeadlineSeconds), `fault/oom`, `fault/garbage` (prints non-JSON);
//! [`Faults`]: refused permissions (403), dropped watches, a lagging log.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::support::{cache_dir, datasets_dir, workspace_binary};

/// Faults the tests switch on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// `(verb, resource)` pairs answered with 403, e.g. `("create", "jobs")`.
    pub forbidden: HashSet<(String, String)>,
    /// Close every watch stream after this many events (the client must resume).
    pub drop_watches_after: Option<usize>,
    /// Pod logs appear only this long after the container ends.
    pub log_delay: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Job,
    Pod,
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    kind_type: &'static str,
    object: Value,
}

#[derive(Default)]
struct Cluster {
    rv: u64,
    jobs: BTreeMap<String, Value>,
    pods: BTreeMap<String, Value>,
    /// Pod name → log text, and when it may be read.
    logs: BTreeMap<String, (String, tokio::time::Instant)>,
    history: Vec<Event>,
    faults: Faults,
    /// Deleted Jobs and the propagation policy each delete asked for.
    deletions: Vec<(String, Option<String>)>,
    /// Job name → running container process id (killed on delete or deadline).
    processes: BTreeMap<String, u32>,
}

#[derive(Clone)]
struct Shared {
    cluster: Arc<Mutex<Cluster>>,
    events: broadcast::Sender<Event>,
    datasets: PathBuf,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap()
    }

    /// Stores `object` with a new resourceVersion and tells the watchers.
    fn put(&self, kind: Kind, kind_type: &'static str, mut object: Value) -> Value {
        let event = {
            let mut cluster = self.lock();
            cluster.rv += 1;
            let rv = cluster.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let store = match kind {
                Kind::Job => &mut cluster.jobs,
                Kind::Pod => &mut cluster.pods,
            };
            if kind_type == "DELETED" {
                store.remove(&name);
            } else {
                store.insert(name, object.clone());
            }
            let event = Event { rv, kind, kind_type, object: object.clone() };
            cluster.history.push(event.clone());
            event
        };
        let _ = self.events.send(event);
        object
    }

    fn get(&self, kind: Kind, name: &str) -> Option<Value> {
        let cluster = self.lock();
        match kind {
            Kind::Job => cluster.jobs.get(name).cloned(),
            Kind::Pod => cluster.pods.get(name).cloned(),
        }
    }

    /// Applies `change` to a stored object, if it still exists.
    fn update(&self, kind: Kind, name: &str, change: impl FnOnce(&mut Value)) -> bool {
        let Some(mut object) = self.get(kind, name) else { return false };
        change(&mut object);
        self.put(kind, "MODIFIED", object);
        true
    }
}

/// The fake API server, its kubeconfig, and what it saw.
pub struct FakeKube {
    pub kubeconfig: PathBuf,
    shared: Shared,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

pub const NAMESPACE: &str = "csv-analyst";

impl FakeKube {
    pub async fn start(faults: Faults) -> FakeKube {
        // The runner image ships a precompiled guest; here runner-host uses the shared
        // compilation cache, which must be warm before a Job's deadline starts ticking.
        tokio::task::spawn_blocking(crate::support::sandbox).await.unwrap();
        let (events, _) = broadcast::channel(1024);
        let cluster = Cluster { faults, ..Cluster::default() };
        let shared = Shared { cluster: Arc::new(Mutex::new(cluster)), events, datasets: datasets_dir() };
        let app = Router::new()
            .route("/version", get(version))
            .route("/apis/batch/v1/namespaces/{ns}/jobs", get(list_jobs).post(create_job))
            .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job).delete(delete_job))
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), &url);
        FakeKube { kubeconfig, shared, _dir: dir, task }
    }

    /// The Jobs now stored, as `kubectl get jobs -o json` lists them.
    pub fn jobs(&self) -> Vec<Value> {
        self.shared.lock().jobs.values().cloned().collect()
    }

    pub fn pods(&self) -> Vec<Value> {
        self.shared.lock().pods.values().cloned().collect()
    }

    pub fn deletions(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().deletions.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
        for pid in self.shared.lock().processes.values() {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// A kubeconfig pointing at `server`, as kubectl would use it.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\n\
         current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn version() -> Response {
    axum::Json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}))
        .into_response()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn forbidden(shared: &Shared, verb: &str, resource: &str, group: &str) -> Option<Response> {
    let refused = shared.lock().faults.forbidden.contains(&(verb.to_string(), resource.to_string()));
    refused.then(|| {
        let group_text = if group.is_empty() { String::new() } else { format!(" in API group \"{group}\"") };
        status(
            403,
            "Forbidden",
            format!(
                "{resource}{} is forbidden: User \"system:serviceaccount:{NAMESPACE}:csv-analyst\" cannot {verb} resource \"{resource}\"{group_text} in the namespace \"{NAMESPACE}\"",
                if group.is_empty() { String::new() } else { format!(".{group}") }
            ),
        )
    })
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    watch: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
}

fn matches(object: &Value, query: &ListQuery) -> bool {
    let selector_ok = |selector: &Option<String>, lookup: &dyn Fn(&str) -> Option<String>| {
        selector.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()).all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                lookup(k.trim()).as_deref() != Some(v.trim())
            } else if let Some((k, v)) = term.split_once('=') {
                lookup(k.trim()).as_deref() == Some(v.trim_start_matches('=').trim())
            } else {
                lookup(term.trim()).is_some()
            }
        })
    };
    let labels = |key: &str| object["metadata"]["labels"][key].as_str().map(str::to_string);
    let fields = |key: &str| match key {
        "metadata.name" => object["metadata"]["name"].as_str().map(str::to_string),
        "metadata.namespace" => object["metadata"]["namespace"].as_str().map(str::to_string),
        _ => None,
    };
    selector_ok(&query.label_selector, &labels) && selector_ok(&query.field_selector, &fields)
}

async fn list_jobs(
    State(shared): State<Shared>,
    UrlPath(_ns): UrlPath<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    list_or_watch(shared, Kind::Job, query).await
}

async fn list_pods(
    State(shared): State<Shared>,
    UrlPath(_ns): UrlPath<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    list_or_watch(shared, Kind::Pod, query).await
}

async fn list_or_watch(shared: Shared, kind: Kind, query: ListQuery) -> Response {
    let (resource, group, list_kind, api_version) = match kind {
        Kind::Job => ("jobs", "batch", "JobList", "batch/v1"),
        Kind::Pod => ("pods", "", "PodList", "v1"),
    };
    let watching = matches!(query.watch.as_deref(), Some("true" | "1"));
    if let Some(refusal) = forbidden(&shared, if watching { "watch" } else { "list" }, resource, group) {
        return refusal;
    }
    if !watching {
        let cluster = shared.lock();
        let store = if kind == Kind::Job { &cluster.jobs } else { &cluster.pods };
        let items: Vec<Value> = store.values().filter(|o| matches(o, &query)).cloned().collect();
        let body = json!({"apiVersion": api_version, "kind": list_kind,
                          "metadata": {"resourceVersion": cluster.rv.to_string()}, "items": items});
        return axum::Json(body).into_response();
    }

    // Subscribe first, then replay history after the client's resourceVersion, so no
    // event falls between the two.
    let mut receiver = shared.events.subscribe();
    let since: u64 = query.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    let backlog: Vec<Event> = shared.lock().history.iter().filter(|e| e.rv > since).cloned().collect();
    let limit = shared.lock().faults.drop_watches_after;
    let timeout = Duration::from_secs(query.timeout_seconds.unwrap_or(300).min(300));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = 0usize;
        let mut last_rv = since;
        let mut send = |event: &Event| -> Option<bool> {
            if event.kind != kind || event.rv <= last_rv || !matches(&event.object, &query) {
                return Some(true);
            }
            last_rv = event.rv;
            let mut line = serde_json::to_vec(&json!({"type": event.kind_type, "object": event.object})).unwrap();
            line.push(b'\n');
            if tx.try_send(Ok(Bytes::from(line))).is_err() {
                return None;
            }
            sent += 1;
            Some(limit.is_none_or(|n| sent < n))
        };
        for event in &backlog {
            if send(event) != Some(true) {
                return;
            }
        }
        loop {
            tokio::select! {
                event = receiver.recv() => match event {
                    Ok(event) => if send(&event) != Some(true) { return },
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn get_job(State(shared): State<Shared>, UrlPath((_ns, name)): UrlPath<(String, String)>) -> Response {
    match shared.get(Kind::Job, &name) {
        Some(job) => axum::Json(job).into_response(),
        None => status(404, "NotFound", format!("jobs.batch \"{name}\" not found")),
    }
}

async fn create_job(
    State(shared): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    axum::Json(mut job): axum::Json<Value>,
) -> Response {
    if let Some(refusal) = forbidden(&shared, "create", "jobs", "batch") {
        return refusal;
    }
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if shared.get(Kind::Job, &name).is_some() {
        return status(409, "AlreadyExists", format!("jobs.batch \"{name}\" already exists"));
    }
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(format!("uid-{name}"));
    job["metadata"]["creationTimestamp"] = json!(now());
    job["status"] = json!({"active": 1, "startTime": now()});
    let stored = shared.put(Kind::Job, "ADDED", job);
    tokio::spawn(run_job(shared.clone(), ns, name));
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

async fn delete_job(
    State(shared): State<Shared>,
    UrlPath((_ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&shared, "delete", "jobs", "batch") {
        return refusal;
    }
    let Some(job) = shared.get(Kind::Job, &name) else {
        return status(404, "NotFound", format!("jobs.batch \"{name}\" not found"));
    };
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let propagation = options["propagationPolicy"].as_str().map(str::to_string);
    let pid = {
        let mut cluster = shared.lock();
        cluster.deletions.push((name.clone(), propagation.clone()));
        cluster.processes.remove(&name)
    };
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    }
    shared.put(Kind::Job, "DELETED", job.clone());
    // Background (and Foreground) propagation remove the Job's pods; Orphan keeps them.
    if propagation.as_deref() != Some("Orphan") {
        let pods: Vec<Value> = shared
            .lock()
            .pods
            .values()
            .filter(|p| p["metadata"]["labels"]["job-name"] == json!(name))
            .cloned()
            .collect();
        for pod in pods {
            shared.put(Kind::Pod, "DELETED", pod);
        }
    }
    axum::Json(
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": "jobs"}}),
    )
    .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    limit_bytes: Option<usize>,
}

async fn pod_log(
    State(shared): State<Shared>,
    UrlPath((_ns, name)): UrlPath<(String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    if let Some(refusal) = forbidden(&shared, "get", "pods/log", "") {
        return refusal;
    }
    let entry = shared.lock().logs.get(&name).cloned();
    match entry {
        None if shared.get(Kind::Pod, &name).is_none() => status(404, "NotFound", format!("pods \"{name}\" not found")),
        None => String::new().into_response(),
        Some((_, ready_at)) if tokio::time::Instant::now() < ready_at => String::new().into_response(),
        Some((text, _)) => {
            let limit = query.limit_bytes.unwrap_or(usize::MAX).min(text.len());
            text[..limit].to_string().into_response()
        }
    }
}

/// The Job controller and the kubelet, for one Job.
async fn run_job(shared: Shared, ns: String, job_name: String) {
    let Some(job) = shared.get(Kind::Job, &job_name) else { return };
    let template = &job["spec"]["template"];
    let container = template["spec"]["containers"][0].clone();
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let deadline_seconds = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(600);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(deadline_seconds);

    let pod_name = format!("{job_name}-p{}", shared.lock().rv);
    let mut labels = template["metadata"]["labels"].clone();
    labels["job-name"] = json!(job_name);
    labels["batch.kubernetes.io/job-name"] = json!(job_name);
    labels["controller-uid"] = json!(job["metadata"]["uid"]);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "creationTimestamp": now(),
                     "uid": format!("uid-{pod_name}")},
        "spec": template["spec"],
        "status": {"phase": "Pending", "conditions": []},
    });
    shared.put(Kind::Pod, "ADDED", pod);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let container_status = |state: Value| {
        json!([{"name": "runner", "image": image, "imageID": "", "ready": false,
                                                   "restartCount": 0, "state": state}])
    };
    let outcome = if image.contains("fault/image-pull") {
        shared.update(Kind::Pod, &pod_name, |p| {
            p["status"]["containerStatuses"] = container_status(json!({"waiting": {"reason": "ErrImagePull",
                "message": format!("failed to pull and unpack image \"{image}\": not found")}}));
        });
        wait_for_deadline(deadline).await
    } else if image.contains("fault/unschedulable") {
        shared.update(Kind::Pod, &pod_name, |p| {
            p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available."}]);
        });
        wait_for_deadline(deadline).await
    } else if image.contains("fault/hang") {
        set_running(&shared, &pod_name, &container_status);
        wait_for_deadline(deadline).await
    } else if image.contains("fault/oom") {
        set_running(&shared, &pod_name, &container_status);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Exit { code: 137, reason: "OOMKilled", log: String::new() }.into()
    } else if image.contains("fault/garbage") {
        set_running(&shared, &pod_name, &container_status);
        Exit { code: 0, reason: "Completed", log: "thread 'main' panicked at src/main.rs:1:1\nnot json\n".into() }
            .into()
    } else {
        set_running(&shared, &pod_name, &container_status);
        run_container(&shared, &job_name, &container, deadline).await
    };

    let finished = now();
    match outcome {
        Outcome::Exited(exit) => {
            let log_delay = shared.lock().faults.log_delay.unwrap_or_default();
            shared.lock().logs.insert(pod_name.clone(), (exit.log.clone(), tokio::time::Instant::now() + log_delay));
            let succeeded = exit.code == 0;
            shared.update(Kind::Pod, &pod_name, |p| {
                let message: String = if succeeded {
                    String::new()
                } else {
                    exit.log.lines().rev().take(80).collect::<Vec<_>>().join("\n")
                };
                p["status"]["phase"] = json!(if succeeded { "Succeeded" } else { "Failed" });
                p["status"]["containerStatuses"] = container_status(json!({"terminated": {
                    "exitCode": exit.code, "reason": exit.reason, "message": message,
                    "startedAt": finished, "finishedAt": finished}}));
            });
            shared.update(Kind::Job, &job_name, |j| {
                j["status"] = if succeeded {
                    json!({"succeeded": 1, "active": 0, "ready": 0, "completionTime": finished, "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": finished},
                    ]})
                } else {
                    json!({"failed": 1, "active": 0, "ready": 0, "conditions": [
                        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": finished},
                    ]})
                };
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            shared.update(Kind::Job, &job_name, |j| {
                let terminal = if succeeded {
                    json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": finished})
                } else {
                    json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                           "message": "Job has reached the specified backoff limit", "lastTransitionTime": finished})
                };
                j["status"]["conditions"].as_array_mut().unwrap().push(terminal);
            });
        }
        Outcome::DeadlineExceeded => {
            let message = "Job was active longer than specified deadline";
            shared.update(Kind::Job, &job_name, |j| {
                j["status"] = json!({"failed": 1, "active": 0, "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "message": message}]});
            });
            if let Some(pod) = shared.get(Kind::Pod, &pod_name) {
                shared.put(Kind::Pod, "DELETED", pod);
            }
            shared.update(Kind::Job, &job_name, |j| {
                j["status"]["conditions"].as_array_mut().unwrap().push(
                    json!({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": message}),
                );
            });
        }
        Outcome::Deleted => {}
    }
}

struct Exit {
    code: i32,
    reason: &'static str,
    log: String,
}

enum Outcome {
    Exited(Exit),
    DeadlineExceeded,
    Deleted,
}

impl From<Exit> for Outcome {
    fn from(exit: Exit) -> Self {
        Outcome::Exited(exit)
    }
}

async fn wait_for_deadline(deadline: tokio::time::Instant) -> Outcome {
    tokio::time::sleep_until(deadline).await;
    Outcome::DeadlineExceeded
}

fn set_running(shared: &Shared, pod: &str, container_status: &dyn Fn(Value) -> Value) {
    shared.update(Kind::Pod, pod, |p| {
        p["status"]["phase"] = json!("Running");
        p["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]);
        p["status"]["containerStatuses"] = container_status(json!({"running": {"startedAt": now()}}));
    });
}

/// Runs the container's command as the real `runner-host`, with the container's
/// environment and /data mapped to the datasets folder; stdout and stderr form the log.
async fn run_container(shared: &Shared, job_name: &str, container: &Value, deadline: tokio::time::Instant) -> Outcome {
    let args: Vec<String> =
        container["command"].as_array().unwrap().iter().skip(1).map(|a| a.as_str().unwrap().to_string()).collect();
    let mut command = tokio::process::Command::new(workspace_binary("runner-host"));
    command.args(&args).env_clear().env("RUNNER_CACHE_DIR", cache_dir());
    for var in container["env"].as_array().into_iter().flatten() {
        command.env(var["name"].as_str().unwrap(), var["value"].as_str().unwrap_or_default());
    }
    command
        .env("RUNNER_DATA_DIR", &shared.datasets)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command.kill_on_drop(true);
    let child = command.spawn().expect("runner-host starts");
    if let Some(pid) = child.id() {
        shared.lock().processes.insert(job_name.to_string(), pid);
    }
    let output = tokio::select! {
        output = child.wait_with_output() => output.unwrap(),
        _ = tokio::time::sleep_until(deadline) => {
            shared.lock().processes.remove(job_name);
            return Outcome::DeadlineExceeded;
        }
    };
    let still_ours = shared.lock().processes.remove(job_name).is_some();
    if !still_ours || shared.get(Kind::Job, job_name).is_none() {
        return Outcome::Deleted;
    }
    let mut log = String::from_utf8_lossy(&output.stdout).to_string();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    let code = output.status.code().unwrap_or(137);
    Outcome::Exited(Exit { code, reason: if code == 0 { "Completed" } else { "Error" }, log })
}
