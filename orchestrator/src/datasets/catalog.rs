//! The catalogue: the datasets the service offers. The curated ones are
//! `registry.json` of DATASETS_DIR, loaded once at start, with each dataset's version
//! hash (from the registry, or computed from the files when the registry has none);
//! the uploaded ones are added and removed as people upload and delete them
//! (`crate::uploads` keeps their files and records).
//!
//! Who may use which: a curated dataset is usable when the principal's grants name
//! it; an uploaded one by its owner and the admin. Any other is answered as one that
//! does not exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use protocol::registry::{Dataset, Registry, RegistryError};

use super::entry::{CatalogEntry, Source};
use crate::access::Principal;
use crate::error::Error;

pub struct Catalog {
    dir: PathBuf,
    curated: Vec<Arc<CatalogEntry>>,
    /// Uploaded datasets, oldest first.
    uploaded: RwLock<Vec<Arc<CatalogEntry>>>,
    /// Version hashes computed from the service's own files with our formula
    /// ([`hash_dataset`]): for datasets whose registry entry has none, and for every
    /// curated dataset when runners check their files ([`Catalog::compute_hashes`]).
    computed: RwLock<HashMap<String, String>>,
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, RegistryError> {
        let registry = Registry::load(dir)?;
        let curated = registry
            .datasets
            .into_iter()
            .map(|dataset| Arc::new(CatalogEntry { dataset, source: Source::Curated }))
            .collect();
        Ok(Catalog { dir: dir.to_path_buf(), curated, uploaded: RwLock::default(), computed: RwLock::default() })
    }

    /// The datasets folder (the runner image's `/data`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every dataset: the curated ones in registry order, then the uploads, oldest first.
    pub fn datasets(&self) -> Vec<Arc<CatalogEntry>> {
        let uploaded = self.uploaded.read().unwrap_or_else(|p| p.into_inner());
        self.curated.iter().chain(uploaded.iter()).cloned().collect()
    }

