//! What an upload may be called: its id, and its files' tables.

use crate::error::Error;

/// Files in one upload at most.
pub const MAX_FILES: usize = 64;
/// Bytes in a dataset id, or a table name, at most.
const MAX_NAME_BYTES: usize = 64;

/// A dataset id: `[a-z0-9_-]{1,64}`.
pub fn check_id(id: &str) -> Result<(), Error> {
    let valid = !id.is_empty()
        && id.len() <= MAX_NAME_BYTES
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidUpload(format!(
            "the dataset id {id:?} must be 1 to {MAX_NAME_BYTES} characters of a-z, 0-9, '_' and '-'"
        )))
    }
}

/// The table a file becomes and the name it is stored under: `Sales 2024.CSV` →
/// (`sales_2024`, `sales_2024.csv`). The name must be a plain file name ending in
/// `.csv` or `.parquet` (in any case): a path (`../x.csv`, `/etc/x.csv`, `a/b.csv`)
/// is refused, not stripped.
pub fn table_file_name(file_name: &str) -> Result<(String, String), Error> {
    let refuse = |why: &str| Err(Error::InvalidUpload(format!("the file name {file_name:?} {why}")));
    if file_name.contains(['/', '\\', '\0']) || file_name.starts_with('.') {
        return refuse("must be a plain file name, not a path");
    }
    let Some((stem, extension)) = file_name.rsplit_once('.') else {
        return refuse("must end in .csv or .parquet");
    };
    let extension = extension.to_ascii_lowercase();
    if extension != "csv" && extension != "parquet" {
        return refuse("must end in .csv or .parquet");
    }
    let mut table: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string();
    while table.contains("__") {
        table = table.replace("__", "_");
    }
    if table.is_empty() {
        return refuse("gives an empty table name: name it with letters or digits");
    }
    if table.starts_with(|c: char| c.is_ascii_digit()) {
        table.insert_str(0, "t_");
    }
    table.truncate(MAX_NAME_BYTES);
    let stored = format!("{table}.{extension}");
    Ok((table, stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_slugs() {
        for good in ["sales", "my-data_2", "a", &"x".repeat(64)] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", "Sales", "a b", "../x", "é", &"x".repeat(65), "a.b"] {
            assert_eq!(check_id(bad).unwrap_err().error_type(), "INVALID_UPLOAD", "{bad}");
        }
    }

    #[test]
    fn file_names_become_tables() {
        assert_eq!(table_file_name("Sales 2024.CSV").unwrap(), ("sales_2024".into(), "sales_2024.csv".into()));
        assert_eq!(table_file_name("orders.parquet").unwrap(), ("orders".into(), "orders.parquet".into()));
        assert_eq!(table_file_name("2024-q1.csv").unwrap(), ("t_2024_q1".into(), "t_2024_q1.csv".into()));
        for bad in
            ["../x.csv", "/etc/passwd.csv", "a/b.csv", "a\\b.csv", ".csv", "x.txt", "noext", "---.csv", ".hidden.csv"]
        {
            assert_eq!(table_file_name(bad).unwrap_err().error_type(), "INVALID_UPLOAD", "{bad}");
        }
    }
}
