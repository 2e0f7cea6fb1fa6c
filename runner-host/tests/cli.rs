//! The `runner-host` command line: the contract other parts of csv-analyst (the
//! Kubernetes Job, the runbook, people) rely on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use protocol::{ErrorType, RunResult, RunStatus};

fn datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets")
}

/// `runner-host` with the module cache shared by all of the workspace's tests.
fn runner_host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner-host"));
    command.env("RUNNER_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("module-cache"));
    for var in ["RUNNER_MODULE", "RUNNER_REQUEST_JSON", "DATASETS_DIR", "RUNNER_FORMAT", "RUNNER_MAX_ROWS"] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    runner_host().arg("run").arg("--datasets-dir").arg(datasets()).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn result(output: &Output) -> RunResult {
    let text = stdout(output);
    assert_eq!(text.lines().count(), 1, "one JSON line expected, got {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Data rows of a CSV file, counted without the sandbox.
fn csv_rows(path: &str) -> u64 {
    let text = std::fs::read_to_string(datasets().join(path)).unwrap();
    text.lines().count() as u64 - 1
}

#[test]
fn run_prints_a_json_result_and_exits_zero() {
    let output = run(&["--dataset", "support", "--sql", "SELECT COUNT(*) AS ticket_count FROM tickets"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let r = result(&output);
    assert_eq!(r.status, RunStatus::Success);
    assert_eq!(r.columns, vec!["ticket_count"]);
    assert_eq!(r.rows, vec![vec![serde_json::json!(csv_rows("support/tickets.csv"))]]);
}

#[test]
fn table_format_is_a_readable_grid() {
    let output =
        run(&["--dataset", "support", "--sql", "SELECT COUNT(*) AS ticket_count FROM tickets", "--format", "table"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], " ticket_count");
    assert_eq!(lines[1], "--------------");
    assert_eq!(lines[2].trim(), csv_rows("support/tickets.csv").to_string());
    assert!(lines[3].starts_with("(1 row, "), "{text}");
}

#[test]
fn table_format_escapes_terminal_control_characters() {
    // ESC sequences (clear screen, red, set the window title, BEL), a C1 CSI and a
    // right-to-left override, in a value and in a column name.
    let sql = "SELECT '\u{1b}[2J\u{1b}[31mred\u{1b}]0;owned\u{7}' AS \"name\u{1b}[8m\", '\u{9b}31m\u{202e}txt' AS b";
    let output = run(&["--dataset", "support", "--sql", sql, "--format", "table"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    let header = "name\\u{1b}[8m";
    let cell = "\\u{1b}[2J\\u{1b}[31mred\\u{1b}]0;owned\\u{7}";
    let width = cell.chars().count();
    assert_eq!(lines[0].trim_end(), format!(" {header:<width$} | b"));
    assert_eq!(lines[2].trim_end(), format!(" {cell} | \\u{{9b}}31m\\u{{202e}}txt"));

    // An error message quoting the query is escaped on stderr too.
    let output = run(&["--dataset", "support", "--sql", "SELECT \"\u{1b}[31m\" FROM tickets", "--format", "table"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\\u{1b}[31m") && !stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn an_allocation_of_2_gib_is_a_memory_limit() {
    for sql in ["SELECT length(repeat('x', 2147483647))", "SELECT length(repeat('x', 1500000000))"] {
        let output = run(&["--dataset", "support", "--sql", sql]);
        assert_eq!(output.status.code(), Some(1));
        let r = result(&output);
        assert_eq!(r.error_type(), Some(ErrorType::MemoryLimit), "{sql}: {r:?}");
    }
}

#[test]
fn csv_format_has_a_header_row() {
    let output = run(&[
        "--dataset",
        "ecommerce",
        "--sql",
        "SELECT product_id, name FROM inventory ORDER BY product_id LIMIT 2",
        "--format",
        "csv",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "product_id,name");
    let first_product = std::fs::read_to_string(datasets().join("ecommerce/inventory.csv")).unwrap();
    let expected: Vec<&str> = first_product.lines().nth(1).unwrap().split(',').take(2).collect();
    assert_eq!(lines[1], expected.join(","));
    assert_eq!(lines.len(), 3);
}

#[test]
fn a_failing_query_exits_one_with_its_error() {
    let output = run(&["--dataset", "support", "--sql", "SELECT no_such_column FROM tickets"]);
    assert_eq!(output.status.code(), Some(1));
    let r = result(&output);
    assert_eq!(r.error_type(), Some(ErrorType::SqlPlanError));
    assert!(r.error.unwrap().message.contains("no_such_column"));

    let output = run(&["--dataset", "support", "--sql", "DROP TABLE tickets", "--format", "table"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error [SQL_NOT_ALLOWED]"));
}

#[test]
fn limits_from_flags_apply() {
    let output =
        run(&["--dataset", "support", "--sql", "SELECT ticket_id FROM tickets ORDER BY ticket_id", "--max-rows", "3"]);
    let r = result(&output);
    assert_eq!(r.row_count, 3);
    assert!(r.truncated);
    let output = run(&[
        "--dataset",
        "support",
        "--sql",
        "SELECT COUNT(*) FROM tickets a, tickets b, tickets c",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(result(&output).status, RunStatus::Timeout);
}

#[test]
fn usage_errors_exit_two() {
    let output = run(&["--dataset", "nope", "--sql", "SELECT 1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no dataset \"nope\"") && stderr.contains("support, ecommerce, sensors"), "{stderr}");
    let output = runner_host().args(["run", "--dataset", "support"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "missing --sql");
    let output = run(&["--dataset", "support", "--sql", "SELECT 1", "--format", "xml"]);
    assert_eq!(output.status.code(), Some(2));
    let output = runner_host()
        .args(["run", "--datasets-dir", "/nonexistent", "--dataset", "x", "--sql", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("registry.json"));
}

#[test]
fn help_explains_the_sandbox() {
    let output = runner_host().arg("--help").output().unwrap();
    let text = stdout(&output);
    for word in ["run", "exec", "precompile", "read-only", "/data"] {
        assert!(text.contains(word), "--help lacks {word:?}:\n{text}");
    }
    let output = runner_host().args(["run", "--help"]).output().unwrap();
    let text = stdout(&output);
    for flag in [
        "--datasets-dir",
        "--dataset",
        "--sql",
        "--timeout-ms",
        "--max-rows",
        "--memory-mb",
        "--max-output-bytes",
        "--format",
        "--module",
    ] {
        assert!(text.contains(flag), "run --help lacks {flag}");
    }
}

/// `runner-host exec` as a Kubernetes Job runs it: the request in the environment,
/// /data mapped to the datasets folder.
fn exec(request: serde_json::Value) -> Output {
    runner_host()
        .arg("exec")
        .env("RUNNER_DATA_DIR", datasets())
        .env("RUNNER_REQUEST_JSON", request.to_string())
        .output()
        .unwrap()
}

#[test]
fn exec_checks_the_files_against_the_version_the_service_expects() {
    let registry = protocol::registry::Registry::load(&datasets()).unwrap();
    let dataset = registry.dataset("support").unwrap();
    let mut request = runner_host::request_for(dataset, "SELECT COUNT(*) FROM tickets");
    let recorded = dataset.version_hash.clone().expect("the generator records version hashes");
    request.expected_version =
        Some(protocol::ExpectedVersion { version_hash: recorded.clone(), manifest_dir: String::new() });
    let r = result(&exec(serde_json::to_value(&request).unwrap()));
    assert_eq!(r.status, RunStatus::Success, "{r:?}");
    assert_eq!(r.rows, vec![vec![serde_json::json!(csv_rows("support/tickets.csv"))]]);

    // Files other than the ones the service hashed: refused before the guest runs.
    let other = format!("sha256:{}", "0".repeat(64));
    request.expected_version =
        Some(protocol::ExpectedVersion { version_hash: other.clone(), manifest_dir: String::new() });
    let r = result(&exec(serde_json::to_value(&request).unwrap()));
    assert_eq!(r.status, RunStatus::Error);
    let error = r.error.unwrap();
    assert_eq!(error.error_type, ErrorType::DatasetError);
    assert!(error.message.contains(&other) && error.message.contains(&recorded), "{}", error.message);
    assert!(r.rows.is_empty());
}

#[test]
fn exec_reads_the_request_from_the_environment_and_prints_one_line() {
    let output = exec(serde_json::json!({
        "dataset_id": "ecommerce",
        "files": [{"table": "orders", "path": "/data/ecommerce/orders.csv"}],
        "sql": "SELECT COUNT(*) FROM orders",
    }));
    assert_eq!(output.status.code(), Some(0));
    let r = result(&output);
    assert_eq!(r.rows, vec![vec![serde_json::json!(csv_rows("ecommerce/orders.csv"))]]);

    // Without the variable the request comes on stdin; a bad one is still one line.
    let mut child = runner_host()
        .arg("exec")
        .env("RUNNER_DATA_DIR", datasets())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(result(&output).error_type(), Some(ErrorType::InvalidRequest));
}

#[test]
fn exec_refuses_paths_outside_data() {
    let output = exec(serde_json::json!({
        "dataset_id": "x",
        "files": [{"table": "passwd", "path": "/data/../../etc/passwd"}],
        "sql": "SELECT * FROM passwd",
    }));
    let r = result(&output);
    assert_eq!(r.error_type(), Some(ErrorType::InvalidRequest));
    assert!(r.error.unwrap().message.contains("must not leave /data"));
}

#[test]
fn precompile_writes_an_artifact_that_run_loads() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("guest.cwasm");
    let output = runner_host().arg("precompile").arg("--out").arg(&artifact).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(&std::fs::read(&artifact).unwrap()[..4], b"\x7fELF");
    let output = runner_host()
        .args(["run", "--dataset", "sensors", "--sql", "SELECT COUNT(DISTINCT sensor_id) FROM sensors"])
        .arg("--datasets-dir")
        .arg(datasets())
        .arg("--module")
        .arg(&artifact)
        // No cache: the artifact alone must do.
        .env("RUNNER_CACHE_DIR", dir.path().join("unused-cache"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let sensors = std::fs::read_to_string(datasets().join("sensors/sensors.csv")).unwrap();
    let distinct: std::collections::HashSet<&str> =
        sensors.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(result(&output).rows, vec![vec![serde_json::json!(distinct.len())]]);
    assert!(!dir.path().join("unused-cache").exists(), "a precompiled module needs no cache");
}
