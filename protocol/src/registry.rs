//! `registry.json`: the catalogue of datasets in a datasets directory.
//!
//! ```json
//! { "version": "1",
//!   "datasets": [ { "id": "support", "name": "...", "description": "...",
//!                   "version_hash": "sha256:...", "prompts": ["..."],
//!                   "files": [ { "name": "tickets.csv", "path": "support/tickets.csv",
//!                                "description": "...", "row_count": 6000,
//!                                "schema": { "ticket_id": { "type": "INTEGER", "description": "..." } } } ] } ] }
//! ```
//!
//! Paths are relative to the registry's folder. Unknown fields are ignored and
//! `schema`, `version_hash`, `row_count`, `name`, `description` and `prompts` are
//! optional, so a registry written by another tool loads as it is.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ColumnDecl, ColumnType};

/// The registry's file name inside a datasets directory.
pub const REGISTRY_FILE: &str = "registry.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<serde_json::Value>,
    pub datasets: Vec<Dataset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_hash: Option<String>,
    pub files: Vec<DatasetFile>,
    #[serde(default)]
    pub prompts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetFile {
    /// The file name, e.g. `tickets.csv`; the table is named after its stem.
    pub name: String,
    /// Relative to the registry's folder.
    pub path: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Column name → type and description, in the file's column order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<ColumnSchema>,
}

/// A file's `schema` object: column name → `{"type", "description"}`, kept in the
/// order the registry lists them (a JSON object's order is otherwise lost). Other
/// fields of a column are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSchema(pub Vec<(String, ColumnSpec)>);

/// One column of a file's `schema`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// The SQL type as written in the registry (`INTEGER`, `VARCHAR`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub column_type: Option<String>,
    #[serde(default)]
    pub description: String,
}

impl Serialize for ColumnSchema {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, spec) in &self.0 {
            map.serialize_entry(name, spec)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ColumnSchema {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = ColumnSchema;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of column name to column description")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ColumnSchema, A::Error> {
                let mut columns = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, ColumnSpec>()? {
                    columns.push(entry);
                }
                Ok(ColumnSchema(columns))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// A dataset's `version_hash`: `sha256:` followed by the sha256 of, for each file in
/// registry order, `<path>\n<sha256 of the file, hex>\n`. The generator writes it; the
/// service computes it for registries that have none.
pub fn version_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (path, file_sha256) in files {
        hasher.update(format!("{path}\n{file_sha256}\n"));
    }
    format!("sha256:{:x}", hasher.finalize())
}

/// A column as the registry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// The type as written in the registry, if any.
    pub declared_type: Option<String>,
    pub description: String,
}

/// A registry that could not be loaded, with the context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not a valid registry: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Registry {
    /// Reads and validates `DIR/registry.json`.
    pub fn load(datasets_dir: &Path) -> Result<Registry, RegistryError> {
        let path = datasets_dir.join(REGISTRY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
        Registry::parse(&text, &path)
    }

    /// Parses and validates registry JSON; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Registry, RegistryError> {
        let registry: Registry =
            serde_json::from_str(text).map_err(|source| RegistryError::Parse { path: path.to_path_buf(), source })?;
        registry.validate().map_err(|message| RegistryError::Invalid { path: path.to_path_buf(), message })?;
        Ok(registry)
    }

    fn validate(&self) -> Result<(), String> {
        let mut ids = HashSet::new();
        for ds in &self.datasets {
            if ds.id.is_empty() {
                return Err("a dataset has an empty id".into());
            }
            if !ids.insert(ds.id.as_str()) {
                return Err(format!("dataset id {:?} appears twice", ds.id));
            }
            if ds.files.is_empty() {
                return Err(format!("dataset {:?} has no files", ds.id));
            }
            let mut tables = HashSet::new();
            for file in &ds.files {
                file.relative_path().map_err(|e| format!("dataset {:?}: {e}", ds.id))?;
                let table = file.table_name();
                if table.is_empty() {
                    return Err(format!("dataset {:?}: file {:?} gives an empty table name", ds.id, file.path));
                }
                if !tables.insert(table.to_ascii_lowercase()) {
                    return Err(format!("dataset {:?}: two files give table {table:?}", ds.id));
                }
            }
        }
        Ok(())
    }

    pub fn dataset(&self, id: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.id == id)
    }

    /// The dataset ids, in registry order.
    pub fn ids(&self) -> Vec<&str> {
        self.datasets.iter().map(|d| d.id.as_str()).collect()
    }
}

