//! `runner-host run --format table|csv`: results for people and spreadsheets.
//!
//! Values come from the data and column names from the query, so neither is
//! trusted: a table shows control characters (ESC, BEL, backspace, carriage return,
//! C1 controls) and invisible formatting characters (bidirectional overrides,
//! zero-width characters) escaped, so a value cannot move the cursor, recolour or
//! retitle the terminal, or hide or reorder text. CSV is data for other programs and
//! keeps values exact (quoted by the `csv` crate where needed).

use std::fmt::Write as _;

use protocol::RunResult;
use serde_json::Value;

/// Widest a table cell is shown; longer text is cut with an ellipsis.
const MAX_CELL_CHARS: usize = 60;

/// A psql-style grid with a summary line; numbers right-aligned.
pub fn table(result: &RunResult) -> String {
    let header: Vec<String> = result.columns.iter().map(|c| printable(c)).collect();
    let cells: Vec<Vec<String>> = result.rows.iter().map(|row| row.iter().map(table_cell).collect()).collect();
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| result.rows.iter().all(|row| matches!(row.get(i), Some(Value::Number(_) | Value::Null) | None)))
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            let data = cells.iter().map(|row| row.get(i).map_or(0, |c| c.chars().count()));
            data.chain([header[i].chars().count()]).max().unwrap_or(0)
        })
        .collect();

    let mut out = String::new();
    let line = |cells: &[String], align_right: &dyn Fn(usize) -> bool| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let width = widths[i];
                if align_right(i) { format!(" {c:>width$} ") } else { format!(" {c:<width$} ") }
            })
            .collect();
        parts.join("|").trim_end().to_string()
    };
    out.push_str(&line(&header, &|_| false));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row, &|i| numeric[i]));
        out.push('\n');
    }
    let rows = if result.row_count == 1 { "1 row".to_string() } else { format!("{} rows", result.row_count) };
    let truncated = if result.truncated { ", truncated" } else { "" };
    out.push_str(&format!("({rows}{truncated}, {} ms)\n", result.exec_time_ms));
    out
}

fn table_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_string(),
        Value::String(s) => printable(s),
        other => printable(&other.to_string()),
    };
    if text.chars().count() > MAX_CELL_CHARS {
        let cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// `text` as a terminal may show it: control and invisible formatting characters
/// written as escapes (`\n`, `\t`, `\u{1b}`), everything else as is.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode format characters that change how text around them is shown:
/// bidirectional marks, embeddings, overrides and isolates, zero-width characters,
/// line and paragraph separators, the byte-order mark, interlinear annotations.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// RFC 4180 CSV with a header row and CRLF line ends; NULL is an empty field.
pub fn csv(result: &RunResult) -> Result<String, csv::Error> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(&result.columns)?;
    for row in &result.rows {
        writer.write_record(row.iter().map(|value| match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))?;
    }
    let bytes = writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    // Every field came from a `String`.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(columns: &[&str], rows: Vec<Vec<Value>>) -> RunResult {
        let mut r = RunResult::success(columns.iter().map(|c| c.to_string()).collect(), vec![], rows, false);
        r.exec_time_ms = 7;
        r
    }

    #[test]
    fn table_aligns_numbers_right_and_text_left() {
        let r = result(&["category", "n"], vec![vec![json!("Billing"), json!(12)], vec![json!("Tech"), json!(3)]]);
        assert_eq!(table(&r), " category | n\n----------+----\n Billing  | 12\n Tech     |  3\n(2 rows, 7 ms)\n");
    }

    #[test]
    fn table_shows_null_and_cuts_long_text() {
        let long = "x".repeat(100);
        let r = result(&["a"], vec![vec![Value::Null], vec![json!(long)]]);
        let text = table(&r);
        assert!(text.contains(" NULL"));
        assert!(text.contains(&format!("{}…", "x".repeat(59))));
        assert!(!text.contains(&"x".repeat(60)));
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let r = result(&["a", "b"], vec![vec![json!("x,\"y\""), Value::Null], vec![json!(1.5), json!(true)]]);
        assert_eq!(csv(&r).unwrap(), "a,b\r\n\"x,\"\"y\"\"\",\r\n1.5,true\r\n");
        let r = result(&["a,b", "c"], vec![vec![json!("line\nbreak"), json!("cr\r")], vec![json!(" x "), json!("")]]);
        assert_eq!(csv(&r).unwrap(), "\"a,b\",c\r\n\"line\nbreak\",\"cr\r\"\r\n x ,\r\n");
    }

    #[test]
    fn csv_keeps_values_exact() {
        let r = result(&["v"], vec![vec![json!("\u{1b}[31mred")], vec![Value::Null]]);
        // A lone empty field is quoted, so the row is not an empty line.
        assert_eq!(csv(&r).unwrap(), "v\r\n\u{1b}[31mred\r\n\"\"\r\n");
    }

    #[test]
    fn table_escapes_terminal_control_characters() {
        let hostile = [
            ("\u{1b}[2J\u{1b}[31mred", "\\u{1b}[2J\\u{1b}[31mred"),
            ("\u{1b}]0;owned\u{7}", "\\u{1b}]0;owned\\u{7}"),
            ("a\rb\nc\td", "a\\rb\\nc\\td"),
            ("back\u{8}\u{8}space", "back\\u{8}\\u{8}space"),
            ("csi\u{9b}31m", "csi\\u{9b}31m"),
            ("del\u{7f}", "del\\u{7f}"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("naïve ✓ 東京", "naïve ✓ 東京"),
        ];
        for (value, shown) in hostile {
            let r = result(&["v\u{1b}[8m"], vec![vec![json!(value)]]);
            let text = table(&r);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0].trim_end(), " v\\u{1b}[8m", "the header is escaped too");
            assert_eq!(lines[2].trim_end(), format!(" {shown}"), "{value:?}");
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        }
    }
}
