//! A Kubernetes API server on loopback, written for the tests: the slice of the
//! REST API the k8s provider uses, and a Job controller, kubelet and TTL controller
//! that *execute* a Job's container by running the real `runner-host exec` with the
//! Job's environment and the datasets folder mapped to `/data`.
//!
//! It behaves as a real API server does where the provider can tell:
//! - Served: `GET /version`; `GET` of namespaces; SelfSubjectAccessReviews; create,
//!   get, list, watch and delete of Jobs; list and watch of Pods and Events; pod logs.
//!   Every route is namespaced: objects live in their namespace, a create in a
//!   namespace that does not exist is a 404, one being deleted a 403.
//! - A create is validated as the API server validates it (422 `Invalid`): the Job
//!   name (a DNS-1123 subdomain, at most 63 characters since the pods' `job-name`
//!   label carries it), label keys and values, resource quantities, environment
//!   variable names, the restart policy.
//! - Watches: from a resourceVersion, the changes after it; without one, the
//!   objects as ADDED; `BOOKMARK` events when asked for (`allowWatchBookmarks`);
//!   closed after `timeoutSeconds`.
//! - Jobs get the conditions a real controller sets (`SuccessCriteriaMet` then
//!   `Complete`; `FailureTarget` then `Failed`), `SuccessfulCreate` Events, pods with
//!   `job-name` labels, phases and container states; a container whose environment
//!   holds a string over 128 KiB fails to start (`StartError`, "argument list too
//!   long"), as with runc on Linux; a finished Job is deleted after its
//!   `ttlSecondsAfterFinished`.
//!
//! Faults, chosen by the runner image's name: `fault/image-pull`,
//! `fault/unschedulable`, `fault/hang` (runs past activeDeadlineSeconds),
//! `fault/oom`, `fault/garbage` (prints no JSON), `fault/warning` (a warning line
//! before the result); or set in [`Faults`]: refused permissions (403), Job creates
//! answered 429/503/504, pods the Job controller cannot create (`FailedCreate`),
//! watches closed or expired (`ERROR` 410 Gone), a lagging log. And
//! [`FakeKube::delete_namespace`], [`FakeKube::go_away`] (the API server stops
//! answering: connections dropped, new ones refused).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::support::{cache_dir, datasets_dir, workspace_binary};

pub const NAMESPACE: &str = "csv-analyst";
/// How often a watch that allows bookmarks gets one (a real API server: about once
/// a minute; often here, so that every test goes through them).
const BOOKMARK_EVERY: Duration = Duration::from_millis(300);
/// Linux's limit on one environment string, `NAME=value` and its NUL (MAX_ARG_STRLEN).
const MAX_ENV_STRING: usize = 128 * 1024;

/// Faults the tests switch on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// `(verb, resource)` pairs answered with 403, e.g. `("create", "jobs")`,
    /// `("get", "pods/log")`, `("watch", "events")`, `("get", "namespaces")`.
    pub forbidden: HashSet<(String, String)>,
    /// Close every watch stream after this many events (the client must resume).
    pub drop_watches_after: Option<usize>,
    /// After this many events, a watch gets an `ERROR` event `410 Gone` (the server's
    /// window moved past it) and is closed: the client must list again.
    pub watch_gone_after: Option<usize>,
    /// Pod logs appear only this long after the container ends.
    pub log_delay: Option<Duration>,
    /// Job creates answered, in turn, with these codes before one succeeds: 429
    /// (API Priority and Fairness, with Retry-After: 1), 503, or 504 (after the Job
    /// was stored, as when the write outlives the request's timeout).
    pub create_refusals: Vec<u16>,
    /// The Job controller cannot create pods (a ResourceQuota, PodSecurity, a missing
    /// service account): it reports `FailedCreate` Events on the Job with this reason.
    pub pod_create_refused: Option<String>,
    /// Job deletes take this long to be answered (a busy API server).
    pub delete_delay: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Job,
    Pod,
    Event,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::Job => "jobs",
            Kind::Pod => "pods",
            Kind::Event => "events",
        }
    }

    fn group(self) -> &'static str {
        if self == Kind::Job { "batch" } else { "" }
    }

    fn api_version(self) -> &'static str {
        if self == Kind::Job { "batch/v1" } else { "v1" }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::Job => "Job",
            Kind::Pod => "Pod",
            Kind::Event => "Event",
        }
    }
}

/// One stored change, as a watch reports it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: Kind,
    namespace: String,
    change_type: &'static str,
    object: Value,
}

/// A request the client made, for tests to check how it watched.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `list`, `watch`, `create`, `get`, `delete`.
    pub verb: String,
    pub resource: String,
    /// The `resourceVersion` a list or watch asked for.
    pub resource_version: Option<String>,
}

