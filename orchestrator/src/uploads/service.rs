//! The upload service: admits an upload (its id, its owner's quota), types and checks
//! its files in the sandbox, publishes it into the catalogue, deletes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::registry::{ColumnSchema, ColumnSpec, Dataset, DatasetFile, REGISTRY_FILE, Registry};
use protocol::{ErrorType, RunResult, RunStatus, TableFile, describe_limits};
use serde_json::Value;

use super::names::check_id;
use super::staging::{Limit, Reservations, Staging};
use crate::access::{Principal, Via};
use crate::datasets::{CatalogEntry, DataRoot, DatasetView, Source, Upload};
use crate::error::Error;
use crate::runs::Runs;
use crate::store::{UploadRecord, now};

/// Staging folders' prefix in UPLOADS_DIR.
const STAGING_PREFIX: &str = ".staging-";
/// Folders being deleted.
const DELETING_PREFIX: &str = ".deleting-";
/// Published folders found without a record at start-up.
const UNRECORDED_PREFIX: &str = ".unrecorded-";
/// Uploads one owner may have under way at once.
pub const MAX_UPLOADS_UNDER_WAY: usize = 2;
/// With a shared store, a folder in UPLOADS_DIR is a leftover only when it is at least
/// this old: younger, another replica may still be writing or recording it (an upload
/// streams, then waits up to UPLOAD_TIMEOUT_SECONDS, at most an hour, for its run).
const SHARED_LEFTOVER_AGE: Duration = Duration::from_secs(6 * 3600);

/// UPLOADS_DIR, UPLOAD_MAX_BYTES, UPLOAD_QUOTA_BYTES, UPLOAD_TIMEOUT_SECONDS.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub quota_bytes: u64,
    pub timeout: Duration,
}

impl UploadSettings {
    pub fn from_config(config: &crate::config::Config) -> UploadSettings {
        UploadSettings {
            dir: config.uploads_dir(),
            max_bytes: config.upload_max_bytes,
            quota_bytes: config.upload_quota_bytes,
            timeout: Duration::from_secs_f64(config.upload_timeout_seconds),
        }
    }
}

/// A described table: its row count and its columns with their types.
type Described = (u64, Vec<(String, ColumnSpec)>);

/// The upload service. A cheap handle.
#[derive(Clone)]
pub struct Uploads {
    inner: Arc<Inner>,
}

struct Inner {
    settings: UploadSettings,
    runs: Runs,
    reservations: Reservations,
    /// Held from the last quota check to the catalogue: publishing is one at a time,
    /// so two uploads of one owner cannot both pass the quota on stale figures.
    publishing: tokio::sync::Mutex<()>,
}

