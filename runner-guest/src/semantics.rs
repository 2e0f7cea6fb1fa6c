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
//! - NULLs sort last in both directions, as in DuckDB, so `ORDER BY x DESC LIMIT 10`
//!   is a top 10 of values (set in the session's parser options, [`NULL_ORDERING`]).
//!
//! [`Semantics`] is an analyzer rule that runs before DataFusion's type coercion, so
//! coercion sees the rewritten types and types everything above them accordingly.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::functions::math::expr_fn::round;
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator};
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

/// Types whose cast to an integer DataFusion would truncate.
fn rounds(data_type: DataType) -> bool {
    match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => true,
        DataType::Decimal32(_, scale) | DataType::Decimal64(_, scale) => scale > 0,
        DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => scale > 0,
        _ => false,
    }
}
