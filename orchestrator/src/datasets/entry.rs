//! One dataset of the catalogue, curated or uploaded, and where its files are.

use std::ops::Deref;

use protocol::registry::Dataset;

/// Which folder a dataset's paths (and a request's `/data/...` paths) are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRoot {
    /// DATASETS_DIR (in Kubernetes: the runner image's `/data`, or K8S_DATASETS_PVC).
    Curated,
    /// UPLOADS_DIR (in Kubernetes: K8S_UPLOADS_PVC).
    Uploads,
}

/// Who uploaded a dataset, when, and how big its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub owner: String,
    pub created_at: String,
    pub size_bytes: u64,
}

/// Where a dataset comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `registry.json` of DATASETS_DIR: read-only, for everyone granted it.
    Curated,
    /// Uploaded through `POST /datasets`: its owner's (and the admin's).
    Uploaded(Upload),
}

/// A dataset as the catalogue holds it: its registry entry (file paths relative to
/// its [`DataRoot`]) and its source. Derefs to the registry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub dataset: Dataset,
    pub source: Source,
}

impl CatalogEntry {
    pub fn root(&self) -> DataRoot {
        match self.source {
            Source::Curated => DataRoot::Curated,
            Source::Uploaded(_) => DataRoot::Uploads,
        }
    }

    /// The folder under the data root that holds the dataset's manifest, which names
    /// its files relative to it: the data root itself for a curated dataset (its
    /// `registry.json`), the dataset's own folder for an upload.
    pub fn manifest_dir(&self) -> String {
        match self.source {
            Source::Curated => String::new(),
            Source::Uploaded(_) => self.dataset.id.clone(),
        }
    }

    /// The uploader, for an uploaded dataset.
    pub fn owner(&self) -> Option<&str> {
        match &self.source {
            Source::Curated => None,
            Source::Uploaded(upload) => Some(&upload.owner),
        }
    }
}

impl Deref for CatalogEntry {
    type Target = Dataset;

    fn deref(&self) -> &Dataset {
        &self.dataset
    }
}