impl Uploads {
    /// Opens UPLOADS_DIR: removes what a crash left half-made (staging folders,
    /// folders being deleted, published folders the store has no record of) and adds
    /// every recorded upload to the catalogue.
    pub async fn open(settings: UploadSettings, runs: Runs) -> Result<Uploads, String> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create UPLOADS_DIR {}: {e}", dir.display()))?;
        let records = runs.store().uploads().await.map_err(|e| format!("cannot read the uploads' records: {e}"))?;
        let recorded: Vec<String> = records.iter().map(|r| r.dataset_id.clone()).collect();
        let cleanup_dir = dir.clone();
        // With a shared store, another replica may be writing a staging folder or
        // about to record one it just published: only what is old is left over.
        let min_age = runs.store().shared().then_some(SHARED_LEFTOVER_AGE);
        tokio::task::spawn_blocking(move || remove_leftovers(&cleanup_dir, &recorded, min_age))
            .await
            .map_err(|e| format!("cannot clean UPLOADS_DIR: {e}"))?;
        let uploads = Uploads {
            inner: Arc::new(Inner {
                settings,
                runs,
                reservations: Reservations::default(),
                publishing: tokio::sync::Mutex::new(()),
            }),
        };
        for record in records {
            match uploads.load(&record) {
                Ok(entry) => {
                    uploads.runs().catalog().add_upload(entry);
                }
                // Kept, not listed: a folder missing because of a wrong mount must not
                // cost the record (delete it with DELETE once it is listed again).
                Err(e) => tracing::warn!(
                    dataset = %record.dataset_id,
                    error = %e,
                    "an uploaded dataset cannot be read from UPLOADS_DIR; it is not listed"
                ),
            }
        }
        Ok(uploads)
    }

    fn runs(&self) -> &Runs {
        &self.inner.runs
    }

    /// Brings the catalogue's uploads in line with the store's records: what another
    /// replica published is listed, what it deleted is not. For a shared store, every
    /// few seconds ([`crate::server`]).
    pub async fn sync(&self) -> Result<(), Error> {
        // Under the publishing lock, the records read after it: a publish or a
        // delete on this replica is wholly before or after.
        let _publishing = self.inner.publishing.lock().await;
        let records = self.runs().store().uploads().await?;
        let catalog = self.runs().catalog();
        let listed: Vec<String> =
            catalog.datasets().iter().filter(|d| d.owner().is_some()).map(|d| d.id.clone()).collect();
        for record in records.iter().filter(|r| !listed.contains(&r.dataset_id)) {
            match self.load(record) {
                Ok(entry) => {
                    if catalog.add_upload(entry) {
                        self.runs().forget_schema(&record.dataset_id);
                        tracing::info!(dataset = %record.dataset_id, "an upload made on another replica is listed");
                    }
                }
                Err(e) => {
                    tracing::debug!(dataset = %record.dataset_id, error = %e, "a recorded upload cannot be read yet")
                }
            }
        }
        for id in listed.iter().filter(|id| !records.iter().any(|r| &r.dataset_id == *id)) {
            catalog.remove_upload(id);
            self.runs().forget_schema(id);
            tracing::info!(dataset = %id, "an upload deleted on another replica is no longer listed");
        }
        Ok(())
    }

    fn settings(&self) -> &UploadSettings {
        &self.inner.settings
    }

    /// A recorded upload as the catalogue holds it, from its manifest.
    fn load(&self, record: &UploadRecord) -> Result<CatalogEntry, String> {
        let folder = self.settings().dir.join(&record.dataset_id);
        let registry = Registry::load(&folder).map_err(|e| e.to_string())?;
        let dataset = registry
            .datasets
            .into_iter()
            .find(|d| d.id == record.dataset_id)
            .ok_or("its manifest lists another dataset")?;
        Ok(entry(dataset, record))
    }

    /// Bytes of `owner`'s published uploads.
    fn published_bytes(&self, owner: &str) -> u64 {
        self.runs()
            .catalog()
            .datasets()
            .iter()
            .filter_map(|d| match &d.source {
                Source::Uploaded(upload) if upload.owner == owner => Some(upload.size_bytes),
                _ => None,
            })
            .sum()
    }

    /// Begins an upload of `id` for `principal`. The id must be free (not a curated
    /// dataset's, not an upload's, not being uploaded), the owner under quota and
    /// with fewer than [`MAX_UPLOADS_UNDER_WAY`] uploads under way.
    pub fn begin(&self, id: &str, principal: &Principal) -> Result<Staging, Error> {
        if principal.via == Via::Anonymous {
            return Err(Error::Forbidden("uploads need a token: anonymous callers may only run queries".into()));
        }
        self.runs().provider().uploads_supported().map_err(Error::UploadsUnavailable)?;
        check_id(id)?;
        let taken = || Error::DatasetExists(format!("a dataset {id:?} exists already; choose another id"));
        if self.runs().catalog().dataset(id).is_some() {
            return Err(taken());
        }
        let owner = principal.subject.clone();
        let under_way = self.inner.reservations.count(&owner);
        if under_way >= MAX_UPLOADS_UNDER_WAY {
            return Err(Error::ClientLimit(format!(
                "{owner} has {under_way} uploads under way (at most {MAX_UPLOADS_UNDER_WAY}); retry when one ends"
            )));
        }
        let published = self.published_bytes(&owner);
        let used = published + self.inner.reservations.in_flight(&owner);
        let settings = self.settings();
        if used >= settings.quota_bytes {
            return Err(Error::QuotaExceeded(format!(
                "{owner}'s uploads take {used} bytes of UPLOAD_QUOTA_BYTES={}; delete an upload first",
                settings.quota_bytes
            )));
        }
        let bytes = self
            .inner
            .reservations
            .reserve(id, &owner)
            .ok_or_else(|| Error::DatasetExists(format!("an upload of {id:?} is under way; choose another id")))?;
        let dir = settings.dir.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4()));
        // From here on the staging value owns the reservation and the folder.
        let staging = Staging {
            id: id.to_string(),
            owner,
            dir,
            files: Vec::new(),
            bytes,
            limit: Limit { max_bytes: settings.max_bytes, quota_bytes: settings.quota_bytes, published },
            reservations: self.inner.reservations.clone(),
            published: false,
        };
        std::fs::create_dir(&staging.dir)
            .map_err(|e| Error::UploadsUnavailable(format!("cannot stage the upload: {e}")))?;
        Ok(staging)
    }

    /// Types and checks the staged files in the sandbox, writes the manifest, and
    /// publishes the dataset: listed, queryable, recorded. The sandbox run is one of
    /// `client`'s runs (the fairness key of MAX_RUNS_PER_CLIENT), as a query is; it
    /// waits for the client's share, and then a slot, at most UPLOAD_TIMEOUT_SECONDS
    /// each.
    pub async fn publish(
        &self,
        mut staging: Staging,
        description: String,
        client: Option<&str>,
    ) -> Result<DatasetView, Error> {
        if staging.files.is_empty() {
            return Err(Error::InvalidUpload("the upload has no file: send one or more `file` parts".into()));
        }
        // Waiting, as for a slot, rather than refusing a body that has arrived whole.
        let wait = self.settings().timeout;
        let _ticket = match client {
            Some(client) => Some(self.runs().admission().admit_within(client, wait).await?),
            None => None,
        };
        let folder = staging.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let files: Vec<TableFile> = staging
            .files
            .iter()
            .map(|f| TableFile {
                table: f.table.clone(),
                path: format!("{}/{folder}/{}", protocol::DATA_MOUNT, f.stored),
                columns: Vec::new(),
            })
            .collect();
        let described = self.runs().describe(&staging.id, files, DataRoot::Uploads, self.settings().timeout).await?;
        let names: Vec<&str> = staging.files.iter().map(|f| f.stored.as_str()).collect();
        let staged_prefix = format!("{}/{folder}/", protocol::DATA_MOUNT);
        let columns = described_columns(&described, &names, &staged_prefix, self.settings().timeout)?;

        // The manifest: the registry's format, paths relative to the folder.
        let dir = staging.dir.clone();
        let stored: Vec<String> = staging.files.iter().map(|f| f.stored.clone()).collect();
        let (digests, size_bytes) = tokio::task::spawn_blocking(move || hash_files(&dir, &stored))
            .await
            .map_err(|e| Error::Internal(format!("cannot hash the upload: {e}")))?
            .map_err(|e| Error::UploadsUnavailable(format!("cannot read the staged upload: {e}")))?;
        let version_hash = protocol::registry::version_hash(
            staging.files.iter().map(|f| f.stored.as_str()).zip(digests.iter().map(String::as_str)),
        );
        let dataset = Dataset {
            id: staging.id.clone(),
            name: staging.id.clone(),
            description: description.clone(),
            version_hash: Some(version_hash.clone()),
            files: staging
                .files
                .iter()
                .map(|f| {
                    let (row_count, schema) = columns.get(&f.table).cloned().unwrap_or_default();
                    DatasetFile {
                        name: f.stored.clone(),
                        path: f.stored.clone(),
                        description: String::new(),
                        row_count: Some(row_count),
                        schema: Some(ColumnSchema(schema)),
                    }
                })
                .collect(),
            prompts: Vec::new(),
        };
        let manifest = Registry { version: Some(Value::from("1")), datasets: vec![dataset.clone()] };
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        tokio::fs::write(staging.dir.join(REGISTRY_FILE), text)
            .await
            .map_err(|e| Error::UploadsUnavailable(format!("cannot write the manifest: {e}")))?;

        let record = UploadRecord {
            dataset_id: staging.id.clone(),
            owner: staging.owner.clone(),
            description,
            tables: staging.files.iter().map(|f| f.table.clone()).collect(),
            version_hash,
            size_bytes,
            created_at: now(),
        };
        let entry = entry(dataset, &record);
        // A query's request over it must reach a runner (a runner Job's travels in
        // an environment variable): refused now rather than at every run.
        let request = self.runs().request(&entry, "SELECT 1", self.runs().limits(None, None)?);
        self.runs().provider().check_request(&request).map_err(|why| {
            Error::UploadInvalid(format!("the dataset's tables and columns are too many for a runner: {why}"))
        })?;

        // Publish: rename (atomic), then record; a crash between the two leaves a
        // folder without a record, which the next start sets aside.
        let _publishing = self.inner.publishing.lock().await;
        let published = self.settings().dir.join(&staging.id);
        let taken = || Error::DatasetExists(format!("a dataset {:?} exists already; choose another id", staging.id));
        if self.runs().catalog().dataset(&staging.id).is_some() {
            return Err(taken());
        }
        let owned = self.published_bytes(&staging.owner);
        let quota = self.settings().quota_bytes;
        if owned + size_bytes > quota {
            return Err(Error::QuotaExceeded(format!(
                "{}'s uploads take {owned} bytes, and this one {size_bytes} more: past UPLOAD_QUOTA_BYTES={quota}; \
                 delete an upload first",
                staging.owner
            )));
        }
        tokio::fs::rename(&staging.dir, &published).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty => taken(),
            _ => Error::UploadsUnavailable(format!("cannot publish the upload: {e}")),
        })?;
        staging.dir = published.clone();
        match self.runs().store().insert_upload(&record).await {
            Ok(true) => {}
            Ok(false) => return Err(taken()),
            Err(e) => return Err(e.into()),
        }
        staging.published = true;
        self.runs().forget_schema(&record.dataset_id);
        if !self.runs().catalog().add_upload(entry) {
            return Err(taken());
        }
        let listed = self.runs().catalog().dataset(&record.dataset_id).ok_or_else(taken)?;
        tracing::info!(dataset = %record.dataset_id, owner = %record.owner, bytes = size_bytes, "dataset uploaded");
        Ok(crate::datasets::view(self.runs().catalog(), &listed))
    }

    /// Deletes an upload: its owner's or the admin's. A curated dataset cannot be
    /// deleted; one the caller may not use is unknown to it.
    pub async fn delete(&self, id: &str, principal: &Principal) -> Result<(), Error> {
        let catalog = self.runs().catalog();
        let entry = catalog.dataset_for(id, principal)?;
        if entry.owner().is_none() {
            return Err(Error::CuratedDataset(format!(
                "{id:?} is a curated dataset: it comes with the service and cannot be deleted"
            )));
        }
        let _publishing = self.inner.publishing.lock().await;
        self.runs().store().delete_upload(id).await?;
        catalog.remove_upload(id);
        self.runs().forget_schema(id);
        let folder = self.settings().dir.join(id);
        let doomed = self.settings().dir.join(format!("{DELETING_PREFIX}{}", uuid::Uuid::new_v4()));
        tokio::task::spawn_blocking(move || {
            // Renamed first, so a crash mid-removal leaves a folder start-up removes.
            let removed = std::fs::rename(&folder, &doomed).and_then(|()| std::fs::remove_dir_all(&doomed));
            if let Err(e) = removed {
                tracing::warn!(folder = %folder.display(), error = %e, "cannot remove a deleted upload's files");
            }
        });
        tracing::info!(dataset = %id, by = %principal.subject, "uploaded dataset deleted");
        Ok(())
    }
}