#[derive(Default)]
struct Cluster {
    rv: u64,
    /// Namespace name → its object.
    namespaces: BTreeMap<String, Value>,
    objects: BTreeMap<(Kind, String, String), Value>,
    /// (namespace, pod) → log text, and when it may be read.
    logs: BTreeMap<(String, String), (String, tokio::time::Instant)>,
    history: Vec<Change>,
    faults: Faults,
    /// Jobs deleted through the API and the propagation policy each delete asked for.
    deletions: Vec<(String, Option<String>)>,
    /// (namespace, Job) → running container process id (killed on delete or deadline).
    processes: BTreeMap<(String, String), u32>,
    /// The Jobs the client created, in order.
    created: Vec<String>,
    /// Job create requests, refused ones included.
    create_attempts: usize,
    /// Pod name and the log text served, for every non-empty read.
    log_reads: Vec<(String, String)>,
    requests: Vec<Request>,
}

#[derive(Clone)]
struct Shared {
    cluster: Arc<Mutex<Cluster>>,
    changes: broadcast::Sender<Change>,
    datasets: PathBuf,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap()
    }

    /// Stores `object` with a new resourceVersion and tells the watchers, in
    /// resourceVersion order (the broadcast happens under the lock).
    fn put(&self, kind: Kind, namespace: &str, change_type: &'static str, mut object: Value) -> Value {
        let mut cluster = self.lock();
        cluster.rv += 1;
        let rv = cluster.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let key = (kind, namespace.to_string(), name);
        if change_type == "DELETED" {
            cluster.objects.remove(&key);
        } else {
            cluster.objects.insert(key, object.clone());
        }
        let change = Change { rv, kind, namespace: namespace.to_string(), change_type, object: object.clone() };
        cluster.history.push(change.clone());
        let _ = self.changes.send(change);
        object
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.lock().objects.get(&(kind, namespace.to_string(), name.to_string())).cloned()
    }

    /// Applies `change` to a stored object, if it still exists.
    fn update(&self, kind: Kind, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) -> bool {
        let Some(mut object) = self.get(kind, namespace, name) else { return false };
        change(&mut object);
        self.put(kind, namespace, "MODIFIED", object);
        true
    }

    fn record(&self, verb: &str, resource: &str, resource_version: Option<&str>) {
        self.lock().requests.push(Request {
            verb: verb.into(),
            resource: resource.into(),
            resource_version: resource_version.map(str::to_string),
        });
    }

    /// `Some(true)` for a namespace being deleted, `None` for one that does not exist.
    fn namespace_terminating(&self, namespace: &str) -> Option<bool> {
        self.lock().namespaces.get(namespace).map(|ns| ns["status"]["phase"] == "Terminating")
    }

    /// Deletes a Job: kills its container and, unless `Orphan`, its pods.
    fn remove_job(&self, namespace: &str, name: &str, propagation: Option<&str>) {
        let pid = self.lock().processes.remove(&(namespace.to_string(), name.to_string()));
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        if let Some(job) = self.get(Kind::Job, namespace, name) {
            self.put(Kind::Job, namespace, "DELETED", job);
        }
        if propagation != Some("Orphan") {
            let pods: Vec<Value> = self
                .lock()
                .objects
                .iter()
                .filter(|((kind, ns, _), pod)| {
                    *kind == Kind::Pod && ns == namespace && pod["metadata"]["labels"]["job-name"] == json!(name)
                })
                .map(|(_, pod)| pod.clone())
                .collect();
            for pod in pods {
                self.put(Kind::Pod, namespace, "DELETED", pod);
            }
        }
    }
}

/// The fake API server, its kubeconfig, and what it saw.
pub struct FakeKube {
    pub kubeconfig: PathBuf,
    /// The API server's address, as the kubeconfig names it.
    pub url: String,
    shared: Shared,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
    /// Set to true: the API server goes away.
    gone: tokio::sync::watch::Sender<bool>,
}

