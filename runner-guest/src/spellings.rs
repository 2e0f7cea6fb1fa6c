//! DuckDB and PostgreSQL spellings, rewritten onto DataFusion's functions, and hints
//! for the ones that have no counterpart.
//!
//! [`respell`] runs on every expression of the parsed statement (after its children):
//! - renames where DataFusion has the function under another name with the same
//!   arguments (`strftime` → `to_char`, `string_split` → `string_to_array`, …);
//! - `count_if(c)` → `count(CASE WHEN c THEN 1 END)`; `year(t)`, `month(t)`, … →
//!   `date_part('year', t)`; `dayname(t)` → `to_char(t, '%A')`;
//! - a date part written as a bare word (`DATEDIFF(day, a, b)`, `date_trunc(month, t)`)
//!   becomes the string DataFusion expects;
//! - a PostgreSQL format (`to_char(t, 'YYYY-MM')`) becomes strftime's (`'%Y-%m'`):
//!   DataFusion would print `YYYY-MM` itself, a silent wrong answer; a format with
//!   neither is refused;
//! - a slice with an omitted bound (`x[2:]`, `x[:3]`) runs to the end;
//! - `a // b` → `div(a, b)`; `j -> k` and `j ->> k` →
//!   `json_extract_path(j, k)` and `json_extract_path_text(j, k)` (`crate::functions`).
//!
//! [`hint`] names what to write instead of a function that does not exist here.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Subscript, Value,
};
use protocol::{ErrorType, RunError};

/// Same arguments, another name.
const RENAMES: [(&str, &str); 12] = [
    ("strftime", "to_char"),
    ("strptime", "to_timestamp"),
    ("string_split", "string_to_array"),
    ("str_split", "string_to_array"),
    ("list", "array_agg"),
    ("variance", "var_samp"),
    ("len", "character_length"),
    ("regexp_matches", "regexp_like"),
    ("datepart", "date_part"),
    ("datetrunc", "date_trunc"),
    ("group_concat", "string_agg"),
    ("listagg", "string_agg"),
];

/// `name(t)` → `date_part('part', t)`.
const DATE_PARTS: [(&str, &str); 12] = [
    ("year", "year"),
    ("quarter", "quarter"),
    ("month", "month"),
    ("week", "week"),
    ("weekofyear", "week"),
    ("day", "day"),
    ("dayofmonth", "day"),
    ("dayofweek", "dow"),
    ("dayofyear", "doy"),
    ("hour", "hour"),
    ("minute", "minute"),
    ("second", "second"),
];

/// Words that name a date part where a function takes one first.
const PART_WORDS: [&str; 24] = [
    "year",
    "years",
    "quarter",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
    "microsecond",
    "microseconds",
    "dow",
    "doy",
    "epoch",
    "isodow",
    "isoyear",
];

/// Functions whose second argument is a strftime format.
const FORMATTED: [&str; 8] = [
    "to_char",
    "date_format",
    "to_timestamp",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "to_date",
];

/// What to write instead of a function that does not exist here.
const HINTS: [(&str, &str); 23] = [
    ("arg_max", "ORDER BY y DESC LIMIT 1, or first_value(x ORDER BY y DESC)"),
    ("argmax", "ORDER BY y DESC LIMIT 1, or first_value(x ORDER BY y DESC)"),
    ("max_by", "ORDER BY y DESC LIMIT 1, or first_value(x ORDER BY y DESC)"),
    ("arg_min", "ORDER BY y LIMIT 1, or first_value(x ORDER BY y)"),
    ("argmin", "ORDER BY y LIMIT 1, or first_value(x ORDER BY y)"),
    ("min_by", "ORDER BY y LIMIT 1, or first_value(x ORDER BY y)"),
    ("mode", "SELECT x FROM t GROUP BY x ORDER BY count(*) DESC LIMIT 1"),
    ("date_add", "t + INTERVAL '1 day'"),
    ("dateadd", "t + INTERVAL '1 day'"),
    ("date_sub", "t - INTERVAL '1 day'"),
    ("last_day", "date_trunc('month', d) + INTERVAL '1 month' - INTERVAL '1 day'"),
    ("age", "date_diff('day', start, end), or end - start (an interval)"),
    ("epoch", "extract(epoch FROM t)"),
    ("epoch_ms", "extract(epoch FROM t) * 1000"),
    ("iif", "CASE WHEN c THEN a ELSE b END"),
    ("if", "CASE WHEN c THEN a ELSE b END"),
    ("typeof", "arrow_typeof(x) (Arrow's type names)"),
    ("json_extract", "j -> 'key' (JSON) or j ->> 'key' (text)"),
    ("json_extract_string", "j ->> 'key'"),
    ("json_value", "j ->> 'key'"),
    ("quantile_disc", "percentile_cont(x, q) (interpolated) or approx_percentile_cont(x, q)"),
    ("quantile", "percentile_cont(x, q) (interpolated; DuckDB's quantile is discrete) or median(x)"),
    ("printf", "concat(a, ' ', b), and to_char(x, format) for numbers of times"),
];

