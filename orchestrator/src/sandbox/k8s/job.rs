//! The Kubernetes Job that runs one query: built here, used by the provider and
//! printed by `orchestrator render-job`.
//!
//! The pod is as locked down as a pod can be and still run a program: non-root
//! UID/GID 1000, read-only root filesystem, no privilege escalation, no
//! capabilities, the RuntimeDefault seccomp profile, no service-account token, no
//! service links, and CPU and memory limits. Inside it, `runner-host exec` adds the
//! wasm sandbox's own limits. Its label `app.kubernetes.io/name: csv-analyst-runner`
//! is what the chart's NetworkPolicy selects to deny it all egress. A run that may
//! spill gets an `emptyDir` at [`SCRATCH_DIR`] whose `sizeLimit` is its spill cap
//! (the kubelet evicts a pod past it; `runner-host` stops the guest first), the
//! one writable place in the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use protocol::RunRequest;

use crate::config::Config;
use crate::datasets::DataRoot;

/// `app.kubernetes.io/name` of runner pods (the NetworkPolicy selects on it).
pub const RUNNER_NAME: &str = "csv-analyst-runner";
/// `app.kubernetes.io/managed-by` of runner Jobs.
pub const MANAGED_BY: &str = "csv-analyst-orchestrator";
/// The label and annotation holding the run id.
pub const RUN_ID_KEY: &str = "csv-analyst.io/run-id";
/// The annotation holding the dataset id.
pub const DATASET_KEY: &str = "csv-analyst.io/dataset-id";
/// The runner container's name.
pub const CONTAINER: &str = "runner";
/// Where the runner image keeps `runner-host`.
pub const RUNNER_COMMAND: &str = "/usr/local/bin/runner-host";
/// Where the runner container's scratch `emptyDir` is mounted (RUN_SPILL_DIR).
pub const SCRATCH_DIR: &str = "/scratch";
/// Numeric user and group of the runner.
pub const RUNNER_UID: i64 = 1000;
/// Memory the container needs beyond the wasm cap: runner-host, the mmapped
/// precompiled guest, stacks.
pub const HOST_OVERHEAD_MIB: u64 = 256;

/// What every Job name starts with.
pub const JOB_NAME_PREFIX: &str = "csv-analyst-run-";
/// Letters and digits of the run id a Job name keeps at most (a UUID has 32).
const NAME_ID_CHARS: usize = 32;
/// The longest Job name Kubernetes accepts: the Job controller copies it into the
/// pods' `job-name` label, whose values stop at 63 characters.
pub const MAX_JOB_NAME: usize = 63;
/// The environment variable carrying the request to `runner-host exec`.
pub const REQUEST_ENV: &str = "RUNNER_REQUEST_JSON";
/// The longest value [`REQUEST_ENV`] can have: Linux refuses a single environment
/// string (`NAME=value` and its NUL) over 128 KiB (MAX_ARG_STRLEN) when the container
/// starts.
pub const MAX_REQUEST_JSON_BYTES: usize = 128 * 1024 - REQUEST_ENV.len() - 2;

/// The Job name for a run: readable, a valid DNS-1123 label of at most 63
/// characters, and distinct for distinct run ids. A UUID gives
/// `csv-analyst-run-<its 32 hex digits>`; an id with anything else (capitals,
/// dots, more than 32 letters and digits) keeps a readable prefix and gets a hash of
/// the whole id, so two ids never share a Job.
pub fn job_name(run_id: &str) -> String {
    let alnum: String = run_id.chars().filter(char::is_ascii_alphanumeric).collect();
    let plain = !alnum.is_empty()
        && alnum.len() <= NAME_ID_CHARS
        && run_id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if plain {
        return format!("{JOB_NAME_PREFIX}{alnum}");
    }
    let readable: String = alnum.to_ascii_lowercase().chars().take(20).collect();
    let hash = short_hash(run_id);
    if readable.is_empty() { format!("{JOB_NAME_PREFIX}{hash}") } else { format!("{JOB_NAME_PREFIX}{readable}-{hash}") }
}

