//! Datasets people bring: `POST /datasets` with CSV and Parquet files.
//!
//! An uploaded file is untrusted bytes. The service only stores it: it is parsed,
//! typed and checked end to end inside the sandbox (a [`protocol::RequestKind::Describe`]
//! run, under the run's memory limit and UPLOAD_TIMEOUT_SECONDS), never by code in
//! this process. What the sandbox answers becomes the dataset's manifest, in the
//! registry's format, so later runs pass an explicit schema and never infer again.
//!
//! On disk, in UPLOADS_DIR: a body streams into `.staging-<uuid>/` (never held in
//! memory), counted against UPLOAD_MAX_BYTES and the owner's UPLOAD_QUOTA_BYTES as it
//! comes; publishing writes `registry.json` last and renames the folder to `<id>/`,
//! then records the upload in the store. A staging folder is removed when its upload
//! ends any way but published (an error, a client that hangs up), and at start-up; a
//! published folder the store has no record of (a crash between the rename and the
//! record) is set aside at start-up, never listed: nothing half-made is ever listed.
//!
//! May use: `runs` (the sandbox and its slots), `datasets` (the catalogue the uploads
//! join), `store` (their records), `access`, `config` (its settings), `error`. Knows nothing of HTTP: the API
//! hands the body over file by file, chunk by chunk.

mod names;
mod service;
mod staging;

pub use self::names::{MAX_FILES, check_id, table_file_name};
pub use self::service::{UploadSettings, Uploads};
pub use self::staging::{FileSink, Staging};
