//! What the model is told: the system prompt, the dataset (tables, columns, types,
//! descriptions, row counts; sample rows and date ranges unless
//! `LLM_DATA_EXPOSURE=schema`), the thread's recent history with summaries of its
//! runs (their SQL and columns, never their rows), and the tools.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::config::DataExposure;
use crate::datasets::SchemaView;
use crate::llm::{Message, ToolSpec};
use crate::store::Turn;

/// The system prompt: who the model is and the rules it works under.
pub fn system_prompt(dataset_id: &str, exposure: DataExposure, max_sql_attempts: u32) -> String {
    let data_rule = match exposure {
        DataExposure::Results => {
            "Tool results include the result rows: answer from them, quoting the numbers exactly as they appear."
        }
        DataExposure::Samples | DataExposure::Schema => {
            "Tool results show only the columns and the row count; the user sees the result table itself. \
             Describe what the query computed and point to the table instead of quoting numbers you cannot see."
        }
    };
    format!(
        "You are a careful data analyst. You answer questions about the dataset \"{dataset_id}\" by querying it \
         with the tools run_sql (one read-only SQL query, Apache DataFusion dialect) or run_plan (a JSON query plan), \
         and describe_column to inspect a column. You can only read this dataset's tables; other datasets, files and \
         URLs are not reachable. At most {max_sql_attempts} queries per question: if a query fails, read the error \
         and the did_you_mean hints and fix it. {DIALECT} {data_rule} Keep the answer short. Never invent numbers."
    )
}

/// The dialect's choices a query's author must know (docs/sql.md), in the system prompt.
pub const DIALECT: &str = "The SQL dialect: dividing two integers gives a fraction (7 / 2 = 3.5; write \
     a // b or div(a, b) for whole-number division); NULLs sort last in both directions unless NULLS FIRST is \
     written; casting a fraction to an integer rounds (2.7 -> 3); nested values (lists, structs) come back as \
     JSON. DuckDB and PostgreSQL names such as strftime, date_diff, count_if and ->> work.";

/// The dataset, as the first user message of every request.
pub fn dataset_message(description: &str, schema: &SchemaView, exposure: DataExposure) -> String {
    let mut text = format!("Dataset \"{}\"", schema.dataset_id);
    if !description.is_empty() {
        let _ = write!(text, ": {description}");
    }
    text.push_str("\n\nTables:\n");
    for table in &schema.tables {
        let rows = table.row_count.map_or_else(|| "unknown".to_string(), |n| n.to_string());
        let _ = writeln!(text, "\n{} ({rows} rows)", table.name);
        for column in &table.columns {
            let _ = write!(text, "  - {} {}", column.name, column.column_type);
            if !column.description.is_empty() {
                let _ = write!(text, ": {}", column.description);
            }
            if exposure != DataExposure::Schema
                && let (Some(min), Some(max)) = (&column.min, &column.max)
            {
                let _ = write!(text, " (from {} to {})", plain(min), plain(max));
            }
            text.push('\n');
        }
        if exposure != DataExposure::Schema && !table.sample_rows.is_empty() {
            let _ = writeln!(text, "  sample rows ({}):", columns_line(table.columns.iter().map(|c| c.name.as_str())));
            for row in &table.sample_rows {
                let cells: Vec<String> = row.iter().map(plain).collect();
                let _ = writeln!(text, "    {}", cells.join(" | "));
            }
        }
    }
    text
}

fn columns_line<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(" | ")
}