/// The value of the run-id label ([`RUN_ID_KEY`]) on the Job and its pods, which the
/// provider also selects the pods by: the run id itself when it is a valid label
/// value, otherwise its valid characters (at most 40) and a hash of the whole id.
pub fn run_label(run_id: &str) -> String {
    if is_label_value(run_id) {
        return run_id.to_string();
    }
    let cleaned: String = run_id.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(40).collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = short_hash(run_id);
    if cleaned.is_empty() { hash } else { format!("{cleaned}-{hash}") }
}

/// 12 hex digits of the SHA-256 of `text`.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text.as_bytes()))[..12].to_string()
}

/// A valid label value: empty, or at most 63 of `[A-Za-z0-9._-]` starting and
/// ending with a letter or digit.
pub fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 63
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A valid DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending with a
/// letter or digit (namespace and Job names).
pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A valid DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123
/// labels (service account and claim names).
pub fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// The request as [`REQUEST_ENV`] carries it.
pub fn request_json(request: &RunRequest) -> String {
    serde_json::to_string(request).expect("a RunRequest always serializes")
}

/// Refuses a request too large for [`REQUEST_ENV`], with a message naming the limit:
/// the container would otherwise fail to start with an obscure runtime error.
pub fn check_request_size(request: &RunRequest) -> Result<(), String> {
    let size = request_json(request).len();
    if size <= MAX_REQUEST_JSON_BYTES {
        return Ok(());
    }
    Err(format!(
        "the query is too large to run as a Kubernetes Job: its request is {size} bytes, and the runner receives it \
         in the {REQUEST_ENV} environment variable, which Linux limits to 128 KiB ({MAX_REQUEST_JSON_BYTES} bytes); \
         shorten the query (the SQL is {} bytes)",
        request.sql.len()
    ))
}

/// The container's memory limit: K8S_MEMORY_LIMIT, or the wasm cap plus overhead.
pub fn memory_limit(config: &Config) -> String {
    config
        .k8s
        .k8s_memory_limit
        .clone()
        .unwrap_or_else(|| format!("{}Mi", config.run_memory_limit_mb + HOST_OVERHEAD_MIB))
}

