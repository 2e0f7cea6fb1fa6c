//! The Kubernetes provider: one Job per run.
//!
//! For each run: refuse a request too large to travel in the container's environment
//! ([`job::check_request_size`]), create the Job ([`job::build`]; 429, 503 and 504 are
//! retried with backoff within the run's timeout), follow it ([`follow`]) until it is
//! Complete or Failed, read the runner's result line from the pod log, and let
//! [`cleanup::JobCleanup`] delete the Job unless it finished and may stay for its TTL.
//!
//! Every way this can go wrong ends the run once, with a clear error, and no Job
//! left running (see [`follow`] for the list). The run's concurrency permit is held
//! until the Job is gone.
//!
//! [`settings::validate`] checks the `K8S_*` settings at start-up; [`job_namespace`]
//! is the namespace Jobs go to (what `render-job` prints too).

pub mod cleanup;
pub mod follow;
pub mod job;
pub mod settings;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config as KubeConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use protocol::{ErrorType, RunRequest, RunResult};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

pub use settings::validate;

use super::execution::Execution;
use crate::config::{Config, K8sConfig};
use crate::datasets::DataRoot;
use crate::error::chain;

/// How long `/readyz` waits for the API server's answers.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to keep following a Job after its own deadline for it to be marked Failed.
const DEADLINE_SLACK: Duration = Duration::from_secs(15);
/// The codes with which an API server sheds load (API Priority and Fairness: 429;
/// overloaded or restarting: 503; timed out: 504): a create is retried on them.
const RETRIED_CREATE_CODES: [u16; 3] = [429, 503, 504];
/// Where a pod finds its namespace.
const IN_CLUSTER_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What the provider needs to be allowed in its namespace; `/readyz` asks the API
/// server about each (a SelfSubjectAccessReview): `(verb, API group, resource,
/// subresource)`.
const REQUIRED_PERMISSIONS: [(&str, &str, &str, &str); 9] = [
    ("create", "batch", "jobs", ""),
    ("list", "batch", "jobs", ""),
    ("watch", "batch", "jobs", ""),
    ("delete", "batch", "jobs", ""),
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("get", "", "pods", "log"),
    ("list", "", "events", ""),
    ("watch", "", "events", ""),
];

/// The provider's metrics (`csv_analyst_k8s_job_create_errors_total`,
/// `csv_analyst_k8s_pod_start_seconds`), shared with the service's registry.
#[derive(Clone)]
pub struct K8sMetrics {
    pub job_create_errors: Counter,
    pub pod_start: Histogram,
}

pub struct K8sProvider {
    client: Client,
    namespace: String,
    /// The API server's address, for messages.
    api_url: String,
    config: Config,
    metrics: OnceLock<K8sMetrics>,
}

/// Where the Kubernetes configuration comes from: one decision for [`K8sProvider::connect`]
/// and [`job_namespace`], so that both agree.
enum KubeSource {
    /// Kubeconfig files, merged as kubectl merges them; `from` names them for messages.
    Kubeconfig { file: Box<Kubeconfig>, from: String },
    /// The pod's service account.
    InCluster { kubeconfig_error: String },
}

impl KubeSource {
    /// KUBECONFIG (a list of files, like kubectl's) when set, else `~/.kube/config`
    /// when it exists, else the in-cluster service account.
    fn of(config: &K8sConfig) -> Result<KubeSource, String> {
        match &config.kubeconfig {
            Some(list) => {
                let file = read_kubeconfigs(list)?;
                Ok(KubeSource::Kubeconfig { file: Box::new(file), from: format!("KUBECONFIG={}", list.display()) })
            }
            None => match Kubeconfig::read() {
                Ok(file) => Ok(KubeSource::Kubeconfig { file: Box::new(file), from: "~/.kube/config".to_string() }),
                Err(e) => Ok(KubeSource::InCluster { kubeconfig_error: e.to_string() }),
            },
        }
    }
}

