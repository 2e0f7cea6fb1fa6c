//! Start-up checks of the Kubernetes settings (`K8S_*`, `RUNNER_IMAGE`): a typo
//! fails the start with a message naming the setting, instead of failing every run
//! with an API error.
//!
//! [`validate`] is called at start-up (and by `render-job`) beside `Config::validate`; [`parse_quantity`] reads
//! Kubernetes quantities (`500m`, `1`, `512Mi`, `1e3`) as the API server does.

use crate::config::K8sConfig;

use super::job;

/// The shortest `K8S_JOB_TTL_SECONDS` allowed. The provider reads a finished Job's
/// pod log after it sees the Job complete; the TTL controller deletes the Job (and
/// the pod with its log) this long after completion, so a shorter TTL can delete
/// the result before it is read. `K8S_DELETE_JOBS=true` deletes Jobs as soon as
/// their result is read.
pub const MIN_JOB_TTL_SECONDS: i32 = 30;

/// Checks the Kubernetes settings. They are checked whatever SANDBOX_PROVIDER says:
/// `render-job` uses them too.
pub fn validate(config: &K8sConfig) -> Result<(), String> {
    let cpu = parse_quantity(&config.k8s_cpu_limit).map_err(|e| {
        format!("K8S_CPU_LIMIT={:?} is not a Kubernetes quantity ({e}); e.g. 1, 500m, 2", config.k8s_cpu_limit)
    })?;
    if cpu <= 0.0 {
        return Err(format!("K8S_CPU_LIMIT={} must be more than 0", config.k8s_cpu_limit));
    }
    if let Some(memory) = &config.k8s_memory_limit {
        let bytes = parse_quantity(memory).map_err(|e| {
            format!("K8S_MEMORY_LIMIT={memory:?} is not a Kubernetes quantity ({e}); e.g. 512Mi, 1Gi, 1500M")
        })?;
        if bytes < 1.0 {
            return Err(format!("K8S_MEMORY_LIMIT={memory} must be at least 1 byte"));
        }
    }
    if config.k8s_job_ttl_seconds < MIN_JOB_TTL_SECONDS {
        return Err(format!(
            "K8S_JOB_TTL_SECONDS={} is below {MIN_JOB_TTL_SECONDS}: Kubernetes would delete a finished Job and its \
             pod log before the result is read (K8S_DELETE_JOBS=true deletes each Job as soon as its result is read)",
            config.k8s_job_ttl_seconds
        ));
    }
    if let Some(namespace) = &config.k8s_namespace
        && !job::is_dns_label(namespace)
    {
        return Err(format!(
            "K8S_NAMESPACE={namespace:?} is not a namespace name (at most 63 lower-case letters, digits and '-')"
        ));
    }
    for (setting, value) in [
        ("K8S_SERVICE_ACCOUNT_NAME", &config.k8s_service_account_name),
        ("K8S_DATASETS_PVC", &config.k8s_datasets_pvc),
        ("K8S_UPLOADS_PVC", &config.k8s_uploads_pvc),
    ] {
        if let Some(name) = value
            && !job::is_dns_subdomain(name)
        {
            return Err(format!(
                "{setting}={name:?} is not a Kubernetes object name (lower-case letters, digits, '-' and '.')"
            ));
        }
    }
    for name in &config.k8s_image_pull_secrets {
        if !job::is_dns_subdomain(name) {
            return Err(format!(
                "K8S_IMAGE_PULL_SECRETS names {name:?}, which is not a Secret name (lower-case letters, digits, '-' \
                 and '.')"
            ));
        }
    }
    if config.runner_image.is_empty() || config.runner_image.chars().any(char::is_whitespace) {
        return Err(format!("RUNNER_IMAGE={:?} is not an image reference", config.runner_image));
    }
    if config.k8s_pod_start_timeout_seconds == 0 {
        return Err("K8S_POD_START_TIMEOUT_SECONDS must be at least 1".into());
    }
    if config.k8s_max_concurrent_jobs == 0 {
        return Err("K8S_MAX_CONCURRENT_JOBS must be at least 1".into());
    }
    Ok(())
}