impl FakeKube {
    pub async fn start(faults: Faults) -> FakeKube {
        // The runner image ships a precompiled guest; here runner-host uses the shared
        // compilation cache, which must be warm before a Job's deadline starts ticking.
        tokio::task::spawn_blocking(crate::support::sandbox).await.unwrap();
        // Jobs run this binary: a missing or stale one fails the test here, not a Job later.
        workspace_binary("runner-host");
        let (changes, _) = broadcast::channel(4096);
        let mut cluster = Cluster { faults, ..Cluster::default() };
        for name in [NAMESPACE, "default"] {
            cluster.namespaces.insert(name.to_string(), namespace_object(name, "Active"));
        }
        let shared = Shared { cluster: Arc::new(Mutex::new(cluster)), changes, datasets: datasets_dir() };
        let app = Router::new()
            .route("/version", get(version))
            .route("/api/v1/namespaces/{ns}", get(get_namespace))
            .route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", post(access_review))
            .route("/apis/batch/v1/namespaces/{ns}/jobs", get(list_jobs).post(create_job))
            .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job).delete(delete_job))
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route("/api/v1/namespaces/{ns}/events", get(list_events))
            .with_state(shared.clone());
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_address = backend.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(backend, app).await.unwrap();
        });
        // Clients reach the server through a proxy, so that it can go away for real:
        // its connections dropped, new ones refused.
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", front.local_addr().unwrap());
        let (gone, gone_receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(proxy(front, backend_address, gone_receiver));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), &url);
        FakeKube { kubeconfig, url, shared, _dir: dir, server, gone }
    }

    /// The Jobs now stored, as `kubectl get jobs -A -o json` lists them.
    pub fn jobs(&self) -> Vec<Value> {
        self.objects(Kind::Job)
    }

    pub fn pods(&self) -> Vec<Value> {
        self.objects(Kind::Pod)
    }

    pub fn events(&self) -> Vec<Value> {
        self.objects(Kind::Event)
    }

    fn objects(&self, kind: Kind) -> Vec<Value> {
        self.shared.lock().objects.iter().filter(|((k, _, _), _)| *k == kind).map(|(_, o)| o.clone()).collect()
    }

    pub fn deletions(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().deletions.clone()
    }

    /// The names of the Jobs the client created, in order.
    pub fn created(&self) -> Vec<String> {
        self.shared.lock().created.clone()
    }

    /// Job create requests, refused ones included.
    pub fn create_attempts(&self) -> usize {
        self.shared.lock().create_attempts
    }

    /// Every non-empty pod log the client read: the pod's name and the text served.
    pub fn log_reads(&self) -> Vec<(String, String)> {
        self.shared.lock().log_reads.clone()
    }

    /// The lists, watches, creates, gets and deletes the client made, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Deletes a namespace as the namespace controller does: marked Terminating,
    /// its Jobs and pods deleted, then the namespace itself.
    pub fn delete_namespace(&self, namespace: &str) {
        self.shared.lock().namespaces.insert(namespace.to_string(), namespace_object(namespace, "Terminating"));
        let jobs: Vec<String> = self
            .shared
            .lock()
            .objects
            .keys()
            .filter(|(kind, ns, _)| *kind == Kind::Job && ns == namespace)
            .map(|(_, _, name)| name.clone())
            .collect();
        for job in jobs {
            self.shared.remove_job(namespace, &job, Some("Background"));
        }
        self.shared.lock().namespaces.remove(namespace);
    }

    /// The API server goes away: open connections are dropped, new ones refused.
    pub fn go_away(&self) {
        let _ = self.gone.send(true);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.gone.send(true);
        self.server.abort();
        for pid in self.shared.lock().processes.values() {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// Forwards connections to `backend` until `gone` turns true; then drops them all
/// and stops listening.
async fn proxy(front: tokio::net::TcpListener, backend: SocketAddr, gone: tokio::sync::watch::Receiver<bool>) {
    let mut stop = gone.clone();
    loop {
        tokio::select! {
            accepted = front.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                let mut gone = gone.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gone.wait_for(|gone| *gone) => {}
                    }
                });
            }
            _ = stop.wait_for(|gone| *gone) => return,
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

fn namespace_object(name: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": format!("uid-ns-{name}")},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}})
}

async fn version() -> Response {
    axum::Json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}))
        .into_response()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    status_with(code, reason, message, Value::Null)
}

fn status_with(code: u16, reason: &str, message: String, details: Value) -> Response {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        body["details"] = details;
    }
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn not_found(kind: Kind, name: &str) -> Response {
    let qualified = if kind.group().is_empty() {
        kind.resource().to_string()
    } else {
        format!("{}.{}", kind.resource(), kind.group())
    };
    status_with(
        404,
        "NotFound",
        format!("{qualified} \"{name}\" not found"),
        json!({"name": name, "group": kind.group(), "kind": kind.resource()}),
    )
}

/// A 403 for `(verb, resource)` if the test refused it.
fn forbidden(shared: &Shared, verb: &str, resource: &str, group: &str, namespace: &str) -> Option<Response> {
    let refused = shared.lock().faults.forbidden.contains(&(verb.to_string(), resource.to_string()));
    refused.then(|| {
        let (qualified, group_text) = if group.is_empty() {
            (resource.to_string(), String::new())
        } else {
            (format!("{resource}.{group}"), format!(" in API group \"{group}\""))
        };
        status(
            403,
            "Forbidden",
            format!(
                "{qualified} is forbidden: User \"system:serviceaccount:{NAMESPACE}:csv-analyst\" cannot {verb} resource \"{resource}\"{group_text} in the namespace \"{namespace}\""
            ),
        )
    })
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

async fn get_namespace(State(shared): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    shared.record("get", "namespaces", None);
    if let Some(refusal) = forbidden(&shared, "get", "namespaces", "", &name) {
        return refusal;
    }
    let found = shared.lock().namespaces.get(&name).cloned();
    match found {
        Some(namespace) => axum::Json(namespace).into_response(),
        None => status_with(
            404,
            "NotFound",
            format!("namespaces \"{name}\" not found"),
            json!({"name": name, "kind": "namespaces"}),
        ),
    }
}

/// `kubectl auth can-i` for the client itself: allowed unless the test refused it.
async fn access_review(State(shared): State<Shared>, axum::Json(mut review): axum::Json<Value>) -> Response {
    if let Some(refusal) = forbidden(&shared, "create", "selfsubjectaccessreviews", "authorization.k8s.io", "") {
        return refusal;
    }
    let attributes = &review["spec"]["resourceAttributes"];
    let verb = attributes["verb"].as_str().unwrap_or_default().to_string();
    let resource = match attributes["subresource"].as_str().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", attributes["resource"].as_str().unwrap_or_default()),
        None => attributes["resource"].as_str().unwrap_or_default().to_string(),
    };
    let allowed = !shared.lock().faults.forbidden.contains(&(verb, resource));
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"csv-analyst\""})
    } else {
        json!({"allowed": false})
    };
    (StatusCode::CREATED, axum::Json(review)).into_response()
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    watch: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
    allow_watch_bookmarks: Option<bool>,
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
    let fields = |key: &str| {
        let value = match key {
            "metadata.name" => &object["metadata"]["name"],
            "metadata.namespace" => &object["metadata"]["namespace"],
            "involvedObject.kind" => &object["involvedObject"]["kind"],
            "involvedObject.name" => &object["involvedObject"]["name"],
            "involvedObject.namespace" => &object["involvedObject"]["namespace"],
            "involvedObject.uid" => &object["involvedObject"]["uid"],
            "reason" => &object["reason"],
            "type" => &object["type"],
            _ => &Value::Null,
        };
        value.as_str().map(str::to_string)
    };
    selector_ok(&query.label_selector, &labels) && selector_ok(&query.field_selector, &fields)
}

