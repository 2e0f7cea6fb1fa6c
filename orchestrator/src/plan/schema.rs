//! [`json_schema`]: the plan's JSON Schema, served at `GET /schemas/plan`. It states
//! for clients the format that `super::types` defines for serde; a test keeps the two
//! in agreement.
//!
//! Uses `super::types` (for [`MAX_IN_VALUES`]) and nothing else of the plan module.

use serde_json::{Value, json};

use super::types::MAX_IN_VALUES;

/// The JSON Schema (draft 2020-12) of a plan, as served at `GET /schemas/plan`.
/// `limit`'s upper bound is the service's MAX_ROWS and is not part of the schema.
pub fn json_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "QueryPlan",
        "description": "A query over one table of a dataset, compiled to SQL by csv-analyst. \
            Names are matched case-sensitively, then ignoring case. No SQL expressions are accepted anywhere.",
        "type": "object",
        "additionalProperties": false,
        "required": ["table", "select"],
        "properties": {
            "table": {"type": "string", "description": "One of the dataset's tables."},
            "select": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/select_item"},
                "description": "The output columns, in order."
            },
            "filters": {
                "type": "array",
                "items": {"$ref": "#/$defs/filter"},
                "description": "Conditions on the rows; all of them must hold (AND)."
            },
            "group_by": {
                "type": "array",
                "items": {"type": "string"},
                "uniqueItems": true,
                "description": "Columns to group by. When the plan aggregates, every selected column without an \
                    aggregate must be listed here."
            },
            "order_by": {"type": "array", "items": {"$ref": "#/$defs/order_by"}},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "description": "Rows at most, up to the service's MAX_ROWS (its cap applies without a limit)."
            }
        },
        "$defs": {
            "scalar": {"type": ["string", "number", "boolean"]},
            "select_item": {
                "oneOf": [
                    {
                        "title": "column",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["column"],
                        "properties": {
                            "column": {"type": "string"},
                            "as": {"type": "string", "minLength": 1, "description": "The output column's name."}
                        }
                    },
                    {
                        "title": "aggregate",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["agg", "as"],
                        "properties": {
                            "agg": {
                                "enum": ["count", "count_distinct", "sum", "avg", "min", "max"],
                                "description": "count without a column counts rows; with one, its non-null values."
                            },
                            "column": {"type": "string"},
                            "as": {"type": "string", "minLength": 1, "description": "The output column's name."}
                        },
                        "if": {"properties": {"agg": {"const": "count"}}},
                        "else": {"required": ["column"]}
                    }
                ]
            },
            "filter": {
                "type": "object",
                "additionalProperties": false,
                "required": ["column", "op"],
                "properties": {
                    "column": {"type": "string"},
                    "op": {
                        "enum": ["=", "!=", "<", "<=", ">", ">=", "in", "between", "contains", "startswith",
                                 "endswith", "is_null", "is_not_null"],
                        "description": "contains/startswith/endswith match the value literally and case-sensitively."
                    },
                    "value": {
                        "anyOf": [
                            {"$ref": "#/$defs/scalar"},
                            {"type": "array", "items": {"$ref": "#/$defs/scalar"}}
                        ]
                    }
                },
                "allOf": [
                    {
                        "if": {"properties": {"op": {"enum": ["=", "!=", "<", "<=", ">", ">="]}}},
                        "then": {"required": ["value"], "properties": {"value": {"$ref": "#/$defs/scalar"}}}
                    },
                    {
                        "if": {"properties": {"op": {"const": "in"}}},
                        "then": {
                            "required": ["value"],
                            "properties": {"value": {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES}}
                        }
                    },
                    {
                        "if": {"properties": {"op": {"const": "between"}}},
                        "then": {
                            "required": ["value"],
                            "properties": {"value": {"type": "array", "minItems": 2, "maxItems": 2}}
                        }
                    },
                    {
                        "if": {"properties": {"op": {"enum": ["contains", "startswith", "endswith"]}}},
                        "then": {"required": ["value"], "properties": {"value": {"type": "string"}}}
                    },
                    {
                        "if": {"properties": {"op": {"enum": ["is_null", "is_not_null"]}}},
                        "then": {"not": {"required": ["value"]}}
                    }
                ]
            },
            "order_by": {
                "type": "object",
                "additionalProperties": false,
                "required": ["column"],
                "properties": {
                    "column": {"type": "string", "description": "An alias of the select, or a column."},
                    "direction": {"enum": ["asc", "desc"], "default": "asc"}
                }
            }
        }
    })
}
