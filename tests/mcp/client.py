"""Drives csv-analyst's MCP server with the official Python SDK (`mcp`) and prints,
as one JSON object on stdout, what a client sees: the tools and their annotations,
each tool's answer, the resources, and how bad calls are refused. The Rust
end-to-end test (tests/tests/e2e/mcp.rs) runs it against the real binary, over
streamable HTTP and over stdio, and checks the report.

usage: client.py http URL [--token T] [--mode legacy|auto]
       client.py stdio BINARY [--mode legacy|auto]   (the environment is passed on)
"""

import argparse
import asyncio
import json
import os
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def tool_result(result):
    text = "".join(getattr(block, "text", "") for block in result.content)
    return {"is_error": bool(result.is_error), "structured": result.structured_content, "text": text}


async def call(client, name, arguments):
    """A tool call: its result, or the protocol error it raised."""
    try:
        return tool_result(await client.call_tool(name, arguments))
    except Exception as error:  # a protocol error: the SDK raises it
        return {"protocol_error": f"{type(error).__name__}: {error}"}


async def scenario(client):
    report = {"protocol_version": client.protocol_version}
    tools = (await client.list_tools()).tools
    report["tools"] = {
        tool.name: {
            "read_only": tool.annotations.read_only_hint if tool.annotations else None,
            "open_world": tool.annotations.open_world_hint if tool.annotations else None,
            "input_properties": sorted((tool.input_schema or {}).get("properties", {}).keys()),
            "output_schema": tool.output_schema is not None,
            "plan_schema_title": ((tool.input_schema or {}).get("properties", {}).get("plan") or {}).get("title"),
        }
        for tool in tools
    }
    report["list_datasets"] = await call(client, "list_datasets", {})
    report["describe_dataset"] = await call(client, "describe_dataset", {"dataset_id": "support"})
    report["run_sql"] = await call(
        client,
        "run_sql",
        {"dataset_id": "support", "sql": "SELECT priority, COUNT(*) AS n FROM tickets GROUP BY priority ORDER BY priority"},
    )
    report["run_sql_max_rows"] = await call(
        client, "run_sql", {"dataset_id": "support", "sql": "SELECT ticket_id FROM tickets", "max_rows": 3}
    )
    report["run_sql_write"] = await call(client, "run_sql", {"dataset_id": "support", "sql": "DELETE FROM tickets"})
    report["run_sql_ddl"] = await call(client, "run_sql", {"dataset_id": "support", "sql": "CREATE TABLE x AS SELECT 1"})
    report["run_sql_bad_column"] = await call(client, "run_sql", {"dataset_id": "support", "sql": "SELECT nope FROM tickets"})
    report["run_sql_unknown_dataset"] = await call(client, "run_sql", {"dataset_id": "nope", "sql": "SELECT 1"})
    report["run_sql_other_dataset"] = await call(client, "run_sql", {"dataset_id": "ecommerce", "sql": "SELECT 1 AS one"})
    report["run_plan"] = await call(
        client,
        "run_plan",
        {"dataset_id": "support", "plan": {"table": "tickets", "select": [{"agg": "count", "as": "n"}]}},
    )
    report["run_plan_bad"] = await call(client, "run_plan", {"dataset_id": "support", "plan": {"table": "nope"}})
    run_id = (report["run_sql"].get("structured") or {}).get("run_id")
    report["get_run"] = await call(client, "get_run", {"run_id": run_id or "missing"})
    if "ask" in report["tools"]:
        report["ask"] = await call(client, "ask", {"dataset_id": "support", "question": "How many tickets are there?"})
    report["get_run_unknown"] = await call(client, "get_run", {"run_id": "00000000-0000-0000-0000-000000000000"})
    report["unknown_tool"] = await call(client, "drop_everything", {})
    report["missing_arguments"] = await call(client, "run_sql", {"dataset_id": "support"})
    report["wrong_types"] = await call(client, "run_sql", {"dataset_id": 7, "sql": ["SELECT 1"]})
    report["resources"] = sorted(r.uri for r in (await client.list_resources()).resources)
    report["templates"] = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    contents = (await client.read_resource("csv-analyst://datasets/support/schema")).contents
    report["schema_resource"] = json.loads(contents[0].text)
    try:
        await client.read_resource("csv-analyst://datasets/nope/schema")
        report["unknown_resource"] = "read"
    except Exception as error:
        report["unknown_resource"] = f"{type(error).__name__}: {error}"
    # A hundred calls at once: each is answered (rows, or a clear tool error).
    many = await asyncio.gather(
        *[call(client, "run_sql", {"dataset_id": "support", "sql": f"SELECT {i} AS i"}) for i in range(100)]
    )
    report["hundred_calls"] = {
        "succeeded": sum(1 for r in many if r.get("is_error") is False),
        "tool_errors": sorted({r["text"].split(":")[0] for r in many if r.get("is_error")}),
        "protocol_errors": [r["protocol_error"] for r in many if "protocol_error" in r][:3],
    }
    return report


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["http", "stdio"])
    parser.add_argument("target")
    parser.add_argument("--token")
    parser.add_argument("--mode", default="legacy")
    args = parser.parse_args()
    if args.transport == "http":
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        http = httpx2.AsyncClient(headers=headers, timeout=120)
        server = streamable_http_client(args.target, http_client=http)
    else:
        server = StdioServerParameters(command=args.target, args=["mcp"], env=dict(os.environ))
    async with Client(server, mode=args.mode, read_timeout_seconds=120) as client:
        report = await scenario(client)
    json.dump(report, sys.stdout)


asyncio.run(main())
