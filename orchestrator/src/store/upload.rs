//! An uploaded dataset, as the store keeps it: whose it is, what it holds and how
//! big it is. The files and their manifest (`registry.json`, the registry's format)
//! are in UPLOADS_DIR; the record is what makes a published folder a dataset, so a
//! restart (and, with a shared store, another replica) lists the same uploads.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub dataset_id: String,
    /// The subject who uploaded it.
    pub owner: String,
    pub description: String,
    /// The table names, in upload order.
    pub tables: Vec<String>,
    pub version_hash: String,
    /// Bytes of its files.
    pub size_bytes: u64,
    pub created_at: String,
}
