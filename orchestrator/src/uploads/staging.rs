//! An upload under way: its id reserved, its files streaming into a staging folder,
//! every byte counted against the limits as it comes. Dropped before it is
//! published, it removes its folder and frees its id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use super::names::{MAX_FILES, table_file_name};
use crate::error::Error;

/// One staged file: its table and the name it is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub table: String,
    pub stored: String,
}

pub struct Staging {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) dir: PathBuf,
    pub(super) files: Vec<StagedFile>,
    /// Bytes written so far, shared with the reservation (the owner's quota counts them).
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) limit: Limit,
    pub(super) reservations: Reservations,
    /// Set once the folder is published (renamed): nothing to remove then.
    pub(super) published: bool,
}

/// What an upload's bytes are counted against: UPLOAD_MAX_BYTES for itself, and
/// UPLOAD_QUOTA_BYTES for its owner's published uploads (as they were when it began)
/// and every upload of theirs under way, this one included.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    pub max_bytes: u64,
    pub quota_bytes: u64,
    pub published: u64,
}

impl Staging {
    /// The id being uploaded.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts the next file. Its name must be a plain `.csv` or `.parquet` file name
    /// whose table is not in this upload already; at most [`MAX_FILES`] files.
    pub async fn file(&mut self, file_name: &str) -> Result<FileSink<'_>, Error> {
        let (table, stored) = table_file_name(file_name)?;
        if self.files.len() >= MAX_FILES {
            return Err(Error::InvalidUpload(format!("an upload holds at most {MAX_FILES} files")));
        }
        if self.files.iter().any(|f| f.table == table) {
            return Err(Error::InvalidUpload(format!("two files give the table {table:?}; rename one")));
        }
        let path = self.dir.join(&stored);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| Error::UploadsUnavailable(format!("cannot stage the file: {e}")))?;
        self.files.push(StagedFile { table, stored });
        Ok(FileSink {
            file,
            bytes: &self.bytes,
            limit: self.limit,
            reservations: &self.reservations,
            owner: &self.owner,
        })
    }

    pub fn files(&self) -> &[StagedFile] {
        &self.files
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.reservations.release(&self.id);
        if self.published {
            return;
        }
        let dir = self.dir.clone();
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an upload's staging folder");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// One file of an upload, being written.
pub struct FileSink<'a> {
    file: tokio::fs::File,
    bytes: &'a AtomicU64,
    limit: Limit,
    reservations: &'a Reservations,
    owner: &'a str,
}

impl FileSink<'_> {
    /// Writes the next piece, or refuses it (and everything after) once the upload
    /// is past UPLOAD_MAX_BYTES or its owner's quota.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let total = self.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst) + chunk.len() as u64;
        if total > self.limit.max_bytes {
            let max = self.limit.max_bytes;
            return Err(Error::UploadTooLarge(format!("the upload is larger than UPLOAD_MAX_BYTES={max}")));
        }
        if self.limit.published + self.reservations.in_flight(self.owner) > self.limit.quota_bytes {
            return Err(Error::QuotaExceeded(format!(
                "this upload would take its owner past UPLOAD_QUOTA_BYTES={}; delete an upload first",
                self.limit.quota_bytes
            )));
        }
        self.file.write_all(chunk).await.map_err(|e| Error::UploadsUnavailable(format!("cannot stage the file: {e}")))
    }

    /// Flushes the file to disk.
    pub async fn finish(mut self) -> Result<(), Error> {
        self.file.flush().await.map_err(|e| Error::UploadsUnavailable(format!("cannot stage the file: {e}")))?;
        self.file.sync_all().await.map_err(|e| Error::UploadsUnavailable(format!("cannot stage the file: {e}")))
    }
}

/// The ids of uploads under way, with their owners and the bytes they have written.
#[derive(Clone, Default)]
pub(super) struct Reservations(Arc<Mutex<HashMap<String, Reserved>>>);

/// An upload under way: its owner and the bytes it has written.
type Reserved = (String, Arc<AtomicU64>);

impl Reservations {
    pub(super) fn reserve(&self, id: &str, owner: &str) -> Option<Arc<AtomicU64>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(id) {
            return None;
        }
        let bytes = Arc::new(AtomicU64::new(0));
        map.insert(id.to_string(), (owner.to_string(), bytes.clone()));
        Some(bytes)
    }

    pub(super) fn release(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Uploads of `owner` under way.
    pub(super) fn count(&self, owner: &str) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|(o, _)| o == owner).count()
    }

    /// Bytes `owner`'s uploads under way have written.
    pub(super) fn in_flight(&self, owner: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|(o, _)| o == owner).map(|(_, b)| b.load(Ordering::SeqCst)).sum()
    }
}