/// The value of a Kubernetes quantity in its base unit (cores, bytes):
/// `<sign><digits>[.<digits>]<suffix>`, the suffix one of `Ki Mi Gi Ti Pi Ei`, `n u m
/// k M G T P E`, none, or an exponent `e<n>`/`E<n>`.
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let number_end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    let valid_number = !digits.is_empty()
        && digits != "."
        && digits.matches('.').count() <= 1
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !valid_number {
        return Err(if text.is_empty() { "empty".into() } else { format!("no number at the start of {text:?}") });
    }
    let value: f64 = number.parse().map_err(|_| format!("{number:?} is not a number"))?;
    // Fractions divide (500m is 500 / 1000), so that decimal values come out exact.
    let (multiplier, divisor) = match suffix {
        "" => (1.0, 1.0),
        "Ki" => (1024f64, 1.0),
        "Mi" => (1024f64.powi(2), 1.0),
        "Gi" => (1024f64.powi(3), 1.0),
        "Ti" => (1024f64.powi(4), 1.0),
        "Pi" => (1024f64.powi(5), 1.0),
        "Ei" => (1024f64.powi(6), 1.0),
        "n" => (1.0, 1e9),
        "u" => (1.0, 1e6),
        "m" => (1.0, 1e3),
        "k" => (1e3, 1.0),
        "M" => (1e6, 1.0),
        "G" => (1e9, 1.0),
        "T" => (1e12, 1.0),
        "P" => (1e15, 1.0),
        "E" => (1e18, 1.0),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power = &exponent[1..];
            let digits = power.trim_start_matches(['+', '-']);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || power.len() - digits.len() > 1 {
                return Err(format!("unknown suffix {suffix:?}"));
            }
            let power: i32 = power.parse().map_err(|_| format!("exponent {power:?} out of range"))?;
            if power < 0 { (1.0, 10f64.powi(-power)) } else { (10f64.powi(power), 1.0) }
        }
        _ => {
            return Err(format!(
                "unknown suffix {suffix:?}; the suffixes are Ki Mi Gi Ti Pi Ei (powers of 1024) and m k M G T P E"
            ));
        }
    };
    Ok(value * multiplier / divisor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn k8s(args: &[&str]) -> K8sConfig {
        Config::from_args(args.iter().copied()).unwrap().k8s
    }

    #[test]
    fn quantities_parse_as_kubernetes_reads_them() {
        for (text, value) in [
            ("1", 1.0),
            ("500m", 0.5),
            ("0.25", 0.25),
            (".5", 0.5),
            ("2.", 2.0),
            ("+3", 3.0),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1Gi", 1024.0 * 1024.0 * 1024.0),
            ("1500M", 1.5e9),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("5E-1", 0.5),
            ("100Ki", 102_400.0),
        ] {
            assert_eq!(parse_quantity(text), Ok(value), "{text}");
        }
        for bad in ["", "m", "512MB", "1 Gi", "Gi", "1.2.3", "one", "1e", "1e+-2", "1KiB", "1mi", "--1", "1K"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} parsed as {:?}", parse_quantity(bad));
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(validate(&Config::without_env().k8s), Ok(()));
        assert_eq!(validate(&k8s(&["--k8s-memory-limit", "1Gi", "--k8s-cpu-limit", "250m"])), Ok(()));
    }

    #[test]
    fn a_typo_in_a_setting_fails_the_start_naming_it() {
        let error = |args: &[&str]| validate(&k8s(args)).unwrap_err();
        assert!(
            error(&["--k8s-memory-limit", "512MB"])
                .starts_with("K8S_MEMORY_LIMIT=\"512MB\" is not a Kubernetes quantity")
        );
        assert!(error(&["--k8s-cpu-limit", "one"]).starts_with("K8S_CPU_LIMIT=\"one\" is not a Kubernetes quantity"));
        assert_eq!(error(&["--k8s-cpu-limit", "0"]), "K8S_CPU_LIMIT=0 must be more than 0");
        assert!(
            error(&["--k8s-namespace", "CSV_Analyst"]).starts_with("K8S_NAMESPACE=\"CSV_Analyst\" is not a namespace")
        );
        assert!(error(&["--k8s-datasets-pvc", "data sets"]).starts_with("K8S_DATASETS_PVC=\"data sets\""));
        assert!(error(&["--k8s-service-account-name", "Runner"]).starts_with("K8S_SERVICE_ACCOUNT_NAME=\"Runner\""));
        assert!(
            error(&["--k8s-image-pull-secrets", "ok,Bad_Name"]).contains("\"Bad_Name\", which is not a Secret name")
        );
        assert!(error(&["--runner-image", "a b"]).starts_with("RUNNER_IMAGE=\"a b\""));
        assert_eq!(
            error(&["--k8s-pod-start-timeout-seconds", "0"]),
            "K8S_POD_START_TIMEOUT_SECONDS must be at least 1"
        );
    }

    #[test]
    fn a_ttl_that_could_delete_a_result_before_it_is_read_is_refused() {
        for ttl in ["0", "29"] {
            let message = validate(&k8s(&["--k8s-job-ttl-seconds", ttl])).unwrap_err();
            assert!(message.starts_with(&format!("K8S_JOB_TTL_SECONDS={ttl} is below 30")), "{message}");
        }
        assert_eq!(validate(&k8s(&["--k8s-job-ttl-seconds", "30"])), Ok(()));
    }
}
