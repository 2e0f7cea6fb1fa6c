//! A run's recorded result as CSV, streamed (`GET /runs/{id}/result.csv`).
//!
//! The export is the whole recorded result, every row the run kept, written in chunks
//! of about [`CHUNK_BYTES`] as the client reads them, so a large result never sits in
//! memory twice. [`CsvExport::truncated`] says whether the run itself stopped at
//! `MAX_ROWS` (or the output cap): the HTTP layer sends it as `X-Truncated`, with the
//! row count as `X-Row-Count`, so a file that is not the whole answer says so.
//!
//! Cells, RFC 4180 with `\n` line ends (as the csv crate and most tools write): SQL
//! NULL is an empty field; an empty string is `""` (so the two stay apart); strings as
//! they are; numbers and booleans as their JSON text; lists, structs and maps as
//! compact JSON (`[1,2]`, `{"a":1}`), as `/runs` returns them. A field is quoted when
//! it holds a comma, a quote, a line break, or leading or trailing spaces. A row with
//! fewer cells than there are columns (a faulty sandbox's) is padded with empty fields;
//! one with more keeps them all. A row that would
//! be an empty line (one column, NULL) is written `""`, since readers skip empty lines.

use serde_json::Value;

use crate::error::Error;
use crate::store::Run;
use protocol::RunResult;

/// About how many bytes each chunk of the export holds (a row is never split).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A run's result, ready to be written out chunk by chunk.
#[derive(Debug)]
pub struct CsvExport {
    result: RunResult,
    next_row: usize,
    header_written: bool,
}

impl CsvExport {
    /// The export of `run`'s result; an error (400) when the run has none to give
    /// (it is still running, was refused, or failed).
    pub fn of(run: Run) -> Result<Self, Error> {
        let run_id = run.run_id;
        let status = run.status;
        match run.result {
            Some(result) if result.error.is_none() => Ok(Self { result, next_row: 0, header_written: false }),
            _ => Err(Error::invalid(format!("run {run_id} has no result to download (status {})", status.as_str()))),
        }
    }

    /// Rows in the export (every recorded row).
    pub fn row_count(&self) -> usize {
        self.result.rows.len()
    }

    /// Whether the run stopped before the end of its answer (`MAX_ROWS` or the output
    /// cap): the export is then not the whole answer.
    pub fn truncated(&self) -> bool {
        self.result.truncated
    }

    fn write_row<'a>(&self, out: &mut Vec<u8>, cells: impl Iterator<Item = CellRef<'a>>) {
        let start = out.len();
        let mut first = true;
        let mut count = 0;
        for cell in cells {
            if !first {
                out.push(b',');
            }
            first = false;
            count += 1;
            match cell {
                CellRef::Name(name) => write_field(out, name),
                CellRef::Value(value) => write_value(out, value),
            }
        }
        for _ in count..self.result.columns.len() {
            if !first {
                out.push(b',');
            }
            first = false;
        }
        if out.len() == start {
            // An empty line is no record to a CSV reader: the row would be lost.
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(b"\n");
    }
}

enum CellRef<'a> {
    Name(&'a str),
    Value(&'a Value),
}

impl Iterator for CsvExport {
    type Item = Vec<u8>;

    /// The next chunk: whole rows, about [`CHUNK_BYTES`] of them; `None` at the end.
    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if !self.header_written {
            self.header_written = true;
            self.write_row(&mut out, self.result.columns.iter().map(|c| CellRef::Name(c)));
        }
        while out.len() < CHUNK_BYTES && self.next_row < self.result.rows.len() {
            let row = &self.result.rows[self.next_row];
            self.next_row += 1;
            self.write_row(&mut out, row.iter().map(CellRef::Value));
        }
        (!out.is_empty()).then_some(out)
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) if s.is_empty() => out.extend_from_slice(b"\"\""),
        Value::String(s) => write_field(out, s),
        other => write_field(out, &other.to_string()),
    }
}

fn write_field(out: &mut Vec<u8>, text: &str) {
    let needs_quotes = text.is_empty()
        || text.starts_with(' ')
        || text.ends_with(' ')
        || text.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !needs_quotes {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for part in text.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn export(columns: &[&str], rows: Vec<Vec<Value>>, truncated: bool) -> CsvExport {
        let mut run = Run::example();
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let types = vec!["VARCHAR".to_string(); columns.len()];
        run.finish_with(RunResult::success(columns, types, rows, truncated));
        CsvExport::of(run).expect("a result to export")
    }

    fn text(export: CsvExport) -> String {
        String::from_utf8(export.flatten().collect()).expect("UTF-8")
    }

    #[test]
    fn cells_follow_rfc_4180_and_keep_null_apart_from_empty() {
        let rows = vec![
            vec![json!(null), json!(""), json!("plain")],
            vec![json!("a,b"), json!("say \"hi\""), json!("two\nlines")],
            vec![json!(" padded "), json!(1.5), json!(true)],
            vec![json!([1, 2]), json!({"a": 1, "b": [null]}), json!(-3)],
        ];
        let csv = text(export(&["x", "y, z", "w"], rows, false));
        assert_eq!(
            csv,
            "x,\"y, z\",w\n\
             ,\"\",plain\n\
             \"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n\
             \" padded \",1.5,true\n\
             \"[1,2]\",\"{\"\"a\"\":1,\"\"b\"\":[null]}\",-3\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_keep_their_cells() {
        let rows = vec![vec![json!(1)], vec![], vec![json!(1), json!(2), json!(3)]];
        assert_eq!(text(export(&["a", "b"], rows, false)), "a,b\n1,\n,\n1,2,3\n");
        // One column: a NULL or missing cell is never an empty line (readers skip those).
        let rows = vec![vec![json!(null)], vec![], vec![json!("x")]];
        assert_eq!(text(export(&["n"], rows, false)), "n\n\"\"\n\"\"\nx\n");
    }

    #[test]
    fn a_large_result_comes_in_chunks_of_whole_rows() {
        let rows: Vec<Vec<Value>> = (0..20_000).map(|i| vec![json!(i), json!(format!("row number {i}"))]).collect();
        let export = export(&["n", "label"], rows, true);
        assert!(export.truncated());
        assert_eq!(export.row_count(), 20_000);
        let chunks: Vec<Vec<u8>> = export.collect();
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert!(chunk.len() < CHUNK_BYTES + 1024, "a chunk of {} bytes", chunk.len());
            assert!(chunk.ends_with(b"\n"), "a chunk ends inside a row");
        }
        let csv = String::from_utf8(chunks.concat()).unwrap();
        let lines: Vec<&str> = csv.split_terminator("\n").collect();
        assert_eq!(lines.len(), 20_001);
        assert_eq!(lines[20_000], "19999,row number 19999");
    }

    #[test]
    fn a_run_without_a_result_has_nothing_to_export() {
        let run = Run::example();
        let e = CsvExport::of(run).unwrap_err();
        assert!(e.to_string().contains("has no result to download (status running)"), "{e}");
        let mut run = Run::example();
        run.refuse("DROP TABLE t", protocol::ErrorType::SqlNotAllowed, "not allowed");
        let e = CsvExport::of(run).unwrap_err();
        assert!(e.to_string().contains("(status rejected)"), "{e}");
    }
}
