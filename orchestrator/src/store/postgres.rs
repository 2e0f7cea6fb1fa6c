//! The PostgreSQL backend of [`Store`], for more than one replica: every replica
//! reads and writes the same runs, threads, turns, tokens and uploads' records, so a
//! run made on one is read on another, a token revoked on one is refused by all (each
//! request reads the token's record), and a thread goes on wherever its next turn
//! lands.
//!
//! **Leases.** A run or turn in flight belongs to the replica executing it: its record
//! names the replica and carries `lease_until`, which that replica renews
//! ([`Store::maintain`], every third of RUN_LEASE_SECONDS) while it holds the run. A
//! replica that dies stops renewing; once the lease has passed, any replica marks the
//! run `failed` with `REPLICA_LOST` (and the turn `interrupted`), so no record stays
//! `running` forever. Lease times are the database's clock (`now()`), never a
//! replica's. A run whose end could not be recorded (the database was down) is no
//! longer renewed either, and ends the same way.
//!
//! **Migrations** are versioned (`schema_migrations`) and applied at start-up under a
//! session advisory lock, so replicas starting together migrate once. **Retention**
//! ([`PostgresStore::prune`]) runs under a transaction advisory lock that a replica
//! only tries: one prunes at a time, the others skip that round.
//!
//! **Outages.** Every call gets a connection from a small pool within
//! [`CALL_TIMEOUT`] and its statements finish within it again (the server cancels
//! them too: `statement_timeout`), or fails: requests during an outage get
//! 503 `STORE_UNAVAILABLE` quickly instead of piling up, and the pool reconnects on its
//! own when the database returns. A run is answered only once its end is recorded, so
//! an outage never loses a run a client was told about.
//!
//! PostgreSQL's `text` cannot hold NUL: free text (SQL, messages, titles) is stored
//! with each NUL as U+FFFD, the replacement character. JSON columns escape it.
//!
//! TLS follows the URL's `sslmode` (`disable`, `prefer`, the default, or `require`),
//! with rustls, the bundled Mozilla roots and RUN_STORE_CA_FILE's (a private CA).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use futures::future::BoxFuture;
use protocol::RunError;
use tokio_postgres::Row;

use super::backend::{Store, StoreError};
use super::chat::{Thread, Turn};
use super::columns::{COLUMNS, RunJson, TOKEN_COLUMNS, TURN_COLUMNS, UPLOAD_COLUMNS, list_json, parse_error_type};
use super::run::{QueryType, Run, RunState, StoredSql, Timings, now};
use super::token::TokenRecord;
use super::upload::UploadRecord;

/// How long a store call may wait for a connection, and then for its statements.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per replica.
const POOL_SIZE: usize = 16;
/// The advisory lock keys (one namespace of ours: "csva" and a number).
const MIGRATION_LOCK: i64 = 0x6373_7661_0001;
const PRUNE_LOCK: i64 = 0x6373_7661_0002;

/// The message of a run whose replica stopped renewing its lease.
pub const REPLICA_LOST_MESSAGE: &str =
    "the replica running this query stopped (or could not record its end) before it finished; no answer was kept";