    pub fn dataset(&self, id: &str) -> Option<Arc<CatalogEntry>> {
        if let Some(entry) = self.curated.iter().find(|d| d.id == id) {
            return Some(entry.clone());
        }
        self.uploaded.read().unwrap_or_else(|p| p.into_inner()).iter().find(|d| d.id == id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.datasets().iter().map(|d| d.id.clone()).collect()
    }

    /// Whether `id` is a curated dataset's.
    pub fn is_curated(&self, id: &str) -> bool {
        self.curated.iter().any(|d| d.id == id)
    }

    /// Whether `principal` may use the dataset `id`: a curated one when granted, an
    /// uploaded one when its own (or for the admin). For an id the catalogue no
    /// longer has (a deleted upload's runs), the grants decide.
    pub fn may_use(&self, principal: &Principal, id: &str) -> bool {
        match self.dataset(id) {
            Some(entry) => usable(principal, &entry),
            None => principal.may_use(id),
        }
    }

    /// The error for a dataset id the catalogue does not have.
    pub fn unknown_dataset(&self, id: &str) -> Error {
        Error::UnknownDataset { id: id.to_string(), known: self.ids() }
    }

    /// The dataset `id`, if `principal` may use it. One it may not is answered as one
    /// that does not exist, listing the datasets it may use.
    pub fn dataset_for(&self, id: &str, principal: &Principal) -> Result<Arc<CatalogEntry>, Error> {
        match self.dataset(id) {
            Some(entry) if usable(principal, &entry) => Ok(entry),
            _ => Err(Error::UnknownDataset {
                id: id.to_string(),
                known: self.usable_by(principal).iter().map(|d| d.id.clone()).collect(),
            }),
        }
    }

    /// The datasets `principal` may use, in catalogue order.
    pub fn usable_by(&self, principal: &Principal) -> Vec<Arc<CatalogEntry>> {
        self.datasets().into_iter().filter(|entry| usable(principal, entry)).collect()
    }

    /// Adds an uploaded dataset. False if the id is taken.
    pub fn add_upload(&self, entry: CatalogEntry) -> bool {
        if self.is_curated(&entry.id) {
            return false;
        }
        let mut uploaded = self.uploaded.write().unwrap_or_else(|p| p.into_inner());
        if uploaded.iter().any(|d| d.id == entry.id) {
            return false;
        }
        uploaded.push(Arc::new(entry));
        true
    }

    /// Removes an uploaded dataset; the entry, if there was one.
    pub fn remove_upload(&self, id: &str) -> Option<Arc<CatalogEntry>> {
        let mut uploaded = self.uploaded.write().unwrap_or_else(|p| p.into_inner());
        let index = uploaded.iter().position(|d| d.id == id)?;
        Some(uploaded.remove(index))
    }

    /// The dataset's version hash: the registry's, else the computed one (once
    /// [`Catalog::compute_hashes`] has run).
    pub fn version_hash(&self, dataset: &Dataset) -> Option<String> {
        dataset
            .version_hash
            .clone()
            .or_else(|| self.computed.read().unwrap_or_else(|p| p.into_inner()).get(&dataset.id).cloned())
    }

    /// What a runner must find the dataset's files hash to: for a curated dataset,
    /// what the service's own copy hashes to (a registry's recorded hash may come
    /// from another formula), once [`Catalog::compute_hashes`] has hashed it; for an
    /// upload, the hash its manifest records (the service computed it at upload).
    pub fn expected_version(&self, entry: &CatalogEntry) -> Option<protocol::ExpectedVersion> {
        let version_hash = match entry.source {
            Source::Curated => self.computed.read().unwrap_or_else(|p| p.into_inner()).get(&entry.id).cloned(),
            Source::Uploaded(_) => entry.version_hash.clone(),
        }?;
        Some(protocol::ExpectedVersion { version_hash, manifest_dir: entry.manifest_dir() })
    }

    /// Hashes the files of curated datasets with the generator's formula: those whose
    /// registry entry has no version hash or, with `every`, all of them (for runners
    /// that check their files against the service's). Reads every such file: call it
    /// off the async runtime.
    pub fn compute_hashes(&self, every: bool) {
        for dataset in self.curated.iter().filter(|d| every || d.version_hash.is_none()) {
            match hash_dataset(&self.dir, dataset) {
                Ok(hash) => {
                    self.computed.write().unwrap_or_else(|p| p.into_inner()).insert(dataset.id.clone(), hash);
                }
                Err(e) => {
                    tracing::warn!(dataset = %dataset.id, error = %e, "cannot compute the dataset's version hash")
                }
            }
        }
    }
}

fn usable(principal: &Principal, entry: &CatalogEntry) -> bool {
    match entry.owner() {
        None => principal.may_use(&entry.id),
        Some(owner) => principal.may_see(Some(owner)),
    }
}

/// The dataset's version hash from its files, as the generator writes it. Only
/// regular files inside `dir` are read (a link to `/dev/zero` or a FIFO would be
/// read for ever): see [`runner_host::mount::open_regular_file`].
pub fn hash_dataset(dir: &Path, dataset: &Dataset) -> std::io::Result<String> {
    let mut digests = Vec::with_capacity(dataset.files.len());
    for file in &dataset.files {
        let relative = file.relative_path().map_err(std::io::Error::other)?;
        let (digest, _) = runner_host::mount::file_sha256(dir, &relative)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.path)))?;
        digests.push(digest);
    }
    let paths = dataset.files.iter().map(|f| f.path.as_str());
    Ok(protocol::registry::version_hash(paths.zip(digests.iter().map(String::as_str))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datasets_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets")
    }

    #[test]
    fn computed_hash_matches_the_generators() {
        let catalog = Catalog::load(&datasets_dir()).unwrap();
        for dataset in catalog.datasets() {
            let dataset = &dataset.dataset;
            let recorded = dataset.version_hash.clone().expect("our registry records hashes");
            assert_eq!(hash_dataset(catalog.dir(), dataset).unwrap(), recorded, "{}", dataset.id);
        }
    }

    /// A datasets folder with `t.csv` and a registry of one dataset `x` over it,
    /// with `version_hash` if given.
    fn one_file_catalog(version_hash: Option<&str>) -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.csv"), "a\n1\n").unwrap();
        let mut dataset = serde_json::json!({"id": "x", "files": [{"name": "t.csv", "path": "t.csv"}]});
        if let Some(hash) = version_hash {
            dataset["version_hash"] = hash.into();
        }
        let registry = serde_json::json!({ "datasets": [dataset] });
        std::fs::write(dir.path().join("registry.json"), registry.to_string()).unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        (dir, catalog)
    }

    #[test]
    fn missing_hashes_are_computed() {
        let (_dir, catalog) = one_file_catalog(None);
        let ds = catalog.dataset("x").unwrap();
        assert_eq!(catalog.version_hash(&ds), None);
        catalog.compute_hashes(false);
        assert!(catalog.version_hash(&ds).unwrap().starts_with("sha256:"));
    }

    #[test]
    fn runners_are_sent_what_the_services_own_files_hash_to() {
        let (dir, catalog) = one_file_catalog(Some("sha256:another-formula"));
        let ds = catalog.dataset("x").unwrap();
        catalog.compute_hashes(false);
        assert_eq!(catalog.expected_version(&ds), None, "a recorded hash is not recomputed by default");
        catalog.compute_hashes(true);
        let expected = catalog.expected_version(&ds).unwrap();
        assert_eq!(expected.version_hash, hash_dataset(dir.path(), &ds).unwrap());
        assert_eq!(expected.manifest_dir, "");
        assert_eq!(
            catalog.version_hash(&ds).as_deref(),
            Some("sha256:another-formula"),
            "the listing keeps the registry's"
        );
    }

    #[test]
    fn hashing_reads_only_regular_files_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real.csv"), "a\n1\n").unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.csv")).unwrap();
        std::os::unix::fs::symlink("real.csv", dir.path().join("alias.csv")).unwrap();
        let mkfifo = std::process::Command::new("mkfifo").arg(dir.path().join("fifo.csv")).status().unwrap();
        assert!(mkfifo.success());
        std::fs::write(
            dir.path().join("registry.json"),
            r#"{"datasets":[
                {"id":"zero","files":[{"name":"zero.csv","path":"zero.csv"}]},
                {"id":"fifo","files":[{"name":"fifo.csv","path":"fifo.csv"}]},
                {"id":"alias","files":[{"name":"alias.csv","path":"alias.csv"}]}]}"#,
        )
        .unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        let started = std::time::Instant::now();
        let zero = hash_dataset(catalog.dir(), &catalog.dataset("zero").unwrap()).unwrap_err();
        assert_eq!(zero.to_string(), "zero.csv: it resolves outside the datasets folder");
        let fifo = hash_dataset(catalog.dir(), &catalog.dataset("fifo").unwrap()).unwrap_err();
        assert_eq!(fifo.to_string(), "fifo.csv: it is a FIFO, not a regular file");
        assert!(hash_dataset(catalog.dir(), &catalog.dataset("alias").unwrap()).is_ok(), "a link inside is fine");
        catalog.compute_hashes(false);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(catalog.version_hash(&catalog.dataset("zero").unwrap()), None);
        assert_eq!(catalog.version_hash(&catalog.dataset("fifo").unwrap()), None);
    }
}
