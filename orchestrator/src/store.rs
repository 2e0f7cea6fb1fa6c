//! The run store: every run, in an embedded SQLite file.
//!
//! A run is written when a sandbox is about to start it (`running`) and again when
//! it ends; a query the policy refuses is written once, finished. A process that
//! dies mid-run leaves a `running` record; the next start marks those
//! `interrupted`, so no run is ever silently lost. The schema is versioned with `PRAGMA user_version` and
//! migrated on start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: runs
    "CREATE TABLE runs (
        run_id               TEXT PRIMARY KEY,
        status               TEXT NOT NULL,
        dataset_id           TEXT NOT NULL,
        dataset_version_hash TEXT,
        query_type           TEXT NOT NULL,
        sql                  TEXT NOT NULL,
        request_json         TEXT NOT NULL,
        result_json          TEXT,
        error_type           TEXT,
        error_message        TEXT,
        sandbox_provider     TEXT NOT NULL,
        job_name             TEXT,
        request_id           TEXT,
        created_at           TEXT NOT NULL,
        started_at           TEXT,
        finished_at          TEXT,
        queued_ms            REAL,
        run_ms               REAL,
        total_ms             REAL
    );
    CREATE INDEX runs_status ON runs(status);",
];

/// A run's lifecycle state, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    /// The orchestrator stopped while the run was running.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Rejected,
        RunState::TimedOut,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Rejected => "rejected",
            RunState::TimedOut => "timed_out",
            RunState::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunState,
    pub dataset_id: String,
    pub dataset_version_hash: Option<String>,
    pub query_type: String,
    pub sql: String,
    /// The request as the client sent it.
    pub request: serde_json::Value,
    /// The sandbox's result (`protocol::RunResult`), once there is one.
    pub result: Option<serde_json::Value>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub sandbox_provider: String,
    pub job_name: Option<String>,
    pub request_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub queued_ms: Option<f64>,
    pub run_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

/// How a run ended, for [`Store::finish`].
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: RunState,
    pub result: serde_json::Value,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub job_name: Option<String>,
    pub finished_at: String,
    pub run_ms: Option<f64>,
    pub total_ms: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("run store {path}: {message}")]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

