//! The Kubernetes provider: one Job per run.
//!
//! For each run: create the Job ([`job::build`]), watch it and its pod until the Job
//! is Complete or Failed (the stock `is_job_completed` never matches a failed Job),
//! read the runner's one JSON line from the pod log, and delete the Job if
//! `K8S_DELETE_JOBS` asks for it (otherwise `ttlSecondsAfterFinished` does).
//!
//! Every way this can go wrong ends the run with a clear error, never a hung
//! request:
//! - the image cannot be pulled → `SANDBOX_ERROR` as soon as the pod says so;
//! - the pod cannot be scheduled, or does not start in K8S_POD_START_TIMEOUT_SECONDS
//!   → `SANDBOX_ERROR` with the scheduler's message;
//! - the Job's deadline passes → `TIMEOUT`; the container is OOM-killed → `MEMORY_LIMIT`;
//! - the runner prints anything but one JSON result line → `SANDBOX_ERROR`;
//! - the API refuses (403 names the missing RBAC permission) or cannot be reached →
//!   `SANDBOX_ERROR`; a dropped watch is resumed.

pub mod job;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config as KubeConfig};
use protocol::{ErrorType, RunRequest, RunResult};
use tokio::time::Instant;

use super::Execution;
use crate::config::Config;

/// How long `/readyz` waits for the API server.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to keep waiting after the Job's own deadline for it to be marked Failed.
const DEADLINE_SLACK: Duration = Duration::from_secs(15);
/// Attempts, and the pause between them, to read a log that lags the completion.
const LOG_ATTEMPTS: u32 = 10;
const LOG_RETRY: Duration = Duration::from_millis(300);
/// Log bytes read beyond max_output_bytes (the result's envelope).
const LOG_ENVELOPE_BYTES: u64 = 256 * 1024;
/// Container waiting reasons that mean the image will not start.
const IMAGE_FAILURES: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

pub struct K8sProvider {
    client: Client,
    namespace: String,
    config: Config,
}

