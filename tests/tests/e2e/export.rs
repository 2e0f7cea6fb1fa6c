//! `GET /runs/{id}/result.csv`: the whole recorded result, streamed, marked when the
//! run itself was truncated, with nested values as JSON in their cells.

use serde_json::{Value, json};

use crate::support::{TestServer, client};

/// The CSV of `run_id`: status, `X-Row-Count`, `X-Truncated` and the parsed records.
async fn export(server: &TestServer, run_id: &str) -> (u16, String, String, Vec<Vec<String>>) {
    let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (row_count, truncated) = (header("x-row-count"), header("x-truncated"));
    let body = response.text().await.unwrap();
    let records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (status, row_count, truncated, records)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_is_the_whole_recorded_result_and_says_when_the_run_was_cut() {
    let server = TestServer::start(|c| {
        c.max_rows = 5_000;
        c.max_output_bytes = 8 * 1024 * 1024;
    })
    .await;

    // 6,000 rows asked, MAX_ROWS 5,000 kept: every kept row is exported (far past the
    // old 200 rows / 64 KiB), and the file says it is not the whole answer.
    let sql = "SELECT value AS n, 'row ' || CAST(value AS VARCHAR) AS label FROM generate_series(1, 6000) ORDER BY n";
    let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "{body}");
    assert_eq!(body["result"]["truncated"], true, "{}", body["result"]["row_count"]);
    let run_id = body["run_id"].as_str().unwrap();
    let (status, row_count, truncated, records) = export(&server, run_id).await;
    assert_eq!((status, row_count.as_str(), truncated.as_str()), (200, "5000", "true"));
    assert_eq!(records.len(), 5_001, "a header and 5,000 rows");
    assert_eq!(records[0], ["n", "label"]);
    assert_eq!(records[1], ["1", "row 1"]);
    assert_eq!(records[5_000], ["5000", "row 5000"]);

    // A whole answer: nested values are JSON in their cells, NULL is an empty field and
    // an empty string a quoted one; the file matches the run's JSON rows.
    let sql = "SELECT value AS n, make_array(value, value * 10) AS pair, named_struct('k', value, 'tag', 'a,b') AS s, \
               CASE WHEN value = 2 THEN NULL ELSE '' END AS blank FROM generate_series(1, 3) ORDER BY n";
    let (code, body) = server.post_run(json!({"dataset_id": "support", "sql": sql})).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("succeeded")), "{body}");
    assert_eq!(body["result"]["rows"][0], json!([1, [1, 10], {"k": 1, "tag": "a,b"}, ""]));
    assert_eq!(body["result"]["rows"][1][3], Value::Null);
    let run_id = body["run_id"].as_str().unwrap();
    let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
    assert_eq!(response.headers()["x-truncated"], "false");
    assert_eq!(
        response.text().await.unwrap(),
        "n,pair,s,blank\n\
         1,\"[1,10]\",\"{\"\"k\"\":1,\"\"tag\"\":\"\"a,b\"\"}\",\"\"\n\
         2,\"[2,20]\",\"{\"\"k\"\":2,\"\"tag\"\":\"\"a,b\"\"}\",\n\
         3,\"[3,30]\",\"{\"\"k\"\":3,\"\"tag\"\":\"\"a,b\"\"}\",\"\"\n"
    );
    let (_, _, _, records) = export(&server, run_id).await;
    for (i, record) in records.iter().skip(1).enumerate() {
        let row = &body["result"]["rows"][i];
        assert_eq!(serde_json::from_str::<Value>(&record[1]).unwrap(), row[1], "row {i}");
        assert_eq!(serde_json::from_str::<Value>(&record[2]).unwrap(), row[2], "row {i}");
    }

    // A run with no result to give is a 400 with a typed error, not an empty file.
    let (_, body) =
        server.post_run(json!({"dataset_id": "support", "sql": "SELECT no_such_column FROM tickets"})).await;
    assert_eq!(body["status"], "failed", "{body}");
    let (code, error) = server.get(&format!("/runs/{}/result.csv", body["run_id"].as_str().unwrap())).await;
    assert_eq!(code, 400, "{error}");
    assert_eq!(error["error"]["type"], "INVALID_REQUEST", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("no result to download (status failed)"), "{error}");
    let (code, error) = server.get("/runs/no-such-run/result.csv").await;
    assert_eq!((code, error["error"]["type"].as_str()), (404, Some("RUN_NOT_FOUND")), "{error}");
}