/// Schema migrations, applied in order; the index + 1 is the version.
const MIGRATIONS: &[&str] = &[
    // 1: the whole schema of SQLite's sixth version, with each replica's leases.
    "CREATE TABLE runs (
        seq                  BIGSERIAL UNIQUE,
        run_id               TEXT PRIMARY KEY,
        status               TEXT NOT NULL,
        dataset_id           TEXT NOT NULL,
        dataset_version_hash TEXT,
        query_type           TEXT NOT NULL,
        sql                  TEXT NOT NULL,
        sql_bytes            BIGINT NOT NULL,
        sql_truncated        BOOLEAN NOT NULL,
        sql_sha256           TEXT,
        plan_json            TEXT,
        tables_json          TEXT,
        result_json          TEXT,
        error_type           TEXT,
        error_message        TEXT,
        sandbox_provider     TEXT NOT NULL,
        job_name             TEXT,
        request_id           TEXT,
        turn_id              TEXT,
        created_at           TEXT NOT NULL,
        started_at           TEXT,
        finished_at          TEXT,
        queued_ms            DOUBLE PRECISION,
        run_ms               DOUBLE PRECISION,
        total_ms             DOUBLE PRECISION,
        principal            TEXT,
        token_id             TEXT,
        origin               TEXT,
        replica              TEXT,
        lease_until          TIMESTAMPTZ
    );
    CREATE INDEX runs_status ON runs (status, seq);
    CREATE INDEX runs_turn ON runs (turn_id, seq);
    CREATE INDEX runs_principal ON runs (principal, seq);
    CREATE INDEX runs_created ON runs (created_at);
    CREATE INDEX runs_lease ON runs (lease_until) WHERE status = 'running';
    CREATE TABLE threads (
        seq         BIGSERIAL UNIQUE,
        thread_id   TEXT PRIMARY KEY,
        dataset_id  TEXT NOT NULL,
        title       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        principal   TEXT
    );
    CREATE INDEX threads_principal ON threads (principal, updated_at);
    CREATE TABLE turns (
        seq               BIGSERIAL PRIMARY KEY,
        turn_id           TEXT NOT NULL UNIQUE,
        thread_id         TEXT NOT NULL,
        status            TEXT NOT NULL,
        user_message      TEXT NOT NULL,
        assistant_message TEXT,
        response_json     TEXT,
        context_json      TEXT,
        created_at        TEXT NOT NULL,
        finished_at       TEXT,
        replica           TEXT,
        lease_until       TIMESTAMPTZ
    );
    CREATE INDEX turns_thread ON turns (thread_id, seq);
    CREATE INDEX turns_lease ON turns (lease_until) WHERE status = 'running';
    CREATE TABLE tokens (
        seq           BIGSERIAL UNIQUE,
        token_id      TEXT PRIMARY KEY,
        subject       TEXT NOT NULL,
        datasets_json TEXT NOT NULL,
        admin         BOOLEAN NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        expires_at    TEXT,
        revoked_at    TEXT
    );
    CREATE TABLE uploads (
        dataset_id   TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        description  TEXT NOT NULL,
        tables_json  TEXT NOT NULL,
        version_hash TEXT NOT NULL,
        size_bytes   BIGINT NOT NULL,
        created_at   TEXT NOT NULL
    );",
];

