//! The web page in a real browser: Debian's Chromium, driven over WebDriver
//! (chromedriver and the `fantoccini` client), against an orchestrator started in
//! this process. Each check is what a person would see on the page; each test saves
//! a screenshot under its own folder and prints where.
//!
//! Chromium and chromedriver are prerequisites (`apt-get install -y chromium
//! chromium-driver`; `.ci/run` installs them). Missing, the tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use orchestrator::llm::{LlmConfig, ProviderChoice};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{TestServer, client, workspace};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The seed query of the README and the issue.
const SEED_SQL: &str = "SELECT priority, COUNT(*) AS n FROM tickets GROUP BY priority ORDER BY n DESC";

/// How long the page may take to show something (a run, a schema, a streamed answer).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The markup the page must show as text, never run.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// One headless Chromium with its own chromedriver, profile and screenshot folder.
struct Browser {
    client: Client,
    driver: Child,
    /// Screenshots and the chromedriver log; kept after the test.
    dir: PathBuf,
    /// Chromium's profile; removed with the browser.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` viewport. `name` names the folder.
    async fn open(name: &str, width: u32, height: u32) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: the browser tests need Debian's Chromium and its WebDriver. \
                 Install them with `apt-get install -y chromium chromium-driver` ({package} provides {path}; \
                 .ci/run installs both)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("csv-analyst-browser-{name}-"))
            .tempdir()
            .expect("a temporary folder")
            .keep();
        let profile = tempfile::Builder::new().prefix("csv-analyst-chromium-profile-").tempdir().unwrap();