/// Reads and merges the kubeconfig files of a `:`-separated list as kubectl does:
/// empty entries and files that do not exist are skipped; for every entry (context,
/// cluster, user, current-context) the first file that sets it wins.
fn read_kubeconfigs(list: &Path) -> Result<Kubeconfig, String> {
    let paths: Vec<_> = std::env::split_paths(list.as_os_str()).filter(|p| !p.as_os_str().is_empty()).collect();
    let mut merged: Option<Kubeconfig> = None;
    for path in paths.iter().filter(|p| p.exists()) {
        let file =
            Kubeconfig::read_from(path).map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
        merged = Some(match merged {
            None => file,
            Some(first) => {
                first.merge(file).map_err(|e| format!("cannot merge the kubeconfig {}: {e}", path.display()))?
            }
        });
    }
    merged.ok_or_else(|| format!("KUBECONFIG={}: no such file", list.display()))
}

/// The namespace runner Jobs are created in: K8S_NAMESPACE, else the current
/// context's namespace of the kubeconfig (`default` when it names none), else the
/// pod's own namespace in a cluster. `render-job` prints Jobs for it.
pub fn job_namespace(config: &K8sConfig) -> Result<String, String> {
    if let Some(namespace) = &config.k8s_namespace {
        return Ok(namespace.clone());
    }
    match KubeSource::of(config)? {
        KubeSource::Kubeconfig { file, from } => {
            let current = file.current_context.clone();
            let context = file
                .contexts
                .iter()
                .find(|c| Some(&c.name) == current.as_ref())
                .and_then(|c| c.context.as_ref())
                .ok_or_else(|| format!("{from} has no current context; set K8S_NAMESPACE"))?;
            Ok(context.namespace.clone().unwrap_or_else(|| "default".to_string()))
        }
        KubeSource::InCluster { kubeconfig_error } => {
            std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE).map(|text| text.trim().to_string()).map_err(|_| {
                format!(
                    "no Kubernetes configuration (no kubeconfig: {kubeconfig_error}; not in a pod); set K8S_NAMESPACE"
                )
            })
        }
    }
}

impl K8sProvider {
    /// Connects with KUBECONFIG (several files separated by `:` are merged as kubectl
    /// merges them), `~/.kube/config`, or the in-cluster service account. An
    /// unreachable API server is not an error here: `/readyz` reports it.
    pub async fn connect(config: &Config) -> anyhow::Result<K8sProvider> {
        let mut kube_config = match KubeSource::of(&config.k8s).map_err(anyhow::Error::msg)? {
            KubeSource::Kubeconfig { file, from } => {
                KubeConfig::from_custom_kubeconfig(*file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("{from} is not usable: {e}"))?
            }
            KubeSource::InCluster { kubeconfig_error } => KubeConfig::incluster().map_err(|e| {
                anyhow::anyhow!(
                    "SANDBOX_PROVIDER=k8s needs a Kubernetes configuration: no kubeconfig ({kubeconfig_error}), \
                     and not in a pod ({e})"
                )
            })?,
        };
        // The client's own retry layer would retry a 429 for minutes, whatever the
        // run's deadline; the provider retries what it sends within each run's.
        kube_config.default_retry = false;
        let namespace = config.k8s.k8s_namespace.clone().unwrap_or_else(|| kube_config.default_namespace.clone());
        let api_url = kube_config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(kube_config)?;
        tracing::info!(namespace = %namespace, api = %api_url, image = %config.k8s.runner_image, "Kubernetes provider configured");
        Ok(K8sProvider { client, namespace, api_url, config: config.clone(), metrics: OnceLock::new() })
    }