/// The PostgreSQL store. Clones share one pool and one replica's leases.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    location: String,
    replica: String,
    lease: Duration,
    /// The runs and turns this replica executes: the leases it renews.
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    runs: HashSet<String>,
    turns: HashSet<String>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// migrates it (once, however many replicas start together) and returns the store
    /// of replica `replica`, whose leases last `lease`.
    /// `ca_file`: PEM certificates to trust for the database's TLS besides the bundled
    /// roots (a private CA's, as CloudNativePG's).
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        replica: String,
        lease: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::new("RUN_STORE_URL is not a PostgreSQL URL", e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CALL_TIMEOUT);
        }
        // A statement a call gave up on is cancelled by the server too, and a database
        // gone silent (a failover, a dropped route) is noticed in seconds, not when
        // the kernel's TCP timeout ends.
        config.options(format!("-c statement_timeout={}", CALL_TIMEOUT.as_millis()));
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(10));
        config.application_name("csv-analyst");
        let location = location(&config);
        let manager =
            Manager::from_config(config, tls(ca_file)?, ManagerConfig { recycling_method: RecyclingMethod::Verified });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(Timeouts { wait: Some(CALL_TIMEOUT), create: Some(CALL_TIMEOUT), recycle: Some(CALL_TIMEOUT) })
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::new("cannot make the connection pool", e))?;
        let store = PostgresStore { pool, location, replica, lease, held: Arc::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// This replica's name in the records of the runs it executes.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let what = "cannot migrate the store";
        let mut client = self.pool.get().await.map_err(|e| StoreError::new(what, e))?;
        let e = |e| StoreError::new(what, e);
        // Waiting for another replica's migration may take longer than a call.
        client.batch_execute("SET statement_timeout = 0").await.map_err(e)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(e)?;
        let migrated = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    INTEGER PRIMARY KEY,
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                    )",
                )
                .await?;
            let version: i32 =
                client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
            for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                let tx = client.transaction().await?;
                tx.batch_execute(migration).await?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&((index + 1) as i32)]).await?;
                tx.commit().await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        migrated.map_err(e)?;
        unlocked.map_err(e)?;
        client.batch_execute("RESET statement_timeout").await.map_err(e)?;
        Ok(())
    }

    /// A pooled connection, within [`CALL_TIMEOUT`]. A connection is checked with a
    /// round trip before it is handed out (`RecyclingMethod::Verified`): one left busy
    /// by a call that gave up, or cut by a restart, is replaced.
    async fn client(&self, what: &'static str) -> Result<deadpool_postgres::Object, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.pool.get()).await {
            Ok(client) => client.map_err(|e| StoreError::new(what, e)),
            Err(_) => Err(StoreError::new(what, format!("no connection to the database within {CALL_TIMEOUT:?}"))),
        }
    }
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    async fn insert_run(&self, run: &Run) -> Result<(), StoreError> {
        let running = run.status == RunState::Running;
        let (r, json) = (run, RunJson::of(run));
        let (status, query_type) = (r.status.as_str(), r.query_type.as_str());
        let (error_type, error_message) = error_columns(r);
        let sql_bytes = r.sql.bytes as i64;
        let replica = running.then_some(self.replica.as_str());
        let lease = running.then(|| self.lease_seconds());
        let c = self.client("cannot record the run").await?;
        let written = timed("cannot record the run", async {
            c.execute(
                "INSERT INTO runs (run_id, status, dataset_id, dataset_version_hash, query_type, sql, sql_bytes,
                       sql_truncated, sql_sha256, plan_json, tables_json, result_json, error_type, error_message,
                       sandbox_provider, job_name, request_id, turn_id, created_at, started_at, finished_at,
                       queued_ms, run_ms, total_ms, principal, token_id, origin, replica, lease_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                       $20, $21, $22, $23, $24, $25, $26, $27, $28,
                       CASE WHEN $29::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $29::float8) END)",
                &[
                    &r.run_id,
                    &status,
                    &r.dataset_id,
                    &r.dataset_version_hash,
                    &query_type,
                    &text(&r.sql.text),
                    &sql_bytes,
                    &r.sql.truncated,
                    &r.sql.sha256,
                    &json.plan,
                    &json.tables,
                    &json.result,
                    &error_type,
                    &error_message,
                    &r.sandbox_provider,
                    &r.job_name,
                    &r.request_id,
                    &r.turn_id,
                    &r.created_at,
                    &r.started_at,
                    &r.finished_at,
                    &r.timings.queued_ms,
                    &r.timings.run_ms,
                    &r.timings.total_ms,
                    &r.principal,
                    &r.token_id,
                    &r.origin,
                    &replica,
                    &lease,
                ],
            )
            .await
            .map(|_| ())
        })
        .await;
        if written.is_ok() && running {
            self.held().runs.insert(run.run_id.clone());
        }
        written
    }

    async fn finish_run(&self, run: &Run) -> Result<(), StoreError> {
        // Not renewed any more, recorded or not: a run whose end is lost ends as
        // REPLICA_LOST once its lease passes, never `running` forever.
        self.held().runs.remove(&run.run_id);
        let (r, json) = (run, RunJson::of(run));
        let status = r.status.as_str();
        let (error_type, error_message) = error_columns(r);
        let c = self.client("cannot record the run's result").await?;
        timed("cannot record the run's result", async {
            c.execute(
                "UPDATE runs SET status = $2, result_json = $3, error_type = $4, error_message = $5,
                   job_name = COALESCE($6, job_name), finished_at = $7, run_ms = $8, total_ms = $9,
                   lease_until = NULL
                 WHERE run_id = $1",
                &[
                    &r.run_id,
                    &status,
                    &json.result,
                    &error_type,
                    &error_message,
                    &r.job_name,
                    &r.finished_at,
                    &r.timings.run_ms,
                    &r.timings.total_ms,
                ],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let c = self.client("cannot read the run").await?;
        timed("cannot read the run", async {
            let row =
                c.query_opt(&format!("SELECT {COLUMNS}, result_json FROM runs WHERE run_id = $1"), &[&run_id]).await?;
            Ok(row.map(|row| run_from_row(&row, true)))
        })
        .await
    }

    async fn list_runs(&self, limit: usize, owner: Option<String>) -> Result<Vec<Run>, StoreError> {
        let limit = limit as i64;
        let c = self.client("cannot list runs").await?;
        timed("cannot list runs", async {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM runs WHERE $2::text IS NULL OR principal = $2 ORDER BY seq DESC LIMIT $1"
                    ),
                    &[&limit, &owner],
                )
                .await?;
            Ok(rows.iter().map(|row| run_from_row(row, false)).collect())
        })
        .await
    }

    async fn turn_runs(&self, turn_id: &str) -> Result<Vec<Run>, StoreError> {
        let c = self.client("cannot read the turn's runs").await?;
        timed("cannot read the turn's runs", async {
            let rows = c
                .query(&format!("SELECT {COLUMNS}, result_json FROM runs WHERE turn_id = $1 ORDER BY seq"), &[&turn_id])
                .await?;
            Ok(rows.iter().map(|row| run_from_row(row, true)).collect())
        })
        .await
    }

    /// Records this replica's runs and turns still running as interrupted (a
    /// shutdown's grace is over); other replicas' are theirs.
    async fn interrupt_own(&self, message: &str) -> Result<usize, StoreError> {
        let finished_at = now();
        let message = text(message);
        let replica = self.replica.clone();
        let mut c = self.client("cannot record interrupted runs").await?;
        let interrupted = timed("cannot record interrupted runs", async {
            let tx = c.transaction().await?;
            let runs = tx
                .execute(
                    "UPDATE runs SET status = 'interrupted', error_type = 'INTERNAL', error_message = $1,
                           finished_at = $2, lease_until = NULL
                         WHERE status = 'running' AND replica = $3",
                    &[&message, &finished_at, &replica],
                )
                .await?;
            tx.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = $1, lease_until = NULL
                     WHERE status = 'running' AND replica = $2",
                &[&finished_at, &replica],
            )
            .await?;
            tx.commit().await?;
            Ok(runs as usize)
        })
        .await?;
        let mut held = self.held();
        held.runs.clear();
        held.turns.clear();
        Ok(interrupted)
    }

    /// Renews the leases of what this replica holds, then ends what other (dead)
    /// replicas held past its lease. Returns how many runs it ended.
    async fn renew_and_reap(&self) -> Result<usize, StoreError> {
        let (runs, turns): (Vec<String>, Vec<String>) = {
            let held = self.held();
            (held.runs.iter().cloned().collect(), held.turns.iter().cloned().collect())
        };
        let lease = self.lease_seconds();
        let finished_at = now();
        let c = self.client("cannot renew the runs' leases").await?;
        timed("cannot renew the runs' leases", async {
            if !runs.is_empty() {
                c.execute(
                    "UPDATE runs SET lease_until = now() + make_interval(secs => $2)
                     WHERE run_id = ANY($1) AND status = 'running'",
                    &[&runs, &lease],
                )
                .await?;
            }
            if !turns.is_empty() {
                c.execute(
                    "UPDATE turns SET lease_until = now() + make_interval(secs => $2)
                     WHERE turn_id = ANY($1) AND status = 'running'",
                    &[&turns, &lease],
                )
                .await?;
            }
            let lost = c
                .execute(
                    "UPDATE runs SET status = 'failed', error_type = 'REPLICA_LOST', error_message = $1,
                       finished_at = $2, lease_until = NULL
                     WHERE status = 'running' AND lease_until < now()",
                    &[&REPLICA_LOST_MESSAGE, &finished_at],
                )
                .await?;
            c.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = $1, lease_until = NULL
                 WHERE status = 'running' AND lease_until < now()",
                &[&finished_at],
            )
            .await?;
            Ok(lost as usize)
        })
        .await
    }

    /// Deletes runs beyond the newest `keep`, and runs created before `before`, unless
    /// another replica is pruning right now (then 0).
    pub async fn prune(&self, keep: u64, before: Option<String>) -> Result<usize, StoreError> {
        let keep = keep as i64;
        let mut c = self.client("cannot prune old runs").await?;
        timed("cannot prune old runs", async {
            let tx = c.transaction().await?;
            let locked: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?.get(0);
            if !locked {
                return Ok(0);
            }
            let mut deleted = tx
                .execute(
                    "DELETE FROM runs WHERE status <> 'running'
                       AND seq <= (SELECT seq FROM runs ORDER BY seq DESC OFFSET $1 LIMIT 1)",
                    &[&keep],
                )
                .await?;
            if let Some(before) = &before {
                deleted +=
                    tx.execute("DELETE FROM runs WHERE status <> 'running' AND created_at < $1", &[before]).await?;
            }
            tx.commit().await?;
            Ok(deleted as usize)
        })
        .await
    }

    async fn measure(&self) -> Result<(u64, u64), StoreError> {
        let c = self.client("cannot measure the store").await?;
        timed("cannot measure the store", async {
            let row = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM runs),
                       (pg_total_relation_size('runs') + pg_total_relation_size('threads')
                        + pg_total_relation_size('turns') + pg_total_relation_size('tokens')
                        + pg_total_relation_size('uploads'))::bigint",
                    &[],
                )
                .await?;
            Ok((row.get::<_, i64>(0).max(0) as u64, row.get::<_, i64>(1).max(0) as u64))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client("the store does not answer").await?;
        timed("the store does not answer", async { c.query_one("SELECT 1", &[]).await.map(|_| ()) }).await
    }

    // ---- threads and turns ----

    async fn insert_thread(&self, t: &Thread) -> Result<(), StoreError> {
        let title = text(&t.title);
        let c = self.client("cannot record the thread").await?;
        timed("cannot record the thread", async {
            c.execute(
                "INSERT INTO threads (thread_id, dataset_id, title, created_at, updated_at, principal)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&t.thread_id, &t.dataset_id, &title, &t.created_at, &t.updated_at, &t.principal],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_thread(&self, thread_id: &str) -> Result<Option<Thread>, StoreError> {
        let c = self.client("cannot read the thread").await?;
        timed("cannot read the thread", async {
            let row = c
                .query_opt(
                    "SELECT thread_id, dataset_id, title, created_at, updated_at, principal FROM threads
                     WHERE thread_id = $1",
                    &[&thread_id],
                )
                .await?;
            Ok(row.as_ref().map(thread_from_row))
        })
        .await
    }

    async fn list_threads(&self, limit: usize, owner: Option<String>) -> Result<Vec<Thread>, StoreError> {
        let limit = limit as i64;
        let c = self.client("cannot list threads").await?;
        timed("cannot list threads", async {
            let rows = c
                .query(
                    "SELECT thread_id, dataset_id, title, created_at, updated_at, principal FROM threads
                     WHERE $2::text IS NULL OR principal = $2 ORDER BY updated_at DESC, seq DESC LIMIT $1",
                    &[&limit, &owner],
                )
                .await?;
            Ok(rows.iter().map(thread_from_row).collect())
        })
        .await
    }

    async fn remove_thread(&self, thread_id: &str) -> Result<bool, StoreError> {
        let mut c = self.client("cannot delete the thread").await?;
        timed("cannot delete the thread", async {
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM turns WHERE thread_id = $1", &[&thread_id]).await?;
            let deleted = tx.execute("DELETE FROM threads WHERE thread_id = $1", &[&thread_id]).await?;
            tx.commit().await?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn insert_turn_row(&self, t: &Turn) -> Result<(), StoreError> {
        let running = t.status == RunState::Running.as_str();
        let (user, assistant) = (text(&t.user_message), t.assistant_message.as_deref().map(text));
        let (response, context) =
            (t.response.as_ref().map(|v| v.to_string()), t.context.as_ref().map(|v| v.to_string()));
        let replica = running.then_some(self.replica.as_str());
        let lease = running.then(|| self.lease_seconds());
        let mut c = self.client("cannot record the turn").await?;
        let written = timed("cannot record the turn", async {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO turns (turn_id, thread_id, status, user_message, assistant_message, response_json,
                       context_json, created_at, finished_at, replica, lease_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                       CASE WHEN $11::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $11::float8) END)",
                &[
                    &t.turn_id,
                    &t.thread_id,
                    &t.status,
                    &user,
                    &assistant,
                    &response,
                    &context,
                    &t.created_at,
                    &t.finished_at,
                    &replica,
                    &lease,
                ],
            )
            .await?;
            tx.execute("UPDATE threads SET updated_at = $2 WHERE thread_id = $1", &[&t.thread_id, &t.created_at])
                .await?;
            tx.commit().await
        })
        .await;
        if written.is_ok() && running {
            self.held().turns.insert(t.turn_id.clone());
        }
        written
    }

    async fn finish_turn_row(&self, t: &Turn) -> Result<(), StoreError> {
        self.held().turns.remove(&t.turn_id);
        let assistant = t.assistant_message.as_deref().map(text);
        let (response, context) =
            (t.response.as_ref().map(|v| v.to_string()), t.context.as_ref().map(|v| v.to_string()));
        let c = self.client("cannot record the turn's outcome").await?;
        timed("cannot record the turn's outcome", async {
            c.execute(
                "UPDATE turns SET status = $2, assistant_message = $3, response_json = $4, context_json = $5,
                   finished_at = $6, lease_until = NULL WHERE turn_id = $1",
                &[&t.turn_id, &t.status, &assistant, &response, &context, &t.finished_at],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_turn(&self, turn_id: &str) -> Result<Option<Turn>, StoreError> {
        let c = self.client("cannot read the turn").await?;
        timed("cannot read the turn", async {
            let row = c.query_opt(&format!("SELECT {TURN_COLUMNS} FROM turns WHERE turn_id = $1"), &[&turn_id]).await?;
            Ok(row.as_ref().map(turn_from_row))
        })
        .await
    }

    async fn list_turns(&self, thread_id: &str, limit: usize) -> Result<Vec<Turn>, StoreError> {
        let limit = limit as i64;
        let c = self.client("cannot read the thread's turns").await?;
        timed("cannot read the thread's turns", async {
            let rows = c
                .query(
                    &format!(
                        "SELECT {TURN_COLUMNS} FROM (SELECT * FROM turns WHERE thread_id = $1 ORDER BY seq DESC LIMIT $2) t
                         ORDER BY seq"
                    ),
                    &[&thread_id, &limit],
                )
                .await?;
            Ok(rows.iter().map(turn_from_row).collect())
        })
        .await
    }

    // ---- tokens ----

    async fn insert_token_row(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let datasets = list_json(&t.datasets);
        let c = self.client("cannot record the token").await?;
        timed("cannot record the token", async {
            c.execute(
                &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                &[
                    &t.token_id,
                    &t.subject,
                    &datasets,
                    &t.admin,
                    &t.secret_sha256,
                    &t.created_at,
                    &t.expires_at,
                    &t.revoked_at,
                ],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let c = self.client("cannot read the token").await?;
        timed("cannot read the token", async {
            let row =
                c.query_opt(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = $1"), &[&token_id]).await?;
            Ok(row.as_ref().map(token_from_row))
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let c = self.client("cannot list tokens").await?;
        timed("cannot list tokens", async {
            let rows =
                c.query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, seq DESC"), &[]).await?;
            Ok(rows.iter().map(token_from_row).collect())
        })
        .await
    }

    async fn revoke(&self, token_id: &str, at: &str) -> Result<bool, StoreError> {
        let c = self.client("cannot revoke the token").await?;
        timed("cannot revoke the token", async {
            let n = c
                .execute(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE token_id = $1",
                    &[&token_id, &at],
                )
                .await?;
            Ok(n > 0)
        })
        .await
    }

    // ---- uploads ----

    async fn insert_upload_row(&self, u: &UploadRecord) -> Result<bool, StoreError> {
        let tables = list_json(&u.tables);
        let (description, size) = (text(&u.description), u.size_bytes as i64);
        let c = self.client("cannot record the upload").await?;
        timed("cannot record the upload", async {
            let n = c
                .execute(
                    &format!(
                        "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (dataset_id) DO NOTHING"
                    ),
                    &[&u.dataset_id, &u.owner, &description, &tables, &u.version_hash, &size, &u.created_at],
                )
                .await?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        let c = self.client("cannot list uploads").await?;
        timed("cannot list uploads", async {
            let rows =
                c.query(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY created_at, dataset_id"), &[]).await?;
            Ok(rows.iter().map(upload_from_row).collect())
        })
        .await
    }

    async fn remove_upload(&self, dataset_id: &str) -> Result<bool, StoreError> {
        let c = self.client("cannot delete the upload").await?;
        timed("cannot delete the upload", async {
            Ok(c.execute("DELETE FROM uploads WHERE dataset_id = $1", &[&dataset_id]).await? > 0)
        })
        .await
    }
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn shared(&self) -> bool {
        true
    }
    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }
    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.ping())
    }
    fn maintain(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.renew_and_reap())
    }
    fn insert<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert_run(run))
    }
    fn finish<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.finish_run(run))
    }
    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<Run>, StoreError>> {
        Box::pin(self.get_run(run_id))
    }
    fn list(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Run>, StoreError>> {
        Box::pin(self.list_runs(limit, owner))
    }
    fn runs_of_turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        Box::pin(self.turn_runs(turn_id))
    }
    fn interrupt_running<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.interrupt_own(message))
    }
    fn prune(&self, keep: u64, before: Option<String>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(PostgresStore::prune(self, keep, before))
    }
    fn size(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>> {
        Box::pin(self.measure())
    }
    fn create_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert_thread(thread))
    }
    fn thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StoreError>> {
        Box::pin(self.get_thread(thread_id))
    }
    fn threads(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Thread>, StoreError>> {
        Box::pin(self.list_threads(limit, owner))
    }
    fn delete_thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.remove_thread(thread_id))
    }
    fn insert_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert_turn_row(turn))
    }
    fn finish_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.finish_turn_row(turn))
    }
    fn turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Option<Turn>, StoreError>> {
        Box::pin(self.get_turn(turn_id))
    }
    fn turns<'a>(&'a self, thread_id: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Turn>, StoreError>> {
        Box::pin(self.list_turns(thread_id, limit))
    }
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert_token_row(token))
    }
    fn token<'a>(&'a self, token_id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>> {
        Box::pin(self.get_token(token_id))
    }
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>> {
        Box::pin(self.list_tokens())
    }
    fn revoke_token<'a>(&'a self, token_id: &'a str, at: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.revoke(token_id, at))
    }
    fn insert_upload<'a>(&'a self, upload: &'a UploadRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.insert_upload_row(upload))
    }
    fn uploads(&self) -> BoxFuture<'_, Result<Vec<UploadRecord>, StoreError>> {
        Box::pin(self.list_uploads())
    }
    fn delete_upload<'a>(&'a self, dataset_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.remove_upload(dataset_id))
    }
}

