//! Where csv-analyst's SQL means something other than DataFusion's, and why.
//!
//! People and models write SQL expecting DuckDB's or PostgreSQL's answers; where
//! DataFusion's differ and the difference is silent, the answer is wrong without
//! anyone noticing. So, documented in docs/sql.md:
//! - a float or decimal cast to an integer type rounds to the nearest integer,
//!   halves away from zero (`CAST(2.7 AS INT)` = 3, `CAST(-2.5 AS INT)` = -3);
//!   DataFusion truncates;
//! - `/` between two integers is a fraction (`7 / 2` = 3.5, `SUM(a) / COUNT(*)` an
//!   average), as in DuckDB; DataFusion and PostgreSQL truncate. A division by zero
//!   is then NULL (DuckDB's answer), not an error;
//! - a string's subscript is a substring, as in DuckDB: `s[2:4]` is characters 2 to 4
//!   (from 1, both ends included), `s[3]` the third, `s[-2:]` the last two;
//!   DataFusion slices lists only
//!   ([`StringSubscripts`], an expression planner ahead of DataFusion's own);
//! - NULLs sort last in both directions, as in DuckDB, so `ORDER BY x DESC LIMIT 10`
//!   is a top 10 of values (set in the session's parser options, [`NULL_ORDERING`]).
//!
//! [`Semantics`] is an analyzer rule that runs before DataFusion's type coercion, so
//! coercion sees the rewritten types and types everything above them accordingly.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::functions::core::expr_fn::greatest;
use datafusion::functions::math::expr_fn::round;
use datafusion::functions::unicode::expr_fn::char_length;
use datafusion::functions::unicode::substr;
use datafusion::logical_expr::expr::{Cast, GetFieldAccess, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawFieldAccessExpr};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, lit, when};
use datafusion::optimizer::analyzer::{Analyzer, AnalyzerRule};

/// The parser's default null ordering: NULLs last, ascending or descending.
pub const NULL_ORDERING: &str = "nulls_last";

/// DataFusion's analyzer rules with [`Semantics`] just before type coercion.
pub fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules = Analyzer::new().rules;
    let coercion = rules.iter().position(|rule| rule.name() == "type_coercion").unwrap_or(rules.len());
    rules.insert(coercion, Arc::new(Semantics));
    rules
}

/// Rounding casts to integers and fractional integer division.
#[derive(Debug)]
pub struct Semantics;

impl AnalyzerRule for Semantics {
    fn name(&self) -> &str {
        "csv_analyst_semantics"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(rewrite_node).map(|t| t.data)
    }
}

fn rewrite_node(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    if matches!(plan, LogicalPlan::TableScan(_)) {
        return Ok(Transformed::no(plan));
    }
    let schema = merge_schema(&plan.inputs());
    let names = NamePreserver::new(&plan);
    let rewritten = plan.map_expressions(|expr| {
        let name = names.save(&expr);
        expr.transform_up(|e| rewrite_expr(e, &schema)).map(|t| t.update_data(|e| name.restore(e)))
    })?;
    if !rewritten.transformed {
        return Ok(rewritten);
    }
    // The types changed: the node's schema follows them (a VALUES list keeps the
    // schema it was built with, so it is built again).
    rewritten.map_data(|plan| match plan {
        LogicalPlan::Values(values) => LogicalPlanBuilder::values(values.values)?.build(),
        plan => plan.recompute_schema(),
    })
}

fn rewrite_expr(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let type_of = |e: &Expr| e.get_type(schema).ok();
    Ok(match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Divide, right })
            if type_of(&left).is_some_and(|t| t.is_integer()) && type_of(&right).is_some_and(|t| t.is_integer()) =>
        {
            let as_double = |e: Box<Expr>| Box::new(Expr::Cast(Cast::new(e, DataType::Float64)));
            Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(as_double(left), Operator::Divide, as_double(right))))
        }
        Expr::Cast(Cast { expr, field }) if field.data_type().is_integer() && type_of(&expr).is_some_and(rounds) => {
            Transformed::yes(Expr::Cast(Cast { expr: Box::new(round(vec![*expr])), field }))
        }
        Expr::TryCast(TryCast { expr, field })
            if field.data_type().is_integer() && type_of(&expr).is_some_and(rounds) =>
        {
            Transformed::yes(Expr::TryCast(TryCast { expr: Box::new(round(vec![*expr])), field }))
        }
        other => Transformed::no(other),
    })
}

/// Plans `s[i]` and `s[a:b]` on a string as `substr`; lists are left to DataFusion.
#[derive(Debug)]
pub struct StringSubscripts;

impl ExprPlanner for StringSubscripts {
    fn plan_field_access(
        &self,
        access: RawFieldAccessExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawFieldAccessExpr>> {
        if !access.expr.get_type(schema).is_ok_and(is_string) {
            return Ok(PlannerResult::Original(access));
        }
        let RawFieldAccessExpr { field_access, expr: text } = access;
        // A position from 1; a negative one counts from the end (-1 is the last), as
        // in DuckDB and as DataFusion's list subscripts do.
        let position = |k: Expr| -> Result<Expr> {
            when(k.clone().lt(lit(0i64)), char_length(text.clone()) + k.clone() + lit(1i64)).otherwise(k)
        };
        let substring = |start: Expr, length: Expr| {
            PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(
                substr(),
                vec![text.clone(), start, length],
            )))
        };
        Ok(match field_access {
            GetFieldAccess::ListIndex { key } => substring(position(*key)?, lit(1i64)),
            GetFieldAccess::ListRange { start, stop, stride } => {
                if *stride != lit(1i64) {
                    return plan_err!("a string slice takes no step: s[2:4] is characters 2 to 4");
                }
                // s[start:stop], both included; empty when stop comes before start.
                let (start, stop) = (position(*start)?, position(*stop)?);
                let length = greatest(vec![stop - start.clone() + lit(1i64), lit(0i64)]);
                substring(start, length)
            }
            other => PlannerResult::Original(RawFieldAccessExpr { field_access: other, expr: text }),
        })
    }
}

fn is_string(data_type: DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Types whose cast to an integer DataFusion would truncate.
fn rounds(data_type: DataType) -> bool {
    match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => true,
        DataType::Decimal32(_, scale) | DataType::Decimal64(_, scale) => scale > 0,
        DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => scale > 0,
        _ => false,
    }
}
