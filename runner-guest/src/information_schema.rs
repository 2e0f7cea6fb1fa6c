//! `information_schema.tables` and `information_schema.columns`, answered from the
//! dataset's own schema, with types named as users write them in SQL (`BIGINT`,
//! `VARCHAR`, `TIMESTAMP`), the names the results' `column_types` use.
//!
//! DataFusion's own information schema is off: it lists its settings and functions
//! and names types the Arrow way (`Int64`, `Utf8`). This one has two views; the
//! introspection statements (`SHOW TABLES`, `DESCRIBE t`, `PRAGMA table_info('t')`,
//! see `crate::statements`) are queries over them. A view is built when a query
//! names it, by opening each table (its header and inferred types), not before.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use crate::json_rows::sql_type_name;

/// The schema's name, as queries write it.
pub const NAME: &str = "information_schema";

/// The two views over one dataset.
#[derive(Debug)]
pub struct InformationSchema {
    catalog: String,
    dataset_id: String,
    dataset: Arc<dyn SchemaProvider>,
}

impl InformationSchema {
    pub fn new(catalog: &str, dataset_id: &str, dataset: Arc<dyn SchemaProvider>) -> Self {
        InformationSchema { catalog: catalog.to_string(), dataset_id: dataset_id.to_string(), dataset }
    }

    fn tables_view(&self) -> Result<MemTable> {
        let names = self.dataset.table_names();
        let n = names.len();
        let schema = Arc::new(Schema::new(vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("table_type"),
        ]));
        let columns: Vec<ArrayRef> = vec![
            repeated(&self.catalog, n),
            repeated(&self.dataset_id, n),
            Arc::new(StringArray::from(names)),
            repeated("BASE TABLE", n),
        ];
        MemTable::try_new(schema.clone(), vec![vec![RecordBatch::try_new(schema, columns)?]])
    }

    async fn columns_view(&self) -> Result<MemTable> {
        let (mut tables, mut names, mut positions, mut types, mut nullable) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for table in self.dataset.table_names() {
            let Some(provider) = self.dataset.table(&table).await? else { continue };
            for (i, field) in provider.schema().fields().iter().enumerate() {
                tables.push(table.clone());
                names.push(field.name().clone());
                positions.push(i as i64 + 1);
                types.push(sql_type_name(field.data_type()));
                nullable.push(if field.is_nullable() { "YES" } else { "NO" });
            }
        }
        let n = names.len();
        let schema = Arc::new(Schema::new(vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            Field::new("ordinal_position", DataType::Int64, false),
            text("data_type"),
            text("is_nullable"),
        ]));
        let columns: Vec<ArrayRef> = vec![
            repeated(&self.catalog, n),
            repeated(&self.dataset_id, n),
            Arc::new(StringArray::from(tables)),
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(positions)),
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(nullable)),
        ];
        MemTable::try_new(schema.clone(), vec![vec![RecordBatch::try_new(schema, columns)?]])
    }
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn repeated(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![value; n]))
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        vec!["tables".to_string(), "columns".to_string()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "tables" => Some(Arc::new(self.tables_view()?)),
            "columns" => Some(Arc::new(self.columns_view().await?)),
            _ => None,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(name.to_ascii_lowercase().as_str(), "tables" | "columns")
    }
}