    /// Counts create errors and pod start times in the service's metrics (once;
    /// until then they are not recorded).
    pub fn use_metrics(&self, metrics: K8sMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Ready when runs can work: the API server answers, the namespace exists, and
    /// the service account may do what runs need there. The answer says which.
    pub async fn readiness(&self) -> Result<String, String> {
        match tokio::time::timeout(READINESS_TIMEOUT, self.check_readiness()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "the Kubernetes API server {} did not answer within {} s",
                self.api_url,
                READINESS_TIMEOUT.as_secs()
            )),
        }
    }

    async fn check_readiness(&self) -> Result<String, String> {
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| format!("the Kubernetes API server {} is unreachable: {}", self.api_url, chain(&e)))?;
        let namespace = &self.namespace;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.get_opt(namespace).await {
            Ok(Some(found)) if found.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating") => {
                return Err(format!("namespace {namespace} (K8S_NAMESPACE) is being deleted"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!(
                    "namespace {namespace} (K8S_NAMESPACE) does not exist; create it, or point K8S_NAMESPACE at the \
                     namespace the chart's Role is in"
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(format!(
                    "the service account may not read namespace {namespace} to check that it exists (403 Forbidden: \
                     {}); it needs RBAC verb \"get\" on \"namespaces\" there (the chart's Role grants it)",
                    status.message
                ));
            }
            Err(e) => return Err(format!("cannot read namespace {namespace}: {}", chain(&e))),
        }
        let answers = futures::future::join_all(REQUIRED_PERMISSIONS.iter().map(|p| self.may(*p))).await;
        let mut refused = Vec::new();
        for ((verb, group, resource, subresource), answer) in REQUIRED_PERMISSIONS.iter().zip(answers) {
            match answer {
                Ok(true) => {}
                Ok(false) => refused.push(format!("{verb} {}", resource_name(group, resource, subresource))),
                Err(e) => {
                    return Err(format!(
                        "cannot ask the Kubernetes API what the service account may do (SelfSubjectAccessReview): {}",
                        chain(&e)
                    ));
                }
            }
        }
        if !refused.is_empty() {
            return Err(format!(
                "the service account may not {} in namespace {namespace} (RBAC); the chart's Role grants what runs need",
                refused.join(", ")
            ));
        }
        Ok(format!(
            "Kubernetes API reachable ({}), namespace {namespace} exists, the service account may create, watch and \
             delete Jobs, watch pods and events, and read pod logs there; runner image {}",
            version.git_version, self.config.k8s.runner_image
        ))
    }

    /// Whether this service account may `verb` the resource in its namespace.
    async fn may(&self, (verb, group, resource, subresource): (&str, &str, &str, &str)) -> Result<bool, kube::Error> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.clone()),
                    verb: Some(verb.to_string()),
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = reviews.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Runner Jobs read uploads from K8S_UPLOADS_PVC, the volume the service writes
    /// UPLOADS_DIR to.
    pub fn uploads_supported(&self) -> Result<(), String> {
        match self.config.k8s.k8s_uploads_pvc {
            Some(_) => Ok(()),
            None => Err("uploads need K8S_UPLOADS_PVC: the volume UPLOADS_DIR is on, which runner Jobs mount".into()),
        }
    }

    /// Runs `request` as a Job. `permit` is the run's concurrency slot: it is
    /// released when the Job is gone, or finished and kept for its TTL — on every
    /// path, a dropped future included.
    pub async fn run(
        &self,
        run_id: &str,
        request: RunRequest,
        root: DataRoot,
        permit: OwnedSemaphorePermit,
    ) -> Execution {
        if let Err(message) = job::check_request_size(&request) {
            return Execution { result: RunResult::failure(ErrorType::InvalidRequest, message), job_name: None };
        }
        if root == DataRoot::Uploads
            && let Err(message) = self.uploads_supported()
        {
            return Execution { result: RunResult::failure(ErrorType::SandboxError, message), job_name: None };
        }
        let name = job::job_name(run_id);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let spec = job::build(&self.config, &self.namespace, run_id, &request, root);
        let started = Instant::now();
        let job_deadline =
            Duration::from_secs(spec.spec.as_ref().and_then(|s| s.active_deadline_seconds).unwrap_or(0).max(0) as u64);
        // Creation is retried for up to the run's timeout.
        let budget = Duration::from_millis(request.timeout_ms);
        // From the create request on, a Job may exist: every way out goes through `cleanup`.
        let retry_until = started + budget + job_deadline + DEADLINE_SLACK;
        let cleanup = cleanup::JobCleanup::new(jobs.clone(), name.clone(), permit, retry_until);
        let created = match self.create(&jobs, &spec, run_id, started + budget).await {
            Ok(created) => created,
            Err(e) => {
                if let Some(metrics) = self.metrics.get() {
                    metrics.job_create_errors.inc();
                }
                let may_exist = !nothing_created(&e);
                if may_exist {
                    cleanup.delete().await;
                } else {
                    cleanup.release();
                }
                let result = match &e {
                    kube::Error::Api(status) if RETRIED_CREATE_CODES.contains(&status.code) => RunResult::failure(
                        ErrorType::SandboxError,
                        format!(
                            "the Kubernetes API server kept refusing to create the run's Job for {:.1} s, within the \
                             run's {:.1} s timeout ({} {}: {})",
                            started.elapsed().as_secs_f64(),
                            budget.as_secs_f64(),
                            status.code,
                            status.reason,
                            status.message
                        ),
                    ),
                    other => self.api_failure("create", "jobs.batch", other),
                };
                // A Job that may have been created (and is being deleted) is named.
                return Execution { result, job_name: may_exist.then_some(name) };
            }
        };
        // The Job's clocks (activeDeadlineSeconds, the pod's start) run from its creation.
        let followed = self.follow(&created, run_id, &request, Instant::now()).await;
        if followed.finished && !self.config.k8s.k8s_delete_jobs {
            cleanup.keep();
        } else {
            cleanup.delete().await;
        }
        Execution { result: followed.result, job_name: Some(name) }
    }

    /// Creates the Job, retrying 429, 503 and 504 with backoff (and the server's
    /// Retry-After) until `retry_until`. A 409 for a Job of this run (an earlier
    /// attempt that did create it) is the Job.
    async fn create(
        &self,
        jobs: &Api<Job>,
        spec: &Job,
        run_id: &str,
        retry_until: Instant,
    ) -> Result<Job, kube::Error> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(4))
            .with_jitter()
            .without_max_times();
        let params = PostParams::default();
        let created = (|| jobs.create(&params, spec))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, kube::Error::Api(s) if RETRIED_CREATE_CODES.contains(&s.code)))
            .adjust(|e, delay| {
                let server_asks = match e {
                    kube::Error::Api(s) => s.details.as_ref().map_or(0, |d| d.retry_after_seconds),
                    _ => 0,
                };
                let delay = delay?.max(Duration::from_secs(server_asks.into()));
                (Instant::now() + delay < retry_until).then_some(delay)
            })
            .notify(|e, delay| tracing::info!(error = %e, ?delay, "the API server shed the Job's creation; retrying"))
            .await;
        match created {
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = jobs.get(spec.metadata.name.as_deref().unwrap_or_default()).await?;
                let owner = existing.metadata.annotations.as_ref().and_then(|a| a.get(job::RUN_ID_KEY));
                if owner.map(String::as_str) == Some(run_id) { Ok(existing) } else { Err(kube::Error::Api(status)) }
            }
            other => other,
        }
    }

    /// A run error for a refused or failed API call; a 403 names the permission.
    fn api_failure(&self, verb: &str, resource: &str, error: &kube::Error) -> RunResult {
        let message = match error {
            kube::Error::Api(status) if status.code == 403 => format!(
                "Kubernetes refused the orchestrator permission to {verb} {resource} in namespace {} (403 Forbidden: {}); \
                 its service account needs RBAC verb \"{verb}\" on \"{resource}\" (the chart's Role grants it)",
                self.namespace, status.message
            ),
            kube::Error::Api(status) if status.code == 401 => {
                format!("the Kubernetes API did not accept the orchestrator's credentials (401): {}", status.message)
            }
            kube::Error::Api(status) => format!(
                "the Kubernetes API refused to {verb} {resource} ({} {}): {}",
                status.code, status.reason, status.message
            ),
            other => format!(
                "the Kubernetes API server {} cannot be reached to {verb} {resource}: {}",
                self.api_url,
                chain(other)
            ),
        };
        RunResult::failure(ErrorType::SandboxError, message)
    }
}

