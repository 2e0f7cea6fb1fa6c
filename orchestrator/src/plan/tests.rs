//! The plan module's tests, through its public API: plans compiled to golden SQL
//! (each parsed by the guest's parser and the policy's), refusals with their paths,
//! and the JSON schema kept in agreement with the serde types.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::{Value, json};
// The guest's parser (DataFusion 55's, 0.62) for what the query means; the policy's
// (the orchestrator's own sqlparser) must accept it too.
use sqlparser_guest::ast::{Expr, SetExpr, Statement, Value as SqlValue, visit_expressions};
use sqlparser_guest::dialect::GenericDialect;
use sqlparser_guest::parser::Parser;

use super::compiler::compile;
use super::error::PlanError;
use super::schema::json_schema;
use super::scope::PlanScope;
use super::sql::escape_like;
use super::types::{Aggregate, Direction, Filter, FilterOp, MAX_IN_VALUES, OrderBy, QueryPlan, SelectItem};

fn scope() -> PlanScope {
    PlanScope {
        tables: vec![
            (
                "tickets".into(),
                vec![
                    "ticket_id".into(),
                    "created_at".into(),
                    "category".into(),
                    "priority".into(),
                    "status".into(),
                    "resolution_hours".into(),
                    "sla_met".into(),
                    "Channel".into(),
                    "odd\"name".into(),
                ],
            ),
            ("Agents".into(), vec!["agent_id".into(), "region".into(), "Region".into()]),
        ],
        max_rows: 1000,
    }
}

/// Parses `sql` with the generic dialect of the guest's parser (DataFusion's) and of
/// the policy's, each of which must give one query; returns the guest's.
fn parse(sql: &str) -> Statement {
    let policy = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, sql)
        .unwrap_or_else(|e| panic!("the policy's parser refused {sql}: {e}"));
    assert!(matches!(policy.as_slice(), [sqlparser::ast::Statement::Query(_)]), "{sql}");
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, sql).unwrap_or_else(|e| panic!("the guest's parser refused {sql}: {e}"));
    assert_eq!(statements.len(), 1, "{sql}");
    let statement = statements.remove(0);
    assert!(matches!(statement, Statement::Query(_)), "{sql}");
    statement
}

/// The SQL of a plan that must compile; every compiled query is parsed.
fn sql(plan: Value) -> String {
    let compiled = compile(&plan, &scope()).unwrap_or_else(|e| panic!("{plan} was refused: {e:?}"));
    parse(&compiled.sql);
    compiled.sql
}

fn refused(plan: Value) -> PlanError {
    match compile(&plan, &scope()) {
        Ok(compiled) => panic!("{plan} compiled to {}", compiled.sql),
        Err(e) => e,
    }
}

fn refused_at(plan: Value, path: &str, message: &str) {
    let e = refused(plan);
    assert_eq!((e.path.as_deref(), e.message.as_str()), (Some(path), message));
}

/// A plan over `tickets` selecting `ticket_id` with one filter.
fn filtered(filter: Value) -> Value {
    json!({"table": "tickets", "select": [{"column": "ticket_id"}], "filters": [filter]})
}

