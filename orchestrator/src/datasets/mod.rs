//! Knowledge of data: the catalogue of datasets the service offers (the curated
//! registry of `DATASETS_DIR`, with version hashes, and the uploads), where each
//! one's files are ([`DataRoot`]), and the views the API shows of them.
//!
//! May use: `protocol`, `runner-host`'s safe file opening, [`crate::access`] (which
//! datasets a caller may see), [`crate::error`]. Knows
//! nothing of runs, the store or HTTP; the schema as the sandbox sees it is
//! computed by the run service (`crate::runs`) into [`SchemaView`].

pub mod catalog;
pub mod entry;
pub mod views;

pub use self::catalog::Catalog;
pub use self::entry::{CatalogEntry, DataRoot, Source, Upload};
pub use self::views::{ColumnView, DatasetView, SAMPLE_ROWS, SchemaView, TableSchema, TableView, list, view};
