//! A real PostgreSQL server for the tests: Debian's binaries (`.ci/run` installs the
//! `postgresql` package), a fresh cluster in a temporary folder, on a free loopback
//! port, stopped when dropped. No mock and no container: the store is tested
//! against the server it runs against in production.
//!
//! CI runs as root, and `initdb` refuses root: the cluster then belongs to the
//! `postgres` user and its commands run as that user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::skipped;

pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    fsync: bool,
}

/// The newest `/usr/lib/postgresql/*/bin` (Debian's layout), or the folder of an
/// `initdb` on PATH.
fn binaries() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    debian.sort_by_key(|p| {
        let version = p.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().to_string());
        version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    debian.pop().or_else(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .find(|dir| dir.join("initdb").is_file())
    })
}

fn is_root() -> bool {
    // The owner of this process's /proc entry is its effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

impl Postgres {
    /// A new cluster, started. `fsync`: on for a test that restarts the server and
    /// counts on what it acknowledged (off is faster and loses nothing on a clean
    /// stop). Missing binaries fail the test — unless CSV_ANALYST_SKIP_MISSING_TOOLS=1,
    /// which skips it, recorded in the skip log.
    pub fn start(fsync: bool) -> Option<Postgres> {
        let Some(bin) = binaries() else {
            if std::env::var("CSV_ANALYST_SKIP_MISSING_TOOLS").as_deref() == Ok("1") {
                skipped("PostgreSQL is not installed: the PostgreSQL store's tests did not run");
                return None;
            }
            panic!(
                "PostgreSQL's initdb is not installed (apt-get install postgresql). Install the prerequisites \
                 (README.md, or run .ci/run), or set CSV_ANALYST_SKIP_MISSING_TOOLS=1 to skip the tests that need it"
            );
        };
        let dir = tempfile::Builder::new().prefix("csv-analyst-pg").tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "cannot give {} to the postgres user", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, bin, port, fsync };
        let data = server.data();
        server.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
        );
        server.start_again();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of PostgreSQL's commands, as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// The answer of one SQL query, by `psql` (unaligned, no headers).
    pub fn sql(&self, query: &str) -> String {
        let port = self.port.to_string();
        let output = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres", "-tAX", "-c", query])
            .output()
            .unwrap();
        assert!(output.status.success(), "psql {query:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync={} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.fsync { "on" } else { "off" }
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
    }

    /// Stops the server at once (`-m fast`: sessions are cut, nothing acknowledged is
    /// lost).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