fn string_literals(sql: &str) -> Vec<String> {
    let mut found = Vec::new();
    let _ = visit_expressions(&parse(sql), |expr| {
        if let Expr::Value(v) = expr
            && let SqlValue::SingleQuotedString(s) = &v.value
        {
            found.push(s.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn where_clause(sql: &str) -> Expr {
    let Statement::Query(query) = parse(sql) else { unreachable!() };
    let SetExpr::Select(select) = *query.body else { panic!("{sql} is not a plain SELECT") };
    select.selection.expect("a WHERE clause")
}

#[test]
fn every_operator_compiles_to_its_golden_sql() {
    let cases = [
        ("=", json!("High"), r#""priority" = 'High'"#),
        ("!=", json!("High"), r#""priority" <> 'High'"#),
        ("<", json!(10), r#""priority" < 10"#),
        ("<=", json!(-2.5), r#""priority" <= -2.5"#),
        (">", json!(true), r#""priority" > TRUE"#),
        (">=", json!(1e300), r#""priority" >= 1e+300"#),
        ("in", json!(["Low", 2, false]), r#""priority" IN ('Low', 2, FALSE)"#),
        ("between", json!(["2024-01-01", "2024-02-01"]), r#""priority" BETWEEN '2024-01-01' AND '2024-02-01'"#),
        ("contains", json!("50%_off"), r#""priority" LIKE '%50\%\_off%' ESCAPE '\'"#),
        ("startswith", json!("a\\b"), r#""priority" LIKE 'a\\b%' ESCAPE '\'"#),
        ("endswith", json!("it's"), r#""priority" LIKE '%it''s' ESCAPE '\'"#),
        ("is_null", Value::Null, r#""priority" IS NULL"#),
        ("is_not_null", Value::Null, r#""priority" IS NOT NULL"#),
    ];
    for (op, value, condition) in &cases {
        let mut filter = json!({"column": "priority", "op": op});
        if !value.is_null() {
            filter["value"] = value.clone();
        }
        assert_eq!(sql(filtered(filter)), format!(r#"SELECT "ticket_id" FROM "tickets" WHERE {condition}"#));
    }
    let tested: BTreeSet<&str> = cases.iter().map(|(op, _, _)| *op).collect();
    assert_eq!(tested, schema_enum(&json_schema()["$defs"]["filter"]["properties"]["op"]), "an op is untested");
}

#[test]
fn every_aggregate_compiles_to_its_golden_sql() {
    let cases = [
        (json!({"agg": "count", "as": "n"}), r#"COUNT(*) AS "n""#),
        (json!({"agg": "count", "column": "status", "as": "n"}), r#"COUNT("status") AS "n""#),
        (json!({"agg": "count_distinct", "column": "status", "as": "n"}), r#"COUNT(DISTINCT "status") AS "n""#),
        (json!({"agg": "sum", "column": "resolution_hours", "as": "s"}), r#"SUM("resolution_hours") AS "s""#),
        (json!({"agg": "avg", "column": "resolution_hours", "as": "a"}), r#"AVG("resolution_hours") AS "a""#),
        (json!({"agg": "min", "column": "created_at", "as": "first"}), r#"MIN("created_at") AS "first""#),
        (json!({"agg": "max", "column": "created_at", "as": "last"}), r#"MAX("created_at") AS "last""#),
    ];
    for (item, expected) in &cases {
        let plan = json!({"table": "tickets", "select": [item]});
        assert_eq!(sql(plan), format!(r#"SELECT {expected} FROM "tickets""#));
    }
    let tested: BTreeSet<&str> = cases.iter().map(|(item, _)| item["agg"].as_str().unwrap()).collect();
    let aggregate_item = &json_schema()["$defs"]["select_item"]["oneOf"][1];
    assert_eq!(tested, schema_enum(&aggregate_item["properties"]["agg"]), "an aggregate is untested");
}

#[test]
fn a_full_plan_compiles_to_one_statement() {
    let plan = json!({
        "table": "TICKETS",
        "select": [
            {"column": "priority"},
            {"column": "Category", "as": "cat"},
            {"agg": "avg", "column": "resolution_hours", "as": "avg_hours"},
            {"agg": "count", "as": "n"}
        ],
        "filters": [
            {"column": "status", "op": "=", "value": "closed"},
            {"column": "created_at", "op": "between", "value": ["2024-01-01", "2024-07-01"]},
            {"column": "channel", "op": "is_not_null"}
        ],
        "group_by": ["priority", "category"],
        "order_by": [{"column": "avg_hours", "direction": "desc"}, {"column": "priority"}],
        "limit": 10
    });
    assert_eq!(
        sql(plan),
        r#"SELECT "priority", "category" AS "cat", AVG("resolution_hours") AS "avg_hours", COUNT(*) AS "n" FROM "tickets" WHERE "status" = 'closed' AND "created_at" BETWEEN '2024-01-01' AND '2024-07-01' AND "Channel" IS NOT NULL GROUP BY "priority", "category" ORDER BY "avg_hours" DESC, "priority" ASC LIMIT 10"#
    );
}

#[test]
fn a_value_that_looks_like_sql_stays_one_literal() {
    let hostile = "'; DROP TABLE x; --";
    let compiled = sql(filtered(json!({"column": "status", "op": "=", "value": hostile})));
    assert_eq!(compiled, r#"SELECT "ticket_id" FROM "tickets" WHERE "status" = '''; DROP TABLE x; --'"#);
    assert_eq!(string_literals(&compiled), vec![hostile.to_string()]);

    let in_list = sql(filtered(json!({"column": "status", "op": "in", "value": [hostile, "a'b"]})));
    assert_eq!(string_literals(&in_list), vec![hostile.to_string(), "a'b".to_string()]);

    let like = sql(filtered(json!({"column": "status", "op": "contains", "value": hostile})));
    assert_eq!(string_literals(&like), vec![format!("%{hostile}%")]);
}

#[test]
fn text_operators_match_their_value_literally() {
    let compiled = sql(filtered(json!({"column": "status", "op": "contains", "value": "50%_off"})));
    let Expr::Like { negated: false, any: false, pattern, escape_char, .. } = where_clause(&compiled) else {
        panic!("{compiled} has no LIKE");
    };
    let Expr::Value(pattern) = *pattern else { panic!("the pattern is not a literal") };
    assert_eq!(pattern.value, SqlValue::SingleQuotedString(r"%50\%\_off%".to_string()));
    assert_eq!(escape_char.map(|v| v.value), Some(SqlValue::SingleQuotedString(r"\".to_string())));

    assert_eq!(escape_like(r"100% a_b \n"), r"100\% a\_b \\n");
}

#[test]
fn numbers_stay_numbers() {
    let numbers: Value =
        serde_json::from_str("[0, -7, 1.5e-7, 2.0, 18446744073709551615, -9223372036854775808]").expect("valid JSON");
    assert_eq!(
        sql(filtered(json!({"column": "resolution_hours", "op": "in", "value": numbers}))),
        r#"SELECT "ticket_id" FROM "tickets" WHERE "resolution_hours" IN (0, -7, 1.5e-7, 2.0, 18446744073709551615, -9223372036854775808)"#
    );
}

#[test]
fn identifiers_are_quoted_with_quotes_doubled() {
    let compiled = sql(json!({"table": "tickets", "select": [{"column": "odd\"name", "as": "x\"; DROP TABLE y; --"}]}));
    assert_eq!(compiled, r#"SELECT "odd""name" AS "x""; DROP TABLE y; --" FROM "tickets""#);
}

#[test]
fn names_resolve_exactly_then_ignoring_case() {
    assert_eq!(
        sql(json!({"table": "agents", "select": [{"column": "AGENT_ID", "as": "id"}, {"column": "Region"}]})),
        r#"SELECT "agent_id" AS "id", "Region" FROM "Agents""#
    );
    refused_at(
        json!({"table": "Agents", "select": [{"column": "REGION"}]}),
        "select[0].column",
        r#"column "REGION" matches several columns of table "Agents" when case is ignored (region, Region); use the exact name"#,
    );
}

#[test]
fn unknown_tables_and_columns_are_refused_naming_what_exists() {
    refused_at(
        json!({"table": "orders", "select": [{"column": "x"}]}),
        "table",
        r#"unknown table "orders"; the dataset's tables are: tickets, Agents"#,
    );
    refused_at(
        json!({"table": "agents", "select": [{"column": "name"}]}),
        "select[0].column",
        r#"unknown column "name" in table "Agents"; its columns are: agent_id, region, Region"#,
    );
    refused_at(
        filtered(json!({"column": "nope", "op": "is_null"})),
        "filters[0].column",
        r#"unknown column "nope" in table "tickets"; its columns are: ticket_id, created_at, category, priority, status, resolution_hours, sla_met, Channel, odd"name"#,
    );
    refused_at(
        json!({"table": "agents", "select": [{"agg": "count", "as": "n"}], "group_by": ["x"]}),
        "group_by[0]",
        r#"unknown column "x" in table "Agents"; its columns are: agent_id, region, Region"#,
    );
    refused_at(
        json!({"table": "agents", "select": [{"column": "agent_id", "as": "id"}], "order_by": [{"column": "ids"}]}),
        "order_by[0].column",
        r#"unknown column "ids" in table "Agents"; its columns are: agent_id, region, Region; the select's aliases are: id"#,
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let cases = [
        (json!({"table": "tickets", "select": [{"column": "status"}], "where": "1=1"}), "where"),
        (json!({"table": "tickets", "select": [{"column": "status"}, {"column": "x", "expr": "1"}]}), "select[1].expr"),
        (filtered(json!({"colum": "status", "op": "is_null"})), "filters[0].colum"),
        (
            json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"column": "status", "dir": "asc"}]}),
            "order_by[0].dir",
        ),
    ];
    for (plan, path) in cases {
        let e = refused(plan);
        assert_eq!(e.path.as_deref(), Some(path));
        let field = path.rsplit('.').next().unwrap();
        assert!(e.message.starts_with(&format!("unknown field `{field}`, expected ")), "{}", e.message);
    }
}

#[test]
fn malformed_plans_are_refused_with_their_path() {
    let e = refused(json!({"select": [{"column": "status"}]}));
    assert_eq!((e.path, e.message.as_str()), (None, "missing field `table`"));
    let e = refused(json!("SELECT 1"));
    assert_eq!(e.path, None);
    assert_eq!(e.message, r#"invalid type: string "SELECT 1", expected struct QueryPlan"#);
    refused_at(
        json!({"table": "tickets", "select": [{"agg": "median", "column": "x", "as": "m"}]}),
        "select[0].agg",
        "unknown variant `median`, expected one of `count`, `count_distinct`, `sum`, `avg`, `min`, `max`",
    );
    refused_at(
        filtered(json!({"column": "status", "op": "like", "value": "a%"})),
        "filters[0].op",
        "unknown variant `like`, expected one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `between`, `contains`, \
         `startswith`, `endswith`, `is_null`, `is_not_null`",
    );
    refused_at(json!({"table": "tickets", "select": []}), "select", "select needs at least one column or aggregate");
    refused_at(
        json!({"table": "tickets", "select": [{"as": "x"}]}),
        "select[0]",
        r#"a select item needs "column" (a column of the table) or "agg" (an aggregate)"#,
    );
}

#[test]
fn limits_outside_one_to_max_rows_are_refused() {
    let plan = |limit: Value| json!({"table": "tickets", "select": [{"column": "status"}], "limit": limit});
    assert_eq!(sql(plan(json!(1000))), r#"SELECT "status" FROM "tickets" LIMIT 1000"#);
    refused_at(plan(json!(1001)), "limit", "limit must be between 1 and 1000 (the service's MAX_ROWS), got 1001");
    refused_at(plan(json!(0)), "limit", "limit must be between 1 and 1000 (the service's MAX_ROWS), got 0");
    refused_at(plan(json!(-1)), "limit", "invalid value: integer `-1`, expected u64");
    refused_at(plan(json!("10")), "limit", r#"invalid type: string "10", expected u64"#);
}

#[test]
fn values_of_the_wrong_shape_are_refused() {
    let value = |op: &str, value: Value| filtered(json!({"column": "status", "op": op, "value": value}));
    refused_at(value("in", json!([])), "filters[0].value", "in takes a non-empty array of values");
    refused_at(value("in", json!("a")), "filters[0].value", "in takes a non-empty array of values");
    refused_at(
        value("in", json!(vec![1; MAX_IN_VALUES + 1])),
        "filters[0].value",
        "in takes at most 1000 values, got 1001",
    );
    refused_at(
        value("between", json!([1, 2, 3])),
        "filters[0].value",
        "between takes an array of two values [low, high], got 3",
    );
    refused_at(
        value("between", json!(1)),
        "filters[0].value",
        "between takes an array of two values [low, high], got one value",
    );
    refused_at(
        value("=", json!({"raw": "1=1"})),
        "filters[0].value",
        "a value must be a string, number or boolean, not an object",
    );
    refused_at(
        value("in", json!(["a", ["b"]])),
        "filters[0].value",
        "element 1 is an array; an array holds only strings, numbers and booleans",
    );
    refused_at(
        value("in", json!(["a", null])),
        "filters[0].value",
        "element 1 is null; an array holds only strings, numbers and booleans",
    );
    refused_at(
        value("=", Value::Null),
        "filters[0].value",
        "null is not a value; test for null with the is_null or is_not_null op",
    );
    refused_at(
        value("=", json!(["a", "b"])),
        "filters[0].value",
        "= takes one value (a string, number or boolean), not an array; for several values use in",
    );
    refused_at(value("contains", json!(5)), "filters[0].value", "contains takes a string, got a number");
    refused_at(value("startswith", json!(["a"])), "filters[0].value", "startswith takes a string, got an array");
    refused_at(value("is_null", json!("x")), "filters[0].value", r#"is_null takes no value; remove "value""#);
    refused_at(filtered(json!({"column": "status", "op": ">"})), "filters[0]", r#"> needs a "value""#);
}

#[test]
fn aggregates_need_aliases_columns_and_grouping() {
    refused_at(
        json!({"table": "tickets", "select": [{"agg": "count"}]}),
        "select[0]",
        r#"the count aggregate needs an alias: add "as""#,
    );
    refused_at(
        json!({"table": "tickets", "select": [{"agg": "sum", "as": "s"}]}),
        "select[0]",
        "the sum aggregate needs a column",
    );
    refused_at(
        json!({"table": "tickets", "select": [{"column": "status", "as": ""}]}),
        "select[0].as",
        "an alias must not be empty",
    );
    refused_at(
        json!({"table": "tickets", "select": [{"column": "priority"}, {"agg": "count", "as": "n"}]}),
        "select[0].column",
        r#"column "priority" is selected without an aggregate while the plan aggregates, so it must be in group_by (which has: (none))"#,
    );
    refused_at(
        json!({"table": "tickets", "select": [{"column": "status"}], "group_by": ["priority"]}),
        "select[0].column",
        r#"column "status" is selected without an aggregate while the plan aggregates, so it must be in group_by (which has: priority)"#,
    );
    refused_at(
        json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}], "group_by": ["priority"],
               "order_by": [{"column": "status"}]}),
        "order_by[0].column",
        r#"the plan aggregates, so order_by may name an alias of the select or a column of group_by; "status" is neither (group_by has: priority; aliases: n)"#,
    );
    refused_at(
        json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}], "group_by": ["priority", "PRIORITY"]}),
        "group_by[1]",
        r#"column "priority" is already in group_by"#,
    );
    refused_at(
        json!({"table": "tickets", "select": [{"column": "status"}, {"column": "priority", "as": "status"}]}),
        "select[1]",
        r#"the select has two output columns named "status"; give one of them another alias ("as")"#,
    );
    // Grouped columns need not be selected; ordering by a plain column works without aggregates.
    assert_eq!(
        sql(json!({"table": "tickets", "select": [{"agg": "max", "column": "created_at", "as": "last"}],
                   "group_by": ["priority"], "order_by": [{"column": "priority", "direction": "desc"}]})),
        r#"SELECT MAX("created_at") AS "last" FROM "tickets" GROUP BY "priority" ORDER BY "priority" DESC"#
    );
    assert_eq!(
        sql(json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"column": "created_at"}]})),
        r#"SELECT "status" FROM "tickets" ORDER BY "created_at" ASC"#
    );
}

#[test]
fn a_compiled_plan_serializes_back_to_an_equivalent_plan() {
    let plan = json!({
        "table": "tickets",
        "select": [{"column": "priority"}, {"agg": "count", "as": "n"}],
        "filters": [{"column": "status", "op": "in", "value": ["open", 3, true]},
                    {"column": "sla_met", "op": "is_null"}],
        "group_by": ["priority"],
        "order_by": [{"column": "n", "direction": "desc"}],
        "limit": 5
    });
    let compiled = compile(&plan, &scope()).unwrap();
    let round_trip = serde_json::to_value(&compiled.plan).unwrap();
    assert_eq!(round_trip, plan);
    assert_eq!(compile(&round_trip, &scope()).unwrap().sql, compiled.sql);
}

/// The names inside backticks of a serde error, after the first (the offending one):
/// the fields or variants serde expects.
fn serde_expected(message: &str) -> BTreeSet<String> {
    message.split('`').skip(1).step_by(2).skip(1).map(str::to_string).collect()
}

fn serde_fields<T: for<'de> Deserialize<'de> + fmt::Debug>() -> BTreeSet<String> {
    let e = serde_json::from_value::<T>(json!({"not_a_field": 1})).expect_err("an unknown field is refused");
    serde_expected(&e.to_string())
}

fn serde_variants<T: for<'de> Deserialize<'de> + fmt::Debug>() -> BTreeSet<String> {
    let e = serde_json::from_value::<T>(json!("not_a_variant")).expect_err("an unknown variant is refused");
    serde_expected(&e.to_string())
}

fn schema_properties(object: &Value) -> BTreeSet<String> {
    assert_eq!(object["additionalProperties"], json!(false), "{object}");
    object["properties"].as_object().expect("properties").keys().cloned().collect()
}

fn schema_enum(property: &Value) -> BTreeSet<&str> {
    property["enum"].as_array().expect("an enum").iter().map(|v| v.as_str().expect("a string")).collect()
}

#[test]
fn the_json_schema_and_the_serde_types_agree() {
    let schema = json_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let defs = &schema["$defs"];

    assert_eq!(schema_properties(&schema), serde_fields::<QueryPlan>());
    assert_eq!(schema_properties(&defs["filter"]), serde_fields::<Filter>());
    assert_eq!(schema_properties(&defs["order_by"]), serde_fields::<OrderBy>());
    let select_shapes = defs["select_item"]["oneOf"].as_array().unwrap();
    let select_properties: BTreeSet<String> = select_shapes.iter().flat_map(schema_properties).collect();
    assert_eq!(select_properties, serde_fields::<SelectItem>());

    let names = |set: BTreeSet<&str>| set.into_iter().map(str::to_string).collect::<BTreeSet<String>>();
    assert_eq!(names(schema_enum(&defs["filter"]["properties"]["op"])), serde_variants::<FilterOp>());
    assert_eq!(names(schema_enum(&select_shapes[1]["properties"]["agg"])), serde_variants::<Aggregate>());
    assert_eq!(names(schema_enum(&defs["order_by"]["properties"]["direction"])), serde_variants::<Direction>());

    // What the schema requires, serde requires too.
    let required = |object: &Value| -> Vec<String> {
        object["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(required(&schema), ["table", "select"]);
    assert_eq!(required(&defs["filter"]), ["column", "op"]);
    assert_eq!(required(&defs["order_by"]), ["column"]);
    for missing in ["table", "select"] {
        let mut plan = json!({"table": "tickets", "select": [{"column": "status"}]});
        plan.as_object_mut().unwrap().remove(missing);
        assert_eq!(refused(plan).message, format!("missing field `{missing}`"));
    }
    refused_at(
        json!({"table": "tickets", "select": [{"column": "status"}], "filters": [{"op": "is_null"}]}),
        "filters[0]",
        "missing field `column`",
    );
    refused_at(
        json!({"table": "tickets", "select": [{"column": "status"}], "order_by": [{"direction": "asc"}]}),
        "order_by[0]",
        "missing field `column`",
    );

    // The op names the compiler prints are the plan's names.
    let all_ops = [
        FilterOp::Eq,
        FilterOp::NotEq,
        FilterOp::Lt,
        FilterOp::LtEq,
        FilterOp::Gt,
        FilterOp::GtEq,
        FilterOp::In,
        FilterOp::Between,
        FilterOp::Contains,
        FilterOp::StartsWith,
        FilterOp::EndsWith,
        FilterOp::IsNull,
        FilterOp::IsNotNull,
    ];
    for op in all_ops {
        assert_eq!(serde_json::to_value(op).unwrap(), json!(op.name()));
    }
    let all_aggregates =
        [Aggregate::Count, Aggregate::CountDistinct, Aggregate::Sum, Aggregate::Avg, Aggregate::Min, Aggregate::Max];
    for agg in all_aggregates {
        assert_eq!(serde_json::to_value(agg).unwrap(), json!(agg.name()));
    }
}
