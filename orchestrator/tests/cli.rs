//! The `orchestrator` command line: settings, help and start-up errors. (The HTTP
//! API is tested end to end in the workspace's `tests` package.)

use std::process::Command;

fn orchestrator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = orchestrator().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for var in [
        "LISTEN_ADDR",
        "DATASETS_DIR",
        "SANDBOX_PROVIDER",
        "RUN_TIMEOUT_SECONDS",
        "MAX_ROWS",
        "MAX_OUTPUT_BYTES",
        "RUN_MEMORY_LIMIT_MB",
        "MAX_CONCURRENT_RUNS",
        "QUEUE_TIMEOUT_MS",
        "RUN_STORE_PATH",
        "MAX_BODY_BYTES",
        "RUNNER_MODULE",
        "RUNNER_CACHE_DIR",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "LLM_PROVIDER",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "K8S_NAMESPACE",
        "RUNNER_IMAGE",
        "K8S_IMAGE_PULL_POLICY",
        "K8S_CPU_LIMIT",
        "K8S_MEMORY_LIMIT",
        "K8S_JOB_TTL_SECONDS",
        "K8S_DELETE_JOBS",
        "K8S_DATASETS_PVC",
        "K8S_SERVICE_ACCOUNT_NAME",
        "K8S_MAX_CONCURRENT_JOBS",
        "K8S_POD_START_TIMEOUT_SECONDS",
        "K8S_JOB_DEADLINE_GRACE_SECONDS",
        "KUBECONFIG",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "--help does not mention {var}");
    }
}

#[test]
fn secrets_are_never_shown_in_help() {
    let output = orchestrator().arg("--help").env("OPENAI_API_KEY", "sk-secret-value").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(!help.contains("sk-secret-value"));
}

#[test]
fn bad_settings_fail_at_start_with_a_clear_message() {
    let output = orchestrator().env("SANDBOX_PROVIDER", "docker").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("SANDBOX_PROVIDER"));

    let output = orchestrator().env("LISTEN_ADDR", "127.0.0.1:0").env("RUN_TIMEOUT_SECONDS", "0").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("RUN_TIMEOUT_SECONDS"));

    let output =
        orchestrator().env("LISTEN_ADDR", "127.0.0.1:0").env("DATASETS_DIR", "/nonexistent/datasets").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATASETS_DIR=/nonexistent/datasets") && stderr.contains("registry.json"), "{stderr}");

    let output = orchestrator().env("LOG_LEVEL", "loud[").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("LOG_LEVEL"));
}
