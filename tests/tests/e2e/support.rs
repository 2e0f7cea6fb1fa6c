//! Shared helpers: where things are, one sandbox per test process, and CSV files
//! read without DataFusion, to compute the answers queries must give.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use protocol::registry::Registry;
use protocol::{RunRequest, RunResult};
use runner_host::{ModuleSource, Profiler, Sandbox, SandboxOptions};
use serde_json::Value;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

pub fn datasets_dir() -> PathBuf {
    workspace().join("datasets")
}

/// The compilation cache all of the workspace's tests share (under target/tmp).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("module-cache")
}

/// A scratch folder under target/tmp that survives between runs (for big data).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sandbox with the embedded guest, loaded once per test process.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let options = SandboxOptions {
            module: ModuleSource::Embedded,
            cache_dir: Some(cache_dir()),
            profiler: Profiler::None,
            ..SandboxOptions::default()
        };
        Sandbox::new(&options).expect("the embedded guest loads")
    })
}

/// The vendored foreign datasets folder: a registry in another tool's shape (unknown
/// fields), CRLF line ends, `True`/`False`, empty fields, a quoted field with a comma.
pub fn foreign_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/foreign")
}

/// The foreign datasets folders the foreign-corpus tests check: always the vendored
/// fixture, and `CSV_CORPUS_DIR` too when it is set (CI sets it). Unset, that is a
/// skipped check and said so in the skip log.
pub fn foreign_corpora() -> Vec<PathBuf> {
    let mut corpora = vec![foreign_fixture()];
    match std::env::var_os("CSV_CORPUS_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(dir.join("registry.json").is_file(), "CSV_CORPUS_DIR={} has no registry.json", dir.display());
            corpora.push(dir);
        }
        None => skipped(
            "CSV_CORPUS_DIR is not set: checked only the vendored tests/fixtures/foreign \
             (.ci/run sets it to ../shared/corpus/adoptaisandbox)",
        ),
    }
    corpora
}

/// Where skipped checks are listed, one a line; `.ci/run` empties it before the tests
/// and prints it after them.
pub fn skip_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-checks.txt")
}

/// Records a check that did not run: straight to the process's stderr (libtest
/// captures `eprintln!`, not a direct write) and appended to [`skip_log`].
pub fn skipped(what: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("<unnamed test>").to_string();
    let line = format!("SKIPPED {test}: {what}\n");
    let _ = std::io::stderr().write_all(format!("\n*** {line}").as_bytes());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(skip_log());
    match log {
        Ok(mut file) => file.write_all(line.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", skip_log().display())),
        Err(e) => panic!("cannot record a skipped check in {}: {e}", skip_log().display()),
    }
}

/// A request for `sql` over a dataset of `datasets`, with default limits.
pub fn request(datasets: &Path, dataset: &str, sql: &str) -> RunRequest {
    let registry = Registry::load(datasets).unwrap();
    let dataset = registry.dataset(dataset).unwrap_or_else(|| panic!("no dataset {dataset}"));
    runner_host::request_for(dataset, sql)
}

pub fn run_request(datasets: &Path, request: RunRequest) -> RunResult {
    sandbox().run_mounted(datasets, request)
}

/// Runs `sql` and insists it succeeds.
pub fn query(datasets: &Path, dataset: &str, sql: &str) -> RunResult {
    let result = run_request(datasets, request(datasets, dataset, sql));
    assert!(result.error.is_none(), "{sql}\n→ {:?}", result.error);
    result
}

/// A CSV file read with the `csv` crate: the independent source of truth.
pub struct Csv {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn load(path: &Path) -> Csv {
        let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers = reader.headers().unwrap().iter().map(str::to_string).collect();
        let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
        Csv { headers, rows }
    }

    pub fn col(&self, name: &str) -> usize {
        self.headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    /// The values of a column.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let i = self.col(name);
        self.rows.iter().map(move |r| r[i].as_str())
    }
}

pub fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

pub fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!((actual - expected).abs() <= tolerance, "{what}: {actual} != {expected}");
}