/// The run store. Clones share one connection; calls run on tokio's blocking pool.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, migrates it, and marks runs
    /// left unfinished by a previous process as interrupted.
    pub fn open(path: &Path) -> Result<(Store, usize), StoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| StoreError {
            path: path.to_path_buf(),
            message: format!("{what}: {e}"),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail("cannot create its folder", &e))?;
        }
        let mut conn = Connection::open(path).map_err(|e| fail("cannot open", &e))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| fail("cannot configure", &e))?;
        migrate(&mut conn).map_err(|e| fail("cannot migrate", &e))?;
        let interrupted = conn
            .execute(
                "UPDATE runs SET status = 'interrupted', error_type = 'INTERNAL',
                   error_message = 'the orchestrator stopped while this run was in progress', finished_at = ?1
                 WHERE status = 'running'",
                params![now()],
            )
            .map_err(|e| fail("cannot mark interrupted runs", &e))?;
        Ok((Store { path: path.to_path_buf(), conn: Arc::new(Mutex::new(conn)) }, interrupted))
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError { path: self.path.clone(), message: format!("{what}: {e}") }
    }

    async fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let conn: MutexGuard<'_, Connection> = store.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(e) => Err(self.error(what, e)),
        }
    }

    pub async fn insert(&self, record: RunRecord) -> Result<(), StoreError> {
        self.call("cannot record the run", move |conn| {
            conn.execute(
                "INSERT INTO runs (run_id, status, dataset_id, dataset_version_hash, query_type, sql, request_json,
                   result_json, error_type, error_message, sandbox_provider, job_name, request_id, created_at,
                   started_at, finished_at, queued_ms, run_ms, total_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                params![
                    record.run_id,
                    record.status.as_str(),
                    record.dataset_id,
                    record.dataset_version_hash,
                    record.query_type,
                    record.sql,
                    record.request.to_string(),
                    record.result.as_ref().map(|r| r.to_string()),
                    record.error_type,
                    record.error_message,
                    record.sandbox_provider,
                    record.job_name,
                    record.request_id,
                    record.created_at,
                    record.started_at,
                    record.finished_at,
                    record.queued_ms,
                    record.run_ms,
                    record.total_ms,
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn finish(&self, run_id: &str, finish: Finish) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.call("cannot record the run's result", move |conn| {
            conn.execute(
                "UPDATE runs SET status = ?2, result_json = ?3, error_type = ?4, error_message = ?5,
                   job_name = COALESCE(?6, job_name), finished_at = ?7, run_ms = ?8, total_ms = ?9
                 WHERE run_id = ?1",
                params![
                    run_id,
                    finish.status.as_str(),
                    finish.result.to_string(),
                    finish.error_type,
                    finish.error_message,
                    finish.job_name,
                    finish.finished_at,
                    finish.run_ms,
                    finish.total_ms,
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.call("cannot read the run", move |conn| {
            conn.query_row(&format!("SELECT {COLUMNS} FROM runs WHERE run_id = ?1"), params![run_id], from_row)
                .optional()
        })
        .await
    }

    /// The most recent runs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.call("cannot list runs", move |conn| {
            let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM runs ORDER BY rowid DESC LIMIT ?1"))?;
            let rows = statement.query_map(params![limit as i64], from_row)?;
            rows.collect()
        })
        .await
    }
}

const COLUMNS: &str = "run_id, status, dataset_id, dataset_version_hash, query_type, sql, request_json, result_json,
    error_type, error_message, sandbox_provider, job_name, request_id, created_at, started_at, finished_at,
    queued_ms, run_ms, total_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let json = |index: usize, text: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e)))
    };
    let status: String = row.get(1)?;
    Ok(RunRecord {
        run_id: row.get(0)?,
        status: RunState::parse(&status).unwrap_or(RunState::Interrupted),
        dataset_id: row.get(2)?,
        dataset_version_hash: row.get(3)?,
        query_type: row.get(4)?,
        sql: row.get(5)?,
        request: json(6, row.get(6)?)?.unwrap_or_default(),
        result: json(7, row.get(7)?)?,
        error_type: row.get(8)?,
        error_message: row.get(9)?,
        sandbox_provider: row.get(10)?,
        job_name: row.get(11)?,
        request_id: row.get(12)?,
        created_at: row.get(13)?,
        started_at: row.get(14)?,
        finished_at: row.get(15)?,
        queued_ms: row.get(16)?,
        run_ms: row.get(17)?,
        total_ms: row.get(18)?,
    })
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))? as usize;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            status: RunState::Succeeded,
            dataset_id: "support".into(),
            dataset_version_hash: Some("sha256:x".into()),
            query_type: "sql".into(),
            sql: "SELECT 1".into(),
            request: serde_json::json!({"sql": "SELECT 1"}),
            result: None,
            error_type: None,
            error_message: None,
            sandbox_provider: "local".into(),
            job_name: None,
            request_id: Some("req-1".into()),
            created_at: now(),
            started_at: None,
            finished_at: None,
            queued_ms: None,
            run_ms: None,
            total_ms: None,
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_and_unfinished_runs_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/runs.sqlite");
        let (store, interrupted) = Store::open(&path).unwrap();
        assert_eq!(interrupted, 0);
        store.insert(record("a")).await.unwrap();
        let running =
            RunRecord { status: RunState::Running, started_at: Some(now()), queued_ms: Some(1.5), ..record("b") };
        store.insert(running).await.unwrap();
        let finish = Finish {
            status: RunState::Succeeded,
            result: serde_json::json!({"rows": [[1]]}),
            error_type: None,
            error_message: None,
            job_name: Some("job-a".into()),
            finished_at: now(),
            run_ms: Some(3.0),
            total_ms: 4.0,
        };
        store.finish("a", finish).await.unwrap();
        drop(store);

        let (store, interrupted) = Store::open(&path).unwrap();
        assert_eq!(interrupted, 1, "run b was running when the store closed");
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(a.status, RunState::Succeeded);
        assert_eq!(a.result, Some(serde_json::json!({"rows": [[1]]})));
        assert_eq!(a.job_name.as_deref(), Some("job-a"));
        let b = store.get("b").await.unwrap().unwrap();
        assert_eq!(b.status, RunState::Interrupted);
        assert_eq!(b.error_type.as_deref(), Some("INTERNAL"));
        assert_eq!(b.queued_ms, Some(1.5));
        let ids: Vec<String> = store.list(10).await.unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(ids, vec!["b", "a"], "newest first");
        assert!(store.get("missing").await.unwrap().is_none());
    }
}
