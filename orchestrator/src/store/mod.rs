//! Records: every run, and the chat's threads and turns, behind one [`Store`]
//! trait with two backends: [`sqlite::SqliteStore`] (the default: one file, one
//! process) and [`postgres::PostgresStore`] (RUN_STORE_URL: shared by replicas, with
//! leases on the runs each executes).
//!
//! Owns the record types ([`run::Run`], [`chat::Thread`], [`chat::Turn`],
//! [`token::TokenRecord`], [`upload::UploadRecord`]) and how
//! they are kept. A run is written when a sandbox is about to start it (`running`)
//! and again when it ends; a query the policy refuses is written once, finished. A
//! process that dies mid-run leaves a `running` record; the next start marks those
//! `interrupted`, so no run is ever silently lost.
//!
//! May use: `protocol`, [`crate::error`]. Knows nothing of HTTP, sandboxes or how a
//! run is admitted.

pub mod backend;
pub mod chat;
mod columns;
pub mod postgres;
pub mod run;
pub mod sqlite;
pub mod token;
pub mod upload;

pub use self::backend::{Store, StoreError};
pub use self::chat::{Thread, Turn};
pub use self::postgres::PostgresStore;
pub use self::run::{
    QueryType, REFUSED_QUERY_BYTES, Run, RunState, RunSummary, STORED_SQL_BYTES, StoredSql, Timings, now,
};
pub use self::sqlite::SqliteStore;
pub use self::token::TokenRecord;
pub use self::upload::UploadRecord;
