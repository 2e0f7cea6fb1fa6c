//! The SQLite backend of [`Store`]: every run, and the chat's threads and turns, in
//! an embedded SQLite file (the default, for a laptop and a single replica).
//!
//! A run is written when a sandbox is about to start it (`running`) and again when
//! it ends; a query the policy refuses is written once, finished. A process that
//! dies mid-run leaves a `running` record; the next start marks those
//! `interrupted`, so no run is ever silently lost. The schema is versioned with
//! `PRAGMA user_version` and migrated on start.
//!
//! The store keeps [`Run`]s typed: the result as `RunResult` JSON, the error type as
//! its wire name, parsed back into `ErrorType`. Lists read only the summary columns.
//!
//! The size cap (RUN_STORE_MAX_MB) bounds the database and its write-ahead log
//! together, and never stops service: a write that finds the store full first
//! prunes the oldest records to make room ([`make_room`]: runs that did not succeed,
//! then succeeded runs, then finished chat turns; never a run or turn still
//! running) and is retried. Only a store with nothing left to prune refuses a write.
//! Pruned pages are reused by the next writes; retention ([`SqliteStore::prune`])
//! gives them back to the file system (`auto_vacuum = INCREMENTAL`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::RunError;
use rusqlite::{Connection, OptionalExtension, Row, params};

use futures::future::BoxFuture;

use super::backend::{Store, StoreError};
use super::chat::{Thread, Turn};
use super::columns::{COLUMNS, RunJson, TOKEN_COLUMNS, TURN_COLUMNS, UPLOAD_COLUMNS, list_json, parse_error_type};
use super::run::{QueryType, Run, RunState, StoredSql, Timings, now};
use super::token::TokenRecord;
use super::upload::UploadRecord;

/// The write-ahead log's share of a capped store: at most a sixteenth of the cap, and
/// at most 4 MiB (SQLite's default checkpoint point); the database file gets the rest.
const WAL_SHARE: u64 = 16;
const WAL_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Room made at once when a capped store is full: a twentieth of the cap, so that a
/// store at its cap prunes once per that much written, not at every write.
const ROOM_SHARE: u64 = 20;
/// Room made at once when an uncapped store is full (the disk is).
const UNCAPPED_ROOM_BYTES: u64 = 4 * 1024 * 1024;
/// Records pruned at a time while making room.
const PRUNE_BATCH: usize = 32;

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
    // 2: runs keep what explains them, once: the SQL (capped), the plan, the tables,
    // the chat turn; not the request body.
    "ALTER TABLE runs DROP COLUMN request_json;
    ALTER TABLE runs ADD COLUMN sql_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN sql_truncated INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN sql_sha256 TEXT;
    ALTER TABLE runs ADD COLUMN plan_json TEXT;
    ALTER TABLE runs ADD COLUMN tables_json TEXT;
    ALTER TABLE runs ADD COLUMN turn_id TEXT;
    UPDATE runs SET sql_bytes = length(CAST(sql AS BLOB));
    CREATE INDEX runs_turn ON runs(turn_id);",
    // 3: chat threads and turns
    "CREATE TABLE threads (
        thread_id   TEXT PRIMARY KEY,
        dataset_id  TEXT NOT NULL,
        title       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE turns (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        turn_id           TEXT NOT NULL UNIQUE,
        thread_id         TEXT NOT NULL,
        status            TEXT NOT NULL,
        user_message      TEXT NOT NULL,
        assistant_message TEXT,
        response_json     TEXT,
        context_json      TEXT,
        created_at        TEXT NOT NULL,
        finished_at       TEXT
    );
    CREATE INDEX turns_thread ON turns(thread_id, seq);",
    // 4: identity: who made each run and thread, and the service's own tokens (their
    // secrets only as SHA-256; never pruned)
    "ALTER TABLE runs ADD COLUMN principal TEXT;
    ALTER TABLE runs ADD COLUMN token_id TEXT;
    CREATE INDEX runs_principal ON runs(principal);
    ALTER TABLE threads ADD COLUMN principal TEXT;
    CREATE INDEX threads_principal ON threads(principal);
    CREATE TABLE tokens (
        token_id      TEXT PRIMARY KEY,
        subject       TEXT NOT NULL,
        datasets_json TEXT NOT NULL,
        admin         INTEGER NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        expires_at    TEXT,
        revoked_at    TEXT
    );",
    // 5: where a run was asked (api, chat, mcp)
    "ALTER TABLE runs ADD COLUMN origin TEXT;",
    // 6: uploaded datasets (their files are in UPLOADS_DIR; never pruned)
    "CREATE TABLE uploads (
        dataset_id   TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        description  TEXT NOT NULL,
        tables_json  TEXT NOT NULL,
        version_hash TEXT NOT NULL,
        size_bytes   INTEGER NOT NULL,
        created_at   TEXT NOT NULL
    );",
];