/// `query`, within [`CALL_TIMEOUT`].
async fn timed<T>(
    what: &'static str,
    query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, query).await {
        Ok(result) => result.map_err(|e| StoreError::new(what, e)),
        Err(_) => Err(StoreError::new(what, format!("the database did not answer within {CALL_TIMEOUT:?}"))),
    }
}

/// rustls with the bundled Mozilla roots and those of `ca_file`; the URL's `sslmode`
/// decides whether it is used.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let what = format!("cannot read RUN_STORE_CA_FILE {}", path.display());
        let certificates = CertificateDer::pem_file_iter(path).map_err(|e| StoreError::new(&what, e))?;
        let mut added = 0;
        for certificate in certificates {
            let certificate = certificate.map_err(|e| StoreError::new(&what, e))?;
            roots.add(certificate).map_err(|e| StoreError::new(&what, e))?;
            added += 1;
        }
        if added == 0 {
            return Err(StoreError::new(&what, "it holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::new("cannot configure TLS", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `host:port/dbname` as user, for logs: never the password.
fn location(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            // What follows a stray `@` of an unescaped password is not a host to log.
            tokio_postgres::config::Host::Tcp(name) => name.rsplit('@').next().unwrap_or_default().to_string(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("postgresql://{}@{host}:{port}/{db}", config.get_user().unwrap_or(""))
}

/// Free text as PostgreSQL's `text` can hold it: NUL as U+FFFD.
fn text(s: &str) -> String {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s.to_string() }
}

fn error_columns(run: &Run) -> (Option<&'static str>, Option<String>) {
    (run.error.as_ref().map(|e| e.error_type.as_str()), run.error.as_ref().map(|e| text(&e.message)))
}

/// A JSON column: absent, or unreadable (logged), is `None`.
fn json<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Option<T> {
    let text: Option<String> = row.get(index);
    text.and_then(|text| match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(error = %e, column = index, "unreadable JSON in the run store; left out");
            None
        }
    })
}

fn run_from_row(row: &Row, with_result: bool) -> Run {
    let status: String = row.get(1);
    let query_type: String = row.get(4);
    let error = row.get::<_, Option<String>>(11).map(|name| RunError {
        error_type: parse_error_type(&name),
        message: row.get::<_, Option<String>>(12).unwrap_or_default(),
    });
    Run {
        run_id: row.get(0),
        status: RunState::parse(&status).unwrap_or(RunState::Interrupted),
        dataset_id: row.get(2),
        dataset_version_hash: row.get(3),
        query_type: QueryType::parse(&query_type).unwrap_or_default(),
        sql: StoredSql {
            text: row.get(5),
            bytes: row.get::<_, i64>(6).max(0) as u64,
            truncated: row.get(7),
            sha256: row.get(8),
        },
        plan: json(row, 9),
        tables: json(row, 10).unwrap_or_default(),
        result: if with_result { json(row, 26) } else { None },
        error,
        sandbox_provider: row.get(13),
        job_name: row.get(14),
        request_id: row.get(15),
        turn_id: row.get(16),
        created_at: row.get(17),
        started_at: row.get(18),
        finished_at: row.get(19),
        timings: Timings { queued_ms: row.get(20), run_ms: row.get(21), total_ms: row.get(22) },
        principal: row.get(23),
        token_id: row.get(24),
        origin: row.get(25),
    }
}

fn token_from_row(row: &Row) -> TokenRecord {
    TokenRecord {
        token_id: row.get(0),
        subject: row.get(1),
        datasets: json(row, 2).unwrap_or_default(),
        admin: row.get(3),
        secret_sha256: row.get(4),
        created_at: row.get(5),
        expires_at: row.get(6),
        revoked_at: row.get(7),
    }
}

fn upload_from_row(row: &Row) -> UploadRecord {
    UploadRecord {
        dataset_id: row.get(0),
        owner: row.get(1),
        description: row.get(2),
        tables: json(row, 3).unwrap_or_default(),
        version_hash: row.get(4),
        size_bytes: row.get::<_, i64>(5).max(0) as u64,
        created_at: row.get(6),
    }
}

fn thread_from_row(row: &Row) -> Thread {
    Thread {
        thread_id: row.get(0),
        dataset_id: row.get(1),
        title: row.get(2),
        created_at: row.get(3),
        updated_at: row.get(4),
        principal: row.get(5),
    }
}

fn turn_from_row(row: &Row) -> Turn {
    Turn {
        turn_id: row.get(0),
        thread_id: row.get(1),
        status: row.get(2),
        user_message: row.get(3),
        assistant_message: row.get(4),
        response: json(row, 5),
        context: json(row, 6),
        created_at: row.get(7),
        finished_at: row.get(8),
    }
}
