//! Scalar functions DataFusion lacks that DuckDB and PostgreSQL users write.
//!
//! - `date_diff(part, start, end)` (alias `datediff`): how many `part` boundaries lie
//!   between two times, as DuckDB counts them (`date_diff('month', '2024-01-31',
//!   '2024-02-01')` is 1); `week` is whole weeks of days (toward zero).
//! - `regexp_extract(s, pattern [, group])`: the match (or the group's text) of the
//!   first match; `''` when nothing matches, as in DuckDB and Spark.
//! - `div(a, b)`: division toward zero, what `a // b` (DuckDB)
//!   is rewritten to; integers give an integer, division by zero is NULL.
//! - `json_extract_path(json, key…)` and `json_extract_path_text(json, key…)`, as in
//!   PostgreSQL: what `json -> key` and `json ->> key` are rewritten to, over JSON
//!   held as text. A key is an object member, or an array position (from 0; negative
//!   from the end). A missing key is NULL; text that is not JSON is an error. Objects
//!   come back with their keys sorted.
//!
//! `crate::spellings` maps the other spellings onto DataFusion's own functions.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

/// Compiled size a `regexp_extract` pattern may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

/// Adds the functions to `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(DateDiff::new()));
    ctx.register_udf(ScalarUDF::from(RegexpExtract::new()));
    ctx.register_udf(ScalarUDF::from(Div::new()));
    ctx.register_udf(ScalarUDF::from(JsonPath::new(false)));
    ctx.register_udf(ScalarUDF::from(JsonPath::new(true)));
}

/// Calls `f` on the arguments as arrays; a scalar answer when every argument is one.
fn invoke(args: &[ColumnarValue], f: impl FnOnce(&[ArrayRef]) -> Result<ArrayRef>) -> Result<ColumnarValue> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let out = f(&arrays)?;
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

fn strings(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Null)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateDiff {
    signature: Signature,
    aliases: Vec<String>,
}

impl DateDiff {
    fn new() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), aliases: vec!["datediff".to_string()] }
    }
}

