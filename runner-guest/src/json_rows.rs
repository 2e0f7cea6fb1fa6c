//! Arrow batches as JSON rows, within the run's row and byte caps.
//!
//! Rows are JSON arrays with natural JSON types: integers and floats as numbers
//! (NaN and infinities as null), booleans, null, strings, decimals as numbers,
//! dates and timestamps as ISO-8601 strings, lists as arrays, structs as objects,
//! and maps as objects keyed by the key's text. Other types (intervals, binary, ...)
//! are rendered as Arrow displays them.

use std::io::Write;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Number, Value};

const FORMAT: FormatOptions<'static> = FormatOptions::new()
    .with_null("")
    .with_date_format(Some("%Y-%m-%d"))
    .with_datetime_format(Some("%Y-%m-%dT%H:%M:%S%.f"))
    .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.f"))
    .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.f%:z"));

/// Column names and their SQL type names.
pub fn describe(schema: &Schema) -> (Vec<String>, Vec<String>) {
    schema.fields().iter().map(|f| (f.name().clone(), sql_type_name(f.data_type()))).unzip()
}

/// The SQL name of an Arrow type, as users write types in SQL.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INTEGER UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", sql_type_name(item.data_type()))
        }
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type()))).collect();
            format!("STRUCT({})", fields.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP({}, {})", sql_type_name(kv[0].data_type()), sql_type_name(kv[1].data_type()))
            }
            other => format!("MAP({other})"),
        },
        other => other.to_string(),
    }
}

/// Collects rows until `max_rows` or `max_output_bytes` (of serialized rows) is reached.
pub struct RowCollector {
    max_rows: usize,
    max_bytes: u64,
    bytes: u64,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

impl RowCollector {
    pub fn new(max_rows: usize, max_bytes: u64) -> Self {
        RowCollector { max_rows, max_bytes, bytes: 0, rows: Vec::new(), truncated: false }
    }

    /// Adds the batch's rows; false once a cap is reached (the rest is not needed).
    pub fn push_batch(&mut self, batch: &RecordBatch) -> bool {
        let formatters: Vec<Option<ArrayFormatter<'_>>> =
            batch.columns().iter().map(|column| ArrayFormatter::try_new(column.as_ref(), &FORMAT).ok()).collect();
        for row in 0..batch.num_rows() {
            if self.rows.len() >= self.max_rows {
                self.truncated = true;
                return false;
            }
            let values: Vec<Value> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| cell(column.as_ref(), formatter.as_ref(), row))
                .collect();
            // The row's size in the output: its JSON plus the separating comma.
            let size = json_len(&values) + 1;
            if self.bytes + size > self.max_bytes {
                self.truncated = true;
                return false;
            }
            self.bytes += size;
            self.rows.push(values);
        }
        true
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn into_rows(self) -> Vec<Vec<Value>> {
        self.rows
    }
}

fn json_len(value: &[Value]) -> u64 {
    struct Counter(u64);
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("JSON values always serialize");
    counter.0
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null)
}

fn cell(array: &dyn Array, formatter: Option<&ArrayFormatter<'_>>, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Decimal128(..) | DataType::Decimal256(..) | DataType::Decimal32(..) | DataType::Decimal64(..) => {
            let text = display(formatter, row);
            match text.parse::<i64>() {
                Ok(int) => int.into(),
                Err(_) => text.parse::<f64>().map(float).unwrap_or(Value::String(text)),
            }
        }
        DataType::List(_) => elements(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => elements(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(..) => elements(array.as_fixed_size_list().value(row).as_ref()),
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            let object =
                fields.iter().zip(columns).map(|(field, column)| (field.name().clone(), element(column.as_ref(), row)));
            Value::Object(object.collect())
        }
        DataType::Map(..) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0).as_ref(), entries.column(1).as_ref());
            let object = (0..entries.len()).map(|i| {
                let key = match element(keys, i) {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, element(values, i))
            });
            Value::Object(object.collect())
        }
        _ => Value::String(display(formatter, row)),
    }
}

/// A list's elements, as a JSON array.
fn elements(values: &dyn Array) -> Value {
    let formatter = ArrayFormatter::try_new(values, &FORMAT).ok();
    Value::Array((0..values.len()).map(|i| cell(values, formatter.as_ref(), i)).collect())
}

/// One value of a nested array.
fn element(array: &dyn Array, row: usize) -> Value {
    let formatter = ArrayFormatter::try_new(array, &FORMAT).ok();
    cell(array, formatter.as_ref(), row)
}

fn display(formatter: Option<&ArrayFormatter<'_>>, row: usize) -> String {
    formatter.map(|f| f.value(row).to_string()).unwrap_or_default()
}
