//! DuckDB and PostgreSQL spellings through `POST /runs` (docs/sql.md, "Functions"):
//! the functions the guest adds (`date_diff`, `regexp_extract`, `div`, `->`/`->>`),
//! the names it maps onto DataFusion's, select-list aliases in WHERE where they can
//! mean one thing only, and refusals that name what to write instead. Every answer
//! exact; those over the dataset are checked against a second, plain query.

use serde_json::json;

use crate::dialect::{failure, rows};
use crate::support::{TestServer, assert_close, num};

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_and_postgresql_spellings_answer_exactly() {
    let server = TestServer::start(|_| {}).await;
    let s = &server;

    // date_diff counts boundaries, as DuckDB does; the part may be a bare word.
    let sql = "SELECT date_diff('month', DATE '2024-01-31', DATE '2024-02-01') a, \
               datediff('day', '2024-01-01', '2024-03-01') b, \
               DATEDIFF(day, TIMESTAMP '2024-01-01 23:00:00', TIMESTAMP '2024-01-02 01:00:00') c, \
               date_diff('hour', TIMESTAMP '2024-01-01 10:59:00', TIMESTAMP '2024-01-01 11:00:00') d, \
               date_diff('year', DATE '2024-12-31', DATE '2025-01-01') e, \
               date_diff('week', DATE '2024-01-01', DATE '2024-01-14') f, \
               date_diff('day', DATE '2024-03-01', DATE '2024-02-01') g";
    assert_eq!(rows(s, "support", sql).await, json!([[1, 60, 1, 1, 1, 1, -29]]));
    let resolved = rows(s, "support", "SELECT count(*) FROM tickets WHERE resolved_at IS NOT NULL").await;
    let diffs = rows(s, "support", "SELECT count(date_diff('hour', created_at, resolved_at)) FROM tickets").await;
    assert_eq!(diffs, resolved);
    assert!(resolved[0][0].as_i64().unwrap() > 0);

    // regexp_extract: the match or a group; '' when nothing matches.
    let sql = "SELECT regexp_extract('order-1234-x', '(\\d+)', 1) a, regexp_extract('order-1234-x', '[a-z]+') b, \
               regexp_extract('none', '(\\d+)', 1) c, regexp_extract(NULL, 'x') d";
    assert_eq!(rows(s, "support", sql).await, json!([["1234", "order", "", null]]));

    // a // b and div(a, b) divide toward zero; by zero, NULL.
    let sql = "SELECT 7 // 2 a, -7 // 2 b, div(7, 2) c, 7.5 // 2 d, 1 // 0 e";
    assert_eq!(rows(s, "support", sql).await, json!([[3, -3, 3, 3.0, null]]));

    // Subscripts: a string's are substrings (from 1, both ends included); an omitted
    // bound runs to the end, for lists too.
    let sql = "SELECT s[2:4] a, s[2:] b, s[:2] c, s[1] d, s[-1] e, s[-3:] f, s[4:2] g, l[2:] h, l[:2] i, l[2] j \
               FROM (VALUES ('héllo', make_array(1, 2, 3, 4))) t(s, l)";
    let answer = json!([["éll", "éllo", "hé", "h", "o", "llo", "", [2, 3, 4], [1, 2], 2]]);
    assert_eq!(rows(s, "support", sql).await, answer);
    let sliced = rows(s, "support", "SELECT category[1:3] FROM tickets ORDER BY ticket_id LIMIT 5").await;
    let substr = rows(s, "support", "SELECT substr(category, 1, 3) FROM tickets ORDER BY ticket_id LIMIT 5").await;
    assert_eq!(sliced, substr);

    // -> and ->> over JSON text, keys and positions (negative from the end).
    let doc = r#"'{"a": {"b": [10, 20]}, "s": "x", "n": null}'"#;
    let sql = format!(
        "SELECT {doc} ->> 's' a, {doc} -> 'a' ->> 'b' b, {doc} -> 'a' -> 'b' ->> 1 c, {doc} ->> 'n' d, \
         {doc} -> 'n' e, {doc} ->> 'missing' f, '[1, 2, 3]' ->> -1 g, json_extract_path_text({doc}, 'a', 'b', '0') h"
    );
    assert_eq!(rows(s, "support", &sql).await, json!([["x", "[10,20]", "20", null, "null", null, "3", "10"]]));
    // The arrows bind tighter than comparisons, as in PostgreSQL.
    let docs = r#"(VALUES ('{"a": "x", "n": 1}'), ('{"a": "y", "n": 2}')) t(j)"#;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE j ->> 'a' = 'x') a, count_if(j ->> 'a' IS NULL) b, \
                       count_if(2 = j -> 'n') c, count_if(j -> 'n' = j -> 'n') d, count_if(j ->> 'a' IN ('x', 'y')) e \
                       FROM {docs}"
    );
    assert_eq!(rows(s, "support", &sql).await, json!([[1, 0, 1, 2, 2]]));

    // Names DataFusion has under another spelling; PostgreSQL's to_char formats.
    let sql = "SELECT strftime(DATE '2024-03-05', '%Y/%m') a, to_char(DATE '2024-03-05', 'YYYY-MM-DD') b, \
               to_char(TIMESTAMP '2024-03-05 14:07:09', 'HH24:MI:SS') c, year(DATE '2024-03-05') d, \
               month(DATE '2024-03-05') e, dayname(DATE '2024-03-05') f, string_split('a,b', ',') g, \
               len('héllo') h, regexp_matches('abc', 'b') i, to_char(DATE '2024-03-05', 'Mon DD \"of\" YYYY') j, \
               to_char(DATE '2024-03-05', 'FMDD/FMMM/YYYY') k";
    let answer = json!([[
        "2024/03",
        "2024-03-05",
        "14:07:09",
        2024,
        3,
        "Tuesday",
        ["a", "b"],
        5,
        true,
        "Mar 05 of 2024",
        "5/3/2024"
    ]]);
    assert_eq!(rows(s, "support", sql).await, answer);
    let values = "(VALUES (1.0), (2.0), (3.0), (4.0), (NULL)) t(x)";
    let sql = format!("SELECT count_if(x > 1) a, variance(x) b, median(x) c FROM {values}");
    let answer = rows(s, "support", &sql).await;
    assert_eq!((&answer[0][0], &answer[0][2]), (&json!(3), &json!(2.5)), "{answer}");
    assert_close(num(&answer[0][1]), 5.0 / 3.0, "variance is the sample variance");
    let sql = "SELECT group_concat(x) FROM (VALUES ('a'), ('b')) t(x)";
    assert_eq!(rows(s, "support", sql).await, json!([["a,b"]]));
    let by_count_if = rows(s, "support", "SELECT count_if(priority = 'High') FROM tickets").await;
    let by_where = rows(s, "support", "SELECT count(*) FROM tickets WHERE priority = 'High'").await;
    assert_eq!(by_count_if, by_where);
    assert!(by_where[0][0].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_select_alias_in_where_is_used_only_where_it_means_one_thing() {
    let server = TestServer::start(|_| {}).await;
    let s = &server;

    // No column is called `doubled`: WHERE means the select-list expression.
    let alias = "SELECT resolution_time_hours * 2 AS doubled FROM tickets WHERE doubled > 10 ORDER BY doubled LIMIT 5";
    let spelled = "SELECT resolution_time_hours * 2 AS doubled FROM tickets WHERE resolution_time_hours * 2 > 10 \
                   ORDER BY doubled LIMIT 5";
    let answer = rows(s, "support", spelled).await;
    assert_eq!(answer.as_array().unwrap().len(), 5);
    assert_eq!(rows(s, "support", alias).await, answer);

    // `category` is a column: WHERE means the column, as in SQL, not the alias.
    let shadowing = "SELECT priority AS category, count(*) n FROM tickets WHERE category = 'Billing' GROUP BY priority \
                     ORDER BY category";
    let plain =
        "SELECT priority, count(*) n FROM tickets WHERE category = 'Billing' GROUP BY priority ORDER BY priority";
    let answer = rows(s, "support", plain).await;
    assert!(answer.as_array().unwrap().len() > 1, "{answer}");
    assert_eq!(rows(s, "support", shadowing).await, answer);

    // In a query with a subquery the name could mean more than one thing: an error.
    let nested = "SELECT resolution_time_hours * 2 AS doubled FROM tickets \
                  WHERE doubled > (SELECT avg(resolution_time_hours) FROM tickets)";
    let (error_type, message) = failure(s, "support", nested).await;
    assert_eq!(error_type, "SQL_PLAN_ERROR", "{message}");
    assert!(message.contains("doubled"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_does_not_exist_here_is_refused_with_what_to_write_instead() {
    let server = TestServer::start(|_| {}).await;
    let s = &server;
    let cases = [
        ("SELECT arg_max(x, y) FROM (VALUES (1, 2)) t(x, y)", "SQL_PLAN_ERROR", "write ORDER BY y DESC LIMIT 1"),
        ("SELECT date_add(DATE '2024-01-01', 1)", "SQL_PLAN_ERROR", "write t + INTERVAL '1 day' instead"),
        ("SELECT frobnicate(1)", "SQL_PLAN_ERROR", "docs/sql.md lists the DuckDB and PostgreSQL names"),
        ("SELECT to_char(DATE '2024-01-01', 'Q')", "SQL_PLAN_ERROR", "formats use strftime's codes"),
        ("SELECT to_char(DATE '2024-01-01', 'YYYY-Q')", "SQL_PLAN_ERROR", "has 'Q', which is no field here"),
        ("SELECT quantile(x, 0.5) FROM (VALUES (1.0)) t(x)", "SQL_PLAN_ERROR", "write percentile_cont(x, q)"),
        (
            "SELECT date_diff('fortnight', DATE '2024-01-01', DATE '2024-02-01')",
            "SQL_EXECUTION_ERROR",
            "write one of year",
        ),
        (r"SELECT regexp_extract('a1', '(\d)', 2)", "SQL_EXECUTION_ERROR", "has no group 2"),
        ("SELECT '{\"a\": 1}' ->> true", "SQL_PLAN_ERROR", "a JSON key is text or a position"),
        ("SELECT 'not json' ->> 'a'", "SQL_EXECUTION_ERROR", "is not JSON"),
        ("SELECT substr('hello', 3, -1)", "SQL_EXECUTION_ERROR", "right(s, n)"),
        (
            "SELECT count(*) FROM tickets WHERE created_at > '2025-10-01 10:00'",
            "SQL_EXECUTION_ERROR",
            "'2025-10-01 10:00' as 'YYYY-MM-DD HH:MM:SS' (seconds included)",
        ),
    ];
    for (sql, error_type, instead) in cases {
        let (actual, message) = failure(s, "support", sql).await;
        assert_eq!(actual, error_type, "{sql}: {message}");
        assert!(message.contains(instead), "{sql}: {message}");
    }
}
