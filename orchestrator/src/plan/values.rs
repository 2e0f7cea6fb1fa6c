//! A filter's value ([`FilterValue`], [`Scalar`]) and how it is read from JSON: a
//! string, number or boolean, or an array of them; `null`, objects and nested arrays
//! are refused with a message saying what was found.
//!
//! Uses nothing else of the plan module.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A filter's value: one scalar, or an array of scalars (no objects, no nesting).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    One(Scalar),
    List(Vec<Scalar>),
}

/// A JSON string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn from_json(value: Value) -> Result<Scalar, String> {
        match value {
            Value::String(text) => Ok(Scalar::String(text)),
            Value::Number(number) => {
                // serde_json prints numbers as `-12`, `1.5` or `1e+300`: keep it that way,
                // whatever features serde_json is built with.
                let text = number.to_string();
                if text.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')) {
                    Ok(Scalar::Number(number))
                } else {
                    Err(format!("the number {text} cannot be used"))
                }
            }
            Value::Bool(b) => Ok(Scalar::Bool(b)),
            other => Err(format!("a value must be a string, number or boolean, not {}", json_kind(&other))),
        }
    }
}

impl FilterValue {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            FilterValue::List(_) => "an array",
            FilterValue::One(Scalar::String(_)) => "a string",
            FilterValue::One(Scalar::Number(_)) => "a number",
            FilterValue::One(Scalar::Bool(_)) => "a boolean",
        }
    }

    fn from_json(value: Value) -> Result<FilterValue, String> {
        match value {
            Value::Null => Err("null is not a value; test for null with the is_null or is_not_null op".to_string()),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Array(_) | Value::Object(_) | Value::Null => Err(format!(
                        "element {i} is {}; an array holds only strings, numbers and booleans",
                        json_kind(&item)
                    )),
                    scalar => Scalar::from_json(scalar),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(FilterValue::List),
            scalar => Scalar::from_json(scalar).map(FilterValue::One),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Scalar::from_json(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for FilterValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FilterValue::from_json(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}
