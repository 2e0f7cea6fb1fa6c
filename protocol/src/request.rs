use serde::{Deserialize, Serialize};

/// Default limits, shared by the CLI, the orchestrator and the guest.
pub mod defaults {
    /// Wall-clock limit for one run.
    pub const TIMEOUT_MS: u64 = 10_000;
    /// Rows returned at most; more rows set `truncated`.
    pub const MAX_ROWS: u64 = 200;
    /// Serialized size of the returned rows at most; more set `truncated`.
    pub const MAX_OUTPUT_BYTES: u64 = 65_536;
    /// Linear memory the guest may grow to.
    pub const MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
    /// What a run may spill to its scratch directory, where the service and
    /// `runner-host run` turn spilling on (`RUN_SPILL_MAX_MB`); a request without
    /// `spill_limit_bytes` does not spill.
    pub const SPILL_LIMIT_BYTES: u64 = 2048 * 1024 * 1024;
}

/// What a [`RequestKind::Describe`] accepts of a file before the service keeps it.
pub mod describe_limits {
    /// Columns in one table at most.
    pub const MAX_COLUMNS: usize = 1000;
    /// Bytes in one column name at most.
    pub const MAX_COLUMN_NAME_BYTES: usize = 256;
}

/// What the guest is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Run `sql` and answer its rows.
    #[default]
    Query,
    /// Read every table whole (every row parsed as its schema: the file is checked
    /// end to end) and answer one row per column: `table`, `column`, `type` (the
    /// registry's type name), `row_count`. `sql` is ignored. The service types an
    /// uploaded file this way, inside the sandbox, before it keeps it.
    Describe,
}

impl RequestKind {
    fn is_query(&self) -> bool {
        *self == RequestKind::Query
    }
}

/// One query to run over one dataset.
///
/// The limits default to [`defaults`] when absent, so `{"dataset_id", "files", "sql"}`
/// is a complete request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// A query (the default, and absent from the JSON) or a description.
    #[serde(default, skip_serializing_if = "RequestKind::is_query")]
    pub kind: RequestKind,
    pub dataset_id: String,
    /// The tables of the dataset. Paths are as the guest sees them: under `/data`.
    pub files: Vec<TableFile>,
    pub sql: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u64,
    #[serde(default = "default_memory_limit_bytes")]
    pub memory_limit_bytes: u64,
    /// Bytes the run may write to its scratch directory (`/scratch`) when an operator
    /// (a sort, an aggregate, a window) does not fit in memory; `0`, the default,
    /// turns spilling off. The guest stops spilling at this cap, and the host stops a
    /// guest that writes past it (`SPILL_LIMIT`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spill_limit_bytes: u64,
    /// What the dataset's files must hash to, checked by the runner before the guest
    /// starts. Set for runner Jobs, whose files come from their image or a volume
    /// rather than the service's own disk: a runner holding other files than the
    /// service described refuses to answer over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<ExpectedVersion>,
}

/// A dataset's version as its manifest records it: `version_hash` over the files of
/// the request, named as the manifest names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedVersion {
    /// `sha256:…`, as [`crate::registry::version_hash`] makes it from every file of
    /// the request, in the request's order.
    pub version_hash: String,
    /// The folder under `/data` that holds the manifest (`""` for the datasets
    /// folder itself, `"<id>"` for an upload): the manifest names each file by its
    /// path relative to it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_dir: String,
}

fn default_timeout_ms() -> u64 {
    defaults::TIMEOUT_MS
}
fn default_max_rows() -> u64 {
    defaults::MAX_ROWS
}
fn default_max_output_bytes() -> u64 {
    defaults::MAX_OUTPUT_BYTES
}
fn default_memory_limit_bytes() -> u64 {
    defaults::MEMORY_LIMIT_BYTES
}
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl RunRequest {
    /// A request with the default limits.
    pub fn new(dataset_id: impl Into<String>, files: Vec<TableFile>, sql: impl Into<String>) -> Self {
        RunRequest {
            kind: RequestKind::Query,
            dataset_id: dataset_id.into(),
            files,
            sql: sql.into(),
            timeout_ms: defaults::TIMEOUT_MS,
            max_rows: defaults::MAX_ROWS,
            max_output_bytes: defaults::MAX_OUTPUT_BYTES,
            memory_limit_bytes: defaults::MEMORY_LIMIT_BYTES,
            spill_limit_bytes: 0,
            expected_version: None,
        }
    }
}