/// What to write instead of `name`, when there is a known answer.
pub fn hint(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    HINTS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

/// Rewrites `expr` if it is a spelling this module knows.
pub fn respell(expr: &mut Expr) -> Result<(), RunError> {
    match expr {
        Expr::BinaryOp { left, op, right } => {
            let function = match op {
                BinaryOperator::DuckIntegerDivide | BinaryOperator::MyIntegerDivide => "div",
                BinaryOperator::Arrow => "json_extract_path",
                BinaryOperator::LongArrow => "json_extract_path_text",
                _ => return Ok(()),
            };
            let mut left = std::mem::replace(left.as_mut(), null());
            let mut right = std::mem::replace(right.as_mut(), null());
            if function == "div" {
                *expr = call(function, vec![left, right]);
                return Ok(());
            }
            // The parser binds `->` and `->>` looser than comparisons: `j ->> 'a' = 'x'`
            // is `j ->> ('a' = 'x')`, and `j -> 'a' = k -> 'b'` is `(j -> ('a' = k)) ->
            // 'b'`. PostgreSQL binds them tighter, so the arrow takes the comparison's
            // nearest operand on each side. (A comparison in parentheses is a `Nested`
            // expression, not a bare comparison, and is left alone.)
            let arrow = move |json: Expr| {
                wrap_leftmost(&mut right, |key| call(function, vec![json, key]));
                right
            };
            wrap_rightmost(&mut left, arrow);
            *expr = left;
            Ok(())
        }
        Expr::Function(function) => respell_function(function),
        // `x[2:]`, `x[:3]`: DataFusion wants both bounds; an omitted one is the end.
        Expr::CompoundFieldAccess { access_chain, .. } => {
            for access in access_chain {
                if let AccessExpr::Subscript(Subscript::Slice { lower_bound, upper_bound, .. }) = access {
                    lower_bound.get_or_insert_with(|| number(1));
                    upper_bound.get_or_insert_with(|| number(i64::from(i32::MAX)));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Replaces the leftmost operand of the comparisons (`=`, `<`, `LIKE`, `IS NULL`,
/// `IN`, `BETWEEN`, …) at the top of `expr` with `f` of it (`expr` itself if none).
fn wrap_leftmost(expr: &mut Expr, f: impl FnOnce(Expr) -> Expr) {
    let inner: Option<&mut Box<Expr>> = match expr {
        Expr::BinaryOp { left, op, .. } if is_comparison(op) => Some(left),
        Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e)
        | Expr::IsDistinctFrom(e, _)
        | Expr::IsNotDistinctFrom(e, _) => Some(e),
        Expr::Like { expr, .. }
        | Expr::ILike { expr, .. }
        | Expr::SimilarTo { expr, .. }
        | Expr::InList { expr, .. }
        | Expr::InSubquery { expr, .. }
        | Expr::Between { expr, .. } => Some(expr),
        _ => None,
    };
    match inner {
        Some(inner) => wrap_leftmost(inner.as_mut(), f),
        None => {
            let operand = std::mem::replace(expr, null());
            *expr = f(operand);
        }
    }
}

/// Replaces the right operand of the comparison at the top of `expr` (recursively)
/// with `f` of it (`expr` itself if it is no comparison).
fn wrap_rightmost(expr: &mut Expr, f: impl FnOnce(Expr) -> Expr) {
    match expr {
        Expr::BinaryOp { op, right, .. } if is_comparison(op) => wrap_rightmost(right.as_mut(), f),
        _ => {
            let operand = std::mem::replace(expr, null());
            *expr = f(operand);
        }
    }
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Spaceship
            | BinaryOperator::PGRegexMatch
            | BinaryOperator::PGRegexIMatch
            | BinaryOperator::PGRegexNotMatch
            | BinaryOperator::PGRegexNotIMatch
            | BinaryOperator::PGLikeMatch
            | BinaryOperator::PGILikeMatch
            | BinaryOperator::PGNotLikeMatch
            | BinaryOperator::PGNotILikeMatch
    )
}

fn respell_function(function: &mut Function) -> Result<(), RunError> {
    let [ObjectNamePart::Identifier(ident)] = function.name.0.as_slice() else { return Ok(()) };
    if ident.quote_style.is_some() {
        return Ok(());
    }
    let name = ident.value.to_ascii_lowercase();
    let FunctionArguments::List(list) = &mut function.args else { return Ok(()) };
    let plain = function.over.is_none() && function.filter.is_none() && function.within_group.is_empty();

    if let Some((_, to)) = RENAMES.iter().find(|(from, _)| *from == name) {
        function.name = name_of(to);
        if (name == "group_concat" || name == "listagg") && list.args.len() == 1 {
            list.args.push(unnamed(string(",")));
        }
    } else if (name == "count_if" || name == "countif") && list.args.len() == 1 {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(condition)) = &mut list.args[0] else { return Ok(()) };
        let condition = std::mem::replace(condition, null());
        list.args[0] = unnamed(Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen { condition, result: Expr::value(Value::Number("1".into(), false)) }],
            else_result: None,
        });
        function.name = name_of("count");
    } else if let Some((_, part)) = DATE_PARTS.iter().find(|(n, _)| *n == name)
        && list.args.len() == 1
        && plain
    {
        list.args.insert(0, unnamed(string(part)));
        function.name = name_of("date_part");
    } else if (name == "dayname" || name == "monthname") && list.args.len() == 1 && plain {
        list.args.push(unnamed(string(if name == "dayname" { "%A" } else { "%B" })));
        function.name = name_of("to_char");
    }

    let name = function.name.to_string().to_ascii_lowercase();
    if matches!(name.as_str(), "date_diff" | "datediff" | "date_part" | "date_trunc")
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
        && let Expr::Identifier(word) = first
        && word.quote_style.is_none()
        && PART_WORDS.contains(&word.value.to_ascii_lowercase().as_str())
    {
        *first = string(&word.value.to_ascii_lowercase());
    }
    if FORMATTED.contains(&name.as_str()) {
        for arg in list.args.iter_mut().skip(1) {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))) = arg
                && let Value::SingleQuotedString(format) = &mut value.value
                && !format.contains('%')
            {
                match strftime_format(format) {
                    Ok(Some(translated)) => *format = translated,
                    Ok(None) => {}
                    Err(unknown) => {
                        return Err(RunError {
                            error_type: ErrorType::SqlPlanError,
                            message: format!(
                                "{name}'s format '{format}' has '{unknown}', which is no field here: formats use \
                                 strftime's codes, {name}(t, '%Y-%m-%d %H:%M:%S'), or PostgreSQL's YYYY, MM, DD, \
                                 HH24, MI, SS (quote literal text: '\"Q\"1')"
                            ),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// PostgreSQL's template patterns as strftime's: `Ok(None)` when `format` has no
/// letters (nothing to translate), `Err` with the first letters that are no pattern
/// (PostgreSQL would print a field there; DataFusion would print the letters). Text
/// in double quotes is literal, as in PostgreSQL; `FM` drops a number's padding.
pub fn strftime_format(format: &str) -> Result<Option<String>, String> {
    const PATTERNS: [(&str, &str); 20] = [
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("HH", "%I"),
        ("YYYY", "%Y"),
        ("YY", "%y"),
        ("MONTH", "%B"),
        ("MON", "%b"),
        ("MM", "%m"),
        ("MI", "%M"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("DDD", "%j"),
        ("DD", "%d"),
        ("DAY", "%A"),
        ("DY", "%a"),
        ("SS", "%S"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("IW", "%V"),
        ("TZ", "%Z"),
    ];
    let mut out = String::with_capacity(format.len() + 8);
    let mut found = false;
    let mut fill_mode = false;
    let mut rest = format;
    'scan: while let Some(c) = rest.chars().next() {
        if c == '"' {
            let literal = &rest[1..];
            let end = literal.find('"').unwrap_or(literal.len());
            out.push_str(&literal[..end]);
            rest = literal.get(end + 1..).unwrap_or("");
            continue;
        }
        let starts_with = |pattern: &str| rest.get(..pattern.len()).is_some_and(|p| p.eq_ignore_ascii_case(pattern));
        if starts_with("FM") {
            fill_mode = true;
            rest = &rest[2..];
            continue;
        }
        for (pattern, code) in PATTERNS {
            if starts_with(pattern) {
                let numeric = !matches!(code, "%B" | "%b" | "%A" | "%a" | "%p" | "%Z" | "%3f" | "%6f");
                if fill_mode && numeric {
                    out.push_str("%-");
                    out.push_str(&code[1..]);
                } else {
                    out.push_str(code);
                }
                fill_mode = false;
                rest = &rest[pattern.len()..];
                found = true;
                continue 'scan;
            }
        }
        if c.is_ascii_alphabetic() {
            let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            return Err(word);
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(found.then_some(out))
}

fn name_of(name: &str) -> ObjectName {
    ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))])
}

fn string(text: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(text.to_string()))
}

fn number(n: i64) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

fn unnamed(expr: Expr) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: name_of(name),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(unnamed).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}