        // A free port can be taken before chromedriver binds it (it binds IPv4 and
        // IPv6 both, and other tests bind ports all the time): try another.
        let mut attempt = 0;
        let (mut driver, webdriver) = loop {
            attempt += 1;
            let port = free_port();
            let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
            let mut driver = {
                use std::os::unix::process::CommandExt;
                Command::new(CHROMEDRIVER)
                    .arg(format!("--port={port}"))
                    .arg("--allowed-ips=127.0.0.1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(log.try_clone().unwrap()))
                    .stderr(Stdio::from(log))
                    // Its own process group: Drop ends chromedriver and every Chromium
                    // process it started, even when a test panics.
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start: {e}"))
            };
            let webdriver = format!("http://127.0.0.1:{port}");
            match wait_for_driver(&webdriver, &mut driver, &dir).await {
                Ok(()) => break (driver, webdriver),
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("{CHROMEDRIVER} exited before it served:\n{log}"),
            }
        };

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": dir.display().to_string(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector).capabilities(capabilities).connect(&webdriver).await {
            Ok(client) => client,
            Err(e) => {
                kill_group(&mut driver);
                panic!(
                    "Chromium does not start through chromedriver: {e} (log: {})",
                    dir.join("chromedriver.log").display()
                )
            }
        };
        let browser = Browser { client, driver, dir, _profile: profile };
        browser.set_viewport(width, height).await;
        browser
    }

    /// Sizes the window so that the viewport (what a screenshot shows) is exactly
    /// `width`×`height`: the window's frame differs between Chromium versions.
    async fn set_viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self.eval("return [window.innerWidth, window.innerHeight]").await;
        let (inner_width, inner_height) = (inner[0].as_u64().unwrap() as u32, inner[1].as_u64().unwrap() as u32);
        self.client
            .set_window_size(width + width.saturating_sub(inner_width), height + height.saturating_sub(inner_height))
            .await
            .unwrap();
        let inner = self.eval("return [window.innerWidth, window.innerHeight]").await;
        assert_eq!(inner, json!([width, height]), "the viewport could not be sized");
    }

    /// Opens the page of `server` and waits until its datasets and schema are shown.
    async fn open_page(&self, server: &TestServer) {
        self.client.goto(&format!("{}/", server.url)).await.unwrap();
        self.wait("document.querySelectorAll('[data-testid=dataset-picker] option').length > 0", "the dataset picker")
            .await;
        self.wait("document.querySelector('#schema details') !== null", "the schema panel").await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until the JavaScript expression `condition` is truthy, and returns it.
    async fn wait(&self, condition: &str, what: &str) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let value = self.eval(&format!("return ({condition});")).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("timed-out").await;
                panic!("timed out waiting for {what} ({condition}); the page: {}", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, testid: &str) -> Element {
        self.client
            .find(Locator::Css(&format!("[data-testid={testid}]")))
            .await
            .unwrap_or_else(|e| panic!("no element [data-testid={testid}]: {e}"))
    }

    /// Saves a screenshot as `<label>.png` in the test's folder and prints its path.
    async fn screenshot(&self, label: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.dir.join(format!("{label}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let line = format!("screenshot: {}\n", path.display());
        std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
        path
    }

    /// Clicks the SQL tab, replaces the editor's text with `sql` and runs it with the
    /// Run button (or Ctrl+Enter), and waits for the outcome.
    async fn run_sql(&self, sql: &str, with_keyboard: bool) -> Value {
        self.find("mode-sql").await.click().await.unwrap();
        let editor = self.find("sql-editor").await;
        editor.clear().await.unwrap();
        editor.send_keys(sql).await.unwrap();
        let before = self.eval("return document.getElementById('result-panel').dataset.runId || ''").await;
        if with_keyboard {
            let chord: String =
                [char::from(Key::Control), char::from(Key::Enter), char::from(Key::Control)].into_iter().collect();
            editor.send_keys(&chord).await.unwrap();
        } else {
            self.find("run-sql").await.click().await.unwrap();
        }
        let condition = format!(
            "(p => p.dataset.state === 'done' && (p.dataset.runId !== {before} || p.dataset.status === 'error')
               && {{ runId: p.dataset.runId, status: p.dataset.status }})(document.getElementById('result-panel'))"
        );
        let panel = self.wait(&condition, &format!("the outcome of {sql}")).await;
        json!({ "run_id": panel["runId"], "status": panel["status"] })
    }

    /// The result table as shown: a row per row, `null` for a NULL cell.
    async fn table(&self) -> Vec<Vec<Value>> {
        let rows = self
            .eval(
                "return Array.from(document.querySelectorAll('[data-testid=result-table] tbody tr'))
                   .map(tr => Array.from(tr.cells).map(td => td.querySelector('.null') ? null : td.innerText))",
            )
            .await;
        serde_json::from_value(rows).unwrap()
    }

    async fn headers(&self) -> Vec<String> {
        let names = self
            .eval("return Array.from(document.querySelectorAll('[data-testid=result-table] thead th')).map(th => th.firstChild.textContent)")
            .await;
        serde_json::from_value(names).unwrap()
    }

    async fn text(&self, testid: &str) -> String {
        self.find(testid).await.text().await.unwrap()
    }

    async fn is_displayed(&self, testid: &str) -> bool {
        self.find(testid).await.is_displayed().await.unwrap()
    }

    /// Every URL the page loaded or fetched, and the page's origin.
    async fn requests(&self) -> (String, Vec<String>) {
        let value = self
            .eval(
                "return [location.origin, performance.getEntriesByType('navigation')
                   .concat(performance.getEntriesByType('resource')).map(e => e.name)]",
            )
            .await;
        serde_json::from_value(value).unwrap()
    }

    /// The Content-Security-Policy violations the page reported since it loaded
    /// (the Reporting API keeps them): an inline script or style, an `eval`, a request
    /// elsewhere.
    async fn csp_violations(&self) -> Vec<String> {
        let script = "const done = arguments[0];
            const seen = [];
            const observer = new ReportingObserver(
              reports => seen.push(...reports.map(r => `${r.body.effectiveDirective} ${r.body.blockedURL}`)),
              { types: ['csp-violation'], buffered: true });
            observer.observe();
            setTimeout(() => done(seen), 200);";
        let seen = self.client.execute_async(script, vec![]).await.expect("the Reporting API answers");
        serde_json::from_value(seen).unwrap()
    }

    /// No dialog is open (an `alert` would be one).
    async fn assert_no_dialog(&self) {
        match self.client.get_alert_text().await {
            Err(e) if e.is_no_such_alert() => {}
            Err(e) => panic!("asking for a dialog failed: {e}"),
            Ok(text) => panic!("a dialog opened: {text:?}"),
        }
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        kill_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Ends chromedriver and the Chromium processes of its process group.
fn kill_group(driver: &mut Child) {
    if driver.try_wait().ok().flatten().is_none() {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", driver.id())]).status();
        let _ = driver.kill();
    }
    let _ = driver.wait();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits until chromedriver answers; `Err` with its log if it exited first.
async fn wait_for_driver(url: &str, driver: &mut Child, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            let log = std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default();
            return Err(format!("({status})\n{log}"));
        }
        if let Ok(response) = client().get(format!("{url}/status")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            kill_group(driver);
            panic!("{CHROMEDRIVER} did not answer on {url} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cell as the page shows it: the JSON value as text, `null` for NULL.
fn shown(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

/// Width and height of a PNG, from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_query_from_the_sql_editor_shows_the_apis_rows_and_one_bar_per_row() {
    let server = TestServer::start(|_| {}).await;
    let page = client().get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-security-policy"], orchestrator::page::CONTENT_SECURITY_POLICY);
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");

    let browser = Browser::open("seed-query", 1280, 800).await;
    browser.open_page(&server).await;
    assert!(!browser.is_displayed("signin").await, "single-user mode: no sign-in box");
    let options =
        browser.eval("return Array.from(document.querySelectorAll('#dataset-picker option')).map(o => o.value)").await;
    assert_eq!(options, json!(["support", "ecommerce", "sensors"]));
    browser.find("dataset-picker").await.select_by_value("support").await.unwrap();
    browser.wait("document.querySelector('#schema details[data-table=tickets]') !== null", "the tickets schema").await;
    assert_eq!(browser.text("dataset-name").await, "Customer Support Tickets");
    let chips = browser.client.find_all(Locator::Css("[data-testid=prompt-chip]")).await.unwrap();
    assert_eq!(chips.len(), 6, "the registry's six example prompts for support");

    let outcome = browser.run_sql(SEED_SQL, false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    let run_id = outcome["run_id"].as_str().unwrap().to_string();

    let (code, api) = server.post_run(json!({"dataset_id": "support", "sql": SEED_SQL})).await;
    assert_eq!(code, 200, "{api}");
    let api_rows = api["result"]["rows"].as_array().unwrap();
    assert_eq!(api_rows.len(), 4, "four priorities");
    let expected: Vec<Vec<Value>> =
        api_rows.iter().map(|row| row.as_array().unwrap().iter().map(shown).collect()).collect();
    assert_eq!(browser.table().await, expected);
    assert_eq!(browser.headers().await, ["priority", "n"]);
    assert_eq!(browser.text("row-count").await, "4 rows");

    let chart_kind = browser.eval("return document.querySelector('[data-testid=chart]').dataset.kind").await;
    assert_eq!(chart_kind, "bar");
    let bars = browser
        .eval(
            "return Array.from(document.querySelectorAll('[data-testid=chart] svg rect'))
               .map(r => [r.dataset.label, Number(r.getAttribute('width'))])",
        )
        .await;
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), api_rows.len(), "one bar per row: {bars:?}");
    for (bar, row) in bars.iter().zip(api_rows) {
        assert_eq!(bar[0], row[0], "bars in the table's order");
    }
    let widths: Vec<f64> = bars.iter().map(|b| b[1].as_f64().unwrap()).collect();
    assert!(widths.windows(2).all(|w| w[0] >= w[1]) && widths[3] > 0.0, "bar lengths follow n, descending: {widths:?}");

    assert_eq!(browser.text("shown-sql").await, SEED_SQL);
    let link = browser.find("run-link").await.attr("href").await.unwrap();
    assert_eq!(link.as_deref(), Some(format!("/runs/{run_id}").as_str()));
    let (_, datasets) = server.get("/datasets").await;
    let hash = datasets["datasets"][0]["version_hash"].as_str().unwrap().to_string();
    let meta = browser.text("what-ran").await;
    assert!(meta.contains(&hash), "the dataset version hash {hash} is shown: {meta}");
    let (code, record) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!((code, &record["details"]["sql"]), (200, &json!(SEED_SQL)));

    let (origin, urls) = browser.requests().await;
    assert_eq!(origin, server.url);
    for wanted in ["/", "/assets/app.js", "/assets/app.css", "/datasets", "/runs"] {
        assert!(urls.contains(&format!("{origin}{wanted}")), "{wanted} was requested: {urls:?}");
    }
    let foreign: Vec<&String> = urls.iter().filter(|u| !u.starts_with(&format!("{origin}/"))).collect();
    assert!(foreign.is_empty(), "requests to other origins: {foreign:?}");
    assert_eq!(browser.csp_violations().await, Vec::<String>::new(), "the page keeps to its own policy");

    let shot = browser.screenshot("seed-query").await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(png_size(&png), (1280, 800));
    if std::env::var("CSV_ANALYST_WRITE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = workspace().join("docs/page.png");
        std::fs::write(&docs, &png).unwrap_or_else(|e| panic!("{}: {e}", docs.display()));
        std::io::Write::write_all(&mut std::io::stderr(), format!("wrote {}\n", docs.display()).as_bytes()).unwrap();
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn download_csv_saves_the_rows_of_the_table_and_nested_cells_show_as_json() {
    let server = TestServer::start(|_| {}).await;
    let browser = Browser::open("download-csv", 1280, 800).await;
    browser.open_page(&server).await;
    let sql = "SELECT category, priority, COUNT(*) AS n, ROUND(AVG(resolution_time_hours), 2) AS avg_hours \
               FROM tickets GROUP BY category, priority ORDER BY category, priority";
    let outcome = browser.run_sql(sql, false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    let run_id = outcome["run_id"].as_str().unwrap();
    let table = browser.table().await;
    assert_eq!(table.len(), 16, "4 categories × 4 priorities");

    let link = browser.find("download-csv").await;
    assert_eq!(link.attr("href").await.unwrap().as_deref(), Some(format!("/runs/{run_id}/result.csv").as_str()));
    link.click().await.unwrap();
    let file = browser.dir.join(format!("run-{run_id}.csv"));
    let deadline = Instant::now() + PAGE_TIMEOUT;
    while !file.is_file() {
        assert!(Instant::now() < deadline, "{} was not downloaded", file.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Chromium writes a .crdownload and renames it when complete.
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(headers, browser.headers().await);
    let rows: Vec<Vec<Value>> = reader.records().map(|r| r.unwrap().iter().map(|cell| json!(cell)).collect()).collect();
    assert_eq!(rows, table, "the downloaded CSV has the table's rows");

    let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    browser.screenshot("download-csv").await;

    // Nested values show as their JSON text, in the table and in the file alike.
    let sql = "SELECT make_array(1, 2) AS pair, named_struct('k', 'v') AS s, CAST(NULL AS VARCHAR) AS nothing";
    let outcome = browser.run_sql(sql, false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(browser.table().await, vec![vec![json!("[1,2]"), json!(r#"{"k":"v"}"#), Value::Null]]);
    let run_id = outcome["run_id"].as_str().unwrap();
    let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "pair,s,nothing\n\"[1,2]\",\"{\"\"k\"\":\"\"v\"\"}\",\n");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sql_error_and_a_policy_refusal_show_in_words_and_the_page_keeps_working() {
    let server = TestServer::start(|_| {}).await;
    let browser = Browser::open("errors", 1280, 800).await;
    browser.open_page(&server).await;

    let outcome = browser.run_sql("SELECT no_such_column FROM tickets", false).await;
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert!(browser.is_displayed("error").await);
    let error = browser.text("error").await;
    assert!(error.contains("does not exist"), "the error in words: {error}");
    assert!(error.contains("no_such_column") && error.contains("SQL_PLAN_ERROR"), "{error}");
    assert_eq!(browser.text("run-status").await, "Failed");
    assert!(!browser.is_displayed("result-table").await, "no table for a failed run");
    browser.screenshot("sql-error").await;

    let outcome = browser.run_sql("DROP TABLE tickets", true).await;
    assert_eq!(outcome["status"], "rejected", "Ctrl+Enter ran it: {outcome}");
    let refused = outcome["run_id"].as_str().unwrap().to_string();
    let error = browser.text("error").await;
    assert!(error.contains("Refused by the SQL policy") && error.contains("SQL_NOT_ALLOWED"), "{error}");
    assert_eq!(browser.text("run-status").await, "Refused by policy");
    assert_eq!(browser.text("shown-sql").await, "DROP TABLE tickets");
    browser.screenshot("policy-refusal").await;

    let outcome = browser.run_sql("SELECT COUNT(*) AS tickets FROM tickets", true).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert!(!browser.is_displayed("error").await, "the error is gone");
    assert_eq!(browser.table().await, vec![vec![json!("6000")]]);
    let number = browser.text("big-number").await;
    assert_eq!(number, "6,000\ntickets", "a single number is a big-number card");

    // The refused run, clicked in the recent runs, is shown again.
    let entry = format!("[data-testid=runs] button[data-run-id='{refused}']");
    browser.wait(&format!("document.querySelector(\"{entry}\")"), "the refused run in the history").await;
    browser.client.find(Locator::Css(&entry)).await.unwrap().click().await.unwrap();
    browser
        .wait(
            &format!("(p => p.dataset.state === 'done' && p.dataset.runId === '{refused}')(document.getElementById('result-panel'))"),
            "the refused run, reloaded",
        )
        .await;
    assert!(browser.text("error").await.contains("SQL_NOT_ALLOWED"));
    assert_eq!(browser.text("shown-sql").await, "DROP TABLE tickets");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_runs_from_the_plan_editor_and_shows_its_compiled_sql() {
    let server = TestServer::start(|_| {}).await;
    let browser = Browser::open("plan", 1280, 800).await;
    browser.open_page(&server).await;
    browser.find("mode-plan").await.click().await.unwrap();
    browser.client.find(Locator::Id("plan-example")).await.unwrap().click().await.unwrap();
    let editor = browser.find("plan-editor").await;
    browser.wait("document.getElementById('plan-editor').value !== ''", "the example plan").await;
    let text = editor.prop("value").await.unwrap().unwrap();
    let plan: Value = serde_json::from_str(&text).expect("the example is JSON");
    assert_eq!(plan["table"], "tickets", "{plan}");

    browser.find("run-sql").await.click().await.unwrap();
    browser.wait("document.getElementById('result-panel').dataset.state === 'done'", "the plan's run").await;
    let (code, api) = server.post_run(json!({"dataset_id": "support", "query_type": "plan", "plan": plan})).await;
    assert_eq!((code, &api["status"]), (200, &json!("succeeded")), "the example plan runs: {api}");
    let expected: Vec<Vec<Value>> = api["result"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(shown).collect())
        .collect();
    assert_eq!(browser.table().await, expected);
    assert_eq!(browser.text("shown-sql").await, api["details"]["sql"].as_str().unwrap(), "the compiled SQL");
    let shown_plan: Value = serde_json::from_str(&browser.text("shown-plan").await).unwrap();
    assert_eq!(shown_plan, plan);
    browser.screenshot("plan").await;

    // Not JSON: said in words, nothing sent.
    editor.clear().await.unwrap();
    editor.send_keys(r#"{"table": "#).await.unwrap();
    browser.find("run-sql").await.click().await.unwrap();
    browser.wait("document.getElementById('result-panel').dataset.status === 'error'", "the JSON error").await;
    let error = browser.text("error").await;
    assert!(error.starts_with("The plan is not valid JSON.") && error.contains("PLAN_JSON"), "{error}");

    // A field the schema does not have: refused with its path.
    editor.clear().await.unwrap();
    editor.send_keys(r#"{"table": "tickets", "select": [{"column": "priority"}], "colour": "red"}"#).await.unwrap();
    let chord: String =
        [char::from(Key::Control), char::from(Key::Enter), char::from(Key::Control)].into_iter().collect();
    editor.send_keys(&chord).await.unwrap();
    browser
        .wait(
            "(p => p.dataset.state === 'done' && p.dataset.status === 'failed')(document.getElementById('result-panel'))",
            "the refused plan",
        )
        .await;
    let error = browser.text("error").await;
    assert!(error.contains("colour") && error.contains("INVALID_REQUEST"), "{error}");
    browser.close().await;
}

/// A datasets folder whose names, descriptions, prompts and cells are markup.
fn hostile_datasets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("hostile")).unwrap();
    let registry = json!({
        "version": "1",
        "datasets": [{
            "id": "hostile",
            "name": format!("Notes {HOSTILE}"),
            "description": format!("<b>not bold</b> {HOSTILE}"),
            "files": [{
                "name": "notes.csv",
                "path": "hostile/notes.csv",
                "description": "<script>alert(2)</script>",
                "schema": {
                    "id": {"type": "INTEGER", "description": "<i>id</i>"},
                    "body": {"type": "VARCHAR", "description": HOSTILE},
                },
            }],
            "prompts": [HOSTILE],
        }],
    });
    std::fs::write(dir.path().join("registry.json"), serde_json::to_string_pretty(&registry).unwrap()).unwrap();
    std::fs::write(
        dir.path().join("hostile/notes.csv"),
        format!("id,body\n1,{HOSTILE}\n2,<script>alert(2)</script>\n3,\n"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_dataset_shows_as_literal_text_and_no_dialog_opens() {
    let datasets = hostile_datasets();
    let path = datasets.path().to_path_buf();
    let server = TestServer::start(move |c| c.datasets_dir = path).await;
    let browser = Browser::open("hostile-dataset", 1280, 800).await;
    browser.open_page(&server).await;

    assert_eq!(browser.text("dataset-name").await, format!("Notes {HOSTILE}"));
    assert_eq!(browser.text("dataset-description").await, format!("<b>not bold</b> {HOSTILE}"));
    assert_eq!(browser.text("prompt-chip").await, HOSTILE);
    let schema = browser.text("schema").await;
    assert!(schema.contains(HOSTILE) && schema.contains("<i>id</i>"), "the schema shows markup as text: {schema}");
    let samples = browser.text("sample-rows").await;
    assert!(samples.contains(HOSTILE) && samples.contains("<script>alert(2)</script>"), "{samples}");

    let outcome = browser.run_sql("SELECT id, body, '' AS empty_text FROM notes ORDER BY id", false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(
        browser.table().await,
        vec![
            vec![json!("1"), json!(HOSTILE), json!("")],
            vec![json!("2"), json!("<script>alert(2)</script>"), json!("")],
            vec![json!("3"), Value::Null, json!("")],
        ],
        "markup as text; NULL (the empty CSV field) unlike the empty string"
    );
    let null_badge = browser
        .eval("return document.querySelector('[data-testid=result-table] tbody tr:nth-child(3) td:nth-child(2)').innerText")
        .await;
    assert_eq!(null_badge, "NULL", "NULL is shown as a NULL badge");
    let align = browser
        .eval(
            "return Array.from(document.querySelectorAll('[data-testid=result-table] tbody tr:first-child td'))
               .map(td => getComputedStyle(td).textAlign)",
        )
        .await;
    assert_eq!(align, json!(["right", "left", "left"]), "numbers are right-aligned");

    let injected = browser.eval("return document.querySelectorAll('img, script:not([src]), b, i').length").await;
    assert_eq!(injected, 0, "no element was made from the data");
    browser.assert_no_dialog().await;
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    browser.screenshot("hostile-dataset").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_fits_a_phone_screen() {
    let server = TestServer::start(|_| {}).await;
    let browser = Browser::open("phone", 390, 844).await;
    browser.open_page(&server).await;
    let outcome = browser.run_sql(SEED_SQL, false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(browser.table().await.len(), 4);
    let bars = browser.eval("return document.querySelectorAll('[data-testid=chart] svg rect').length").await;
    assert_eq!(bars, 4);

    let page_width = browser.eval("return document.documentElement.scrollWidth").await;
    assert_eq!(page_width, 390, "nothing is wider than the screen");
    let edges = browser
        .eval(
            "return ['sql-editor', 'run-sql', 'chart', 'table-wrap', 'dataset-picker']
               .map(id => document.getElementById(id).getBoundingClientRect())
               .map(r => [Math.round(r.left), Math.round(r.right)])",
        )
        .await;
    for edge in edges.as_array().unwrap() {
        assert!(edge[0].as_i64().unwrap() >= 0 && edge[1].as_i64().unwrap() <= 390, "inside the screen: {edges}");
    }
    let png = std::fs::read(browser.screenshot("phone").await).unwrap();
    assert_eq!(png_size(&png), (390, 844));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_model_the_chat_box_says_how_to_configure_one_and_sql_still_runs() {
    let server = TestServer::start(|_| {}).await;
    let (_, ready) = server.get("/readyz").await;
    assert_eq!(ready["llm"]["configured"], false, "{ready}");
    let browser = Browser::open("no-model", 1280, 800).await;
    browser.open_page(&server).await;
    browser.wait("!document.getElementById('llm-notice').hidden", "the notice").await;
    browser.find("mode-ask").await.click().await.unwrap();
    let notice = browser.text("llm-notice").await;
    assert!(notice.contains("No language model is configured") && notice.contains("OPENAI_API_KEY"), "{notice}");
    assert!(notice.contains("ANTHROPIC_API_KEY") && notice.contains("OPENAI_BASE_URL"), "{notice}");

    // A chip fills the box instead of sending a question nobody can answer.
    browser.find("prompt-chip").await.click().await.unwrap();
    let input = browser.find("chat-input").await;
    assert_eq!(
        input.prop("value").await.unwrap().as_deref(),
        Some("What's our SLA compliance rate by priority level?")
    );
    assert_eq!(browser.eval("return document.querySelectorAll('[data-testid=answer]').length").await, 0);

    // `SQL:` needs no model; Enter sends.
    input.clear().await.unwrap();
    input
        .send_keys(&format!("SQL: SELECT COUNT(*) AS ticket_count FROM tickets{}", char::from(Key::Enter)))
        .await
        .unwrap();
    browser
        .wait("(a => a && a.dataset.state === 'done')(document.querySelector('[data-testid=answer]'))", "the answer")
        .await;
    browser.wait("document.getElementById('result-panel').dataset.state === 'done'", "the result").await;
    let error = browser.eval("return document.querySelector('[data-testid=chat-error]').innerText").await;
    assert_eq!(error, "", "no error");
    assert_eq!(browser.table().await, vec![vec![json!("6000")]]);
    assert_eq!(browser.text("shown-sql").await, "SELECT COUNT(*) AS ticket_count FROM tickets");
    browser.screenshot("no-model").await;
    browser.close().await;
}

/// A server whose model is the fake provider, speaking OpenAI.
async fn server_with_model(fake: &FakeLlm) -> TestServer {
    let base_url = fake.openai_base_url();
    TestServer::start(move |c| {
        c.llm = LlmConfig {
            llm_provider: ProviderChoice::Openai,
            openai_base_url: Some(base_url),
            openai_model: "fake-gpt".into(),
            llm_timeout_seconds: 20.0,
            ..LlmConfig::default()
        }
    })
    .await
}

/// Records, from now on, each text the last answer shows while it streams.
const WATCH_ANSWER: &str = "
    window.__answers = [];
    new MutationObserver(() => {
      const answers = document.querySelectorAll('[data-testid=answer]');
      const last = answers[answers.length - 1];
      if (last && last.dataset.state === 'streaming') window.__answers.push(last.textContent);
    }).observe(document.getElementById('conversation'), { subtree: true, childList: true, characterData: true });";

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_chip_streams_the_models_answer_with_its_sql_and_table() {
    let sql = "SELECT priority, ROUND(100.0 * AVG(CASE WHEN sla_met THEN 1.0 ELSE 0.0 END), 1) AS sla_met_pct \
               FROM tickets GROUP BY priority ORDER BY sla_met_pct DESC";
    let fake = FakeLlm::start().await;
    let server = server_with_model(&fake).await;
    let (code, api) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
    assert_eq!((code, &api["status"]), (200, &json!("succeeded")), "{api}");
    let api_rows = api["result"]["rows"].as_array().unwrap().clone();
    let answer = format!(
        "{} tickets meet their SLA most often ({} percent); about 12345 were escalated.",
        api_rows[0][0].as_str().unwrap(),
        api_rows[0][1]
    );
    fake.script([
        Reply::tool_call("run_sql", json!({ "sql": sql }).to_string()),
        Reply::SlowText { text: answer.clone(), every: Duration::from_millis(60) },
    ]);

    let browser = Browser::open("chat-chip", 1280, 800).await;
    browser.open_page(&server).await;
    browser.wait("document.getElementById('llm-status').textContent.includes('fake-gpt')", "the model's name").await;
    assert!(browser.is_displayed("chat-input").await, "with a model the page opens on Ask");
    assert!(!browser.is_displayed("llm-notice").await);
    browser.eval(WATCH_ANSWER).await;
    let prompt = "What's our SLA compliance rate by priority level?";
    let chip = browser.find("prompt-chip").await;
    assert_eq!(chip.text().await.unwrap(), prompt);
    chip.click().await.unwrap();

    browser
        .wait("(a => a && a.dataset.state === 'done')(document.querySelector('[data-testid=answer]'))", "the answer")
        .await;
    browser.wait("document.getElementById('result-panel').dataset.state === 'done'", "the result").await;
    assert_eq!(browser.text("answer").await, answer);
    let streamed: Vec<String> = serde_json::from_value(browser.eval("return window.__answers").await).unwrap();
    let mut partial: Vec<&String> = streamed.iter().filter(|t| !t.is_empty() && t.len() < answer.len()).collect();
    partial.dedup();
    assert!(partial.len() >= 2, "at least two token updates before the result: {streamed:?}");
    assert!(partial.iter().all(|t| answer.starts_with(t.as_str())), "the answer grew token by token: {partial:?}");
    let warnings = browser.eval("return Array.from(document.querySelectorAll('[data-testid=warnings] li')).map(li => li.dataset.warning + ' ' + li.textContent)").await;
    let warnings: Vec<String> = serde_json::from_value(warnings).unwrap();
    assert_eq!(warnings.len(), 1, "one ungrounded number: {warnings:?}");
    assert!(warnings[0].starts_with("UNGROUNDED_NUMBER ") && warnings[0].contains("12345"), "{warnings:?}");

    assert_eq!(browser.text("shown-sql").await, sql);
    let expected: Vec<Vec<Value>> =
        api_rows.iter().map(|row| row.as_array().unwrap().iter().map(shown).collect()).collect();
    assert_eq!(browser.table().await, expected);
    let bars = browser.eval("return document.querySelectorAll('[data-testid=chart] svg rect').length").await;
    assert_eq!(bars, json!(api_rows.len()));
    let attempts = browser.text("attempts").await;
    assert_eq!(attempts.lines().count(), 1, "{attempts}");
    assert!(attempts.contains("Succeeded"), "{attempts}");
    assert_eq!(fake.requests().len(), 2, "one model call for the query, one for the answer");
    browser
        .wait(
            &format!("Array.from(document.querySelectorAll('[data-testid=threads] button')).some(b => b.textContent.includes({}))", json!(prompt)),
            "the conversation in the history",
        )
        .await;
    browser.screenshot("chat-chip").await;

    // Edit and re-run: the turn's SQL in the editor, run as it is.
    browser.find("edit-sql").await.click().await.unwrap();
    let editor = browser.find("sql-editor").await;
    assert_eq!(editor.prop("value").await.unwrap().as_deref(), Some(sql));
    browser.find("run-sql").await.click().await.unwrap();
    browser.wait("document.getElementById('result-panel').dataset.state === 'done'", "the re-run").await;
    assert_eq!(browser.table().await, expected);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_model_answer_and_a_question_shows_as_literal_text_and_no_dialog_opens() {
    let fake = FakeLlm::start().await;
    let server = server_with_model(&fake).await;
    let reply = format!("Look: {HOSTILE} and <script>alert(2)</script>");
    fake.script([Reply::text(reply.clone())]);
    let browser = Browser::open("hostile-answer", 1280, 800).await;
    browser.open_page(&server).await;
    browser.wait("document.getElementById('llm-status').textContent.includes('fake-gpt')", "the model's name").await;
    browser.find("mode-ask").await.click().await.unwrap();
    let input = browser.find("chat-input").await;
    input.send_keys(HOSTILE).await.unwrap();
    browser.find("chat-send").await.click().await.unwrap();
    browser
        .wait("(a => a && a.dataset.state === 'done')(document.querySelector('[data-testid=answer]'))", "the answer")
        .await;
    assert_eq!(browser.text("answer").await, reply);
    assert_eq!(browser.text("user-message").await, HOSTILE);
    let injected = browser.eval("return document.querySelectorAll('img, script:not([src])').length").await;
    assert_eq!(injected, 0, "no element was made from the answer");
    browser.assert_no_dialog().await;
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    browser.screenshot("hostile-answer").await;
    browser.close().await;
}

/// The bootstrap admin token of the sign-in test's server (ADMIN_TOKEN: auth on).
const ADMIN_TOKEN: &str = "admin-secret-of-twenty-chars-or-more";

/// The token the page keeps for this tab, or null.
const STORED_TOKEN: &str = "return sessionStorage.getItem('csv-analyst-token')";

/// The ids of the datasets the picker offers.
const PICKER_IDS: &str = "Array.from(document.querySelectorAll('#dataset-picker option')).map(o => o.value)";

/// The entry of run `run_id` in the recent runs, as a JavaScript expression (null when absent).
fn run_entry(run_id: &str) -> String {
    format!("document.querySelector(\"[data-testid=runs] button[data-run-id='{run_id}']\")")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_signs_in_to_its_datasets_and_runs_and_signing_out_or_a_revocation_brings_the_box_back() {
    let server = TestServer::start(|c| c.auth.admin_token = Some(orchestrator::config::ApiKey::new(ADMIN_TOKEN))).await;
    let response = client()
        .post(format!("{}/admin/tokens", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"subject": "alice", "datasets": ["support"]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let minted: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{minted}");
    assert_eq!((&minted["subject"], &minted["datasets"]), (&json!("alice"), &json!(["support"])), "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    let token_id = minted["token_id"].as_str().unwrap().to_string();

    // A run without a token: anonymous, which Alice must not see.
    let (code, run) = server.post_run(json!({"dataset_id": "support", "sql": "SELECT 1 AS x"})).await;
    assert_eq!((code, &run["status"]), (200, &json!("succeeded")), "{run}");
    let anonymous_run = run["run_id"].as_str().unwrap().to_string();
    let (code, me) = server.get("/me").await;
    assert_eq!(code, 200, "{me}");
    assert_eq!((&me["subject"], &me["sign_in"]), (&json!("anonymous"), &json!("token")), "{me}");
    let (_, datasets) = server.get("/datasets").await;
    let anonymous_ids: Vec<Value> = datasets["datasets"].as_array().unwrap().iter().map(|d| d["id"].clone()).collect();
    assert!(anonymous_ids.len() > 1, "AUTH_ANONYMOUS_DATASETS is every dataset by default: {datasets}");

    let browser = Browser::open("sign-in", 1280, 800).await;
    browser.open_page(&server).await;

    // Anonymous: the box asks for a token; the page shows what anonymous callers may use.
    browser.wait("!document.getElementById('signin-form').hidden", "the sign-in box").await;
    assert!(browser.is_displayed("signin-token").await && browser.is_displayed("signin-submit").await);
    assert!(!browser.is_displayed("signin-subject").await && !browser.is_displayed("signout").await);
    let field = browser.find("signin-token").await;
    assert_eq!(field.attr("type").await.unwrap().as_deref(), Some("password"), "the token is not shown");
    let label = browser.eval("return document.querySelector('label[for=signin-token]').textContent").await;
    assert_eq!(label, "Access token", "the field has a label");
    assert_eq!(browser.eval(&format!("return {PICKER_IDS}")).await, json!(anonymous_ids));
    browser.wait(&run_entry(&anonymous_run), "the anonymous run in the history").await;

    // A token the service does not know: refused in the box, not kept.
    field.send_keys("not-a-token-of-this-service").await.unwrap();
    browser.find("signin-submit").await.click().await.unwrap();
    let error =
        browser.wait("(e => !e.hidden && e.textContent)(document.getElementById('signin-error'))", "the refusal").await;
    assert!(!error.as_str().unwrap().trim().is_empty(), "{error}");
    assert_eq!(browser.eval(STORED_TOKEN).await, Value::Null, "a refused token is dropped");
    assert!(browser.is_displayed("signin-token").await, "the box still asks for a token");
    assert!(!browser.is_displayed("signin-subject").await);
    browser.screenshot("refused").await;

    // Alice's token: her name, her one dataset, her runs only.
    field.clear().await.unwrap();
    field.send_keys(&token).await.unwrap();
    browser.find("signin-submit").await.click().await.unwrap();
    browser.wait("document.getElementById('signin-subject').dataset.subject === 'alice'", "Alice signed in").await;
    let subject = browser.text("signin-subject").await;
    assert!(subject.contains("alice") && !subject.contains("admin"), "{subject}");
    assert!(browser.is_displayed("signout").await);
    assert!(!browser.is_displayed("signin-token").await, "no token field while signed in");
    assert!(!browser.is_displayed("signin-error").await, "the refusal is gone");
    assert_eq!(browser.eval(STORED_TOKEN).await, json!(token), "kept for this tab");
    browser.wait(&format!("{PICKER_IDS}.join(',') === 'support'"), "only Alice's dataset in the picker").await;
    browser.wait("document.querySelector('#schema details[data-table=tickets]') !== null", "the support schema").await;
    browser.wait("document.querySelector('[data-testid=runs] .empty-note')", "Alice's empty history").await;
    assert_eq!(browser.eval(&format!("return {}", run_entry(&anonymous_run))).await, Value::Null);

    // Her run carries her token: it is hers, listed, and its CSV downloads with the token.
    let outcome = browser.run_sql("SELECT 2 AS y", false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    let alice_run = outcome["run_id"].as_str().unwrap().to_string();
    browser.wait(&run_entry(&alice_run), "Alice's run in her history").await;
    assert_eq!(browser.eval(&format!("return {}", run_entry(&anonymous_run))).await, Value::Null);
    browser.find("download-csv").await.click().await.unwrap();
    let file = browser.dir.join(format!("run-{alice_run}.csv"));
    let deadline = Instant::now() + PAGE_TIMEOUT;
    while !file.is_file() {
        assert!(Instant::now() < deadline, "{} was not downloaded", file.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "y\n2\n", "the CSV of Alice's run");
    assert_eq!(browser.csp_violations().await, Vec::<String>::new(), "the box keeps to the page's policy");
    browser.screenshot("signed-in").await;

    // Sign out: the box again, and what anonymous callers see.
    browser.find("signout").await.click().await.unwrap();
    browser.wait("!document.getElementById('signin-form').hidden", "the sign-in box again").await;
    assert!(!browser.is_displayed("signin-subject").await && !browser.is_displayed("signout").await);
    assert_eq!(browser.eval(STORED_TOKEN).await, Value::Null, "signing out drops the token");
    browser.wait(&run_entry(&anonymous_run), "the anonymous history again").await;
    assert_eq!(browser.eval(&format!("return {}", run_entry(&alice_run))).await, Value::Null);
    assert_eq!(browser.eval(&format!("return {PICKER_IDS}")).await, json!(anonymous_ids));
    browser.screenshot("signed-out").await;

    // Signed in again, the token revoked meanwhile: the next request's 401 signs out, in words.
    let field = browser.find("signin-token").await;
    field.send_keys(&token).await.unwrap();
    browser.find("signin-submit").await.click().await.unwrap();
    browser.wait(&run_entry(&alice_run), "Alice's history again").await;
    let response = client()
        .delete(format!("{}/admin/tokens/{token_id}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    browser.find("mode-sql").await.click().await.unwrap();
    let editor = browser.find("sql-editor").await;
    editor.clear().await.unwrap();
    editor.send_keys("SELECT 3 AS z").await.unwrap();
    browser.find("run-sql").await.click().await.unwrap();
    browser.wait("!document.getElementById('signin-form').hidden", "the sign-in box after the revocation").await;
    let error = browser
        .wait("(e => !e.hidden && e.textContent)(document.getElementById('signin-error'))", "the revocation in words")
        .await;
    assert!(error.as_str().unwrap().contains("revoked"), "{error}");
    assert_eq!(browser.eval(STORED_TOKEN).await, Value::Null, "a revoked token is dropped");
    assert!(!browser.is_displayed("signin-subject").await);
    browser.wait(&run_entry(&anonymous_run), "the anonymous history after the revocation").await;
    browser.screenshot("revoked").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_picked_on_the_page_is_uploaded_typed_queried_and_deleted() {
    let server = TestServer::start(|_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("Team Scores.csv");
    std::fs::write(&file, "player,points,joined\nAda,12,2024-01-02\nBob,7,2024-03-04\nCy,9,\n").unwrap();

    let browser = Browser::open("upload", 1280, 800).await;
    browser.open_page(&server).await;
    browser.find("upload-toggle").await.click().await.unwrap();
    browser
        .wait("document.querySelector('[data-testid=upload-panel]').offsetParent !== null", "the upload panel")
        .await;
    browser.find("upload-files").await.send_keys(file.to_str().unwrap()).await.unwrap();
    let id = browser.wait("document.querySelector('[data-testid=upload-id]').value", "the id from the file name").await;
    assert_eq!(id, "team_scores");
    browser.find("upload-submit").await.click().await.unwrap();
    browser
        .wait(
            "document.querySelector('[data-testid=upload-result] .upload-table[data-table=team_scores]')",
            "the schema",
        )
        .await;
    let shown = browser.text("upload-result").await;
    for wanted in ["team_scores", "player", "VARCHAR", "points", "INTEGER", "joined", "DATE", "3"] {
        assert!(shown.contains(wanted), "{wanted} in the inferred schema: {shown}");
    }
    // The new dataset is chosen: a query runs on it at once.
    browser.wait("document.querySelector('#dataset-picker').value === 'team_scores'", "the upload selected").await;
    let outcome = browser.run_sql("SELECT player FROM team_scores ORDER BY points DESC", false).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(browser.table().await, [[json!("Ada")], [json!("Cy")], [json!("Bob")]]);
    let (_, listed) = server.get("/datasets").await;
    let upload = listed["datasets"].as_array().unwrap().iter().find(|d| d["id"] == "team_scores").cloned();
    assert_eq!(upload.map(|d| d["source"].clone()), Some(json!("uploaded")));

    // Deleted from the page (after a confirmation), it is gone from the picker and the API.
    browser.find("dataset-delete").await.click().await.unwrap();
    browser.client.accept_alert().await.unwrap();
    browser
        .wait(
            "!Array.from(document.querySelectorAll('#dataset-picker option')).some(o => o.value === 'team_scores')",
            "the picker without it",
        )
        .await;
    let (status, _) = server.get("/datasets/team_scores/schema").await;
    assert_eq!(status, 404);
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    browser.close().await;
}
