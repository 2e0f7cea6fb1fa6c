//! Following one run's Job until there is a result, through three watches: the Job
//! itself, its pods (by the run-id label), and the Job's Events.
//!
//! The watches are kube's `watcher`s: a watch the API server closes is resumed from
//! the last resourceVersion seen (bookmarks included), and one that falls out of the
//! server's window (`410 Gone`, as an `ERROR` event or a status) starts over with a
//! list. A Job missing from that list, like a `DELETED` event, means it was deleted.
//!
//! Every fault ends the run as soon as it is visible:
//! - the Job deleted under the run (kubectl delete, a TTL, a namespace clean-up) →
//!   `SANDBOX_ERROR` saying so;
//! - pods that cannot be created (ResourceQuota, PodSecurity, a missing service
//!   account: the Job controller's `FailedCreate` Event) → `SANDBOX_ERROR` with the
//!   Event's message;
//! - the image cannot be pulled → `SANDBOX_ERROR` as soon as the pod says so; the pod
//!   cannot be scheduled or does not start in K8S_POD_START_TIMEOUT_SECONDS →
//!   `SANDBOX_ERROR` with the scheduler's message;
//! - the Job's deadline passes → `TIMEOUT`; the container is OOM-killed →
//!   `MEMORY_LIMIT`; it cannot start (StartError) → `SANDBOX_ERROR`;
//! - the runner prints no result line → `SANDBOX_ERROR` (other lines, such as
//!   warnings, are logged and skipped);
//! - the API refuses (a 403 names the missing RBAC permission) → `SANDBOX_ERROR`;
//!   the API server stops answering for [`API_OUTAGE_GRACE`] → `SANDBOX_ERROR`
//!   naming it.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use protocol::{ErrorType, RunRequest, RunResult};
use tokio::time::{Instant, MissedTickBehavior};

use super::{DEADLINE_SLACK, K8sProvider, job};

/// How long the API server may fail every request before the run ends.
pub const API_OUTAGE_GRACE: Duration = Duration::from_secs(5);
/// While the watches fail, how often the Job is read directly (which also tells
/// a dropped connection from a deleted Job).
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts to read a log that lags the completion.
const LOG_ATTEMPTS: usize = 8;
/// Log bytes read beyond max_output_bytes (the result's envelope, warnings).
const LOG_ENVELOPE_BYTES: u64 = 256 * 1024;
/// Container waiting reasons that mean the image will not start.
const IMAGE_FAILURES: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// How following a Job ended.
pub struct Followed {
    pub result: RunResult,
    /// The Job reached Complete or Failed on its own: nothing of it runs any more.
    pub finished: bool,
}

/// What one observation means for the run.
enum Next {
    Wait,
    /// The Job finished: collect its result.
    Finished(JobOutcome),
    /// The provider gives up on the Job.
    Failed(RunResult),
}

/// Whether the API server answers, over the run's requests.
#[derive(Default)]
struct ApiHealth {
    failing_since: Option<Instant>,
    last_error: String,
}

impl ApiHealth {
    fn answered(&mut self) {
        self.failing_since = None;
    }

    fn failed(&mut self, error: String) {
        self.failing_since.get_or_insert_with(Instant::now);
        self.last_error = error;
    }

    fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    fn down_for(&self) -> Duration {
        self.failing_since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

impl K8sProvider {
    /// Follows the Job `created` (created at `started`: its deadline and its pod's
    /// start timeout count from then) until it has a result or the provider gives
    /// up on it.
    pub(super) async fn follow(&self, created: &Job, run_id: &str, request: &RunRequest, started: Instant) -> Followed {
        let name = created.metadata.name.clone().unwrap_or_default();
        let uid = created.metadata.uid.clone();
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{}={}", job::RUN_ID_KEY, job::run_label(run_id));
        let active_deadline = created.spec.as_ref().and_then(|s| s.active_deadline_seconds).unwrap_or(0).max(0) as u64;
        let give_up_at = started + Duration::from_secs(active_deadline) + DEADLINE_SLACK;
        let pod_start_timeout = self.config.k8s.k8s_pod_start_timeout_seconds;
        let start_deadline = started + Duration::from_secs(pod_start_timeout);

        let job_updates = watcher::watch_object(jobs.clone(), &name).default_backoff();
        let pod_events = watcher(pods.clone(), watcher::Config::default().labels(&selector)).default_backoff();
        let job_events = watcher(
            events,
            watcher::Config::default().fields(&format!("involvedObject.kind=Job,involvedObject.name={name}")),
        )
        .default_backoff();
        futures::pin_mut!(job_updates, pod_events, job_events);
        let mut pod_started = false;
        let mut waiting_for = String::from("no pod yet");
        let mut health = ApiHealth::default();
        // The Events are an aid (a prompt FailedCreate); without permission to read
        // them (which /readyz reports) the run goes on without.
        let mut events_readable = true;
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let next = tokio::select! {
                update = job_updates.next() => match update {
                    Some(Ok(Some(job))) => {
                        health.answered();
                        self.on_job(&job, &name, uid.as_deref())
                    }
                    Some(Ok(None)) => Next::Failed(deleted(&name, "")),
                    Some(Err(e)) => self.on_watch_error(&e, "jobs.batch", &mut health),
                    None => Next::Failed(RunResult::failure(ErrorType::SandboxError, "the Job watch ended unexpectedly")),
                },
                event = pod_events.next() => match event {
                    Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                        health.answered();
                        match PodState::of(&pod) {
                            PodState::ImageFailed(message) => Next::Failed(RunResult::failure(
                                ErrorType::SandboxError,
                                format!("the runner image {} cannot start: {message}", self.config.k8s.runner_image),
                            )),
                            PodState::Unschedulable(message) => {
                                waiting_for = format!("the pod cannot be scheduled: {message}");
                                Next::Wait
                            }
                            PodState::Pending(reason) => {
                                waiting_for = reason;
                                Next::Wait
                            }
                            PodState::Started => {
                                if !pod_started && let Some(metrics) = self.metrics.get() {
                                    metrics.pod_start.observe(started.elapsed().as_secs_f64());
                                }
                                pod_started = true;
                                Next::Wait
                            }
                        }
                    }
                    Some(Ok(_)) => {
                        health.answered();
                        Next::Wait
                    }
                    Some(Err(e)) => self.on_watch_error(&e, "pods", &mut health),
                    None => Next::Failed(RunResult::failure(ErrorType::SandboxError, "the pod watch ended unexpectedly")),
                },
                event = job_events.next(), if events_readable => match event {
                    Some(Ok(watcher::Event::Apply(event) | watcher::Event::InitApply(event))) => {
                        health.answered();
                        on_event(&event, &name, uid.as_deref())
                    }
                    Some(Ok(_)) => {
                        health.answered();
                        Next::Wait
                    }
                    Some(Err(e)) => match self.on_watch_error(&e, "events", &mut health) {
                        Next::Failed(refused) => {
                            let reason = refused.error.map(|e| e.message).unwrap_or_default();
                            tracing::warn!(job = %name, %reason, "cannot read the Job's Events; following it without them");
                            events_readable = false;
                            Next::Wait
                        }
                        other => other,
                    },
                    None => Next::Failed(RunResult::failure(ErrorType::SandboxError, "the Event watch ended unexpectedly")),
                },
                _ = probe.tick(), if health.failing() => {
                    match tokio::time::timeout(PROBE_TIMEOUT, jobs.get_opt(&name)).await {
                        Ok(Ok(Some(job))) => {
                            health.answered();
                            self.on_job(&job, &name, uid.as_deref())
                        }
                        Ok(Ok(None)) => Next::Failed(deleted(&name, "")),
                        Ok(Err(kube::Error::Api(status))) if status.code == 401 || status.code == 403 => {
                            Next::Failed(self.api_failure("get", "jobs.batch", &kube::Error::Api(status)))
                        }
                        Ok(Err(kube::Error::Api(status))) if status.code == 429 => {
                            // Throttled: the server is there.
                            health.answered();
                            Next::Wait
                        }
                        Ok(Err(e)) => {
                            health.failed(super::chain(&e));
                            self.outage(&health)
                        }
                        Err(_) => {
                            health.failed(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()));
                            self.outage(&health)
                        }
                    }
                }
                _ = tokio::time::sleep_until(start_deadline), if !pod_started => {
                    Next::Failed(RunResult::failure(ErrorType::SandboxError, format!(
                        "the runner pod did not start within {pod_start_timeout} s (K8S_POD_START_TIMEOUT_SECONDS): {waiting_for}"
                    )))
                }
                _ = tokio::time::sleep_until(give_up_at) => {
                    Next::Failed(RunResult::failure(ErrorType::Timeout, format!(
                        "the Job {name} did not finish within {} s", (give_up_at - started).as_secs()
                    )))
                }
            };
            match next {
                Next::Wait => {}
                Next::Finished(outcome) => {
                    let result = self.collect(&pods, &selector, outcome, request).await;
                    return Followed { result, finished: true };
                }
                Next::Failed(result) => return Followed { result, finished: false },
            }
        }
    }

    /// A Job update: finished, gone (being deleted, or replaced by another Job of the
    /// same name), or still running.
    fn on_job(&self, job: &Job, name: &str, uid: Option<&str>) -> Next {
        if uid.is_some() && job.metadata.uid.as_deref() != uid {
            return Next::Failed(deleted(name, " (another Job of that name replaced it)"));
        }
        if job.metadata.deletion_timestamp.is_some() {
            return Next::Failed(deleted(name, " (it is being deleted)"));
        }
        match JobOutcome::of(job) {
            Some(outcome) => Next::Finished(outcome),
            None => Next::Wait,
        }
    }

    /// A watch error: refused permissions end the run; a 410 Gone is the watcher
    /// starting over; anything else is the API server failing, which the probe
    /// follows up.
    fn on_watch_error(&self, error: &watcher::Error, resource: &str, health: &mut ApiHealth) -> Next {
        let status = match error {
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s))
            | watcher::Error::WatchError(s) => Some(s),
            _ => None,
        };
        match status {
            Some(status) if status.code == 401 || status.code == 403 => {
                let verb = if matches!(error, watcher::Error::InitialListFailed(_)) { "list" } else { "watch" };
                Next::Failed(self.api_failure(verb, resource, &kube::Error::Api(status.clone())))
            }
            Some(status) if status.code == 410 => {
                tracing::debug!(resource, message = %status.message, "a watch fell out of the API server's window; listing again");
                Next::Wait
            }
            _ => {
                tracing::warn!(resource, error = %error, "a watch failed; resuming");
                health.failed(super::chain(error));
                Next::Wait
            }
        }
    }

    /// Ends the run once the API server has failed every request for API_OUTAGE_GRACE.
    fn outage(&self, health: &ApiHealth) -> Next {
        if health.down_for() < API_OUTAGE_GRACE {
            return Next::Wait;
        }
        Next::Failed(RunResult::failure(
            ErrorType::SandboxError,
            format!(
                "the Kubernetes API server {} stopped answering during the run (for {} s): {}",
                self.api_url,
                health.down_for().as_secs(),
                health.last_error
            ),
        ))
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
            JobOutcome::Failed { reason, message } => match pod.as_ref().and_then(runner_termination) {
                Some((reason, _, _)) if reason == "OOMKilled" => RunResult::failure(
                    ErrorType::MemoryLimit,
                    format!(
                        "the runner container was killed for using more than its memory limit ({})",
                        job::memory_limit(&self.config)
                    ),
                ),
                Some((reason, code, text)) if reason == "StartError" => RunResult::failure(
                    ErrorType::SandboxError,
                    format!("the runner container could not start (StartError, exit code {code}): {}", text.trim()),
                ),
                Some((reason, code, text)) => RunResult::failure(
                    ErrorType::SandboxError,
                    format!("the runner exited with code {code} ({reason}): {}", text.trim()),
                ),
                None => RunResult::failure(ErrorType::SandboxError, format!("the Job failed ({reason}): {message}")),
            },
            JobOutcome::Complete => {
                let Some(pod) = pod else {
                    return RunResult::failure(ErrorType::SandboxError, "the Job completed but its pod is gone");
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                match self.read_log(pods, &name, request).await {
                    Ok(log) => parse_runner_output(&log, &name)
                        .unwrap_or_else(|message| RunResult::failure(ErrorType::SandboxError, message)),
                    Err(LogError::Empty) => RunResult::failure(ErrorType::SandboxError, "the runner printed nothing"),
                    Err(LogError::Api(kube::Error::Api(status))) if status.code == 404 => RunResult::failure(
                        ErrorType::SandboxError,
                        format!("the Job completed but its pod {name} was deleted before its log was read"),
                    ),
                    Err(LogError::Api(e)) => self.api_failure("get", "pods/log", &e),
                }
            }
        }
    }

    /// The runner container's log. A log can lag the completion by a moment: an
    /// empty one, or a failed read, is retried with backoff.
    async fn read_log(&self, pods: &Api<Pod>, pod: &str, request: &RunRequest) -> Result<String, LogError> {
        let params = LogParams {
            container: Some(job::CONTAINER.into()),
            limit_bytes: Some((request.max_output_bytes + LOG_ENVELOPE_BYTES) as i64),
            ..LogParams::default()
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(1))
            .with_max_times(LOG_ATTEMPTS);
        (|| async {
            match pods.logs(pod, &params).await {
                Ok(text) if text.trim().is_empty() => Err(LogError::Empty),
                Ok(text) => Ok(text),
                Err(e) => Err(LogError::Api(e)),
            }
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| !matches!(e, LogError::Api(kube::Error::Api(s)) if [401, 403, 404].contains(&s.code)))
        .notify(|e, delay| tracing::debug!(pod, error = ?e, ?delay, "the pod log is not readable yet"))
        .await
    }
}

