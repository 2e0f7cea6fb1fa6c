//! The [`Store`] trait every backend implements, and [`StoreError`], the one error
//! a store gives (turned into the service's `STORE_UNAVAILABLE`).

use std::time::Duration;

use futures::future::BoxFuture;

use super::chat::{Thread, Turn};
use super::run::Run;
use super::token::TokenRecord;
use super::upload::UploadRecord;
use crate::error::Error;

/// A store failure. Its message says what failed, never where the file is (that is
/// logged at start-up), so it can go into a response.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct StoreError {
    what: String,
    message: String,
}

impl StoreError {
    pub(crate) fn new(what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError { what: what.to_string(), message: e.to_string() }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "run store failure");
        Error::StoreUnavailable(e.to_string())
    }
}

/// Where runs, threads and turns are kept. Every method is one short transaction;
/// an `Err` means the store could not be used (the service answers 503).
pub trait Store: Send + Sync {
    /// Where the store is, for the start-up log line (never in responses).
    fn location(&self) -> String;

    /// Whether other replicas share this store (then uploads' records can change
    /// under a replica, and start-up must not clean what another replica is writing).
    fn shared(&self) -> bool {
        false
    }
    /// How long a run in flight stays `running` without its replica renewing it:
    /// `Some` for a shared store, whose [`Store::maintain`] must then run every third
    /// of it.
    fn lease(&self) -> Option<Duration> {
        None
    }
    /// Renews this replica's leases and ends runs whose replica is gone
    /// (`REPLICA_LOST`); returns how many it ended. Nothing for a store of one process.
    fn maintain(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    /// Whether the store answers (`/readyz`).
    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// Writes the whole run (a new one, or one refused before any sandbox).
    fn insert<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records how a run ended.
    fn finish<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>>;
    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<Run>, StoreError>>;
    /// The most recent runs (of the subject `owner`, when given), newest first,
    /// without their results.
    fn list(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Run>, StoreError>>;
    /// The runs a chat turn made, oldest first, with their results.
    fn runs_of_turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>>;
    /// Records every run and turn still running (in this process: a shared store's
    /// other replicas keep theirs) as interrupted, with `message`.
    fn interrupt_running<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<usize, StoreError>>;
    /// Deletes runs beyond the newest `keep`, and runs created before `before`
    /// (RFC 3339). Returns how many were deleted.
    fn prune(&self, keep: u64, before: Option<String>) -> BoxFuture<'_, Result<usize, StoreError>>;
    /// The number of runs stored and the store's size in bytes.
    fn size(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>>;

    fn create_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>>;
    fn thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StoreError>>;
    /// Threads (of the subject `owner`, when given), most recently updated first.
    fn threads(&self, limit: usize, owner: Option<String>) -> BoxFuture<'_, Result<Vec<Thread>, StoreError>>;
    /// Deletes a thread and its turns (its runs stay, as runs). False if there was none.
    fn delete_thread<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn insert_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records how a turn ended.
    fn finish_turn<'a>(&'a self, turn: &'a Turn) -> BoxFuture<'a, Result<(), StoreError>>;
    fn turn<'a>(&'a self, turn_id: &'a str) -> BoxFuture<'a, Result<Option<Turn>, StoreError>>;
    /// The newest `limit` turns of a thread, oldest first.
    fn turns<'a>(&'a self, thread_id: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Turn>, StoreError>>;

    /// Tokens the service minted (their secrets only as SHA-256); never pruned.
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    fn token<'a>(&'a self, token_id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>>;
    /// Every token, newest first.
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>>;
    /// Marks a token revoked at `at` (RFC 3339). False if there is none.
    fn revoke_token<'a>(&'a self, token_id: &'a str, at: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Records an uploaded dataset; false if one of that id is recorded already.
    /// Never pruned.
    fn insert_upload<'a>(&'a self, upload: &'a UploadRecord) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Every upload, oldest first.
    fn uploads(&self) -> BoxFuture<'_, Result<Vec<UploadRecord>, StoreError>>;
    /// False if there was none.
    fn delete_upload<'a>(&'a self, dataset_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}
