//! What the API shows of datasets: the listing ([`DatasetView`], from the registry)
//! and a dataset's schema ([`SchemaView`], as the sandbox sees it: computed by the
//! run service, kept here as plain data).

use protocol::RunError;
use serde::Serialize;
use serde_json::Value;

use super::catalog::Catalog;
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
    pub tables: Vec<TableView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    pub name: String,
    pub file: String,
    pub description: String,
    pub row_count: Option<u64>,
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
    catalog
        .datasets()
        .iter()
        .filter(|d| principal.may_use(&d.id))
        .map(|d| DatasetView {
            id: d.id.clone(),
            name: if d.name.is_empty() { d.id.clone() } else { d.name.clone() },
            description: d.description.clone(),
            prompts: d.prompts.clone(),
            version_hash: catalog.version_hash(d),
            tables: d
                .files
                .iter()
                .map(|f| TableView {
                    name: f.table_name(),
                    file: f.path.clone(),
                    description: f.description.clone(),
                    row_count: f.row_count,
                })
                .collect(),
        })
        .collect()
}
