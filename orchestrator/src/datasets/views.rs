//! What the API shows of datasets: the listing ([`DatasetView`], from the registry)
//! and a dataset's schema ([`SchemaView`], as the sandbox sees it: computed by the
//! run service, kept here as plain data).

use protocol::RunError;
use serde::Serialize;
use serde_json::Value;

use super::catalog::Catalog;
use super::entry::{CatalogEntry, Source};
use crate::access::Principal;

/// Sample rows shown per table.
pub const SAMPLE_ROWS: u64 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub prompts: Vec<String>,
    pub version_hash: Option<String>,
    /// `curated` or `uploaded`.
    pub source: &'static str,
    /// The uploader, for an upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    pub tables: Vec<TableView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    pub name: String,
    pub file: String,
    pub description: String,
    pub row_count: Option<u64>,
    /// The columns and their types as the registry (or an upload's manifest) declares them.
    pub columns: Vec<ColumnTypeView>,
}

/// A column's name and declared type in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnTypeView {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: String,
    pub description: String,
    /// The earliest and latest value of a date/time column ("last month" is the
    /// data's last month, not the calendar's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
}

impl ColumnView {
    pub fn is_temporal(&self) -> bool {
        let t = self.column_type.to_ascii_uppercase();
        t.starts_with("DATE") || t.starts_with("TIMESTAMP")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSchema {
    pub name: String,
    pub row_count: Option<u64>,
    pub columns: Vec<ColumnView>,
    pub sample_rows: Vec<Vec<Value>>,
    /// Set when the sandbox could not read the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaView {
    pub dataset_id: String,
    pub version_hash: Option<String>,
    pub tables: Vec<TableSchema>,
}

/// `GET /datasets`: the datasets of the catalogue `principal` may use, as listed.
pub fn list(catalog: &Catalog, principal: &Principal) -> Vec<DatasetView> {
    catalog.usable_by(principal).iter().map(|entry| view(catalog, entry)).collect()
}

/// One dataset as `GET /datasets` lists it.
pub fn view(catalog: &Catalog, entry: &CatalogEntry) -> DatasetView {
    let d = &entry.dataset;
    let upload = match &entry.source {
        Source::Curated => None,
        Source::Uploaded(upload) => Some(upload),
    };
    DatasetView {
        id: d.id.clone(),
        name: if d.name.is_empty() { d.id.clone() } else { d.name.clone() },
        description: d.description.clone(),
        prompts: d.prompts.clone(),
        version_hash: catalog.version_hash(d),
        source: if upload.is_some() { "uploaded" } else { "curated" },
        owner: upload.map(|u| u.owner.clone()),
        created_at: upload.map(|u| u.created_at.clone()),
        size_bytes: upload.map(|u| u.size_bytes),
        tables: d
            .files
            .iter()
            .map(|f| TableView {
                name: f.table_name(),
                // Where an upload's files are on the service's disk is not the caller's business.
                file: if upload.is_some() { f.name.clone() } else { f.path.clone() },
                description: f.description.clone(),
                row_count: f.row_count,
                columns: f
                    .columns()
                    .into_iter()
                    .map(|c| ColumnTypeView { name: c.name, column_type: c.declared_type })
                    .collect(),
            })
            .collect(),
    }
}