async fn list_jobs(
    State(shared): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    list_or_watch(shared, Kind::Job, ns, query).await
}

async fn list_pods(
    State(shared): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    list_or_watch(shared, Kind::Pod, ns, query).await
}

async fn list_events(
    State(shared): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    list_or_watch(shared, Kind::Event, ns, query).await
}

/// Whether a stored object is one a list or watch of namespace `ns` returns.
fn in_scope(ns: &str, query: &ListQuery, namespace: &str, object: &Value) -> bool {
    namespace == ns && matches(object, query)
}

/// A watch event line.
fn watch_line(change_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": change_type, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

async fn list_or_watch(shared: Shared, kind: Kind, ns: String, query: ListQuery) -> Response {
    let watching = matches!(query.watch.as_deref(), Some("true" | "1"));
    let verb = if watching { "watch" } else { "list" };
    shared.record(verb, kind.resource(), query.resource_version.as_deref());
    if let Some(refusal) = forbidden(&shared, verb, kind.resource(), kind.group(), &ns) {
        return refusal;
    }
    if !watching {
        let cluster = shared.lock();
        let items: Vec<Value> = cluster
            .objects
            .iter()
            .filter(|((k, namespace, _), o)| *k == kind && in_scope(&ns, &query, namespace, o))
            .map(|(_, o)| o.clone())
            .collect();
        let body = json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind()),
                          "metadata": {"resourceVersion": cluster.rv.to_string()}, "items": items});
        return axum::Json(body).into_response();
    }

    // Subscribe first, then take the backlog and the resourceVersion it reaches under
    // the lock: every later change comes through the receiver, in order.
    let mut receiver = shared.changes.subscribe();
    let since: u64 = query.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    let (backlog, mut seen_rv, faults) = {
        let cluster = shared.lock();
        let backlog: Vec<(&'static str, Value)> = if since == 0 {
            // No resourceVersion: the current objects, as ADDED.
            cluster
                .objects
                .iter()
                .filter(|((k, namespace, _), o)| *k == kind && in_scope(&ns, &query, namespace, o))
                .map(|(_, o)| ("ADDED", o.clone()))
                .collect()
        } else {
            cluster
                .history
                .iter()
                .filter(|c| c.rv > since && c.kind == kind && in_scope(&ns, &query, &c.namespace, &c.object))
                .map(|c| (c.change_type, c.object.clone()))
                .collect()
        };
        (backlog, cluster.rv, cluster.faults.clone())
    };
    let bookmarks = query.allow_watch_bookmarks == Some(true);
    let timeout = Duration::from_secs(query.timeout_seconds.unwrap_or(300).min(300));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = 0usize;
        // Sends one event; false when the stream must end (a fault, or the client left).
        let mut send = |change_type: &str, object: &Value, seen_rv: u64| -> bool {
            if tx.try_send(Ok(watch_line(change_type, object))).is_err() {
                return false;
            }
            sent += 1;
            if faults.watch_gone_after.is_some_and(|n| sent >= n) {
                let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {since} ({seen_rv})"), "reason": "Expired", "code": 410});
                let _ = tx.try_send(Ok(watch_line("ERROR", &gone)));
                return false;
            }
            faults.drop_watches_after.is_none_or(|n| sent < n)
        };
        for (change_type, object) in &backlog {
            if !send(change_type, object, seen_rv) {
                return;
            }
        }
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            tokio::select! {
                change = receiver.recv() => match change {
                    Ok(change) => {
                        if change.rv <= seen_rv {
                            continue;
                        }
                        seen_rv = change.rv;
                        if change.kind == kind && in_scope(&ns, &query, &change.namespace, &change.object)
                            && !send(change.change_type, &change.object, seen_rv)
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmark.tick(), if bookmarks => {
                    let object = json!({"kind": kind.kind(), "apiVersion": kind.api_version(),
                                        "metadata": {"resourceVersion": seen_rv.to_string()}});
                    if tx.try_send(Ok(watch_line("BOOKMARK", &object))).is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let mut rx = rx;
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn get_job(State(shared): State<Shared>, UrlPath((ns, name)): UrlPath<(String, String)>) -> Response {
    shared.record("get", "jobs", None);
    if let Some(refusal) = forbidden(&shared, "get", "jobs", "batch", &ns) {
        return refusal;
    }
    match shared.get(Kind::Job, &ns, &name) {
        Some(job) => axum::Json(job).into_response(),
        None => not_found(Kind::Job, &name),
    }
}

/// What an overloaded or rate-limiting API server answers.
fn shed(code: u16) -> Response {
    match code {
        429 => {
            let mut response = status_with(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later".into(),
                json!({"retryAfterSeconds": 1}),
            );
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        503 => status(503, "ServiceUnavailable", "the server is currently unable to handle the request".into()),
        504 => status_with(
            504,
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .into(),
            json!({"retryAfterSeconds": 0}),
        ),
        other => status(other, "InternalError", format!("fake refusal {other}")),
    }
}

async fn create_job(
    State(shared): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    axum::Json(mut job): axum::Json<Value>,
) -> Response {
    shared.record("create", "jobs", None);
    if let Some(refusal) = forbidden(&shared, "create", "jobs", "batch", &ns) {
        return refusal;
    }
    let refusal = {
        let mut cluster = shared.lock();
        cluster.create_attempts += 1;
        (!cluster.faults.create_refusals.is_empty()).then(|| cluster.faults.create_refusals.remove(0))
    };
    if let Some(code) = refusal
        && code != 504
    {
        return shed(code);
    }
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    match shared.namespace_terminating(&ns) {
        None => {
            return status_with(
                404,
                "NotFound",
                format!("namespaces \"{ns}\" not found"),
                json!({"name": ns, "kind": "namespaces"}),
            );
        }
        Some(true) => {
            return status(
                403,
                "Forbidden",
                format!(
                    "jobs.batch \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                ),
            );
        }
        Some(false) => {}
    }
    if let Some(body_ns) = job["metadata"]["namespace"].as_str()
        && body_ns != ns
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        );
    }
    let problems = validate_job(&job);
    if !problems.is_empty() {
        let causes: Vec<Value> = problems
            .iter()
            .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
            .collect();
        let text: Vec<String> = problems.iter().map(|(field, message)| format!("{field}: {message}")).collect();
        return status_with(
            422,
            "Invalid",
            format!("Job.batch \"{name}\" is invalid: [{}]", text.join(", ")),
            json!({"name": name, "group": "batch", "kind": "Job", "causes": causes}),
        );
    }
    if shared.get(Kind::Job, &ns, &name).is_some() {
        return status_with(
            409,
            "AlreadyExists",
            format!("jobs.batch \"{name}\" already exists"),
            json!({"name": name, "group": "batch", "kind": "jobs"}),
        );
    }
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(format!("uid-{name}-{}", shared.lock().rv));
    job["metadata"]["creationTimestamp"] = json!(now());
    job["status"] = json!({"active": 1, "startTime": now()});
    shared.lock().created.push(name.clone());
    let stored = shared.put(Kind::Job, &ns, "ADDED", job);
    tokio::spawn(run_job(shared.clone(), ns, name));
    if refusal == Some(504) {
        // Stored, but the answer came too late.
        return shed(504);
    }
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

/// The API server's validation of a Job, as `(field, message)` pairs.
fn validate_job(job: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        problems.push(("metadata.name".into(), "Required value: name or generateName is required".into()));
    } else if !is_dns_subdomain(name) {
        problems.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    } else if name.len() > 63 {
        problems.push(("metadata.name".into(), format!("Invalid value: {name:?}: must be no more than 63 characters")));
    }
    let template = &job["spec"]["template"];
    for (field, labels) in [
        ("metadata.labels", &job["metadata"]["labels"]),
        ("spec.template.metadata.labels", &template["metadata"]["labels"]),
    ] {
        for (key, value) in labels.as_object().into_iter().flatten() {
            if !is_label_key(key) {
                problems.push((field.into(), format!("Invalid value: {key:?}: not a valid label key")));
            }
            match value.as_str() {
                Some(text) if is_label_value(text) => {}
                _ => problems.push((
                    field.to_string(),
                    format!("Invalid value: {value}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)"),
                )),
            }
        }
    }
    let spec = &template["spec"];
    if !matches!(spec["restartPolicy"].as_str(), Some("Never" | "OnFailure")) {
        problems.push((
            "spec.template.spec.restartPolicy".into(),
            "Unsupported value: supported values: \"OnFailure\", \"Never\"".into(),
        ));
    }
    if job["spec"]["activeDeadlineSeconds"].as_i64().is_some_and(|s| s <= 0) {
        problems.push(("spec.activeDeadlineSeconds".into(), "Invalid value: must be greater than 0".into()));
    }
    if job["spec"]["ttlSecondsAfterFinished"].as_i64().is_some_and(|s| s < 0) {
        problems
            .push(("spec.ttlSecondsAfterFinished".into(), "Invalid value: must be greater than or equal to 0".into()));
    }
    for (i, container) in spec["containers"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.template.spec.containers[{i}]");
        if container["image"].as_str().is_none_or(str::is_empty) {
            problems.push((format!("{at}.image"), "Required value".into()));
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let env_name = var["name"].as_str().unwrap_or_default();
            let valid = !env_name.is_empty()
                && !env_name.starts_with(|c: char| c.is_ascii_digit())
                && env_name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            if !valid {
                problems.push((format!("{at}.env.name"), format!("Invalid value: {env_name:?}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")));
            }
        }
        let mut amounts = BTreeMap::new();
        for part in ["limits", "requests"] {
            for (resource, amount) in container["resources"][part].as_object().into_iter().flatten() {
                let text = amount.as_str().map(str::to_string).unwrap_or_else(|| amount.to_string());
                match quantity(&text) {
                    Some(value) if value >= 0.0 => {
                        amounts.insert((part, resource.clone()), value);
                    }
                    _ => problems.push((
                        format!("{at}.resources.{part}[{resource}]"),
                        format!("Invalid value: {text:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
                    )),
                }
            }
        }
        for ((part, resource), request) in &amounts {
            if *part == "requests"
                && let Some(limit) = amounts.get(&("limits", resource.clone()))
                && request > limit
            {
                problems.push((
                    format!("{at}.resources.requests"),
                    format!("Invalid value: must be less than or equal to {resource} limit"),
                ));
            }
        }
    }
    problems
}

/// A DNS-1123 subdomain as the API server checks it: at most 253 characters in all
/// (no limit of its own on each dot-separated part).
fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label_chars)
}

fn is_dns_label_chars(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 63
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text.as_bytes()[text.len() - 1].is_ascii_alphanumeric())
}

fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes quantity's value, or None when the API server would refuse it.
fn quantity(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let end = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(if text.starts_with('-') { -value * factor } else { value * factor })
}

async fn delete_job(
    State(shared): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    shared.record("delete", "jobs", None);
    if let Some(refusal) = forbidden(&shared, "delete", "jobs", "batch", &ns) {
        return refusal;
    }
    let delay = shared.lock().faults.delete_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if shared.get(Kind::Job, &ns, &name).is_none() {
        return not_found(Kind::Job, &name);
    }
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let propagation = options["propagationPolicy"].as_str().map(str::to_string);
    shared.lock().deletions.push((name.clone(), propagation.clone()));
    // Background (and Foreground) propagation remove the Job's pods; Orphan keeps them.
    shared.remove_job(&ns, &name, propagation.as_deref());
    axum::Json(
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "group": "batch", "kind": "jobs"}}),
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
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    if let Some(refusal) = forbidden(&shared, "get", "pods/log", "", &ns) {
        return refusal;
    }
    let entry = shared.lock().logs.get(&(ns.clone(), name.clone())).cloned();
    match entry {
        _ if shared.get(Kind::Pod, &ns, &name).is_none() => not_found(Kind::Pod, &name),
        None => String::new().into_response(),
        Some((_, ready_at)) if tokio::time::Instant::now() < ready_at => String::new().into_response(),
        Some((text, _)) => {
            let limit = query.limit_bytes.unwrap_or(usize::MAX).min(text.len());
            let served = text[..limit].to_string();
            if !served.is_empty() {
                shared.lock().log_reads.push((name.clone(), served.clone()));
            }
            served.into_response()
        }
    }
}