fn plain(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The thread's recent turns as messages: the user's words, the answers, and for
/// each answer the SQL it ran and the columns it got (never rows).
pub fn history(turns: &[Turn]) -> Vec<Message> {
    let mut messages = Vec::new();
    for turn in turns {
        messages.push(Message::user(turn.user_message.clone()));
        let mut answer = turn.assistant_message.clone().unwrap_or_default();
        if let Some(response) = &turn.response {
            if let Some(sql) = response["details"]["compiled_sql"].as_str() {
                let _ = write!(answer, "\n[query that ran: {sql}]");
            }
            if let Some(columns) = response["result"]["columns"].as_array() {
                let names: Vec<String> = columns.iter().map(plain).collect();
                let _ = write!(answer, "\n[result columns: {}]", names.join(", "));
            }
        }
        if answer.trim().is_empty() {
            answer = format!("(no answer: the turn ended {})", turn.status);
        }
        messages.push(Message::assistant(answer, Vec::new()));
    }
    messages
}

/// The tools, bound to the request's dataset: none takes a dataset id.
pub fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "run_sql".into(),
            description: "Run one read-only SQL query (SELECT / WITH) over the dataset's tables and get its result."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": { "sql": { "type": "string", "description": "One SELECT statement." } },
                "required": ["sql"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "run_plan".into(),
            description: "Run a JSON query plan over one table (no SQL needed) and get its result.".into(),
            parameters: json!({
                "type": "object",
                "properties": { "plan": crate::plan::json_schema() },
                "required": ["plan"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "describe_column".into(),
            description: "Null count, distinct count, min, max and the 5 most frequent values of one column.".into(),
            parameters: json!({
                "type": "object",
                "properties": { "table": { "type": "string" }, "column": { "type": "string" } },
                "required": ["table", "column"],
                "additionalProperties": false
            }),
        },
    ]
}

/// Names close to `unknown` among `known` (for `did_you_mean`), closest first.
pub fn close_names(unknown: &str, known: &[String]) -> Vec<String> {
    let target = unknown.to_lowercase();
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .filter_map(|name| {
            let candidate = name.to_lowercase();
            let distance = edit_distance(&target, &candidate);
            let close = distance <= (target.len().max(3) / 3).max(2)
                || (target.len() >= 3 && (candidate.contains(&target) || target.contains(&candidate)));
            close.then_some((distance, name))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, name)| name.clone()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push((previous[j] + cost).min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The names an error message says are unknown: `No field named x`, `column 'x'`,
/// `table 'x' not found`, and any identifier of the SQL the schema does not have.
pub fn unknown_names(message: &str, sql: &str, known: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for marker in ["No field named ", "field named ", "column ", "table ", "Table "] {
        for (at, _) in message.match_indices(marker) {
            let rest = &message[at + marker.len()..];
            let name: String = rest
                .trim_start_matches(['\'', '"', '`'])
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let name = name.rsplit('.').next().unwrap_or("").to_string();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let known_lower: Vec<String> = known.iter().map(|k| k.to_lowercase()).collect();
    for word in sql.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let lower = word.to_lowercase();
        if word.len() >= 3
            && !word.chars().next().is_some_and(|c| c.is_ascii_digit())
            && !known_lower.contains(&lower)
            && !SQL_WORDS.contains(&lower.as_str())
            && !names.iter().any(|n| n.eq_ignore_ascii_case(word))
        {
            names.push(word.to_string());
        }
    }
    names.retain(|n| !known_lower.contains(&n.to_lowercase()));
    names
}

const SQL_WORDS: [&str; 40] = [
    "select",
    "from",
    "where",
    "group",
    "order",
    "by",
    "limit",
    "and",
    "not",
    "null",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "distinct",
    "desc",
    "asc",
    "having",
    "join",
    "inner",
    "left",
    "right",
    "outer",
    "on",
    "with",
    "case",
    "when",
    "then",
    "else",
    "end",
    "cast",
    "between",
    "like",
    "round",
    "date_trunc",
    "extract",
    "interval",
    "true",
    "false",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_find_the_intended_column() {
        let known: Vec<String> =
            ["priority", "category", "resolution_hours", "tickets"].iter().map(|s| s.to_string()).collect();
        assert_eq!(close_names("priorty", &known), vec!["priority"]);
        assert_eq!(close_names("resolution_hour", &known), vec!["resolution_hours"]);
        assert!(close_names("zzzz", &known).is_empty());
    }

    #[test]
    fn unknown_names_come_from_the_error_and_the_sql() {
        let known: Vec<String> = ["priority", "tickets"].iter().map(|s| s.to_string()).collect();
        let names = unknown_names(
            "Schema error: No field named priorty. Valid fields are tickets.priority.",
            "SELECT priorty, COUNT(*) FROM tickets GROUP BY priorty",
            &known,
        );
        assert_eq!(names, vec!["priorty"]);
    }
}