impl K8sProvider {
    /// Connects with the in-cluster configuration, or the local kubeconfig
    /// (`KUBECONFIG`, `~/.kube/config`). An unreachable API server is not an error
    /// here: `/readyz` reports it.
    pub async fn connect(config: &Config) -> anyhow::Result<K8sProvider> {
        let kube_config = match &config.k8s.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| anyhow::anyhow!("cannot read KUBECONFIG={}: {e}", path.display()))?;
                KubeConfig::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("KUBECONFIG={} is not usable: {e}", path.display()))?
            }
            None => KubeConfig::infer().await.map_err(|e| {
                anyhow::anyhow!(
                    "SANDBOX_PROVIDER=k8s needs a Kubernetes configuration (in-cluster service account, KUBECONFIG or ~/.kube/config): {e}"
                )
            })?,
        };
        let namespace = config.k8s.k8s_namespace.clone().unwrap_or_else(|| kube_config.default_namespace.clone());
        let client = Client::try_from(kube_config)?;
        tracing::info!(namespace = %namespace, image = %config.k8s.runner_image, "Kubernetes provider configured");
        Ok(K8sProvider { client, namespace, config: config.clone() })
    }

    pub async fn readiness(&self) -> Result<String, String> {
        match tokio::time::timeout(READINESS_TIMEOUT, self.client.apiserver_version()).await {
            Ok(Ok(info)) => Ok(format!(
                "Kubernetes API reachable ({}), namespace {}, runner image {}",
                info.git_version, self.namespace, self.config.k8s.runner_image
            )),
            Ok(Err(e)) => Err(format!("the Kubernetes API server is unreachable: {}", chain(&e))),
            Err(_) => Err(format!("the Kubernetes API server did not answer within {} s", READINESS_TIMEOUT.as_secs())),
        }
    }

    pub async fn run(&self, run_id: &str, request: RunRequest) -> Execution {
        let name = job::job_name(run_id);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let spec = job::build(&self.config, &self.namespace, run_id, &request);
        let result = match jobs.create(&PostParams::default(), &spec).await {
            Err(e) => return Execution { result: self.api_failure("create", "jobs.batch", &e), job_name: None },
            Ok(_) => self.follow(&jobs, &pods, &name, run_id, &request).await,
        };
        if self.config.k8s.k8s_delete_jobs {
            match jobs.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::debug!(job = %name, "deleted the run's Job"),
                Err(e) => tracing::warn!(job = %name, error = %e, "cannot delete the run's Job; its TTL will"),
            }
        }
        Execution { result, job_name: Some(name) }
    }

    /// Watches the Job and its pod until there is a result.
    async fn follow(
        &self,
        jobs: &Api<Job>,
        pods: &Api<Pod>,
        name: &str,
        run_id: &str,
        request: &RunRequest,
    ) -> RunResult {
        let selector = format!("{}={}", job::RUN_ID_KEY, run_id);
        let job_deadline =
            Duration::from_secs((request.timeout_ms.div_ceil(1000) as i64 + self.grace_seconds()) as u64);
        let deadline = Instant::now() + job_deadline + DEADLINE_SLACK;
        let start_deadline = Instant::now() + Duration::from_secs(self.config.k8s.k8s_pod_start_timeout_seconds);

        let job_events = watcher(jobs.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")))
            .default_backoff()
            .applied_objects();
        let pod_events =
            watcher(pods.clone(), watcher::Config::default().labels(&selector)).default_backoff().applied_objects();
        futures::pin_mut!(job_events, pod_events);
        let mut started = false;
        let mut waiting_for = String::from("no pod yet");

        loop {
            tokio::select! {
                event = job_events.next() => match event {
                    Some(Ok(job)) => {
                        if let Some(outcome) = JobOutcome::of(&job) {
                            return self.collect(pods, &selector, outcome, request).await;
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(failure) = self.watch_failure(&e, "jobs.batch") {
                            return failure;
                        }
                        tracing::warn!(job = %name, error = %e, "the Job watch failed; resuming");
                    }
                    None => return RunResult::failure(ErrorType::SandboxError, "the Job watch ended unexpectedly"),
                },
                event = pod_events.next() => match event {
                    Some(Ok(pod)) => match PodState::of(&pod) {
                        PodState::ImageFailed(message) => {
                            return RunResult::failure(ErrorType::SandboxError, format!(
                                "the runner image {} cannot start: {message}", self.config.k8s.runner_image
                            ));
                        }
                        PodState::Unschedulable(message) => waiting_for = format!("the pod cannot be scheduled: {message}"),
                        PodState::Pending(reason) => waiting_for = reason,
                        PodState::Started => started = true,
                    },
                    Some(Err(e)) => {
                        if let Some(failure) = self.watch_failure(&e, "pods") {
                            return failure;
                        }
                        tracing::warn!(job = %name, error = %e, "the pod watch failed; resuming");
                    }
                    None => return RunResult::failure(ErrorType::SandboxError, "the pod watch ended unexpectedly"),
                },
                _ = tokio::time::sleep_until(start_deadline), if !started => {
                    return RunResult::failure(ErrorType::SandboxError, format!(
                        "the runner pod did not start within {} s (K8S_POD_START_TIMEOUT_SECONDS): {waiting_for}",
                        self.config.k8s.k8s_pod_start_timeout_seconds
                    ));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return RunResult::failure(ErrorType::Timeout, format!(
                        "the Job {name} did not finish within {} s", job_deadline.as_secs()
                    ));
                }
            }
        }
    }

    /// The result of a finished Job.
    async fn collect(&self, pods: &Api<Pod>, selector: &str, outcome: JobOutcome, request: &RunRequest) -> RunResult {
        let pod = match pods.list(&ListParams::default().labels(selector)).await {
            Ok(list) => list.items.into_iter().max_by_key(|p| p.metadata.creation_timestamp.clone()),
            Err(e) => return self.api_failure("list", "pods", &e),
        };
        match outcome {
            JobOutcome::Failed { reason, message } if reason == "DeadlineExceeded" => {
                RunResult::failure(ErrorType::Timeout, format!("the Job ran past its deadline: {message}"))
            }
            JobOutcome::Failed { reason, message } => {
                let terminated = pod.as_ref().and_then(runner_termination);
                match terminated {
                    Some((reason, _, _)) if reason == "OOMKilled" => RunResult::failure(
                        ErrorType::MemoryLimit,
                        format!(
                            "the runner container was killed for using more than its memory limit ({})",
                            job::memory_limit(&self.config)
                        ),
                    ),
                    Some((reason, code, text)) => RunResult::failure(
                        ErrorType::SandboxError,
                        format!("the runner exited with code {code} ({reason}): {}", text.trim()),
                    ),
                    None => {
                        RunResult::failure(ErrorType::SandboxError, format!("the Job failed ({reason}): {message}"))
                    }
                }
            }
            JobOutcome::Complete => {
                let Some(pod) = pod else {
                    return RunResult::failure(ErrorType::SandboxError, "the Job completed but its pod is gone");
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                let limit = (request.max_output_bytes + LOG_ENVELOPE_BYTES) as i64;
                let params = LogParams {
                    container: Some(job::CONTAINER.into()),
                    limit_bytes: Some(limit),
                    ..LogParams::default()
                };
                let mut log = String::new();
                for attempt in 0..LOG_ATTEMPTS {
                    match pods.logs(&name, &params).await {
                        Ok(text) if !text.trim().is_empty() => {
                            log = text;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if attempt + 1 == LOG_ATTEMPTS => return self.api_failure("get", "pods/log", &e),
                        Err(e) => tracing::debug!(pod = %name, error = %e, "pod log not readable yet"),
                    }
                    tokio::time::sleep(LOG_RETRY).await;
                }
                parse_runner_output(&log).unwrap_or_else(|message| RunResult::failure(ErrorType::SandboxError, message))
            }
        }
    }

    fn grace_seconds(&self) -> i64 {
        self.config.k8s.k8s_job_deadline_grace_seconds
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
            kube::Error::Api(status) => {
                format!("the Kubernetes API refused to {verb} {resource} ({}): {}", status.code, status.message)
            }
            other => format!("the Kubernetes API server cannot be reached to {verb} {resource}: {}", chain(other)),
        };
        RunResult::failure(ErrorType::SandboxError, message)
    }

    /// Watch errors that retrying cannot fix (refused permissions) end the run;
    /// the rest (a dropped connection) are resumed by the watcher.
    fn watch_failure(&self, error: &watcher::Error, resource: &str) -> Option<RunResult> {
        let status = match error {
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s))
            | watcher::Error::WatchError(s) => s,
            _ => return None,
        };
        if status.code == 401 || status.code == 403 {
            let verb = if matches!(error, watcher::Error::InitialListFailed(_)) { "list" } else { "watch" };
            Some(self.api_failure(verb, resource, &kube::Error::Api(status.clone())))
        } else {
            None
        }
    }
}