/// `jobs.batch`, `pods/log`, `events`: a resource as RBAC rules and messages name it.
fn resource_name(group: &str, resource: &str, subresource: &str) -> String {
    match (group, subresource) {
        ("", "") => resource.to_string(),
        ("", sub) => format!("{resource}/{sub}"),
        (group, "") => format!("{resource}.{group}"),
        (group, sub) => format!("{resource}/{sub}.{group}"),
    }
}

/// Whether a failed create certainly created nothing of this run's: the API server
/// answered with a client error (refused, invalid, forbidden, throttled before
/// handling; a 409 here is another run's Job, which must not be deleted), or the
/// connection was refused before anything was sent. Otherwise (a 5xx, a connection
/// lost mid-request) the Job may exist.
fn nothing_created(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => (400..500).contains(&status.code) && status.code != 408,
        other => connection_refused(other),
    }
}

/// Whether the error is a refused TCP connection (no request was sent).
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_named_as_rbac_names_them() {
        assert_eq!(resource_name("batch", "jobs", ""), "jobs.batch");
        assert_eq!(resource_name("", "pods", "log"), "pods/log");
        assert_eq!(resource_name("", "events", ""), "events");
    }

    #[test]
    fn only_client_errors_and_refused_connections_prove_nothing_was_created() {
        let api = |code: u16| kube::Error::Api(kube::core::Status::failure("x", "y").with_code(code).boxed());
        assert!(nothing_created(&api(403)));
        assert!(nothing_created(&api(422)));
        assert!(nothing_created(&api(429)));
        assert!(nothing_created(&api(409)), "a 409 left after adoption is another run's Job");
        assert!(!nothing_created(&api(500)));
        assert!(!nothing_created(&api(503)));
        assert!(!nothing_created(&api(504)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(connection_refused(&refused));
        assert!(!connection_refused(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
    }

    #[test]
    fn a_kubeconfig_list_is_merged_as_kubectl_merges_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("contexts");
        std::fs::write(
            &first,
            "apiVersion: v1\nkind: Config\ncurrent-context: work\ncontexts:\n- name: work\n  context:\n    \
             cluster: c\n    user: u\n    namespace: analysts\n",
        )
        .unwrap();
        let second = dir.path().join("clusters");
        std::fs::write(
            &second,
            "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: c\n  cluster:\n    \
             server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: t\n",
        )
        .unwrap();
        let missing = dir.path().join("absent");
        let list = std::env::join_paths([&missing, &first, &second]).unwrap();
        let mut config = Config::without_env().k8s;
        config.kubeconfig = Some(list.into());
        let merged = read_kubeconfigs(config.kubeconfig.as_ref().unwrap()).unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("work"), "the first file to set it wins");
        assert_eq!(merged.clusters.len(), 1);
        assert_eq!(merged.auth_infos.len(), 1);
        assert_eq!(job_namespace(&config), Ok("analysts".to_string()));
        config.k8s_namespace = Some("explicit".into());
        assert_eq!(job_namespace(&config), Ok("explicit".to_string()));

        config.k8s_namespace = None;
        config.kubeconfig = Some(missing.clone());
        assert_eq!(job_namespace(&config), Err(format!("KUBECONFIG={}: no such file", missing.display())));
    }
}
