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
        "RUN_SPILL_MAX_MB",
        "RUN_SPILL_DIR",
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

    let output = orchestrator().env("LISTEN_ADDR", "127.0.0.1:0").env("RUN_SPILL_MAX_MB", "2000000").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("RUN_SPILL_MAX_MB must be at most"));

    let output = orchestrator().env("LOG_LEVEL", "loud[").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("LOG_LEVEL"));
}

/// `(environment variable, flag)` for every option of `orchestrator --help` that has
/// one. An option's entry starts at a line whose first word is `--flag` (or `-x,
/// --flag`); its `[env: NAME=…]` may sit on a later, wrapped line.
fn settings_in_help(help: &str) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    let mut flag: Option<String> = None;
    for line in help.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let first_flag = match words.as_slice() {
            [first, ..] if first.starts_with("--") => Some(*first),
            [short, second, ..] if short.starts_with('-') && short.ends_with(',') && second.starts_with("--") => {
                Some(*second)
            }
            _ => None,
        };
        if let Some(f) = first_flag {
            flag = Some(f.trim_end_matches(',').to_string());
        }
        let mut rest = line;
        while let Some(at) = rest.find("[env: ") {
            rest = &rest[at + "[env: ".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let flag = flag.clone().unwrap_or_else(|| panic!("[env: {name}] outside an option's entry:\n{help}"));
            settings.push((name, flag));
        }
    }
    settings
}

/// `(variable, flag)` of every row of README.md's configuration table.
fn settings_in_readme(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration"))
        .expect("README.md has a `## Configuration` section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            (unquote(cells[1]), unquote(cells[2]))
        })
        .collect()
}

#[test]
fn readme_configuration_table_matches_help_both_ways() {
    // A wide terminal, so clap wraps as little as possible (the parser copes either way).
    let output = orchestrator().arg("--help").env("COLUMNS", "200").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();

    let in_help = settings_in_help(&help);
    let in_readme = settings_in_readme(&readme);
    assert!(in_help.len() >= 30 && in_readme.len() >= 30, "parsed {} and {} settings", in_help.len(), in_readme.len());
    let missing_from_readme: Vec<_> = in_help.iter().filter(|s| !in_readme.contains(s)).collect();
    let missing_from_help: Vec<_> = in_readme.iter().filter(|s| !in_help.contains(s)).collect();
    assert!(
        missing_from_readme.is_empty() && missing_from_help.is_empty(),
        "README.md's configuration table and `orchestrator --help` disagree.\n\
         In --help, not in README (variable, flag): {missing_from_readme:?}\n\
         In README, not in --help: {missing_from_help:?}"
    );
    let mut names: Vec<&String> = in_readme.iter().map(|(name, _)| name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), in_readme.len(), "a variable listed twice in README.md");
}