/// Records an Event about the Job, as the Job controller does.
fn job_event(shared: &Shared, ns: &str, job: &Value, event_type: &str, reason: &str, message: String, count: u32) {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let event_name = format!("{name}.{:x}", shared.lock().rv + 1);
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns, "creationTimestamp": now()},
        "involvedObject": {"kind": "Job", "namespace": ns, "name": name, "uid": job["metadata"]["uid"],
                           "apiVersion": "batch/v1", "resourceVersion": job["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": event_type, "count": count,
        "source": {"component": "job-controller"}, "reportingComponent": "job-controller", "reportingInstance": "",
        "firstTimestamp": now(), "lastTimestamp": now(),
    });
    shared.put(Kind::Event, ns, "ADDED", event);
}

/// The Job controller and the kubelet, for one Job.
async fn run_job(shared: Shared, ns: String, job_name: String) {
    let Some(job) = shared.get(Kind::Job, &ns, &job_name) else { return };
    let uid = job["metadata"]["uid"].clone();
    let template = &job["spec"]["template"];
    let container = template["spec"]["containers"][0].clone();
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let deadline_seconds = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(600);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(deadline_seconds);
    let pod_name = format!("{job_name}-{:05x}", shared.lock().rv & 0xfffff);
    let still_ours =
        |shared: &Shared| shared.get(Kind::Job, &ns, &job_name).is_some_and(|j| j["metadata"]["uid"] == uid);

    let refused = shared.lock().faults.pod_create_refused.clone();
    if let Some(reason) = refused {
        // The Job controller retries with backoff and reports each failure as an Event.
        let mut delay = Duration::from_millis(50);
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
            if !still_ours(&shared) {
                return;
            }
            count += 1;
            job_event(
                &shared,
                &ns,
                &job,
                "Warning",
                "FailedCreate",
                format!("Error creating: pods \"{pod_name}\" is forbidden: {reason}"),
                count,
            );
            delay = (delay * 4).min(Duration::from_secs(10));
        }
        if still_ours(&shared) {
            deadline_exceeded(&shared, &ns, &job_name, None);
            after_finish(&shared, &ns, &job_name);
        }
        return;
    }

    let mut labels = template["metadata"]["labels"].clone();
    labels["job-name"] = json!(job_name);
    labels["batch.kubernetes.io/job-name"] = json!(job_name);
    labels["controller-uid"] = uid.clone();
    labels["batch.kubernetes.io/controller-uid"] = uid.clone();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "creationTimestamp": now(),
                     "uid": format!("uid-{pod_name}"),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
                                          "controller": true, "blockOwnerDeletion": true}]},
        "spec": template["spec"],
        "status": {"phase": "Pending", "conditions": []},
    });
    shared.put(Kind::Pod, &ns, "ADDED", pod);
    job_event(&shared, &ns, &job, "Normal", "SuccessfulCreate", format!("Created pod: {pod_name}"), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let container_status = |state: Value| {
        json!([{"name": "runner", "image": image, "imageID": "", "ready": false,
                                                   "restartCount": 0, "state": state}])
    };
    let running = |shared: &Shared| set_running(shared, &ns, &pod_name, &container_status);
    let outcome = if image.contains("fault/image-pull") {
        shared.update(Kind::Pod, &ns, &pod_name, |p| {
            p["status"]["containerStatuses"] = container_status(json!({"waiting": {"reason": "ErrImagePull",
                "message": format!("failed to pull and unpack image \"{image}\": not found")}}));
        });
        wait_for_deadline(deadline).await
    } else if image.contains("fault/unschedulable") {
        shared.update(Kind::Pod, &ns, &pod_name, |p| {
            p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available."}]);
        });
        wait_for_deadline(deadline).await
    } else if let Some(error) = start_error(&container) {
        Exit { code: 128, reason: "StartError", log: String::new(), message: Some(error) }.into()
    } else if image.contains("fault/hang") {
        running(&shared);
        wait_for_deadline(deadline).await
    } else if image.contains("fault/oom") {
        running(&shared);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Exit { code: 137, reason: "OOMKilled", log: String::new(), message: None }.into()
    } else if image.contains("fault/garbage") {
        running(&shared);
        let log = "thread 'main' panicked at src/main.rs:1:1\nnot json\n".to_string();
        Exit { code: 0, reason: "Completed", log, message: None }.into()
    } else {
        running(&shared);
        match run_container(&shared, &ns, &job_name, &container, deadline).await {
            Outcome::Exited(mut exit) if image.contains("fault/warning") => {
                exit.log =
                    format!("runner-host: warning: the module cache is read-only; compiling in memory\n{}", exit.log);
                Outcome::Exited(exit)
            }
            other => other,
        }
    };

    let finished = now();
    match outcome {
        Outcome::Exited(exit) => {
            if !still_ours(&shared) {
                return;
            }
            let log_delay = shared.lock().faults.log_delay.unwrap_or_default();
            shared
                .lock()
                .logs
                .insert((ns.clone(), pod_name.clone()), (exit.log.clone(), tokio::time::Instant::now() + log_delay));
            let succeeded = exit.code == 0;
            shared.update(Kind::Pod, &ns, &pod_name, |p| {
                // terminationMessagePolicy FallbackToLogsOnError: the log's tail when it failed.
                let message = exit.message.clone().unwrap_or_else(|| {
                    if succeeded {
                        String::new()
                    } else {
                        exit.log.lines().rev().take(80).collect::<Vec<_>>().join("\n")
                    }
                });
                p["status"]["phase"] = json!(if succeeded { "Succeeded" } else { "Failed" });
                p["status"]["containerStatuses"] = container_status(json!({"terminated": {
                    "exitCode": exit.code, "reason": exit.reason, "message": message,
                    "startedAt": finished, "finishedAt": finished}}));
            });
            shared.update(Kind::Job, &ns, &job_name, |j| {
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
            shared.update(Kind::Job, &ns, &job_name, |j| {
                let terminal = if succeeded {
                    json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": finished})
                } else {
                    json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                           "message": "Job has reached the specified backoff limit", "lastTransitionTime": finished})
                };
                j["status"]["conditions"].as_array_mut().unwrap().push(terminal);
            });
            after_finish(&shared, &ns, &job_name);
        }
        Outcome::DeadlineExceeded => {
            if still_ours(&shared) {
                deadline_exceeded(&shared, &ns, &job_name, Some(&pod_name));
                after_finish(&shared, &ns, &job_name);
            }
        }
        Outcome::Deleted => {}
    }
}