#[derive(Debug)]
enum LogError {
    Empty,
    Api(kube::Error),
}

/// The run error for a Job deleted before it finished.
fn deleted(name: &str, how: &str) -> RunResult {
    RunResult::failure(
        ErrorType::SandboxError,
        format!(
            "the Job {name} was deleted before it finished{how}: by kubectl delete, a TTL or the namespace's deletion; \
             the run has no result"
        ),
    )
}

/// A Job Event: the Job controller's `FailedCreate` (a pod it cannot create) ends
/// the run with its message.
fn on_event(event: &Event, name: &str, uid: Option<&str>) -> Next {
    if event.reason.as_deref() != Some("FailedCreate") {
        return Next::Wait;
    }
    if uid.is_some() && event.involved_object.uid.is_some() && event.involved_object.uid.as_deref() != uid {
        return Next::Wait;
    }
    let message = event.message.clone().unwrap_or_default();
    Next::Failed(RunResult::failure(
        ErrorType::SandboxError,
        format!("Kubernetes cannot create the runner pod of Job {name} (FailedCreate): {message}"),
    ))
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

/// The runner's result: the last line of its log that is a RunResult. Other lines
/// (a warning on stderr, which the container log interleaves) are logged.
fn parse_runner_output(log: &str, pod: &str) -> Result<RunResult, String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let result = lines.iter().rev().find_map(|line| serde_json::from_str::<RunResult>(line).ok());
    let snippet = |text: &str| text.chars().take(200).collect::<String>();
    match result {
        Some(result) => {
            for line in lines.iter().filter(|l| serde_json::from_str::<RunResult>(l).is_err()) {
                tracing::warn!(pod, line = %snippet(line), "the runner printed a line besides its result");
            }
            Ok(result)
        }
        None if lines.is_empty() => Err("the runner printed nothing".to_string()),
        None => Err(format!(
            "the runner printed {} line{} and none is a result: {}",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            snippet(log)
        )),
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
    fn the_result_line_is_found_among_warnings() {
        let ok = RunResult::success(vec!["n".into()], vec![], vec![vec![serde_json::json!(1)]], false);
        let line = ok.to_json_line();
        assert_eq!(parse_runner_output(&format!("{line}\n"), "p").unwrap(), ok);
        assert_eq!(parse_runner_output(&format!("warning: slow disk\n{line}\n"), "p").unwrap(), ok);
        assert_eq!(parse_runner_output(&format!("{{\"not\":\"a result\"}}\n{line}\nbye\n"), "p").unwrap(), ok);
        assert_eq!(parse_runner_output("", "p").unwrap_err(), "the runner printed nothing");
        assert_eq!(
            parse_runner_output("panic!\n", "p").unwrap_err(),
            "the runner printed 1 line and none is a result: panic!\n"
        );
        assert!(
            parse_runner_output("a\nb\n", "p")
                .unwrap_err()
                .starts_with("the runner printed 2 lines and none is a result")
        );
    }

    #[test]
    fn a_failed_create_event_of_this_job_ends_the_run_with_its_message() {
        let event = |reason: &str, uid: &str| Event {
            reason: Some(reason.into()),
            message: Some("pods \"j-x\" is forbidden: exceeded quota: q".into()),
            involved_object: k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Job".into()),
                name: Some("j".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Event::default()
        };
        match on_event(&event("FailedCreate", "u1"), "j", Some("u1")) {
            Next::Failed(result) => {
                let error = result.error.unwrap();
                assert_eq!(error.error_type, ErrorType::SandboxError);
                assert_eq!(
                    error.message,
                    "Kubernetes cannot create the runner pod of Job j (FailedCreate): pods \"j-x\" is forbidden: exceeded quota: q"
                );
            }
            _ => panic!("a FailedCreate event must end the run"),
        }
        assert!(matches!(on_event(&event("SuccessfulCreate", "u1"), "j", Some("u1")), Next::Wait));
        assert!(matches!(on_event(&event("FailedCreate", "other"), "j", Some("u1")), Next::Wait), "another Job's");
    }
}