impl ScalarUDFImpl for DateDiff {
    fn name(&self) -> &str {
        "date_diff"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        if types.len() != 3 {
            return plan_err!("date_diff takes a part and two times: date_diff('day', start, end)");
        }
        Ok(vec![DataType::Utf8, TIMESTAMP, TIMESTAMP])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        invoke(&args.args, |arrays| {
            let parts = strings(&arrays[0])?;
            let start = cast(&arrays[1], &TIMESTAMP)?;
            let end = cast(&arrays[2], &TIMESTAMP)?;
            let (start, end) =
                (start.as_primitive::<TimestampMicrosecondType>(), end.as_primitive::<TimestampMicrosecondType>());
            let mut out = Int64Builder::with_capacity(parts.len());
            for i in 0..parts.len() {
                if parts.is_null(i) || start.is_null(i) || end.is_null(i) {
                    out.append_null();
                } else {
                    out.append_value(date_diff(parts.value(i), start.value(i), end.value(i))?);
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `part` boundaries between `start` and `end` (microseconds since the epoch, UTC).
fn date_diff(part: &str, start: i64, end: i64) -> Result<i64> {
    let units = |micros: i64| end.div_euclid(micros) - start.div_euclid(micros);
    let time = |micros: i64| -> Result<NaiveDateTime> {
        match DateTime::from_timestamp_micros(micros) {
            Some(t) => Ok(t.naive_utc()),
            None => exec_err!("date_diff: {micros} µs is out of range"),
        }
    };
    let months = |t: NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
    const DAY: i64 = 86_400_000_000;
    Ok(match part.trim().to_ascii_lowercase().as_str() {
        "year" | "years" | "yr" | "yrs" | "y" | "yy" | "yyyy" => {
            i64::from(time(end)?.year()) - i64::from(time(start)?.year())
        }
        "quarter" | "quarters" | "q" | "qq" => months(time(end)?).div_euclid(3) - months(time(start)?).div_euclid(3),
        "month" | "months" | "mon" | "mons" | "mm" => months(time(end)?) - months(time(start)?),
        "week" | "weeks" | "w" | "wk" | "ww" => units(DAY) / 7,
        "day" | "days" | "d" | "dd" => units(DAY),
        "hour" | "hours" | "h" | "hh" | "hr" | "hrs" => units(3_600_000_000),
        "minute" | "minutes" | "min" | "mins" | "mi" | "n" => units(60_000_000),
        "second" | "seconds" | "sec" | "secs" | "s" | "ss" => units(1_000_000),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => units(1_000),
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => match end.checked_sub(start) {
            Some(us) => us,
            None => return exec_err!("date_diff: the microseconds between the two times overflow BIGINT"),
        },
        other => {
            return exec_err!(
                "date_diff: unknown part '{other}'; write one of year, quarter, month, week, day, hour, minute, \
                 second, millisecond, microsecond"
            );
        }
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    fn new() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types.len() {
            2 => Ok(vec![DataType::Utf8, DataType::Utf8]),
            3 => Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
            _ => plan_err!(
                "regexp_extract takes a string, a pattern and an optional group: regexp_extract(s, '(\\d+)', 1)"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        invoke(&args.args, |arrays| {
            let text = strings(&arrays[0])?;
            let patterns = strings(&arrays[1])?;
            let groups = match arrays.get(2) {
                Some(groups) => Some(cast(groups, &DataType::Int64)?),
                None => None,
            };
            let groups = groups.as_ref().map(|g| g.as_primitive::<Int64Type>());
            let mut compiled: Option<(String, Regex)> = None;
            let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
            for i in 0..text.len() {
                if text.is_null(i) || patterns.is_null(i) || groups.is_some_and(|g| g.is_null(i)) {
                    out.append_null();
                    continue;
                }
                let pattern = patterns.value(i);
                if compiled.as_ref().is_none_or(|(p, _)| p != pattern) {
                    let regex = RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build();
                    match regex {
                        Ok(regex) => compiled = Some((pattern.to_string(), regex)),
                        Err(e) => return exec_err!("regexp_extract: invalid pattern {pattern:?}: {e}"),
                    }
                }
                let Some((_, regex)) = &compiled else { unreachable!("compiled above") };
                let group = groups.map_or(0, |g| g.value(i));
                if group < 0 || group as usize >= regex.captures_len() {
                    return exec_err!(
                        "regexp_extract: the pattern {pattern:?} has no group {group} (it has {} groups)",
                        regex.captures_len() - 1
                    );
                }
                let found =
                    regex.captures(text.value(i)).and_then(|c| c.get(group as usize)).map_or("", |m| m.as_str());
                out.append_value(found);
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Div {
    signature: Signature,
}

impl Div {
    fn new() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Div {
    fn name(&self) -> &str {
        "div"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(if types.iter().all(is_integer) { DataType::Int64 } else { DataType::Float64 })
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        if types.len() != 2 {
            return plan_err!("div takes two numbers: div(a, b), or a // b");
        }
        if !types.iter().all(|t| t.is_numeric() || matches!(t, DataType::Null)) {
            return plan_err!("div (and //) divide numbers; got {} and {}", types[0], types[1]);
        }
        let to = if types.iter().all(is_integer) { DataType::Int64 } else { DataType::Float64 };
        Ok(vec![to.clone(), to])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        invoke(&args.args, |arrays| {
            let (a, b) = (&arrays[0], &arrays[1]);
            if a.data_type() == &DataType::Int64 && b.data_type() == &DataType::Int64 {
                let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
                let mut out = Int64Builder::with_capacity(a.len());
                for i in 0..a.len() {
                    match (a.is_null(i) || b.is_null(i) || b.value(i) == 0, a.value(i).checked_div(b.value(i))) {
                        (true, _) => out.append_null(),
                        (false, Some(q)) => out.append_value(q),
                        (false, None) => return exec_err!("div: {} // {} overflows BIGINT", a.value(i), b.value(i)),
                    }
                }
                return Ok(Arc::new(out.finish()) as ArrayRef);
            }
            let (a, b) = (cast(a, &DataType::Float64)?, cast(b, &DataType::Float64)?);
            let (a, b) = (a.as_primitive::<Float64Type>(), b.as_primitive::<Float64Type>());
            let mut out = Float64Builder::with_capacity(a.len());
            for i in 0..a.len() {
                if a.is_null(i) || b.is_null(i) || b.value(i) == 0.0 {
                    out.append_null();
                } else {
                    out.append_value((a.value(i) / b.value(i)).trunc());
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `json_extract_path` (`->`, JSON text out) and `json_extract_path_text` (`->>`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonPath {
    signature: Signature,
    text: bool,
}

impl JsonPath {
    fn new(text: bool) -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), text }
    }
}

impl ScalarUDFImpl for JsonPath {
    fn name(&self) -> &str {
        if self.text { "json_extract_path_text" } else { "json_extract_path" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        if types.len() < 2 {
            return plan_err!("{} takes JSON text and at least one key: json ->> 'key'", self.name());
        }
        let mut coerced = vec![DataType::Utf8];
        for t in &types[1..] {
            coerced.push(match t {
                t if t.is_integer() => DataType::Int64,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
                other => {
                    return plan_err!(
                        "a JSON key is text or a position, not {other}; parenthesise a comparison: (j ->> 'k') = v"
                    );
                }
            });
        }
        Ok(coerced)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let operator = if self.text { "->>" } else { "->" };
        invoke(&args.args, |arrays| {
            let json = strings(&arrays[0])?;
            let mut out = StringBuilder::with_capacity(json.len(), json.len() * 8);
            'rows: for i in 0..json.len() {
                if arrays.iter().any(|a| a.is_null(i)) {
                    out.append_null();
                    continue;
                }
                let mut value: Value = match serde_json::from_str(json.value(i)) {
                    Ok(value) => value,
                    Err(e) => return exec_err!("{operator}: the value is not JSON ({e}): {:.60}", json.value(i)),
                };
                for key in &arrays[1..] {
                    let found = match key.data_type() {
                        DataType::Int64 => element(&mut value, key.as_primitive::<Int64Type>().value(i)),
                        _ => {
                            let key = key.as_string::<i32>().value(i);
                            match &mut value {
                                Value::Object(members) => members.remove(key),
                                Value::Array(_) => key.parse().ok().and_then(|n| element(&mut value, n)),
                                _ => None,
                            }
                        }
                    };
                    match found {
                        Some(found) => value = found,
                        None => {
                            out.append_null();
                            continue 'rows;
                        }
                    }
                }
                match value {
                    Value::Null if self.text => out.append_null(),
                    Value::String(s) if self.text => out.append_value(s),
                    other => out.append_value(other.to_string()),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// The array element at `n` (negative: from the end).
fn element(value: &mut Value, n: i64) -> Option<Value> {
    let Value::Array(items) = value else { return None };
    let len = items.len() as i64;
    let at = if n < 0 { len + n } else { n };
    (0..len).contains(&at).then(|| items[at as usize].take())
}
