//! `runner-host run --format table|csv`: results for people and spreadsheets.

use protocol::RunResult;
use serde_json::Value;

/// Widest a table cell is shown; longer text is cut with an ellipsis.
const MAX_CELL_CHARS: usize = 60;

/// A psql-style grid with a summary line; numbers right-aligned.
pub fn table(result: &RunResult) -> String {
    let header: Vec<String> = result.columns.clone();
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
        Value::String(s) => s.replace(['\n', '\r'], " "),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_CELL_CHARS {
        let cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// RFC 4180 CSV with a header row; NULL is an empty field.
pub fn csv(result: &RunResult) -> String {
    let mut out = String::new();
    let header: Vec<String> = result.columns.iter().map(|c| csv_field(c)).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in &result.rows {
        let fields: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
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
        assert_eq!(csv(&r), "a,b\r\n\"x,\"\"y\"\"\",\r\n1.5,true\r\n");
    }
}