/// The catalogue's entry for an upload: paths relative to UPLOADS_DIR.
fn entry(mut dataset: Dataset, record: &UploadRecord) -> CatalogEntry {
    for file in &mut dataset.files {
        file.path = format!("{}/{}", record.dataset_id, file.name);
    }
    let upload =
        Upload { owner: record.owner.clone(), created_at: record.created_at.clone(), size_bytes: record.size_bytes };
    CatalogEntry { dataset, source: Source::Uploaded(upload) }
}

/// Table → (row count, columns) from a describe run, or why the upload is refused.
/// `names` are the staged files' names, `staged_prefix` where the guest saw them
/// (left out of messages: the caller knows its files by their names).
fn described_columns(
    result: &RunResult,
    names: &[&str],
    staged_prefix: &str,
    timeout: Duration,
) -> Result<HashMap<String, Described>, Error> {
    if result.status != RunStatus::Success {
        let (error_type, message) = result
            .error
            .as_ref()
            .map_or((ErrorType::Internal, "the sandbox gave no reason"), |e| (e.error_type, &e.message));
        let message = message.replace(staged_prefix, "");
        let files = names.join(", ");
        return Err(match error_type {
            ErrorType::SandboxError => Error::SandboxNotReady(message),
            ErrorType::MemoryLimit => Error::UploadInvalid(format!(
                "reading {files} needs more memory than a run may use (RUN_MEMORY_LIMIT_MB): {message}"
            )),
            ErrorType::Timeout => Error::UploadInvalid(format!(
                "reading {files} took longer than UPLOAD_TIMEOUT_SECONDS={}: {message}",
                timeout.as_secs_f64()
            )),
            _ => Error::UploadInvalid(message),
        });
    }
    let mut tables: HashMap<String, Described> = HashMap::new();
    for row in &result.rows {
        let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or_default().to_string();
        let rows = row.get(3).and_then(Value::as_u64).unwrap_or_default();
        let entry = tables.entry(text(0)).or_insert_with(|| (rows, Vec::new()));
        entry.1.push((text(1), ColumnSpec { column_type: Some(text(2)), description: String::new() }));
        if entry.1.len() > describe_limits::MAX_COLUMNS {
            return Err(Error::UploadInvalid(format!(
                "table {} has more than {} columns",
                text(0),
                describe_limits::MAX_COLUMNS
            )));
        }
    }
    Ok(tables)
}

