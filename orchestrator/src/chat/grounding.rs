//! Grounded numbers: every number in an answer must come from the data the turn
//! queried (or from the question itself). A number that matches nothing is flagged,
//! so a person can tell a computed figure from a made-up one.
//!
//! A number in the text matches a cell when they are equal after the text's
//! thousands separators are removed and the cell is rounded to the text's decimal
//! places (`1,234.5` matches `1234.4999`); a percentage also matches a ratio
//! (`12.5%` matches `0.125`). Numbers inside string cells (ids, dates) count too.

use serde_json::Value;

/// A number as written in a text: its text and value, and its decimal places.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenNumber {
    pub text: String,
    pub value: f64,
    pub decimals: usize,
    pub percent: bool,
}

/// The numbers written in `text`: `-1,234.56`, `42`, `12.5%`. Digits that are part
/// of a word (`q3`, `v2`, a UUID) are not numbers.
pub fn numbers_in(text: &str) -> Vec<WrittenNumber> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_number = c.is_ascii_digit() && (i == 0 || !is_word_char(chars[i - 1]));
        if !starts_number {
            i += 1;
            continue;
        }
        let negative = i > 0 && chars[i - 1] == '-' && (i < 2 || !is_word_char(chars[i - 2]));
        let start = i;
        let mut digits = String::new();
        let mut decimals = 0;
        let mut in_fraction = false;
        while i < chars.len() {
            let c = chars[i];
            let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() {
                digits.push(c);
                if in_fraction {
                    decimals += 1;
                }
            } else if c == ',' && !in_fraction && next_is_digit && thousands_group_follows(&chars, i) {
                // a thousands separator: skip it
            } else if c == '.' && !in_fraction && next_is_digit {
                digits.push('.');
                in_fraction = true;
            } else {
                break;
            }
            i += 1;
        }
        if i < chars.len() && is_word_char(chars[i]) && chars[i] != '%' {
            // `3rd`, `10x`, `abc123def`: part of a word.
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            continue;
        }
        let percent = chars.get(i) == Some(&'%');
        let written: String = chars[start..i].iter().collect();
        if let Ok(mut value) = digits.parse::<f64>() {
            if negative {
                value = -value;
            }
            let text = if negative { format!("-{written}") } else { written };
            let text = if percent { format!("{text}%") } else { text };
            found.push(WrittenNumber { text, value, decimals, percent });
        }
    }
    found
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the `,` at `at` is followed by exactly three digits and then a non-digit.
fn thousands_group_follows(chars: &[char], at: usize) -> bool {
    let group = &chars[at + 1..chars.len().min(at + 4)];
    group.len() == 3 && group.iter().all(char::is_ascii_digit) && !chars.get(at + 4).is_some_and(char::is_ascii_digit)
}

/// The numbers a text may use: every numeric cell, the numbers inside string cells,
/// row counts, and the numbers of the question.
#[derive(Debug, Default)]
pub struct Evidence {
    values: Vec<f64>,
}

impl Evidence {
    pub fn add_value(&mut self, value: f64) {
        if value.is_finite() {
            self.values.push(value);
        }
    }

    pub fn add_cell(&mut self, cell: &Value) {
        match cell {
            Value::Number(n) => {
                if let Some(v) = n.as_f64() {
                    self.add_value(v);
                }
            }
            Value::String(s) => self.add_text(s),
            Value::Array(items) => items.iter().for_each(|v| self.add_cell(v)),
            _ => {}
        }
    }

    pub fn add_text(&mut self, text: &str) {
        for n in numbers_in(text) {
            self.add_value(n.value);
            // `2024-03-05` is read as 2024, -3, -5: the parts count unsigned too.
            self.add_value(n.value.abs());
        }
    }

    /// Whether `number` matches any evidence.
    pub fn supports(&self, number: &WrittenNumber) -> bool {
        self.values.iter().any(|&cell| {
            matches(number.value, number.decimals, cell)
                || (number.percent && matches(number.value, number.decimals, cell * 100.0))
        })
    }
}

fn matches(written: f64, decimals: usize, cell: f64) -> bool {
    let scale = 10f64.powi(decimals.min(12) as i32);
    let rounded = (cell * scale).round() / scale;
    let tolerance = 0.5 / scale;
    (rounded - written).abs() < 1e-9 * written.abs().max(1.0) || (cell - written).abs() <= tolerance
}

/// The numbers of `answer` that no evidence supports, as written.
pub fn ungrounded(answer: &str, evidence: &Evidence) -> Vec<String> {
    let mut flagged: Vec<String> = Vec::new();
    for number in numbers_in(answer) {
        if !evidence.supports(&number) && !flagged.contains(&number.text) {
            flagged.push(number.text);
        }
    }
    flagged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(text: &str) -> Vec<f64> {
        numbers_in(text).into_iter().map(|n| n.value).collect()
    }

    #[test]
    fn numbers_are_read_with_separators_signs_and_percentages() {
        assert_eq!(values("There are 6,000 tickets."), vec![6000.0]);
        assert_eq!(values("avg 12.75 h, -3 change, 1,234,567.5 total"), vec![12.75, -3.0, 1234567.5]);
        assert_eq!(values("q3 and v2 and abc123 are words; 3rd too"), Vec::<f64>::new());
        let pct = &numbers_in("SLA met in 87.5% of cases")[0];
        assert!(pct.percent && pct.value == 87.5 && pct.decimals == 1);
        assert_eq!(values("1,2 and 3"), vec![1.0, 2.0, 3.0], "a comma not followed by three digits separates");
        assert_eq!(values("Ends with 42."), vec![42.0]);
    }

    #[test]
    fn numbers_match_rounded_cells_and_ratios() {
        let mut evidence = Evidence::default();
        for cell in [json!(6000), json!(12.3456), json!(0.8754), json!("2024-03-05"), json!(null)] {
            evidence.add_cell(&cell);
        }
        assert!(
            ungrounded("6,000 tickets, 12.35 hours on average, 87.5% within SLA, since 2024", &evidence).is_empty()
        );
        assert!(ungrounded("12.3 hours", &evidence).is_empty(), "fewer decimals round the cell");
        assert_eq!(ungrounded("about 7,500 tickets and 12.4 hours", &evidence), vec!["7,500", "12.4"]);
        assert_eq!(ungrounded("99 and 99 again", &evidence), vec!["99"], "each number once");
    }
}
