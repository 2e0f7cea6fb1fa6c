//! Knowledge of data: the catalogue of datasets the service offers (the registry
//! of `DATASETS_DIR`, with version hashes) and the views the API shows of them.
//!
//! May use: `protocol`, `runner-host`'s safe file opening, [`crate::access`] (which
//! datasets a caller may see), [`crate::error`]. Knows
//! nothing of runs, the store or HTTP; the schema as the sandbox sees it is
//! computed by the run service (`crate::runs`) into [`SchemaView`].

pub mod catalog;
pub mod views;

pub use self::catalog::Catalog;
pub use self::views::{ColumnView, DatasetView, SAMPLE_ROWS, SchemaView, TableSchema, TableView, list};