/// The SQLite store. Clones share one connection; calls run on tokio's blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// Bytes of free pages a full store makes before retrying a write.
    room_bytes: u64,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, migrates it, and marks runs
    /// left unfinished by a previous process as interrupted.
    pub fn open(path: &Path) -> Result<(SqliteStore, usize), StoreError> {
        SqliteStore::open_capped(path, None)
    }

    /// [`SqliteStore::open`], with the database and its write-ahead log capped at
    /// `max_bytes` together. At the cap, a write prunes the oldest records to make
    /// room (see the module's documentation); reads never wait for it.
    pub fn open_capped(path: &Path, max_bytes: Option<u64>) -> Result<(SqliteStore, usize), StoreError> {
        SqliteStore::open_with(path, max_bytes, true)
    }

    /// Opens and migrates the store without marking anything: for a tool run beside
    /// a service that may be using it (`orchestrator tokens`).
    pub fn open_unmarked(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, None, false).map(|(store, _)| store)
    }

    fn open_with(path: &Path, max_bytes: Option<u64>, mark: bool) -> Result<(SqliteStore, usize), StoreError> {
        let context = |what: &str| format!("{what} {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::new(&context("cannot create the folder of"), e))?;
        }
        let mut conn = Connection::open(path).map_err(|e| StoreError::new(&context("cannot open"), e))?;
        // auto_vacuum first: it takes effect only in a file with no table yet (a store
        // made by an older version keeps none, and reuses its free pages all the same).
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| StoreError::new(&context("cannot configure"), e))?;
        migrate(&mut conn).map_err(|e| StoreError::new(&context("cannot migrate"), e))?;
        // Runs left running are marked before the cap applies: a store left full of
        // them still opens (a few pages past its cap, until they make room).
        let finished_at = now();
        let interrupted = if !mark {
            0
        } else {
            conn.execute(
                "UPDATE runs SET status = 'interrupted', error_type = 'INTERNAL',
                   error_message = 'the orchestrator stopped while this run was in progress', finished_at = ?1
                 WHERE status = 'running'",
                params![finished_at],
            )
            .map_err(|e| StoreError::new("cannot mark interrupted runs", e))?
        };
        if mark {
            conn.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
                params![finished_at],
            )
            .map_err(|e| StoreError::new("cannot mark interrupted turns", e))?;
        }
        let room_bytes = match max_bytes {
            Some(max_bytes) => {
                cap(&conn, max_bytes).map_err(|e| StoreError::new(&context("cannot cap"), e))?;
                (max_bytes / ROOM_SHARE).max(1)
            }
            None => UNCAPPED_ROOM_BYTES,
        };
        let store = SqliteStore { path: path.to_path_buf(), conn: Arc::new(Mutex::new(conn)), room_bytes };
        Ok((store, interrupted))
    }

    /// Records every run and turn still running as interrupted, with `message`.
    pub async fn interrupt_running(&self, message: &str) -> Result<usize, StoreError> {
        let message = message.to_string();
        self.write("cannot record interrupted runs", move |conn| {
            let finished_at = now();
            let runs = conn.execute(
                "UPDATE runs SET status = 'interrupted', error_type = 'INTERNAL', error_message = ?1, finished_at = ?2
                 WHERE status = 'running'",
                params![message, finished_at],
            )?;
            conn.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
                params![finished_at],
            )?;
            Ok(runs)
        })
        .await
    }

    /// The file, for logs at start-up.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let conn: MutexGuard<'_, Connection> = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::new(what, e)),
            Err(e) => Err(StoreError::new(what, e)),
        }
    }

    /// [`SqliteStore::call`] for a write: `f` runs in one transaction; when the store
    /// is full, the oldest records are pruned to make room and `f` runs again, until
    /// it fits or nothing is left to prune (then the write fails: 503).
    async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let room_bytes = self.room_bytes;
        self.call(what, move |conn| {
            loop {
                let attempt = conn.unchecked_transaction().and_then(|tx| {
                    let value = f(&tx)?;
                    tx.commit()?;
                    Ok(value)
                });
                match attempt {
                    Err(e) if is_full(&e) => {
                        let pruned = make_room(conn, room_bytes)?;
                        if pruned == 0 {
                            return Err(e);
                        }
                        tracing::info!(pruned, "the run store was full: pruned its oldest records to make room");
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// Writes the whole run (a new one, or one refused before any sandbox).
    pub async fn insert(&self, run: &Run) -> Result<(), StoreError> {
        let row = RunRow::from(run);
        self.write("cannot record the run", move |conn| {
            conn.execute(
                "INSERT INTO runs (run_id, status, dataset_id, dataset_version_hash, query_type, sql, sql_bytes,
                   sql_truncated, sql_sha256, plan_json, tables_json, result_json, error_type, error_message,
                   sandbox_provider, job_name, request_id, turn_id, created_at, started_at, finished_at,
                   queued_ms, run_ms, total_ms, principal, token_id, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                   ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
                params![
                    row.run.run_id,
                    row.run.status.as_str(),
                    row.run.dataset_id,
                    row.run.dataset_version_hash,
                    row.run.query_type.as_str(),
                    row.run.sql.text,
                    row.run.sql.bytes as i64,
                    row.run.sql.truncated,
                    row.run.sql.sha256,
                    row.json.plan,
                    row.json.tables,
                    row.json.result,
                    row.run.error.as_ref().map(|e| e.error_type.as_str()),
                    row.run.error.as_ref().map(|e| e.message.as_str()),
                    row.run.sandbox_provider,
                    row.run.job_name,
                    row.run.request_id,
                    row.run.turn_id,
                    row.run.created_at,
                    row.run.started_at,
                    row.run.finished_at,
                    row.run.timings.queued_ms,
                    row.run.timings.run_ms,
                    row.run.timings.total_ms,
                    row.run.principal,
                    row.run.token_id,
                    row.run.origin,
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Records how a run ended.
    pub async fn finish(&self, run: &Run) -> Result<(), StoreError> {
        let row = RunRow::from(run);
        self.write("cannot record the run's result", move |conn| {
            conn.execute(
                "UPDATE runs SET status = ?2, result_json = ?3, error_type = ?4, error_message = ?5,
                   job_name = COALESCE(?6, job_name), finished_at = ?7, run_ms = ?8, total_ms = ?9
                 WHERE run_id = ?1",
                params![
                    row.run.run_id,
                    row.run.status.as_str(),
                    row.json.result,
                    row.run.error.as_ref().map(|e| e.error_type.as_str()),
                    row.run.error.as_ref().map(|e| e.message.as_str()),
                    row.run.job_name,
                    row.run.finished_at,
                    row.run.timings.run_ms,
                    row.run.timings.total_ms,
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn get(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let run_id = run_id.to_string();
        self.call("cannot read the run", move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS}, result_json FROM runs WHERE run_id = ?1"),
                params![run_id],
                |row| run_from_row(row, true),
            )
            .optional()
        })
        .await
    }

    /// The most recent runs (of `owner`, when given), newest first, without their results.
    pub async fn list(&self, limit: usize, owner: Option<String>) -> Result<Vec<Run>, StoreError> {
        self.call("cannot list runs", move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM runs WHERE ?2 IS NULL OR principal = ?2 ORDER BY rowid DESC LIMIT ?1"
            ))?;
            let rows = statement.query_map(params![limit as i64, owner], |row| run_from_row(row, false))?;
            rows.collect()
        })
        .await
    }

    /// The runs a chat turn made, oldest first, with their results.
    pub async fn runs_of_turn(&self, turn_id: &str) -> Result<Vec<Run>, StoreError> {
        let turn_id = turn_id.to_string();
        self.call("cannot read the turn's runs", move |conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {COLUMNS}, result_json FROM runs WHERE turn_id = ?1 ORDER BY rowid"))?;
            let rows = statement.query_map(params![turn_id], |row| run_from_row(row, true))?;
            rows.collect()
        })
        .await
    }

    /// Deletes runs beyond the newest `keep`, and runs created before `before`
    /// (RFC 3339), and gives the pages they freed back to the file system. Returns
    /// how many were deleted.
    pub async fn prune(&self, keep: u64, before: Option<String>) -> Result<usize, StoreError> {
        self.call("cannot prune old runs", move |conn| {
            let mut deleted = conn.execute(
                "DELETE FROM runs WHERE status != 'running' AND rowid <= (SELECT rowid FROM runs ORDER BY rowid DESC LIMIT 1 OFFSET ?1)",
                params![keep as i64],
            )?;
            if let Some(before) = before {
                deleted += conn
                    .execute("DELETE FROM runs WHERE status != 'running' AND created_at < ?1", params![before])?;
            }
            if deleted > 0 {
                // The free pages off the end of the database (one row per page: step
                // through them all), then the log into it and cut: the file shrinks
                // now. A store made by an older version, without auto_vacuum, keeps
                // its free pages for reuse.
                let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
                let mut freed = vacuum.query([])?;
                while freed.next()?.is_some() {}
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(deleted)
        })
        .await
    }

    /// The number of runs stored and the database's size in bytes.
    pub async fn size(&self) -> Result<(u64, u64), StoreError> {
        self.call("cannot measure the store", |conn| {
            let runs: i64 = conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))?;
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((runs as u64, (pages * page_size) as u64))
        })
        .await
    }

    // ---- threads and turns ----

    pub async fn create_thread(&self, thread: &Thread) -> Result<(), StoreError> {
        let t = thread.clone();
        self.write("cannot record the thread", move |conn| {
            conn.execute(
                "INSERT INTO threads (thread_id, dataset_id, title, created_at, updated_at, principal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.thread_id, t.dataset_id, t.title, t.created_at, t.updated_at, t.principal],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn thread(&self, thread_id: &str) -> Result<Option<Thread>, StoreError> {
        let thread_id = thread_id.to_string();
        self.call("cannot read the thread", move |conn| {
            conn.query_row(
                "SELECT thread_id, dataset_id, title, created_at, updated_at, principal FROM threads
                 WHERE thread_id = ?1",
                params![thread_id],
                thread_from_row,
            )
            .optional()
        })
        .await
    }

    /// Threads (of `owner`, when given), most recently updated first.
    pub async fn threads(&self, limit: usize, owner: Option<String>) -> Result<Vec<Thread>, StoreError> {
        self.call("cannot list threads", move |conn| {
            let mut statement = conn.prepare(
                "SELECT thread_id, dataset_id, title, created_at, updated_at, principal FROM threads
                 WHERE ?2 IS NULL OR principal = ?2 ORDER BY updated_at DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit as i64, owner], thread_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Deletes a thread and its turns (its runs stay, as runs). False if there was none.
    pub async fn delete_thread(&self, thread_id: &str) -> Result<bool, StoreError> {
        let thread_id = thread_id.to_string();
        self.write("cannot delete the thread", move |conn| {
            conn.execute("DELETE FROM turns WHERE thread_id = ?1", params![thread_id])?;
            Ok(conn.execute("DELETE FROM threads WHERE thread_id = ?1", params![thread_id])? > 0)
        })
        .await
    }

    pub async fn insert_turn(&self, turn: &Turn) -> Result<(), StoreError> {
        let t = turn.clone();
        self.write("cannot record the turn", move |conn| {
            conn.execute(
                "INSERT INTO turns (turn_id, thread_id, status, user_message, assistant_message, response_json,
                   context_json, created_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    t.turn_id,
                    t.thread_id,
                    t.status,
                    t.user_message,
                    t.assistant_message,
                    t.response.as_ref().map(|v| v.to_string()),
                    t.context.as_ref().map(|v| v.to_string()),
                    t.created_at,
                    t.finished_at
                ],
            )?;
            conn.execute(
                "UPDATE threads SET updated_at = ?2 WHERE thread_id = ?1",
                params![t.thread_id, t.created_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Records how a turn ended.
    pub async fn finish_turn(&self, turn: &Turn) -> Result<(), StoreError> {
        let t = turn.clone();
        self.write("cannot record the turn's outcome", move |conn| {
            conn.execute(
                "UPDATE turns SET status = ?2, assistant_message = ?3, response_json = ?4, context_json = ?5,
                   finished_at = ?6 WHERE turn_id = ?1",
                params![
                    t.turn_id,
                    t.status,
                    t.assistant_message,
                    t.response.as_ref().map(|v| v.to_string()),
                    t.context.as_ref().map(|v| v.to_string()),
                    t.finished_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn turn(&self, turn_id: &str) -> Result<Option<Turn>, StoreError> {
        let turn_id = turn_id.to_string();
        self.call("cannot read the turn", move |conn| {
            conn.query_row(
                &format!("SELECT {TURN_COLUMNS} FROM turns WHERE turn_id = ?1"),
                params![turn_id],
                turn_from_row,
            )
            .optional()
        })
        .await
    }

    /// The newest `limit` turns of a thread, oldest first.
    pub async fn turns(&self, thread_id: &str, limit: usize) -> Result<Vec<Turn>, StoreError> {
        let thread_id = thread_id.to_string();
        self.call("cannot read the thread's turns", move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT * FROM (SELECT seq, {TURN_COLUMNS} FROM turns WHERE thread_id = ?1 ORDER BY seq DESC LIMIT ?2)
                 ORDER BY seq"
            ))?;
            let rows = statement.query_map(params![thread_id, limit as i64], |row| {
                // Skip `seq`, the first column.
                turn_from_row_at(row, 1)
            })?;
            rows.collect()
        })
        .await
    }
}

impl SqliteStore {
    // ---- tokens ----

    pub async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let t = token.clone();
        let datasets = list_json(&t.datasets);
        self.write("cannot record the token", move |conn| {
            conn.execute(
                &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    t.token_id,
                    t.subject,
                    datasets,
                    t.admin,
                    t.secret_sha256,
                    t.created_at,
                    t.expires_at,
                    t.revoked_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let token_id = token_id.to_string();
        self.call("cannot read the token", move |conn| {
            conn.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = ?1"),
                params![token_id],
                token_from_row,
            )
            .optional()
        })
        .await
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.call("cannot list tokens", move |conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, rowid DESC"))?;
            let rows = statement.query_map([], token_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Marks a token revoked at `at` (kept, for the list). False if there is none.
    pub async fn revoke_token(&self, token_id: &str, at: &str) -> Result<bool, StoreError> {
        let (token_id, at) = (token_id.to_string(), at.to_string());
        self.write("cannot revoke the token", move |conn| {
            Ok(conn.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE token_id = ?1",
                params![token_id, at],
            )? > 0)
        })
        .await
    }
}

impl SqliteStore {
    /// Records an upload; false if a dataset of that id is recorded already.
    pub async fn insert_upload(&self, upload: &UploadRecord) -> Result<bool, StoreError> {
        let u = upload.clone();
        let tables = list_json(&u.tables);
        self.write("cannot record the upload", move |conn| {
            Ok(conn.execute(
                &format!("INSERT OR IGNORE INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    u.dataset_id,
                    u.owner,
                    u.description,
                    tables,
                    u.version_hash,
                    u.size_bytes as i64,
                    u.created_at
                ],
            )? > 0)
        })
        .await
    }

    pub async fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        self.call("cannot list uploads", move |conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY created_at, dataset_id"))?;
            let rows = statement.query_map([], upload_from_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn delete_upload(&self, dataset_id: &str) -> Result<bool, StoreError> {
        let dataset_id = dataset_id.to_string();
        self.write("cannot delete the upload", move |conn| {
            Ok(conn.execute("DELETE FROM uploads WHERE dataset_id = ?1", params![dataset_id])? > 0)
        })
        .await
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn insert<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::insert(self, run))
    }
    fn finish<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::finish(self, run))
    }
    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<Run>, StoreError>> {
        Box::pin(SqliteStore::get(self, run_id))
    }
    fn list(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Run>, StoreError>> {
        Box::pin(SqliteStore::list(self, limit, owner))
    }
    fn runs_of_turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        Box::pin(SqliteStore::runs_of_turn(self, turn_id))
    }
    fn interrupt_running<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(SqliteStore::interrupt_running(self, message))
    }
    fn prune(&self, keep: u64, before: Option<String>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(SqliteStore::prune(self, keep, before))
    }
    fn size(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>> {
        Box::pin(SqliteStore::size(self))
    }
    fn create_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::create_thread(self, thread))
    }
    fn thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StoreError>> {
        Box::pin(SqliteStore::thread(self, thread_id))
    }
    fn threads(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Thread>, StoreError>> {
        Box::pin(SqliteStore::threads(self, limit, owner))
    }
    fn delete_thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::delete_thread(self, thread_id))
    }
    fn insert_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::insert_turn(self, turn))
    }
    fn finish_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::finish_turn(self, turn))
    }
    fn turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Option<Turn>, StoreError>> {
        Box::pin(SqliteStore::turn(self, turn_id))
    }
    fn turns<'a>(&'a self, thread_id: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Turn>, StoreError>> {
        Box::pin(SqliteStore::turns(self, thread_id, limit))
    }
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::insert_token(self, token))
    }
    fn token<'a>(&'a self, token_id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>> {
        Box::pin(SqliteStore::token(self, token_id))
    }
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>> {
        Box::pin(SqliteStore::tokens(self))
    }
    fn revoke_token<'a>(&'a self, token_id: &'a str, at: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::revoke_token(self, token_id, at))
    }
    fn insert_upload<'a>(&'a self, upload: &'a UploadRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::insert_upload(self, upload))
    }
    fn uploads(&self) -> BoxFuture<'_, Result<Vec<UploadRecord>, StoreError>> {
        Box::pin(SqliteStore::uploads(self))
    }
    fn delete_upload<'a>(&'a self, dataset_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::delete_upload(self, dataset_id))
    }
}

/// A run and its JSON columns, owned: a write's closure runs on the blocking pool.
struct RunRow {
    run: Run,
    json: RunJson,
}

impl From<&Run> for RunRow {
    fn from(run: &Run) -> RunRow {
        RunRow { run: run.clone(), json: RunJson::of(run) }
    }
}

fn conversion(index: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    row.get::<_, Option<String>>(index)?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| conversion(index, e))
}

fn run_from_row(row: &Row<'_>, with_result: bool) -> rusqlite::Result<Run> {
    let status: String = row.get(1)?;
    let query_type: String = row.get(4)?;
    let error_type: Option<String> = row.get(11)?;
    let error = match error_type {
        None => None,
        Some(name) => Some(RunError {
            error_type: parse_error_type(&name),
            message: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
        }),
    };
    Ok(Run {
        run_id: row.get(0)?,
        status: RunState::parse(&status).unwrap_or(RunState::Interrupted),
        dataset_id: row.get(2)?,
        dataset_version_hash: row.get(3)?,
        query_type: QueryType::parse(&query_type).unwrap_or_default(),
        sql: StoredSql {
            text: row.get(5)?,
            bytes: row.get::<_, i64>(6)? as u64,
            truncated: row.get(7)?,
            sha256: row.get(8)?,
        },
        plan: json(row, 9)?,
        tables: json(row, 10)?.unwrap_or_default(),
        result: if with_result { json(row, 26)? } else { None },
        error,
        sandbox_provider: row.get(13)?,
        job_name: row.get(14)?,
        request_id: row.get(15)?,
        turn_id: row.get(16)?,
        created_at: row.get(17)?,
        started_at: row.get(18)?,
        finished_at: row.get(19)?,
        timings: Timings { queued_ms: row.get(20)?, run_ms: row.get(21)?, total_ms: row.get(22)? },
        principal: row.get(23)?,
        token_id: row.get(24)?,
        origin: row.get(25)?,
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        token_id: row.get(0)?,
        subject: row.get(1)?,
        datasets: json(row, 2)?.unwrap_or_default(),
        admin: row.get(3)?,
        secret_sha256: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

fn upload_from_row(row: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        dataset_id: row.get(0)?,
        owner: row.get(1)?,
        description: row.get(2)?,
        tables: json(row, 3)?.unwrap_or_default(),
        version_hash: row.get(4)?,
        size_bytes: row.get::<_, i64>(5)?.max(0) as u64,
        created_at: row.get(6)?,
    })
}

fn thread_from_row(row: &Row<'_>) -> rusqlite::Result<Thread> {
    Ok(Thread {
        thread_id: row.get(0)?,
        dataset_id: row.get(1)?,
        title: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        principal: row.get(5)?,
    })
}

fn turn_from_row(row: &Row<'_>) -> rusqlite::Result<Turn> {
    turn_from_row_at(row, 0)
}

fn turn_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Turn> {
    Ok(Turn {
        turn_id: row.get(at)?,
        thread_id: row.get(at + 1)?,
        status: row.get(at + 2)?,
        user_message: row.get(at + 3)?,
        assistant_message: row.get(at + 4)?,
        response: json(row, at + 5)?,
        context: json(row, at + 6)?,
        created_at: row.get(at + 7)?,
        finished_at: row.get(at + 8)?,
    })
}

/// Caps a store at `max_bytes`: the database file at what the write-ahead log's share
/// leaves (SQLite's `max_page_count`, which fails a write that would grow the file
/// past it with SQLITE_FULL), and the log at its share (checkpointed, and cut back,
/// at that size).
fn cap(conn: &Connection, max_bytes: u64) -> rusqlite::Result<()> {
    let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?.max(512) as u64;
    let wal_bytes = (max_bytes / WAL_SHARE).min(WAL_MAX_BYTES);
    let wal_pages = (wal_bytes / page_size).max(1);
    let pages = (max_bytes.saturating_sub(wal_bytes) / page_size).max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    conn.query_row(&format!("PRAGMA wal_autocheckpoint = {wal_pages}"), [], |_| Ok(()))?;
    conn.query_row(&format!("PRAGMA journal_size_limit = {}", wal_pages * page_size), [], |_| Ok(()))?;
    Ok(())
}

/// Whether a write failed because the store is full (its cap, or the disk).
fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

/// Makes room in a full store: prunes the oldest records, [`PRUNE_BATCH`] at a time
/// ([`prune_oldest`]), until `room_bytes` of pages are free or nothing is left to
/// prune. Prunes at least one batch when it can, so that every call makes progress.
/// Returns how many records it pruned.
fn make_room(conn: &Connection, room_bytes: u64) -> rusqlite::Result<usize> {
    let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?.max(1) as u64;
    let mut pruned = 0;
    loop {
        let batch = prune_oldest(conn, PRUNE_BATCH)?;
        pruned += batch;
        let free_pages = conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))?.max(0) as u64;
        if batch == 0 || free_pages * page_size >= room_bytes {
            return Ok(pruned);
        }
    }
}

/// Prunes the `n` oldest records, in this order: runs that did not succeed (refused,
/// failed, timed out, interrupted), oldest first; then succeeded runs, oldest first;
/// and only when no run is left to prune, finished chat turns, oldest first. A run or
/// turn still running is never pruned (a queued run has no record yet). A chat turn
/// whose runs are pruned keeps its own record; reading such a run is a 404.
fn prune_oldest(conn: &Connection, n: usize) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    let mut oldest: Vec<i64> = Vec::new();
    {
        // `runs_status` indexes (status, rowid): each is a short index range.
        let mut select = tx.prepare_cached("SELECT rowid FROM runs WHERE status = ?1 ORDER BY rowid LIMIT ?2")?;
        let mut take = |state: RunState, n: usize| -> rusqlite::Result<Vec<i64>> {
            select.query_map(params![state.as_str(), n as i64], |r| r.get(0))?.collect()
        };
        for state in RunState::ALL.into_iter().filter(|s| !matches!(s, RunState::Running | RunState::Succeeded)) {
            oldest.extend(take(state, n)?);
        }
        oldest.sort_unstable();
        oldest.truncate(n);
        if oldest.len() < n {
            oldest.extend(take(RunState::Succeeded, n - oldest.len())?);
        }
    }
    let pruned = if oldest.is_empty() {
        tx.execute(
            "DELETE FROM turns WHERE seq IN (SELECT seq FROM turns WHERE status != 'running' ORDER BY seq LIMIT ?1)",
            params![n as i64],
        )?
    } else {
        let mut delete = tx.prepare_cached("DELETE FROM runs WHERE rowid = ?1")?;
        for rowid in &oldest {
            delete.execute(params![rowid])?;
        }
        oldest.len()
    };
    tx.commit()?;
    Ok(pruned)
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

#[cfg(test)]
mod tests {
    use protocol::{ErrorType, RunResult};

    use super::*;

    fn run(id: &str) -> Run {
        let mut run = Run::example();
        run.run_id = id.into();
        run.status = RunState::Succeeded;
        run.dataset_version_hash = Some("sha256:x".into());
        run.tables = vec!["tickets".into()];
        run.request_id = Some("req-1".into());
        run
    }

    #[tokio::test]
    async fn records_survive_reopening_and_unfinished_runs_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/runs.sqlite");
        let (store, interrupted) = SqliteStore::open(&path).unwrap();
        assert_eq!(interrupted, 0);
        let mut a = run("a");
        a.status = RunState::Running;
        store.insert(&a).await.unwrap();
        let mut b = run("b");
        b.status = RunState::Running;
        b.timings.queued_ms = Some(1.5);
        store.insert(&b).await.unwrap();
        a.job_name = Some("job-a".into());
        a.timings.total_ms = Some(4.0);
        let result = RunResult::success(vec!["n".into()], vec!["BIGINT".into()], vec![vec![1.into()]], false);
        a.finish_with(result.clone());
        store.finish(&a).await.unwrap();
        drop(store);

        let (store, interrupted) = SqliteStore::open(&path).unwrap();
        assert_eq!(interrupted, 1, "run b was running when the store closed");
        let stored_a = store.get("a").await.unwrap().unwrap();
        assert_eq!(stored_a.status, RunState::Succeeded);
        assert_eq!(stored_a.result, Some(result));
        assert_eq!(stored_a.job_name.as_deref(), Some("job-a"));
        assert_eq!(stored_a.tables, vec!["tickets"]);
        let stored_b = store.get("b").await.unwrap().unwrap();
        assert_eq!(stored_b.status, RunState::Interrupted);
        assert_eq!(stored_b.error.map(|e| e.error_type), Some(ErrorType::Internal));
        assert_eq!(stored_b.timings.queued_ms, Some(1.5));
        let listed = store.list(10, None).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, vec!["b", "a"], "newest first");
        assert!(listed.iter().all(|r| r.result.is_none()), "lists read no results");
        assert!(store.get("missing").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn long_sql_is_stored_as_a_prefix_with_its_length_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SqliteStore::open(&dir.path().join("runs.sqlite")).unwrap();
        let long = format!("SELECT '{}'", "é".repeat(20_000));
        let mut r = run("long");
        r.sql = StoredSql::new(&long);
        store.insert(&r).await.unwrap();
        let stored = store.get("long").await.unwrap().unwrap();
        assert!(stored.sql.truncated);
        assert_eq!(stored.sql.bytes, long.len() as u64);
        assert!(stored.sql.text.len() <= super::super::run::STORED_SQL_BYTES && long.starts_with(&stored.sql.text));
        use sha2::Digest;
        assert_eq!(stored.sql.sha256, Some(format!("{:x}", sha2::Sha256::digest(long.as_bytes()))));
    }

    fn with_status(id: &str, status: RunState) -> Run {
        let mut r = run(id);
        r.status = status;
        r
    }

    /// The bytes a store takes on disk: the database and its write-ahead log.
    fn on_disk(path: &Path) -> u64 {
        let wal = path.with_extension("sqlite-wal");
        [path, wal.as_path()].iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum()
    }

    #[tokio::test]
    async fn a_full_store_prunes_its_oldest_runs_unsucceeded_first_and_never_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let cap = 256 * 1024;
        let (store, _) = SqliteStore::open_capped(&path, Some(cap)).unwrap();
        let present = |id: String| {
            let store = store.clone();
            async move { store.get(&id).await.unwrap().is_some() }
        };
        let old = [
            ("running", RunState::Running),
            ("ok-1", RunState::Succeeded),
            ("rejected", RunState::Rejected),
            ("failed", RunState::Failed),
            ("ok-2", RunState::Succeeded),
            ("timed-out", RunState::TimedOut),
            ("interrupted", RunState::Interrupted),
        ];
        for (id, status) in old {
            store.insert(&with_status(id, status)).await.unwrap();
        }
        // Refused runs, newer than all of those, until the store has made room once.
        let filler = |id: String, status: RunState| {
            let mut r = with_status(&id, status);
            r.sql = StoredSql::new(&"x".repeat(3_000));
            r
        };
        let mut refused = 0;
        while present("r0".into()).await || refused == 0 {
            store.insert(&filler(format!("r{refused}"), RunState::Rejected)).await.unwrap();
            refused += 1;
            assert!(refused < 10_000, "the cap never bit");
        }
        // The older runs that did not succeed went first; the succeeded and the running stay.
        for id in ["rejected", "failed", "timed-out", "interrupted"] {
            assert!(!present(id.into()).await, "{id} was pruned before newer refused runs");
        }
        for id in ["running", "ok-1", "ok-2"] {
            assert!(present(id.into()).await, "{id} is kept while runs that did not succeed remain");
        }
        assert!(present(format!("r{}", refused - 1)).await, "the write that made room is kept");

        // Succeeded runs now: every refused run goes before the oldest succeeded one.
        let mut succeeded = 0;
        while present("ok-1".into()).await {
            store.insert(&filler(format!("s{succeeded}"), RunState::Succeeded)).await.unwrap();
            succeeded += 1;
            assert!(succeeded < 10_000, "ok-1 was never pruned");
        }
        for i in 0..refused {
            assert!(!present(format!("r{i}")).await, "refused run r{i} outlived a succeeded run");
        }
        assert!(present(format!("s{}", succeeded - 1)).await);
        // The running run is never pruned, and can still be finished.
        let mut running = store.get("running").await.unwrap().unwrap();
        assert_eq!(running.status, RunState::Running);
        running.finish_with(RunResult::success(vec!["n".into()], vec!["BIGINT".into()], vec![vec![1.into()]], false));
        store.finish(&running).await.unwrap();
        assert_eq!(store.get("running").await.unwrap().unwrap().status, RunState::Succeeded);
        assert!(on_disk(&path) <= cap + cap / 8, "{} bytes on disk for a cap of {cap}", on_disk(&path));
    }

    #[tokio::test]
    async fn a_full_store_prunes_finished_chat_turns_once_no_run_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SqliteStore::open_capped(&dir.path().join("runs.sqlite"), Some(256 * 1024)).unwrap();
        let thread = Thread {
            thread_id: "t".into(),
            dataset_id: "support".into(),
            title: "t".into(),
            created_at: now(),
            updated_at: now(),
            principal: None,
        };
        store.create_thread(&thread).await.unwrap();
        let turn = |id: String, status: &str| Turn {
            turn_id: id,
            thread_id: "t".into(),
            status: status.into(),
            user_message: "x".repeat(3_000),
            assistant_message: None,
            response: None,
            context: None,
            created_at: now(),
            finished_at: None,
        };
        store.insert_turn(&turn("in-progress".into(), "running")).await.unwrap();
        store.insert(&with_status("a-run", RunState::Succeeded)).await.unwrap();
        let mut written = 0;
        while store.turn("u0").await.unwrap().is_some() || written == 0 {
            store.insert_turn(&turn(format!("u{written}"), "succeeded")).await.unwrap();
            written += 1;
            assert!(written < 10_000, "the cap never bit");
        }
        assert!(store.get("a-run").await.unwrap().is_none(), "runs go before turns");
        assert!(store.turn("in-progress").await.unwrap().is_some(), "a running turn is never pruned");
        assert!(store.thread("t").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_full_store_with_nothing_to_prune_refuses_writes_and_keeps_serving_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let (store, _) = SqliteStore::open(&path).unwrap();
        store.insert(&with_status("kept", RunState::Running)).await.unwrap();
        drop(store);
        let (store, interrupted) = SqliteStore::open_capped(&path, Some(256 * 1024)).unwrap();
        assert_eq!(interrupted, 1);
        store.insert(&with_status("kept-running", RunState::Running)).await.unwrap();
        // Only running runs: none may be pruned, so the cap refuses a write at last.
        let mut written = 0;
        let failure = loop {
            let mut r = with_status(&format!("r{written}"), RunState::Running);
            r.sql = StoredSql::new(&"x".repeat(8_000));
            match store.insert(&r).await {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 1_000, "the cap never bit");
        };
        assert!(failure.to_string().contains("full"), "{failure}");
        assert!(!failure.to_string().contains("runs.sqlite"), "no path in the message: {failure}");
        assert!(written >= 1, "some runs fit");
        // The interrupted run was pruned to make room; no running run was.
        assert!(store.get("kept").await.unwrap().is_none());
        assert_eq!(store.get("kept-running").await.unwrap().unwrap().status, RunState::Running);
        assert_eq!(store.list(1_000, None).await.unwrap().len(), written + 1, "reads go on");
        // A restart marks them interrupted even in a full store, and they make room again.
        drop(store);
        let (store, interrupted) = SqliteStore::open_capped(&path, Some(256 * 1024)).unwrap();
        assert_eq!(interrupted, written + 1);
        for i in 0..2 * written {
            let mut r = run(&format!("after-{i}"));
            r.sql = StoredSql::new(&"x".repeat(8_000));
            store.insert(&r).await.unwrap();
        }
        assert!(store.get("kept-running").await.unwrap().is_none(), "the oldest interrupted run made room");
    }

    #[tokio::test]
    async fn retention_gives_pruned_pages_back_to_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let (store, _) = SqliteStore::open(&path).unwrap();
        let auto_vacuum: i64 = {
            let conn = store.conn.lock().unwrap();
            conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap()
        };
        assert_eq!(auto_vacuum, 2, "a new store is made with auto_vacuum = INCREMENTAL");
        for i in 0..200 {
            let mut r = run(&format!("r{i}"));
            r.sql = StoredSql::new(&"x".repeat(8_000));
            store.insert(&r).await.unwrap();
        }
        let (_, before) = store.size().await.unwrap();
        assert!(before > 1_000_000, "{before}");
        assert_eq!(store.prune(10, None).await.unwrap(), 190);
        let (runs, after) = store.size().await.unwrap();
        assert_eq!(runs, 10);
        assert!(after < before / 4, "the database shrank from {before} to only {after} bytes");
        assert!(on_disk(&path) < before / 4, "{} bytes on disk", on_disk(&path));
    }

    #[tokio::test]
    async fn prune_keeps_the_newest_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SqliteStore::open(&dir.path().join("runs.sqlite")).unwrap();
        for i in 0..10 {
            store.insert(&run(&format!("r{i}"))).await.unwrap();
        }
        assert_eq!(store.prune(4, None).await.unwrap(), 6);
        let ids: Vec<String> = store.list(100, None).await.unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(ids, vec!["r9", "r8", "r7", "r6"]);
        assert_eq!(store.size().await.unwrap().0, 4);
    }

    #[tokio::test]
    async fn threads_and_turns_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let (store, _) = SqliteStore::open(&path).unwrap();
        let thread = Thread {
            thread_id: "t1".into(),
            dataset_id: "support".into(),
            title: "How many?".into(),
            created_at: now(),
            updated_at: now(),
            principal: Some("alice".into()),
        };
        store.create_thread(&thread).await.unwrap();
        for i in 0..3 {
            let turn = Turn {
                turn_id: format!("u{i}"),
                thread_id: "t1".into(),
                status: "succeeded".into(),
                user_message: format!("q{i}"),
                assistant_message: Some(format!("a{i}")),
                response: Some(serde_json::json!({"i": i})),
                context: None,
                created_at: now(),
                finished_at: Some(now()),
            };
            store.insert_turn(&turn).await.unwrap();
        }
        drop(store);
        let (store, _) = SqliteStore::open(&path).unwrap();
        let turns = store.turns("t1", 2).await.unwrap();
        assert_eq!(
            turns.iter().map(|t| t.turn_id.as_str()).collect::<Vec<_>>(),
            vec!["u1", "u2"],
            "newest two, oldest first"
        );
        assert_eq!(store.thread("t1").await.unwrap().unwrap().dataset_id, "support");
        assert_eq!(store.threads(10, Some("alice".into())).await.unwrap().len(), 1);
        assert!(store.threads(10, Some("bob".into())).await.unwrap().is_empty());
        assert_eq!(store.threads(10, None).await.unwrap()[0].principal.as_deref(), Some("alice"));
        assert!(store.delete_thread("t1").await.unwrap());
        assert!(store.thread("t1").await.unwrap().is_none());
        assert!(store.turns("t1", 10).await.unwrap().is_empty());
        assert!(!store.delete_thread("t1").await.unwrap());
    }

    #[tokio::test]
    async fn tokens_and_owners_are_kept_and_tokens_survive_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let (store, _) = SqliteStore::open(&path).unwrap();
        let token = TokenRecord {
            token_id: "0123456789abcdef".into(),
            subject: "alice".into(),
            datasets: vec!["support".into()],
            admin: false,
            secret_sha256: "ab".repeat(32),
            created_at: now(),
            expires_at: None,
            revoked_at: None,
        };
        store.insert_token(&token).await.unwrap();
        let mut alices = run("a1");
        alices.principal = Some("alice".into());
        alices.token_id = Some(token.token_id.clone());
        store.insert(&alices).await.unwrap();
        store.insert(&run("l1")).await.unwrap();
        let owned: Vec<String> =
            store.list(10, Some("alice".into())).await.unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(owned, vec!["a1"]);
        assert_eq!(store.list(10, None).await.unwrap().len(), 2);
        let read = store.get("a1").await.unwrap().unwrap();
        assert_eq!((read.principal.as_deref(), read.token_id.as_deref()), (Some("alice"), Some("0123456789abcdef")));

        assert!(store.revoke_token("0123456789abcdef", "2026-01-01T00:00:00.000Z").await.unwrap());
        assert!(!store.revoke_token("ffffffffffffffff", "2026-01-01T00:00:00.000Z").await.unwrap());
        assert_eq!(store.prune(0, None).await.unwrap(), 2, "every run is pruned");
        drop(store);
        let (store, _) = SqliteStore::open(&path).unwrap();
        let kept = store.token("0123456789abcdef").await.unwrap().expect("tokens are never pruned");
        assert_eq!(kept.revoked_at.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(kept.secret_sha256, "ab".repeat(32));
        assert_eq!(store.tokens().await.unwrap().len(), 1);
    }
}