/// Each file's SHA-256 (hex) and their total size.
fn hash_files(dir: &Path, stored: &[String]) -> std::io::Result<(Vec<String>, u64)> {
    let mut digests = Vec::with_capacity(stored.len());
    let mut total = 0;
    for name in stored {
        let (digest, size) = runner_host::mount::file_sha256(dir, Path::new(name))?;
        digests.push(digest);
        total += size;
    }
    Ok((digests, total))
}

/// Removes staging folders and folders being deleted. A published folder without a
/// record (a crash between the rename and the record, or a store that was reset) is
/// set aside as `.unrecorded-<id>-<uuid>`, not listed and not removed: its id is free
/// again, and nobody's data is deleted for a store's sake.
fn remove_leftovers(dir: &Path, recorded: &[String], min_age: Option<Duration>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let young = min_age.is_some_and(|min_age| {
            let modified = entry.metadata().and_then(|m| m.modified());
            modified.is_ok_and(|at| at.elapsed().unwrap_or_default() < min_age)
        });
        if young {
            continue;
        }
        let unrecorded =
            !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_dir()) && !recorded.contains(&name);
        if unrecorded {
            let aside = dir.join(format!("{UNRECORDED_PREFIX}{name}-{}", uuid::Uuid::new_v4()));
            tracing::warn!(folder = %name, aside = %aside.display(), "an upload folder has no record; set aside");
            if let Err(e) = std::fs::rename(entry.path(), &aside) {
                tracing::warn!(folder = %name, error = %e, "cannot set it aside");
            }
            continue;
        }
        let leftover = name.starts_with(STAGING_PREFIX) || name.starts_with(DELETING_PREFIX);
        if leftover {
            tracing::info!(folder = %name, "removing what an earlier upload left unfinished");
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(entry.path()),
                _ => std::fs::remove_file(entry.path()),
            };
            if let Err(e) = removed {
                tracing::warn!(folder = %name, error = %e, "cannot remove it");
            }
        }
    }
}