/// The Job controller when activeDeadlineSeconds passes: the pod killed, the Job Failed.
fn deadline_exceeded(shared: &Shared, ns: &str, job_name: &str, pod_name: Option<&str>) {
    let message = "Job was active longer than specified deadline";
    shared.update(Kind::Job, ns, job_name, |j| {
        j["status"] = json!({"failed": 1, "active": 0, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "message": message}]});
    });
    if let Some(pod) = pod_name.and_then(|name| shared.get(Kind::Pod, ns, name)) {
        shared.put(Kind::Pod, ns, "DELETED", pod);
    }
    shared.update(Kind::Job, ns, job_name, |j| {
        j["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": message}));
    });
}

/// The TTL controller: a finished Job is deleted `ttlSecondsAfterFinished` later.
fn after_finish(shared: &Shared, ns: &str, job_name: &str) {
    let Some(job) = shared.get(Kind::Job, ns, job_name) else { return };
    let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_u64() else { return };
    let (shared, ns, job_name, uid) =
        (shared.clone(), ns.to_string(), job_name.to_string(), job["metadata"]["uid"].clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(ttl)).await;
        if shared.get(Kind::Job, &ns, &job_name).is_some_and(|j| j["metadata"]["uid"] == uid) {
            shared.remove_job(&ns, &job_name, Some("Background"));
        }
    });
}