/// An orchestrator serving on a loopback port, in this process.
pub struct TestServer {
    pub url: String,
    /// The probe listener's, when the configuration sets PROBE_LISTEN_ADDR (bound
    /// where it says: a loopback address with port 0 gets a free port).
    pub probe_url: Option<String>,
    store_dir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// The configuration tests start from: every setting at its default whatever the
/// environment says (an exported `MAX_ROWS` must not change a test's outcome), the
/// repo's datasets, a fresh store, the shared module cache, a loopback port.
pub fn test_config(store_dir: &Path) -> orchestrator::Config {
    let mut config = orchestrator::Config::without_env();
    config.datasets_dir = datasets_dir();
    config.run_store_path = store_dir.join("runs.sqlite");
    config.runner_cache_dir = Some(cache_dir());
    config.runner_module = None;
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config
}

impl TestServer {
    /// Starts a server with `customize` applied to [`test_config`], and waits until
    /// it is ready (the first start of a fresh checkout compiles the guest).
    pub async fn start(customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
        let store_dir = tempfile::tempdir().unwrap();
        TestServer::start_in(store_dir, customize).await
    }

    /// Starts a server without waiting for it to be ready.
    pub async fn start_unready(customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
        TestServer::launch(tempfile::tempdir().unwrap(), customize).await
    }

    pub async fn start_in(
        store_dir: tempfile::TempDir,
        customize: impl FnOnce(&mut orchestrator::Config),
    ) -> TestServer {
        let server = TestServer::launch(store_dir, customize).await;
        server.wait_ready().await;
        server
    }

    async fn launch(store_dir: tempfile::TempDir, customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
        let mut config = test_config(store_dir.path());
        customize(&mut config);
        let state = orchestrator::server::build_state(config).await.expect("the orchestrator starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let probe_listener = match state.config().probe_listen_addr {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.unwrap()),
            None => None,
        };
        let probe_url = probe_listener.as_ref().map(|l| format!("http://{}", l.local_addr().unwrap()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            orchestrator::server::serve_with_probes(state, listener, probe_listener, async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| format!("{e:#}"))
        });
        TestServer { url, probe_url, store_dir: Some(store_dir), shutdown: Some(tx), task: Some(task) }
    }

    pub async fn wait_ready(&self) {
        wait_until_ready(&self.url).await;
    }

    /// The folder holding this server's store (and its UPLOADS_DIR, `uploads`).
    pub fn store_path(&self) -> &Path {
        self.store_dir.as_ref().expect("the store folder is kept until stop").path()
    }

    /// Graceful shutdown; returns the store folder for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.store_dir.take().expect("the store folder is kept until stop")
    }

    pub async fn post_run(&self, body: Value) -> (u16, Value) {
        let response = client().post(format!("{}/runs", self.url)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = client().get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

/// A binary of the workspace, built next to this test binary (target/release), and
/// no older than any of its inputs: `cargo test -p tests` does not rebuild it, and a
/// stale binary would test old code.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the whole suite (`cargo test --release`) or `cargo build --release -p {name}`",
        path.display()
    );
    let built = modified(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Some((input, _)) = newest_input(&path).filter(|(_, changed)| *changed > built) {
        panic!(
            "stale binary: run cargo build --release -p {name} ({} is older than {})",
            path.display(),
            input.display()
        );
    }
    path
}

/// The workspace's inputs to its binaries, for a binary that has no dep-info file: the
/// sources of every workspace crate `orchestrator` and `runner-host` link (the guest and
/// its reader included, since they are embedded), the lock file and the page's assets.
const WORKSPACE_INPUTS: &[&str] = &[
    "Cargo.lock",
    "protocol/src",
    "csv-decoder/src",
    "runner-guest/src",
    "runner-host/src",
    "runner-host/build.rs",
    "orchestrator/src",
    "orchestrator/assets",
];

/// The most recently modified input of a binary, and when. The inputs are those cargo
/// lists in the dep-info file next to it (`<binary>.d`): the source files of every
/// workspace crate it links, the files and folders their build scripts watch (the
/// embedded guest and its sources included). Cargo relinks the binary when any of them
/// changes, so a newer one means the binary predates it. Only `cargo build` writes that
/// file; a binary `cargo test` built (as CI's one `cargo test --release` does) is
/// checked against the workspace's sources instead ([`WORKSPACE_INPUTS`]).
fn newest_input(binary: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    fn walk(path: &Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for entry in entries {
                walk(&entry.unwrap_or_else(|e| panic!("{}: {e}", path.display())).path(), newest);
            }
        } else if let Ok(changed) = modified(path)
            && newest.as_ref().is_none_or(|(_, t)| changed > *t)
        {
            *newest = Some((path.to_path_buf(), changed));
        }
    }
    let dep_info = binary.with_extension("d");
    if !dep_info.is_file() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace");
        let mut newest = None;
        // runner-host does not depend on the orchestrator: a change there does not
        // (and need not) rebuild it.
        let inputs = WORKSPACE_INPUTS
            .iter()
            .filter(|input| name_of(binary) != "runner-host" || !input.starts_with("orchestrator/"));
        for input in inputs {
            let path = workspace.join(input);
            assert!(path.exists(), "{} is gone: update WORKSPACE_INPUTS", path.display());
            walk(&path, &mut newest);
        }
        return newest;
    }
    let text = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo writes it with the binary)", dep_info.display()));
    // `<binary>: <input> <input> ...`, spaces inside a path escaped as `\ `.
    let (_, inputs) = text.split_once(": ").unwrap_or_else(|| panic!("{}: not a dep-info file", dep_info.display()));
    let mut newest = None;
    for input in inputs.replace("\\ ", "\0").split_whitespace() {
        walk(Path::new(&input.replace('\0', " ")), &mut newest);
    }
    newest
}