impl Dataset {
    /// The table names, in registry order.
    pub fn table_names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.table_name()).collect()
    }

    /// The file backing `table` (case-insensitive, as SQL identifiers are).
    pub fn file_for_table(&self, table: &str) -> Option<&DatasetFile> {
        self.files.iter().find(|f| f.table_name().eq_ignore_ascii_case(table))
    }
}

impl DatasetFile {
    /// The table name: the file name's stem (`orders.csv` → `orders`).
    pub fn table_name(&self) -> String {
        let name = if self.name.is_empty() { self.path.rsplit('/').next().unwrap_or("") } else { &self.name };
        match name.rsplit_once('.') {
            Some((stem, _ext)) if !stem.is_empty() => stem.to_string(),
            _ => name.to_string(),
        }
    }

    /// The path relative to the registry's folder, checked to stay inside it:
    /// no absolute paths, no `..`.
    pub fn relative_path(&self) -> Result<PathBuf, String> {
        let path = Path::new(&self.path);
        if self.path.is_empty() {
            return Err("a file has an empty path".into());
        }
        let mut clean = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "file path {:?} must be relative and stay inside the datasets folder",
                        self.path
                    ));
                }
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(format!("file path {:?} names no file", self.path));
        }
        Ok(clean)
    }

    /// The columns the registry describes, in order.
    pub fn columns(&self) -> Vec<ColumnInfo> {
        let Some(schema) = &self.schema else {
            return Vec::new();
        };
        schema
            .0
            .iter()
            .map(|(name, spec)| ColumnInfo {
                name: name.clone(),
                declared_type: spec.column_type.clone(),
                description: spec.description.clone(),
            })
            .collect()
    }

    /// The declared types the guest should use, for the columns whose type it knows.
    /// None for a Parquet file: its own schema is its types (and a request stays small).
    pub fn column_decls(&self) -> Vec<ColumnDecl> {
        if crate::is_parquet_path(&self.path) {
            return Vec::new();
        }
        self.columns()
            .into_iter()
            .filter_map(|c| {
                let column_type = ColumnType::from_sql_name(c.declared_type.as_deref()?)?;
                Some(ColumnDecl { name: c.name, column_type })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOREIGN: &str = r#"{
      "version": "1.0", "generated_at": "2026-02-02T15:17:00Z",
      "datasets": [{
        "id": "ecommerce", "name": "E-commerce", "domain": "Retail",
        "files": [
          {"name": "orders.csv", "path": "ecommerce/orders.csv", "row_count": 4018,
           "schema": {"order_id": {"type": "INTEGER", "description": "id"},
                      "total": {"type": "DECIMAL"},
                      "shape": {"type": "GEOMETRY"},
                      "status": {"type": "VARCHAR", "values": ["a", "b"]}}},
          {"name": "inventory.csv", "path": "./ecommerce/inventory.csv"}
        ]
      }]
    }"#;

    #[test]
    fn foreign_registry_loads_ignoring_unknown_fields() {
        let reg = Registry::parse(FOREIGN, Path::new("registry.json")).unwrap();
        let ds = reg.dataset("ecommerce").unwrap();
        assert_eq!(ds.table_names(), vec!["orders", "inventory"]);
        assert_eq!(ds.version_hash, None);
        let orders = ds.file_for_table("ORDERS").unwrap();
        let names: Vec<_> = orders.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["order_id", "total", "shape", "status"], "schema keeps file order");
        let decls = orders.column_decls();
        assert_eq!(decls.len(), 3, "unknown GEOMETRY is left to inference");
        assert_eq!(decls[1].column_type, ColumnType::Double);
        assert_eq!(ds.files[1].relative_path().unwrap(), PathBuf::from("ecommerce/inventory.csv"));
    }

    #[test]
    fn paths_escaping_the_folder_are_refused() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b.csv", ""] {
            let text = format!(r#"{{"datasets":[{{"id":"x","files":[{{"name":"t.csv","path":"{bad}"}}]}}]}}"#);
            let err = Registry::parse(&text, Path::new("r.json")).unwrap_err();
            assert!(matches!(err, RegistryError::Invalid { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn duplicate_ids_and_tables_are_refused() {
        let dup = r#"{"datasets":[{"id":"a","files":[{"name":"t.csv","path":"t.csv"}]},
                                   {"id":"a","files":[{"name":"u.csv","path":"u.csv"}]}]}"#;
        assert!(Registry::parse(dup, Path::new("r")).unwrap_err().to_string().contains("appears twice"));
        let dup_table = r#"{"datasets":[{"id":"a","files":[{"name":"t.csv","path":"x/t.csv"},{"name":"T.csv","path":"y/T.csv"}]}]}"#;
        assert!(Registry::parse(dup_table, Path::new("r")).unwrap_err().to_string().contains("two files"));
    }
}