struct Exit {
    code: i32,
    reason: &'static str,
    log: String,
    /// The termination message, when it is not the log's tail.
    message: Option<String>,
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

/// What runc answers for a container whose command line or environment holds a
/// string Linux refuses (over 128 KiB): the process never starts.
fn start_error(container: &Value) -> Option<String> {
    let command = container["command"][0].as_str().unwrap_or_default();
    let too_long = container["env"].as_array().into_iter().flatten().any(|var| {
        let name = var["name"].as_str().unwrap_or_default();
        let value = var["value"].as_str().unwrap_or_default();
        name.len() + 1 + value.len() + 1 > MAX_ENV_STRING
    }) || container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .any(|arg| arg.as_str().unwrap_or_default().len() + 1 > MAX_ENV_STRING);
    too_long.then(|| {
        format!(
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create \
             failed: unable to start container process: exec: \"{command}\": argument list too long: unknown"
        )
    })
}

async fn wait_for_deadline(deadline: tokio::time::Instant) -> Outcome {
    tokio::time::sleep_until(deadline).await;
    Outcome::DeadlineExceeded
}

fn set_running(shared: &Shared, ns: &str, pod: &str, container_status: &dyn Fn(Value) -> Value) {
    shared.update(Kind::Pod, ns, pod, |p| {
        p["status"]["phase"] = json!("Running");
        p["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]);
        p["status"]["containerStatuses"] = container_status(json!({"running": {"startedAt": now()}}));
    });
}

/// Runs the container's command as the real `runner-host`, with the container's
/// environment and /data mapped to the datasets folder; stdout and stderr form the log.
async fn run_container(
    shared: &Shared,
    ns: &str,
    job_name: &str,
    container: &Value,
    deadline: tokio::time::Instant,
) -> Outcome {
    let args: Vec<String> =
        container["command"].as_array().unwrap().iter().skip(1).map(|a| a.as_str().unwrap().to_string()).collect();
    let mut command = tokio::process::Command::new(workspace_binary("runner-host"));
    command.args(&args).env_clear().env("RUNNER_CACHE_DIR", cache_dir());
    for var in container["env"].as_array().into_iter().flatten() {
        command.env(var["name"].as_str().unwrap(), var["value"].as_str().unwrap_or_default());
    }
    // The root filesystem is read-only: a scratch directory is writable only where a
    // volume (the Job's emptyDir) is mounted; it is this container's own and goes
    // with it.
    let scratch = tempfile::tempdir().unwrap();
    let spill_dir = container["env"].as_array().into_iter().flatten().find(|v| v["name"] == "RUN_SPILL_DIR");
    if let Some(path) = spill_dir.and_then(|v| v["value"].as_str()) {
        let mounted = container["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == path);
        let host = if mounted { scratch.path().to_path_buf() } else { "/proc/read-only-root/scratch".into() };
        command.env("RUN_SPILL_DIR", host);
    }
    command
        .env("RUNNER_DATA_DIR", &shared.datasets)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command.kill_on_drop(true);
    let key = (ns.to_string(), job_name.to_string());
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("OCI runtime create failed: unable to start container process: {e}: unknown");
            return Exit { code: 128, reason: "StartError", log: String::new(), message: Some(message) }.into();
        }
    };
    if let Some(pid) = child.id() {
        shared.lock().processes.insert(key.clone(), pid);
    }
    let output = tokio::select! {
        output = child.wait_with_output() => output.unwrap(),
        _ = tokio::time::sleep_until(deadline) => {
            shared.lock().processes.remove(&key);
            return Outcome::DeadlineExceeded;
        }
    };
    let still_ours = shared.lock().processes.remove(&key).is_some();
    if !still_ours || shared.get(Kind::Job, ns, job_name).is_none() {
        return Outcome::Deleted;
    }
    let mut log = String::from_utf8_lossy(&output.stdout).to_string();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    let code = output.status.code().unwrap_or(137);
    Outcome::Exited(Exit { code, reason: if code == 0 { "Completed" } else { "Error" }, log, message: None })
}