/// A CSV or Parquet file (by its extension, `.parquet` or anything else) exposed to
/// the query as a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    /// The table name the SQL uses (the file's stem).
    pub table: String,
    /// The file's path as the guest sees it, e.g. `/data/tickets.csv`.
    pub path: String,
    /// Declared column types, from the registry. Columns not listed here are
    /// inferred from the file by the guest. A Parquet file's own schema is its types:
    /// declarations are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDecl>,
}

/// Whether `path` names a Parquet file (by its extension, in any case): the guest
/// reads it as Parquet, and any other file as CSV.
pub fn is_parquet_path(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("parquet"))
}

/// A declared column type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDecl {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// The column types a registry can declare. Each maps to one Arrow type in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float. Registries' DECIMAL/NUMERIC columns map here too.
    Double,
    /// UTF-8 text.
    Varchar,
    /// `true`/`false` in any case (`True`, `FALSE`, ...).
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A timestamp without time zone, microsecond precision.
    Timestamp,
}

impl ColumnType {
    /// Maps a SQL-style type name as registries write it (`INTEGER`, `DECIMAL(10,2)`,
    /// `VARCHAR`, `timestamp`, ...) to a column type. Unknown names give `None`:
    /// the guest infers those columns from the data.
    pub fn from_sql_name(name: &str) -> Option<ColumnType> {
        let base = name.split('(').next().unwrap_or("").trim().to_ascii_uppercase();
        let ty = match base.as_str() {
            "INTEGER" | "INT" | "BIGINT" | "SMALLINT" | "TINYINT" | "INT64" | "INT32" | "LONG" => ColumnType::Integer,
            "DOUBLE" | "FLOAT" | "REAL" | "FLOAT64" | "FLOAT32" | "DECIMAL" | "NUMERIC" | "DOUBLE PRECISION"
            | "NUMBER" => ColumnType::Double,
            "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "UTF8" => ColumnType::Varchar,
            "BOOLEAN" | "BOOL" => ColumnType::Boolean,
            "DATE" => ColumnType::Date,
            "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => ColumnType::Timestamp,
            _ => return None,
        };
        Some(ty)
    }

    /// The canonical name, as written in this project's registry.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Double => "DOUBLE",
            ColumnType::Varchar => "VARCHAR",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_request_gets_default_limits() {
        let req: RunRequest = serde_json::from_str(
            r#"{"dataset_id":"support","files":[{"table":"tickets","path":"/data/tickets.csv"}],"sql":"SELECT 1"}"#,
        )
        .unwrap();
        assert_eq!(req.timeout_ms, defaults::TIMEOUT_MS);
        assert_eq!(req.max_rows, 200);
        assert_eq!(req.max_output_bytes, 65_536);
        assert_eq!(req.memory_limit_bytes, 256 * 1024 * 1024);
        assert!(req.files[0].columns.is_empty());
    }

    #[test]
    fn a_query_says_no_kind_and_a_description_says_its_own() {
        let query = RunRequest::new("d", vec![], "SELECT 1");
        assert!(!serde_json::to_string(&query).unwrap().contains("kind"), "queries' JSON is as before");
        let mut describe = query.clone();
        describe.kind = RequestKind::Describe;
        let json = serde_json::to_string(&describe).unwrap();
        assert!(json.starts_with(r#"{"kind":"describe","#), "{json}");
        assert_eq!(serde_json::from_str::<RunRequest>(&json).unwrap().kind, RequestKind::Describe);
        assert!(serde_json::from_str::<RunRequest>(&json.replace("describe", "delete")).is_err());
    }

    #[test]
    fn sql_type_names_map_to_column_types() {
        assert_eq!(ColumnType::from_sql_name("INTEGER"), Some(ColumnType::Integer));
        assert_eq!(ColumnType::from_sql_name("decimal(10, 2)"), Some(ColumnType::Double));
        assert_eq!(ColumnType::from_sql_name("Varchar"), Some(ColumnType::Varchar));
        assert_eq!(ColumnType::from_sql_name("TIMESTAMP"), Some(ColumnType::Timestamp));
        assert_eq!(ColumnType::from_sql_name("BOOLEAN"), Some(ColumnType::Boolean));
        assert_eq!(ColumnType::from_sql_name("geometry"), None);
    }

    #[test]
    fn column_decl_round_trips_with_sql_names() {
        let decl = ColumnDecl { name: "created_at".into(), column_type: ColumnType::Timestamp };
        let json = serde_json::to_string(&decl).unwrap();
        assert_eq!(json, r#"{"name":"created_at","type":"TIMESTAMP"}"#);
        assert_eq!(serde_json::from_str::<ColumnDecl>(&json).unwrap(), decl);
    }
}