fn name_of(binary: &Path) -> &str {
    binary.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

fn modified(path: &Path) -> std::io::Result<std::time::SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// An external tool the test needs (helm, kubernetes-validate, docker). Missing, it
/// fails the test — unless CSV_ANALYST_SKIP_MISSING_TOOLS=1, which skips it, recorded
/// by [`skipped`]. CI installs every tool and unsets that variable (.ci/run).
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => Some(path),
        None if std::env::var("CSV_ANALYST_SKIP_MISSING_TOOLS").as_deref() == Ok("1") => {
            skipped(&format!(
                "{name} is not installed: the checks that need it did not run (CSV_ANALYST_SKIP_MISSING_TOOLS=1)"
            ));
            None
        }
        None => panic!(
            "{name} is not on PATH. Install the prerequisites (README.md, or run .ci/run), \
             or set CSV_ANALYST_SKIP_MISSING_TOOLS=1 to skip the tests that need it"
        ),
    }
}

/// Polls `{url}/readyz` until it answers 200 (the first start of a fresh checkout
/// compiles the guest, which takes minutes).
pub async fn wait_until_ready(url: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = client().get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

/// `kubernetes-validate --strict` against Kubernetes 1.33's schemas, on a YAML stream.
pub fn validate_strictly(yaml: &str) {
    let Some((succeeded, report)) = validation_report(yaml) else { return };
    let passed = succeeded && report.contains("passed") && !report.contains("ERROR");
    assert!(passed, "strict validation failed:\n{report}");
}

/// kubernetes-validate's verdict (strict, Kubernetes 1.33) on a YAML stream and its
/// report; `None` when the tool is missing and that is allowed (recorded as skipped).
pub fn validation_report(yaml: &str) -> Option<(bool, String)> {
    let validator = require_tool("kubernetes-validate")?;
    let mut child = std::process::Command::new(validator)
        .args(["--strict", "-k", "1.33.0", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), report))
}

/// One request to the service at `url`, as `token`'s bearer when given, with a JSON
/// body when given: the status and the body (JSON, or the text as a string).
pub async fn call(
    url: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, format!("{url}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The real orchestrator binary serving on a free loopback port, with the test's
/// settings and defaults for the rest (nothing inherited from the environment);
/// killed when dropped. For signals, crashes and clients that start processes.
pub struct BinaryService {
    child: std::process::Child,
    pub url: String,
}

impl BinaryService {
    pub fn start(store: &Path, extra: &[(&str, &str)]) -> BinaryService {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(workspace_binary("orchestrator"))
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATASETS_DIR", datasets_dir())
            .env("RUN_STORE_PATH", store.join("runs.sqlite"))
            .env("RUNNER_CACHE_DIR", cache_dir())
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        BinaryService { child, url: format!("http://127.0.0.1:{port}") }
    }

    pub async fn wait_ready(&self) {
        wait_until_ready(&self.url).await;
    }

    /// The process's resident and peak resident memory (VmRSS, VmHWM), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sets the process's peak resident memory (VmHWM) to what it holds now.
    pub fn reset_peak_memory(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for BinaryService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