/// How a Job ended.
#[derive(Debug, Clone, PartialEq)]
enum JobOutcome {
    Complete,
    Failed { reason: String, message: String },
}

impl JobOutcome {
    /// Complete or Failed, from the terminal conditions only: since Kubernetes 1.31
    /// `SuccessCriteriaMet` and `FailureTarget` come first, while pods still run.
    fn of(job: &Job) -> Option<JobOutcome> {
        let conditions = job.status.as_ref()?.conditions.as_ref()?;
        conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
            "Complete" => Some(JobOutcome::Complete),
            "Failed" => Some(JobOutcome::Failed {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            }),
            _ => None,
        })
    }
}

/// What a pod's status says about starting.
#[derive(Debug, Clone, PartialEq)]
enum PodState {
    Pending(String),
    Unschedulable(String),
    ImageFailed(String),
    Started,
}

impl PodState {
    fn of(pod: &Pod) -> PodState {
        let Some(status) = &pod.status else { return PodState::Pending("the pod has no status yet".into()) };
        for container in status.container_statuses.iter().flatten() {
            let state = container.state.as_ref();
            if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                if IMAGE_FAILURES.contains(&reason.as_str()) {
                    return PodState::ImageFailed(format!("{reason}: {}", waiting.message.clone().unwrap_or_default()));
                }
            }
            if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
                return PodState::Started;
            }
        }
        if matches!(status.phase.as_deref(), Some("Running" | "Succeeded" | "Failed")) {
            return PodState::Started;
        }
        let unschedulable =
            status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            });
        match unschedulable {
            Some(c) => PodState::Unschedulable(c.message.clone().unwrap_or_default()),
            None => PodState::Pending(format!("the pod is {}", status.phase.as_deref().unwrap_or("Pending"))),
        }
    }
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection
/// refused"): kube's own message stops at the first.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The runner container's termination: reason, exit code, message.
fn runner_termination(pod: &Pod) -> Option<(String, i32, String)> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let container = statuses.iter().find(|c| c.name == job::CONTAINER)?;
    let terminated = container
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| container.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    Some((
        terminated.reason.clone().unwrap_or_default(),
        terminated.exit_code,
        terminated.message.clone().unwrap_or_default(),
    ))
}

/// The runner prints exactly one line: its result.
fn parse_runner_output(log: &str) -> Result<RunResult, String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let snippet = |text: &str| text.chars().take(200).collect::<String>();
    match lines.as_slice() {
        [] => Err("the runner printed nothing".to_string()),
        [line] => serde_json::from_str(line)
            .map_err(|e| format!("the runner's output is not a result ({e}): {}", snippet(line))),
        many => {
            Err(format!("the runner printed {} lines, expected one JSON result line: {}", many.len(), snippet(log)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn job_with(conditions: &[(&str, &str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn only_terminal_conditions_end_the_wait() {
        assert_eq!(JobOutcome::of(&job_with(&[("SuccessCriteriaMet", "True", "")])), None);
        assert_eq!(JobOutcome::of(&job_with(&[("FailureTarget", "True", "DeadlineExceeded")])), None);
        assert_eq!(
            JobOutcome::of(&job_with(&[("SuccessCriteriaMet", "True", ""), ("Complete", "True", "")])),
            Some(JobOutcome::Complete)
        );
        assert_eq!(
            JobOutcome::of(&job_with(&[("FailureTarget", "True", "x"), ("Failed", "True", "DeadlineExceeded")])),
            Some(JobOutcome::Failed { reason: "DeadlineExceeded".into(), message: String::new() })
        );
        assert_eq!(JobOutcome::of(&job_with(&[("Complete", "False", "")])), None);
    }

    #[test]
    fn runner_output_must_be_one_json_line() {
        let ok = RunResult::success(vec!["n".into()], vec![], vec![vec![serde_json::json!(1)]], false);
        assert_eq!(parse_runner_output(&format!("{}\n", ok.to_json_line())).unwrap(), ok);
        assert!(parse_runner_output("").unwrap_err().contains("nothing"));
        assert!(parse_runner_output("panic!\n").unwrap_err().contains("not a result"));
        assert!(parse_runner_output("a\nb\n").unwrap_err().contains("2 lines"));
    }
}
