#!/usr/bin/env python3
"""dialect-survey.py: runs SQL written the way LLMs and analysts write it (DuckDB- and
PostgreSQL-flavoured) over the curated datasets, through the real sandbox
(`runner-host run`), and prints docs/dialect-survey.md: which forms run, which are
refused, and with what message.

Usage: scripts/dialect-survey.py [RUNNER_HOST] > docs/dialect-survey.md
(default RUNNER_HOST: $CARGO_TARGET_DIR/release/runner-host or target/release/runner-host)
"""
import json, os, subprocess, sys

QUERIES = [
    # (dataset, what it tries, sql)
    ("support", "top 10 by a column with NULLs", "SELECT ticket_id, csat_score FROM tickets ORDER BY csat_score DESC LIMIT 10"),
    ("support", "average as SUM/COUNT", "SELECT category, SUM(resolution_time_hours) / COUNT(*) AS avg_h FROM tickets GROUP BY category"),
    ("support", "integer ratio", "SELECT SUM(CASE WHEN sla_met THEN 1 ELSE 0 END) / COUNT(*) AS sla_rate FROM tickets"),
    ("support", "percentage with 100.0", "SELECT category, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct FROM tickets GROUP BY category ORDER BY pct DESC"),
    ("support", "cast to int", "SELECT CAST(AVG(csat_score) AS INTEGER) FROM tickets"),
    ("support", "::int shorthand", "SELECT AVG(resolution_time_hours)::int FROM tickets"),
    ("support", "FROM-first", "FROM tickets LIMIT 3"),
    ("support", "FROM-first with WHERE", "FROM tickets WHERE priority = 'High' LIMIT 3"),
    ("support", "ORDER BY ALL", "SELECT category, priority FROM tickets GROUP BY ALL ORDER BY ALL"),
    ("support", "GROUP BY alias", "SELECT category AS c, COUNT(*) n FROM tickets GROUP BY c ORDER BY n DESC"),
    ("support", "WHERE on a select alias", "SELECT ticket_id, resolution_time_hours / 24 AS days FROM tickets WHERE days > 5 LIMIT 5"),
    ("support", "HAVING on an alias", "SELECT agent_id, COUNT(*) AS n FROM tickets GROUP BY agent_id HAVING n > 100 ORDER BY n DESC"),
    ("support", "QUALIFY", "SELECT agent_id, category, COUNT(*) n FROM tickets GROUP BY 1, 2 QUALIFY ROW_NUMBER() OVER (PARTITION BY category ORDER BY n DESC) = 1"),
    ("support", "window top-1 per group", "SELECT * FROM (SELECT agent_id, category, COUNT(*) n, ROW_NUMBER() OVER (PARTITION BY category ORDER BY COUNT(*) DESC) rn FROM tickets GROUP BY 1, 2) WHERE rn = 1"),
    ("support", "DESCRIBE", "DESCRIBE tickets"),
    ("support", "SHOW TABLES", "SHOW TABLES"),
    ("support", "information_schema.columns", "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'tickets'"),
    ("support", "PRAGMA table_info", "PRAGMA table_info('tickets')"),
    ("support", "date_trunc month", "SELECT date_trunc('month', created_at) AS m, COUNT(*) FROM tickets GROUP BY 1 ORDER BY 1"),
    ("support", "strftime", "SELECT strftime(created_at, '%Y-%m') AS m, COUNT(*) FROM tickets GROUP BY 1 ORDER BY 1"),
    ("support", "to_char PostgreSQL format", "SELECT to_char(created_at, 'YYYY-MM') AS m, COUNT(*) FROM tickets GROUP BY 1 ORDER BY 1"),
    ("support", "EXTRACT", "SELECT EXTRACT(YEAR FROM created_at) y, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "year()", "SELECT year(created_at) y, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "date_part", "SELECT date_part('dow', created_at) d, COUNT(*) FROM tickets GROUP BY 1 ORDER BY 1"),
    ("support", "dayname", "SELECT dayname(created_at) d, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "date_diff DuckDB", "SELECT AVG(date_diff('hour', created_at, resolved_at)) FROM tickets"),
    ("support", "DATEDIFF bare part", "SELECT AVG(DATEDIFF(day, created_at, resolved_at)) FROM tickets"),
    ("support", "timestamp subtraction", "SELECT AVG(resolved_at - created_at) FROM tickets"),
    ("support", "epoch of an interval", "SELECT AVG(EXTRACT(EPOCH FROM resolved_at - created_at) / 3600) FROM tickets"),
    ("support", "INTERVAL arithmetic", "SELECT COUNT(*) FROM tickets WHERE created_at >= TIMESTAMP '2025-10-01' - INTERVAL '30 days'"),
    ("support", "date_add", "SELECT date_add(created_at, INTERVAL 1 DAY) FROM tickets LIMIT 1"),
    ("support", "now() and CURRENT_DATE", "SELECT COUNT(*) FROM tickets WHERE created_at < now() AND CAST(created_at AS DATE) <= CURRENT_DATE"),
    ("support", "timestamp literal without seconds", "SELECT COUNT(*) FROM tickets WHERE created_at > '2025-10-01 10:00'"),
    ("support", "count_if", "SELECT count_if(sla_met) AS met, count_if(NOT sla_met) AS missed FROM tickets"),
    ("support", "FILTER clause", "SELECT COUNT(*) FILTER (WHERE sla_met) FROM tickets"),
    ("support", "median and quantile_cont", "SELECT median(resolution_time_hours), quantile_cont(resolution_time_hours, 0.9) FROM tickets"),
    ("support", "percentile_cont WITHIN GROUP", "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_time_hours) FROM tickets"),
    ("support", "quantile (DuckDB, discrete)", "SELECT quantile(resolution_time_hours, 0.5) FROM tickets"),
    ("support", "approx_percentile_cont", "SELECT approx_percentile_cont(resolution_time_hours, 0.5) FROM tickets"),
    ("support", "stddev and variance", "SELECT stddev(csat_score), variance(csat_score) FROM tickets"),
    ("support", "mode()", "SELECT mode(category) FROM tickets"),
    ("support", "arg_max", "SELECT arg_max(agent_id, resolution_time_hours) FROM tickets"),
    ("support", "string_agg", "SELECT string_agg(DISTINCT category, ', ') FROM tickets"),
    ("support", "group_concat", "SELECT group_concat(DISTINCT channel) FROM tickets"),
    ("support", "list / array_agg", "SELECT category, list(DISTINCT channel) FROM tickets GROUP BY 1"),
    ("support", "ILIKE", "SELECT COUNT(*) FROM tickets WHERE category ILIKE 'bill%'"),
    ("support", "regexp_matches (DuckDB)", "SELECT COUNT(*) FROM tickets WHERE regexp_matches(channel, '^E')"),
    ("support", "~ operator", "SELECT COUNT(*) FROM tickets WHERE channel ~ '^E'"),
    ("support", "regexp_extract", "SELECT regexp_extract(created_at::varchar, '(\\d{4})', 1) y, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "string slice", "SELECT category[1:3] AS c3, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "left()", "SELECT left(category, 3), COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "negative-length substring", "SELECT substring(category, 3, -1) FROM tickets LIMIT 1"),
    ("support", "|| concatenation", "SELECT category || ' / ' || priority AS k, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "len()", "SELECT len(category), COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "COALESCE and NULLIF", "SELECT COALESCE(csat_score, 0), NULLIF(priority, 'Low') FROM tickets LIMIT 3"),
    ("support", "IIF", "SELECT iif(sla_met, 'yes', 'no') FROM tickets LIMIT 1"),
    ("support", "CASE", "SELECT CASE WHEN csat_score >= 4 THEN 'good' ELSE 'other' END k, COUNT(*) FROM tickets GROUP BY 1"),
    ("support", "integer division //", "SELECT resolution_time_hours::int // 24 AS days, COUNT(*) FROM tickets GROUP BY 1 ORDER BY 1"),
    ("support", "CTE", "WITH t AS (SELECT category, COUNT(*) n FROM tickets GROUP BY 1) SELECT * FROM t ORDER BY n DESC"),
    ("support", "GENERATE_SERIES upper case", "SELECT * FROM GENERATE_SERIES(1, 3)"),
    ("support", "UNNEST of a list", "SELECT UNNEST([1, 2, 3]) AS x"),
    ("support", "list slice with omitted bound", "SELECT [1, 2, 3, 4][2:] AS tail"),
    ("support", "->> on JSON text", "SELECT '{\"a\": {\"b\": 1}}' ->> 'a' AS a"),
    ("support", "json_extract", "SELECT json_extract('{\"a\": 1}', '$.a')"),
    ("support", "LIMIT with OFFSET", "SELECT ticket_id FROM tickets ORDER BY ticket_id LIMIT 5 OFFSET 10"),
    ("support", "SELECT * EXCLUDE", "SELECT * EXCLUDE (agent_id, channel) FROM tickets LIMIT 1"),
    ("support", "typeof", "SELECT typeof(csat_score) FROM tickets LIMIT 1"),
    ("support", "TRY_CAST", "SELECT TRY_CAST(category AS INT) FROM tickets LIMIT 1"),
    ("ecommerce", "join and revenue", "SELECT o.status, SUM(i.quantity * i.price * (1 - i.discount)) AS revenue FROM orders o JOIN order_items i USING (order_id) GROUP BY 1 ORDER BY 2 DESC"),
    ("ecommerce", "return rate", "SELECT AVG(CASE WHEN returned THEN 1 ELSE 0 END) AS rate FROM orders"),
    ("ecommerce", "monthly totals with date_trunc", "SELECT date_trunc('month', CAST(order_date AS DATE)) m, SUM(total) FROM orders GROUP BY 1 ORDER BY 1"),
    ("ecommerce", "NOT IN subquery", "SELECT COUNT(*) FROM inventory WHERE product_id NOT IN (SELECT product_id FROM order_items)"),
    ("ecommerce", "running total", "SELECT order_date, SUM(total) OVER (ORDER BY order_date ROWS UNBOUNDED PRECEDING) FROM orders LIMIT 5"),
    ("sensors", "anomalies per zone", "SELECT zone, COUNT(*) FILTER (WHERE anomaly_flag) AS anomalies FROM sensors GROUP BY zone ORDER BY anomalies DESC"),
    ("sensors", "hourly averages", "SELECT date_trunc('hour', timestamp) h, AVG(temperature_c) FROM sensors GROUP BY 1 ORDER BY 1 LIMIT 5"),
    ("sensors", "lag", "SELECT sensor_id, timestamp, temperature_c - LAG(temperature_c) OVER (PARTITION BY sensor_id ORDER BY timestamp) AS delta FROM sensors LIMIT 5"),
    ("sensors", "corr", "SELECT corr(temperature_c, humidity_pct) FROM sensors"),
    ("sensors", "a column named like a keyword", "SELECT \"timestamp\", status FROM sensors LIMIT 2"),
]


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    runner = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "release", "runner-host")
    here = os.path.dirname(os.path.abspath(__file__))
    datasets = os.path.join(here, "..", "datasets")
    rows, ran = [], 0
    for dataset, what, sql in QUERIES:
        proc = subprocess.run([runner, "run", "--datasets-dir", datasets, "--dataset", dataset, "--sql", sql],
                              capture_output=True, text=True, timeout=120)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"status": "error", "error": {"type": "NO_RESULT", "message": proc.stderr.strip()[:200]}}
        if result.get("status") == "success":
            ran += 1
            first = json.dumps(result["rows"][0] if result["rows"] else [], ensure_ascii=False)
            outcome = f"runs; first row {first[:60]}"
        else:
            error = result.get("error") or {}
            message = " ".join(str(error.get("message", "")).split())
            outcome = f"**{error.get('type')}**: {message[:220]}"
        cell = lambda text: text.replace("|", "\\|")
        rows.append(f"| {dataset} | {cell(what)} | `{cell(sql)}` | {cell(outcome)} |")
    print("# Dialect survey\n")
    print("SQL written the way LLMs and analysts write it (much of it DuckDB- or PostgreSQL-flavoured),")
    print("run over the curated datasets through the real sandbox by `scripts/dialect-survey.py`, which")
    print("prints this page. It measures which spellings matter; docs/sql.md documents the dialect.\n")
    print(f"**{ran} of {len(QUERIES)} ran**; every other one is refused with a message naming what to write.\n")
    print("| dataset | what | SQL | outcome |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
