//! The runner image, built here the way the runbook builds it (`make
//! build-runner-k8s`: static binaries, a portable precompiled guest, FROM scratch),
//! answers the seed query in a locked-down container, as a Job's pod would run it.
//! Docker's engine is started by the test on a socket of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::registry::Registry;
use protocol::{RunResult, RunStatus};

use crate::support::{Csv, datasets_dir, require_tool, workspace};

/// A Docker engine of the test's own: no iptables, no bridge, its own folders.
struct DockerEngine {
    daemon: Child,
    dir: PathBuf,
    host: String,
}

impl DockerEngine {
    fn start(dockerd: &Path) -> DockerEngine {
        // Short paths: the engine's unix sockets live under exec-root.
        let dir = PathBuf::from(format!("/tmp/csva-docker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let daemon = Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd starts");
        let engine = DockerEngine { daemon, host: format!("unix://{}", socket.display()), dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["info"]).status.success() {
            assert!(Instant::now() < deadline, "dockerd did not come up: see {}/dockerd.log", engine.dir.display());
            std::thread::sleep(Duration::from_millis(250));
        }
        engine
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").arg("-H").arg(&self.host).args(args).output().unwrap()
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.daemon.id().to_string()).status();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The target directory this test binary was built in.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("target/<profile>/deps/<test>").to_path_buf()
}

#[test]
fn runner_image_answers_the_seed_query_in_a_locked_down_container() {
    let (Some(dockerd), Some(_), Some(make)) = (require_tool("dockerd"), require_tool("docker"), require_tool("make"))
    else {
        return;
    };
    let engine = DockerEngine::start(&dockerd);
    let tag = format!("test-{}", std::process::id());
    let image = format!("csv-analyst-runner:{tag}");
    let build = Command::new(make)
        .current_dir(workspace())
        .arg("build-runner-k8s")
        .arg(format!("DOCKER=docker -H {}", engine.host))
        .arg(format!("TARGET_DIR={}", target_dir().display()))
        .arg(format!("K8S_IMAGE_TAG={tag}"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "make build-runner-k8s failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    let registry = Registry::load(&datasets_dir()).unwrap();
    let dataset = registry.dataset("support").unwrap();
    let mut request = runner_host::request_for(dataset, "SELECT COUNT(*) AS ticket_count FROM tickets");
    // As the service sends it: the image's baked files must hash to the service's.
    let version_hash = dataset.version_hash.clone().expect("the generator records version hashes");
    request.expected_version = Some(protocol::ExpectedVersion { version_hash, manifest_dir: String::new() });
    let run_in_image = |request: &protocol::RunRequest| -> RunResult {
        let request_json = serde_json::to_string(request).unwrap();
        let output = engine.docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-e",
            &format!("RUNNER_REQUEST_JSON={request_json}"),
            &image,
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "docker run failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
        serde_json::from_str(&stdout).unwrap()
    };
    let result = run_in_image(&request);
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    let tickets = Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len();
    assert_eq!(result.rows, vec![vec![serde_json::json!(tickets)]]);
    assert!(result.stats.instantiate_ms.is_some());
    // A service that described other files than the image holds: refused.
    request.expected_version.as_mut().unwrap().version_hash = format!("sha256:{}", "0".repeat(64));
    let refused = run_in_image(&request);
    assert_eq!(refused.status, RunStatus::Error);
    assert_eq!(refused.error.map(|e| e.error_type), Some(protocol::ErrorType::DatasetError));

    // FROM scratch: no shell to run anything else with.
    let shell = engine.docker(&["run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", &image, "-c", "true"]);
    assert!(!shell.status.success(), "the runner image has a shell");
    // The image runs as 1000:1000 by default.
    let inspect = engine.docker(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), "1000:1000");
}
