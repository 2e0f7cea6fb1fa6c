//! [`PlanScope`]: the tables and columns a plan is checked against, and how a plan's
//! names resolve to them (the exact name, else the only match ignoring case), with
//! the refusals that list what exists.
//!
//! Uses `super::error` and nothing else of the plan module.

use super::error::PlanError;

/// What a plan is checked against: the dataset's tables, each with its column names
/// in order, and the service's row cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanScope {
    /// Table name → its column names (in order), as the plan is checked against them.
    pub tables: Vec<(String, Vec<String>)>,
    /// The largest `limit` a plan may ask for.
    pub max_rows: u64,
}

/// A table of the scope, with its exact name.
pub(super) struct Table<'s> {
    pub(super) name: &'s str,
    columns: &'s [String],
}

impl PlanScope {
    pub(super) fn table(&self, name: &str) -> Result<Table<'_>, PlanError> {
        let names: Vec<&str> = self.tables.iter().map(|(table, _)| table.as_str()).collect();
        let index = resolve(&names, name).map_err(|problem| {
            let message = match problem {
                Unresolved::Unknown => {
                    format!("unknown table {name:?}; the dataset's tables are: {}", list_or_none(&names))
                }
                Unresolved::Ambiguous(matches) => format!(
                    "table {name:?} matches several tables when case is ignored ({}); use the exact name",
                    matches.join(", ")
                ),
            };
            PlanError::at("table", message)
        })?;
        let (name, columns) = &self.tables[index];
        Ok(Table { name, columns })
    }
}

impl<'s> Table<'s> {
    /// The exact name of column `name`; `path` locates it in the plan for errors.
    pub(super) fn column(&self, name: &str, path: &str) -> Result<&'s str, PlanError> {
        let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        let index = resolve(&columns, name).map_err(|problem| {
            let message = match problem {
                Unresolved::Unknown => format!(
                    "unknown column {name:?} in table {:?}; its columns are: {}",
                    self.name,
                    list_or_none(&columns)
                ),
                Unresolved::Ambiguous(matches) => format!(
                    "column {name:?} matches several columns of table {:?} when case is ignored ({}); use the \
                     exact name",
                    self.name,
                    matches.join(", ")
                ),
            };
            PlanError::at(path, message)
        })?;
        Ok(self.columns[index].as_str())
    }
}

enum Unresolved<'a> {
    Unknown,
    Ambiguous(Vec<&'a str>),
}

/// The index of `name` in `names`: the exact match, else the only match ignoring case.
fn resolve<'a>(names: &[&'a str], name: &str) -> Result<usize, Unresolved<'a>> {
    if let Some(index) = names.iter().position(|n| *n == name) {
        return Ok(index);
    }
    let folded: Vec<usize> = (0..names.len()).filter(|&i| names[i].to_lowercase() == name.to_lowercase()).collect();
    match folded.as_slice() {
        [index] => Ok(*index),
        [] => Err(Unresolved::Unknown),
        many => Err(Unresolved::Ambiguous(many.iter().map(|&i| names[i]).collect())),
    }
}

/// `names` joined with `, `, or `(none)`.
pub(super) fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
}