/// The Job for `request` (paths under `/data`), named after `run_id`.
pub fn build(config: &Config, namespace: &str, run_id: &str, request: &RunRequest, root: DataRoot) -> Job {
    let k8s = &config.k8s;
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), RUNNER_NAME.to_string()),
        ("app.kubernetes.io/component".to_string(), "query-run".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        (RUN_ID_KEY.to_string(), run_label(run_id)),
    ]);
    let annotations = BTreeMap::from([
        (RUN_ID_KEY.to_string(), run_id.to_string()),
        (DATASET_KEY.to_string(), request.dataset_id.clone()),
    ]);
    // Kubernetes kills the Job this long after the run's own timeout: time for the
    // pod to start and for runner-host to report the timeout itself.
    let timeout_seconds = request.timeout_ms.div_ceil(1000) as i64;
    let resources: BTreeMap<String, Quantity> = BTreeMap::from([
        ("cpu".to_string(), Quantity(k8s.k8s_cpu_limit.clone())),
        ("memory".to_string(), Quantity(memory_limit(config))),
    ]);
    let request_json = request_json(request);

    let claim = match root {
        DataRoot::Curated => &k8s.k8s_datasets_pvc,
        DataRoot::Uploads => &k8s.k8s_uploads_pvc,
    };
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut env = vec![
        EnvVar { name: REQUEST_ENV.into(), value: Some(request_json), ..EnvVar::default() },
        EnvVar { name: "RUNNER_DATA_DIR".into(), value: Some(protocol::DATA_MOUNT.into()), ..EnvVar::default() },
    ];
    if let Some(claim) = claim {
        volumes.push(Volume {
            name: "datasets".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "datasets".into(),
            mount_path: protocol::DATA_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if request.spill_limit_bytes > 0 {
        volumes.push(Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(format!("{}Mi", request.spill_limit_bytes.div_ceil(1024 * 1024)))),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount { name: "scratch".into(), mount_path: SCRATCH_DIR.into(), ..VolumeMount::default() });
        env.push(EnvVar { name: "RUN_SPILL_DIR".into(), value: Some(SCRATCH_DIR.into()), ..EnvVar::default() });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(k8s.runner_image.clone()),
        image_pull_policy: Some(k8s.k8s_image_pull_policy.clone()),
        command: Some(vec![RUNNER_COMMAND.into(), "exec".into()]),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };

    Job {
        metadata: ObjectMeta {
            name: Some(job_name(run_id)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(timeout_seconds + k8s.k8s_job_deadline_grace_seconds),
            ttl_seconds_after_finished: Some(k8s.k8s_job_ttl_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    service_account_name: k8s.k8s_service_account_name.clone(),
                    image_pull_secrets: (!k8s.k8s_image_pull_secrets.is_empty()).then(|| {
                        k8s.k8s_image_pull_secrets
                            .iter()
                            .map(|name| LocalObjectReference { name: name.clone() })
                            .collect()
                    }),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUNNER_UID),
                        run_as_group: Some(RUNNER_UID),
                        seccomp_profile: Some(runtime_default()),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::from_args(args.iter().copied()).unwrap()
    }

    #[test]
    fn job_names_are_dns_labels_derived_from_the_run_id() {
        let name = job_name("3f2b8c1a-1111-4222-8333-444455556666");
        assert_eq!(name, "csv-analyst-run-3f2b8c1a111142228333444455556666");
        assert_eq!(job_name("render-test"), "csv-analyst-run-rendertest");
        // Anything beyond lower-case letters, digits and dashes: a readable prefix and a hash.
        let upper = job_name("3F2B8C1A-1111-4222-8333-444455556666");
        assert_eq!(upper, "csv-analyst-run-3f2b8c1a111142228333-99159fa267ac");
        assert_ne!(upper, name, "ids that differ get different Jobs");
    }

    /// Odd run ids of every kind: the Job name is always a DNS-1123 label of at most
    /// 63 characters, the label value always a valid label value, both stable, and
    /// distinct ids get distinct names and labels.
    #[test]
    fn any_run_id_gives_a_valid_distinct_job_name_and_label() {
        let mut ids: Vec<String> = vec![
            String::new(),
            "-".into(),
            "---".into(),
            ".".into(),
            "_a_".into(),
            "A".into(),
            "a".into(),
            "a-b".into(),
            "a.b".into(),
            "a_b".into(),
            "a b".into(),
            "Ünïcödé-run".into(),
            "日本語".into(),
            "run/../../etc".into(),
            "x".repeat(32),
            "x".repeat(33),
            "x".repeat(300),
            "-leading-and-trailing-".into(),
            "UPPER-case-ID".into(),
            "tab\tand\nnewline".into(),
            "emoji-🦀-run".into(),
            uuid::Uuid::new_v4().to_string(),
        ];
        // A cheap generator of more: every mix of a few awkward pieces.
        let pieces = ["", "a", "Z", "9", "-", ".", "_", " ", "é", "ab-cd", "x".repeat(40).leak()];
        for first in pieces {
            for second in pieces {
                for third in pieces {
                    ids.push(format!("{first}{second}{third}"));
                }
            }
        }
        ids.sort();
        ids.dedup();
        let mut names = std::collections::HashMap::new();
        let mut labels = std::collections::HashMap::new();
        for id in &ids {
            let name = job_name(id);
            assert!(is_dns_label(&name) && name.len() <= MAX_JOB_NAME, "{id:?} → Job name {name:?}");
            assert_eq!(job_name(id), name, "stable");
            let label = run_label(id);
            assert!(is_label_value(&label), "{id:?} → label {label:?}");
            assert_eq!(run_label(id), label, "stable");
            if let Some(other) = names.insert(name.clone(), id) {
                // Only ids that differ in dashes alone may share a name (a UUID's are dropped).
                assert_eq!(other.replace('-', ""), id.replace('-', ""), "{other:?} and {id:?} share {name}");
            }
            if let Some(other) = labels.insert(label.clone(), id) {
                panic!("{other:?} and {id:?} share the label {label}");
            }
        }
    }

    #[test]
    fn the_request_size_limit_is_the_kernels_for_one_environment_string() {
        // "RUNNER_REQUEST_JSON=" + value + NUL must fit in 128 KiB (MAX_ARG_STRLEN).
        assert_eq!(REQUEST_ENV.len() + 1 + MAX_REQUEST_JSON_BYTES + 1, 131_072);
        let mut request = RunRequest::new("support", vec![], "SELECT 1");
        let overhead = request_json(&request).len() - "SELECT 1".len();
        request.sql = format!("SELECT '{}'", "x".repeat(MAX_REQUEST_JSON_BYTES - overhead - "SELECT ''".len()));
        assert_eq!(request_json(&request).len(), MAX_REQUEST_JSON_BYTES);
        assert_eq!(check_request_size(&request), Ok(()));
        request.sql.push(' ');
        let message = check_request_size(&request).unwrap_err();
        assert!(
            message.starts_with(&format!(
                "the query is too large to run as a Kubernetes Job: its request is {} bytes",
                MAX_REQUEST_JSON_BYTES + 1
            )) && message.contains("RUNNER_REQUEST_JSON environment variable, which Linux limits to 128 KiB"),
            "{message}"
        );
    }

    #[test]
    fn runner_pods_pull_with_the_configured_secrets() {
        let cfg = config(&["--k8s-image-pull-secrets", "regcred,mirror.creds"]);
        let job = build(&cfg, "ns", "r", &RunRequest::new("d", vec![], "SELECT 1"), DataRoot::Curated);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let names: Vec<String> = pod.image_pull_secrets.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["regcred", "mirror.creds"]);
    }

    #[test]
    fn the_job_is_locked_down_and_carries_the_request() {
        let cfg = config(&["--run-memory-limit-mb", "128", "--runner-image", "csv-analyst-runner:dev"]);
        let mut request = RunRequest::new("support", vec![], "SELECT 1");
        request.timeout_ms = 10_500;
        let job = build(&cfg, "csv-analyst", "run-1", &request, DataRoot::Curated);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(11 + 30));
        assert_eq!(spec.ttl_seconds_after_finished, Some(300));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        assert_eq!(pod.image_pull_secrets, None);
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"], Quantity("384Mi".into()));
        let env = c.env.as_ref().unwrap();
        let sent: RunRequest = serde_json::from_str(env[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(sent, request);
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], RUNNER_NAME);
        assert_eq!(labels[RUN_ID_KEY], "run-1");
        let pod_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(pod_labels[RUN_ID_KEY], run_label("run-1"), "the pods carry the label the provider selects");
        assert_eq!(job.metadata.annotations.as_ref().unwrap()[RUN_ID_KEY], "run-1");
        assert!(pod.volumes.is_none(), "the image's own /data by default, and no scratch without spilling");
    }

    #[test]
    fn a_run_that_may_spill_gets_a_scratch_empty_dir_the_size_of_its_cap() {
        let cfg = config(&["--k8s-datasets-pvc", "datasets"]);
        let mut request = RunRequest::new("d", vec![], "SELECT 1");
        request.spill_limit_bytes = 512 * 1024 * 1024;
        let job = build(&cfg, "ns", "r", &request, DataRoot::Curated);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volumes = pod.volumes.unwrap();
        let scratch = volumes.iter().find(|v| v.name == "scratch").expect("a scratch volume");
        let empty_dir = scratch.empty_dir.as_ref().expect("an emptyDir");
        assert_eq!((empty_dir.medium.as_deref(), empty_dir.size_limit.clone()), (None, Some(Quantity("512Mi".into()))));
        let c = &pod.containers[0];
        let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "scratch").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (SCRATCH_DIR, None));
        let env = c.env.as_ref().unwrap();
        let spill_dir = env.iter().find(|e| e.name == "RUN_SPILL_DIR").and_then(|e| e.value.as_deref());
        assert_eq!(spill_dir, Some(SCRATCH_DIR));
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        let data = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "datasets").unwrap();
        assert_eq!(data.read_only, Some(true), "the dataset stays read-only");
    }

    #[test]
    fn a_datasets_claim_is_mounted_read_only() {
        let cfg = config(&["--k8s-datasets-pvc", "datasets"]);
        let job = build(&cfg, "ns", "r", &RunRequest::new("d", vec![], "SELECT 1"), DataRoot::Curated);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().read_only, Some(true));
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/data", Some(true)));
    }
}
