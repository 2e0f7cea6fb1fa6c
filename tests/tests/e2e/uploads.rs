//! Datasets people bring, end to end: CSV and Parquet files (the Parquet ones written
//! here by pyarrow, `pyarrow-python`) uploaded with `POST /datasets`, typed in the
//! sandbox, joined, kept across a restart of the real binary, deleted; every codec
//! the guest claims; hostile uploads refused with nothing left on disk or listed;
//! someone else's upload unknown to another user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orchestrator::config::ApiKey;
use serde_json::{Value, json};

use crate::support::{BinaryService, TestServer, call, client, require_tool};

const ADMIN: &str = "admin-token-of-the-upload-tests-0123456789";

/// Runs a pyarrow script in `dir` (None when pyarrow-python is missing and skipping
/// is allowed).
fn pyarrow(dir: &Path, script: &str) -> Option<()> {
    let python = require_tool("pyarrow-python")?;
    let script = format!("import pyarrow as pa, pyarrow.parquet as pq, datetime\n{script}");
    let output = Command::new(python).arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    Some(())
}

/// A multipart/form-data body, as browsers and curl send it.
pub(crate) struct Form {
    boundary: String,
    body: Vec<u8>,
}

/// A multipart upload of `files` (name, bytes) as `id`.
pub(crate) fn form(id: &str, files: &[(&str, Vec<u8>)]) -> Form {
    let boundary = "----csv-analyst-test-boundary-7d3f".to_string();
    let mut body = Vec::new();
    let mut field = |disposition: String, bytes: &[u8]| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    field("name=\"id\"".into(), id.as_bytes());
    field("name=\"description\"".into(), b"made by a test");
    for (name, bytes) in files {
        field(format!("name=\"file\"; filename=\"{name}\""), bytes);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Form { boundary, body }
}

pub(crate) async fn upload(url: &str, token: Option<&str>, form: Form) -> (u16, Value) {
    let mut request = client()
        .post(format!("{url}/datasets"))
        .header("content-type", format!("multipart/form-data; boundary={}", form.boundary))
        .body(form.body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn query(url: &str, token: Option<&str>, dataset: &str, sql: &str) -> (u16, Value) {
    call(url, reqwest::Method::POST, "/runs", token, Some(json!({"dataset_id": dataset, "sql": sql}))).await
}

/// The uploaded dataset ids `GET /datasets` lists.
async fn uploaded_ids(url: &str, token: Option<&str>) -> Vec<String> {
    let (status, body) = call(url, reqwest::Method::GET, "/datasets", token, None).await;
    assert_eq!(status, 200, "{body}");
    body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["source"] == "uploaded")
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// `(column, type)` of a table in a dataset view.
fn columns(dataset: &Value, table: &str) -> Vec<(String, String)> {
    let table = dataset["tables"].as_array().unwrap().iter().find(|t| t["name"] == table).unwrap_or_else(|| {
        panic!("no table {table} in {dataset}");
    });
    table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["type"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Waits until UPLOADS_DIR holds exactly `expected` (names), for at most 5 s: a
/// refused upload's staging folder is removed in the background.
async fn assert_uploads_dir(dir: &Path, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        names.sort();
        if names == expected {
            return;
        }
        assert!(Instant::now() < deadline, "UPLOADS_DIR holds {names:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CUSTOMERS: &str = "id,name,signup,vip,score\n1,Ada,2024-01-05,true,9.5\n2,Bob,2024-02-11,false,7\n3,Cy,,TRUE,\n";

/// customers.csv, orders.parquet (zstd) and late.csv (10,000 integers, then `n/a`).
fn shop_files(dir: &Path) -> Option<Vec<(&'static str, Vec<u8>)>> {
    pyarrow(
        dir,
        "t = pa.table({'order_id': pa.array([10, 11, 12, 13], pa.int64()),
                       'customer_id': pa.array([1, 1, 2, 3], pa.int64()),
                       'amount': pa.array([2.5, 4.0, 10.25, 1.0], pa.float64()),
                       'day': pa.array([datetime.date(2024, 3, d) for d in (1, 2, 3, 4)], pa.date32())})
pq.write_table(t, 'orders.parquet', compression='zstd')",
    )?;
    let mut late = String::from("code\n");
    for i in 0..10_000 {
        late.push_str(&format!("{i}\n"));
    }
    late.push_str("n/a\n");
    Some(vec![
        ("customers.csv", CUSTOMERS.as_bytes().to_vec()),
        ("orders.parquet", std::fs::read(dir.join("orders.parquet")).unwrap()),
        ("Late Codes.CSV", late.into_bytes()),
    ])
}

const JOIN: &str = "SELECT c.name, SUM(o.amount) AS spent, COUNT(*) AS n FROM customers c \
                    JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY c.name";

fn join_rows() -> Value {
    json!([["Ada", 6.5, 2], ["Bob", 10.25, 1], ["Cy", 1.0, 1]])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_and_a_parquet_upload_are_typed_joined_kept_across_a_restart_and_deleted() {
    let work = tempfile::tempdir().unwrap();
    let Some(files) = shop_files(work.path()) else { return };
    let store = tempfile::tempdir().unwrap();
    let uploads = store.path().join("uploads");
    let env = [("UPLOADS_DIR", uploads.to_str().unwrap())];
    let service = BinaryService::start(store.path(), &env);
    service.wait_ready().await;

    let (status, created) = upload(&service.url, None, form("shop", &files)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["id"].as_str(), created["source"].as_str()), (Some("shop"), Some("uploaded")));
    assert_eq!(created["owner"], "local");
    assert_eq!(created["description"], "made by a test");
    assert!(created["version_hash"].as_str().unwrap().starts_with("sha256:"), "{created}");
    assert_eq!(
        columns(&created, "customers"),
        pairs(&[("id", "INTEGER"), ("name", "VARCHAR"), ("signup", "DATE"), ("vip", "BOOLEAN"), ("score", "DOUBLE")])
    );
    assert_eq!(
        columns(&created, "orders"),
        pairs(&[("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "DOUBLE"), ("day", "DATE")])
    );
    // Typed from the first records as INTEGER, contradicted by the last: VARCHAR.
    assert_eq!(columns(&created, "late_codes"), pairs(&[("code", "VARCHAR")]));
    let rows: Vec<(String, u64)> = created["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["row_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [("customers".into(), 3), ("orders".into(), 4), ("late_codes".into(), 10_001)]);
    assert_eq!(uploaded_ids(&service.url, None).await, ["shop"]);

    // Queried like a curated dataset: CSV joined with Parquet, types as declared.
    let (status, run) = query(&service.url, None, "shop", JOIN).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["rows"], join_rows());
    let (_, run) = query(&service.url, None, "shop", "SELECT COUNT(*) FROM late_codes WHERE code = 'n/a'").await;
    assert_eq!(run["result"]["rows"], json!([[1]]), "{run}");
    let (_, run) = query(&service.url, None, "shop", "SELECT name FROM customers WHERE vip AND signup IS NULL").await;
    assert_eq!(run["result"]["rows"], json!([["Cy"]]), "{run}");
    // A plan over the Parquet table, and the CSV export of a run on the upload.
    let plan = json!({"table": "orders", "select": [{"agg": "sum", "column": "amount", "as": "total"}],
                      "filters": [{"column": "customer_id", "op": "=", "value": 1}]});
    let body = json!({"dataset_id": "shop", "query_type": "plan", "plan": plan});
    let (status, planned) = call(&service.url, reqwest::Method::POST, "/runs", None, Some(body)).await;
    assert_eq!((status, &planned["result"]["rows"]), (200, &json!([[6.5]])), "{planned}");
    let export = client().get(format!("{}/runs/{}/result.csv", service.url, run["run_id"].as_str().unwrap()));
    let csv = export.send().await.unwrap().text().await.unwrap();
    assert_eq!(csv, "name\nCy\n");
    let (status, schema) = call(&service.url, reqwest::Method::GET, "/datasets/shop/schema", None, None).await;
    assert_eq!(status, 200, "{schema}");
    assert_eq!(schema["tables"][1]["name"], "orders");
    assert_eq!(schema["tables"][1]["row_count"], 4);
    // An id taken by an upload, or by a curated dataset, is refused.
    let (status, body) = upload(&service.url, None, form("shop", &files[..1])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (409, Some("DATASET_EXISTS")), "{body}");
    let (status, body) = upload(&service.url, None, form("support", &files[..1])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (409, Some("DATASET_EXISTS")), "{body}");

    // A restart serves it again, from its manifest and record.
    drop(service);
    let service = BinaryService::start(store.path(), &env);
    service.wait_ready().await;
    assert_eq!(uploaded_ids(&service.url, None).await, ["shop"]);
    let (_, run) = query(&service.url, None, "shop", JOIN).await;
    assert_eq!(run["result"]["rows"], join_rows(), "{run}");

    // Curated datasets cannot be deleted; uploads can, and leave nothing behind.
    let (status, body) = call(&service.url, reqwest::Method::DELETE, "/datasets/support", None, None).await;
    assert_eq!((status, body["error"]["type"].as_str()), (403, Some("CURATED_DATASET")), "{body}");
    let (status, _) = call(&service.url, reqwest::Method::DELETE, "/datasets/shop", None, None).await;
    assert_eq!(status, 204);
    assert!(uploaded_ids(&service.url, None).await.is_empty());
    let (status, body) = query(&service.url, None, "shop", JOIN).await;
    assert_eq!((status, body["error"]["type"].as_str()), (404, Some("UNKNOWN_DATASET")), "{body}");
    let (status, _) = call(&service.url, reqwest::Method::DELETE, "/datasets/shop", None, None).await;
    assert_eq!(status, 404);
    assert_uploads_dir(&uploads, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_parquet_codec_the_guest_claims_reads_and_one_it_lacks_is_refused_at_upload() {
    let work = tempfile::tempdir().unwrap();
    let codecs = ["snappy", "gzip", "lz4", "zstd", "brotli", "none"];
    let script: String = codecs
        .iter()
        .map(|codec| {
            format!(
                "pq.write_table(pa.table({{'v': pa.array(range(1, 1001), pa.int64()), 's': pa.array([str(i % 7) for i in range(1000)])}}), '{codec}.parquet', compression='{codec}')\n"
            )
        })
        .collect();
    let script = format!(
        "{script}pq.write_table(pa.table({{'codec_probe': pa.array(range(100), pa.int64())}}), 'probe.parquet', compression='snappy')\n"
    );
    let Some(()) = pyarrow(work.path(), &script) else { return };
    let server = TestServer::start(|_| {}).await;
    let files: Vec<(&str, Vec<u8>)> = codecs
        .iter()
        .map(|codec| (*codec, std::fs::read(work.path().join(format!("{codec}.parquet"))).unwrap()))
        .map(|(codec, bytes)| (Box::leak(format!("{codec}.parquet").into_boxed_str()) as &str, bytes))
        .collect();
    let (status, created) = upload(&server.url, None, form("codecs", &files)).await;
    assert_eq!(status, 201, "{created}");
    let union: Vec<String> =
        codecs.iter().map(|c| format!("SELECT '{c}' AS codec, SUM(v) AS s, COUNT(DISTINCT s) AS d FROM {c}")).collect();
    let sql = format!("{} ORDER BY codec", union.join(" UNION ALL "));
    let (_, run) = query(&server.url, None, "codecs", &sql).await;
    let mut expected: Vec<Value> = codecs.iter().map(|c| json!([c, 500_500, 7])).collect();
    expected.sort_by_key(|row| row[0].as_str().unwrap().to_string());
    assert_eq!(run["result"]["rows"], Value::Array(expected), "{run}");

    // LZO, which no Rust codec reads: the footer's codec of a snappy file rewritten
    // (after the column's path, `codec_probe`, comes field 4, the codec: SNAPPY=1 →
    // LZO=3, zigzag-encoded 2 → 6).
    let mut probe = std::fs::read(work.path().join("probe.parquet")).unwrap();
    let needle = [&[0x18, 0x0b][..], b"codec_probe", &[0x15, 0x02]].concat();
    let at = probe.windows(needle.len()).rposition(|w| w == needle).expect("the column's metadata in the footer");
    probe[at + needle.len() - 1] = 0x06;
    let (status, body) = upload(&server.url, None, form("lzo", &[("probe.parquet", probe)])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (422, Some("UPLOAD_INVALID")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("probe") && message.to_ascii_uppercase().contains("LZO"), "{message}");
    assert_eq!(uploaded_ids(&server.url, None).await, ["codecs"]);
}

/// One hostile upload: its files, the status and error type it must get, and a
/// part of the message.
struct Hostile {
    what: &'static str,
    files: Vec<(String, Vec<u8>)>,
    status: u16,
    error_type: &'static str,
    says: &'static str,
}

fn hostile(
    what: &'static str,
    files: Vec<(&str, Vec<u8>)>,
    status: u16,
    error_type: &'static str,
    says: &'static str,
) -> Hostile {
    Hostile { what, files: files.into_iter().map(|(n, b)| (n.to_string(), b)).collect(), status, error_type, says }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_uploads_are_refused_with_nothing_left_on_disk_or_listed() {
    let work = tempfile::tempdir().unwrap();
    // A real Parquet file cut in half, and a zip bomb: one 280 MB value (past the
    // 256 MiB a run may use) that
    // compresses to a few kilobytes.
    let Some(()) = pyarrow(
        work.path(),
        "pq.write_table(pa.table({'x': pa.array(range(100000), pa.int64())}), 'whole.parquet', compression='zstd')
pq.write_table(pa.table({'x': pa.array(['a' * 280_000_000])}), 'bomb.parquet', compression='zstd', use_dictionary=False)",
    ) else {
        return;
    };
    let whole = std::fs::read(work.path().join("whole.parquet")).unwrap();
    let bomb = std::fs::read(work.path().join("bomb.parquet")).unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is small on the wire: {} bytes", bomb.len());
    let wide: String = (0..1001).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",") + "\n";
    let many: Vec<(String, Vec<u8>)> = (0..65).map(|i| (format!("t{i}.csv"), b"a\n1\n".to_vec())).collect();

    let cases = vec![
        hostile("ragged rows", vec![("r.csv", b"a,b\n1,2\n3\n4,5\n".to_vec())], 422, "UPLOAD_INVALID", "line"),
        hostile("a repeated column", vec![("d.csv", b"a,b,a\n1,2,3\n".to_vec())], 422, "UPLOAD_INVALID", "twice"),
        hostile(
            "an empty column name",
            vec![("e.csv", b"a,,c\n1,2,3\n".to_vec())],
            422,
            "UPLOAD_INVALID",
            "empty name",
        ),
        hostile("invalid UTF-8", vec![("u.csv", b"a,b\n1,\xff\xfe\n".to_vec())], 422, "UPLOAD_INVALID", "u.csv"),
        hostile("a NUL-filled file", vec![("z.csv", vec![0u8; 1 << 20])], 422, "UPLOAD_INVALID", "z.csv"),
        hostile("a 100 MB single line", vec![("l.csv", vec![b'x'; 100 << 20])], 422, "UPLOAD_INVALID", "l.csv"),
        hostile(
            "a truncated Parquet file",
            vec![("t.parquet", whole[..whole.len() / 2].to_vec())],
            422,
            "UPLOAD_INVALID",
            "t.parquet",
        ),
        hostile("a zip bomb", vec![("bomb.parquet", bomb)], 422, "UPLOAD_INVALID", "memory"),
        hostile(
            "CSV that says it is Parquet",
            vec![("c.parquet", b"a,b\n1,2\n".to_vec())],
            422,
            "UPLOAD_INVALID",
            "Parquet",
        ),
        hostile("Parquet that says it is CSV", vec![("p.csv", whole.clone())], 422, "UPLOAD_INVALID", "p.csv"),
        hostile("a ../ file name", vec![("../x.csv", b"a\n1\n".to_vec())], 400, "INVALID_UPLOAD", "path"),
        hostile("an absolute file name", vec![("/etc/x.csv", b"a\n1\n".to_vec())], 400, "INVALID_UPLOAD", "path"),
        hostile("another extension", vec![("x.json", b"{}".to_vec())], 400, "INVALID_UPLOAD", ".csv or .parquet"),
        hostile(
            "1,001 columns",
            vec![("w.csv", format!("{wide}{}", wide.replace('c', "")).into_bytes())],
            422,
            "UPLOAD_INVALID",
            "1000",
        ),
        hostile("no file", vec![], 400, "INVALID_UPLOAD", "no file"),
    ];
    let server = TestServer::start(|c| c.upload_max_bytes = 200 << 20).await;
    let uploads = server_uploads_dir(&server);
    for case in cases {
        let files: Vec<(&str, Vec<u8>)> = case.files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let (status, body) = upload(&server.url, None, form("hostile", &files)).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (case.status, Some(case.error_type)),
            "{}: {body}",
            case.what
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(case.says), "{}: {message}", case.what);
        assert!(uploaded_ids(&server.url, None).await.is_empty(), "{}", case.what);
        assert_uploads_dir(&uploads, &[]).await;
    }
    let files: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, body) = upload(&server.url, None, form("many", &files)).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("INVALID_UPLOAD")), "{body}");
    for bad_id in ["Bad Id", "", "../up"] {
        let (status, body) = upload(&server.url, None, form(bad_id, &[("a.csv", b"a\n1\n".to_vec())])).await;
        assert_eq!((status, body["error"]["type"].as_str()), (400, Some("INVALID_UPLOAD")), "{bad_id}: {body}");
    }
    let (status, body) = call(&server.url, reqwest::Method::POST, "/datasets", None, Some(json!({"id": "x"}))).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("INVALID_UPLOAD")), "{body}");
    assert_uploads_dir(&uploads, &[]).await;

    // The service still answers, and a good upload of the same id works.
    let (status, body) = upload(&server.url, None, form("hostile", &[("ok.csv", b"a\n1\n".to_vec())])).await;
    assert_eq!(status, 201, "{body}");
    assert_uploads_dir(&uploads, &["hostile"]).await;
}

/// UPLOADS_DIR of an in-process test server (test_config puts it in the store folder).
fn server_uploads_dir(server: &TestServer) -> PathBuf {
    server.store_path().join("uploads")
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_quota_disconnects_and_races_leave_nothing_behind() {
    let server = TestServer::start(|c| {
        c.upload_max_bytes = 256 * 1024;
        c.upload_quota_bytes = 150 * 1024;
    })
    .await;
    let uploads = server_uploads_dir(&server);
    let rows = |n: usize| -> Vec<u8> { (0..n).map(|i| format!("{i}\n")).collect::<String>().into_bytes() };
    let file = |n: usize| [b"n\n".to_vec(), rows(n)].concat();

    // Over UPLOAD_MAX_BYTES: 413 at once.
    let (status, body) = upload(&server.url, None, form("big", &[("big.csv", file(60_000))])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (413, Some("UPLOAD_TOO_LARGE")), "{body}");
    // Within it, but past the owner's quota: the first fits, the second does not.
    let (status, body) = upload(&server.url, None, form("first", &[("a.csv", file(15_000))])).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload(&server.url, None, form("second", &[("b.csv", file(15_000))])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (413, Some("QUOTA_EXCEEDED")), "{body}");
    assert_uploads_dir(&uploads, &["first"]).await;

    // A client that hangs up halfway: nothing kept, and the id is free again.
    let address = server.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let boundary = "XBOUNDARYX";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nhalf\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"h.csv\"\r\n\r\nn\n1\n2\n3\n"
    );
    let request = format!(
        "POST /datasets HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: 100000\r\n\r\n{head}"
    );
    use tokio::io::AsyncWriteExt;
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    assert_uploads_dir(&uploads, &["first"]).await;
    assert_eq!(uploaded_ids(&server.url, None).await, ["first"]);

    // Two uploads of one id at once: one wins, the other is 409.
    let (a, b) = tokio::join!(
        upload(&server.url, None, form("twin", &[("x.csv", file(100))])),
        upload(&server.url, None, form("twin", &[("y.csv", file(100))])),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
    let mut ids = uploaded_ids(&server.url, None).await;
    ids.sort();
    assert_eq!(ids, ["first", "twin"]);
    // The half upload's id is free.
    let (status, body) = upload(&server.url, None, form("half", &[("h.csv", file(10))])).await;
    assert_eq!(status, 201, "{body}");
    assert_uploads_dir(&uploads, &["first", "half", "twin"]).await;
}

/// An upload sent over a raw connection: the request head and the first `sent`
/// bytes of its body now, the rest when [`finish_raw`] is called.
async fn begin_raw(url: &str, form: &Form, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /datasets HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={}\r\nContent-Length: {}\r\n\r\n",
        form.boundary,
        form.body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&form.body[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Where a form's first file's bytes begin, plus two: sent that far, the upload
/// has begun (its id is reserved) and its first file is open.
fn into_first_file(form: &Form) -> usize {
    let at = form.body.windows(9).position(|w| w == b"filename=").unwrap();
    at + form.body[at..].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + 2
}

/// Sends the rest of a [`begin_raw`] upload; its status and body.
async fn finish_raw(mut stream: tokio::net::TcpStream, form: &Form, sent: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&form.body[sent..]).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::String(response.clone())))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_counts_uploads_published_meanwhile_and_an_owner_has_two_under_way_at_most() {
    let server = TestServer::start(|c| c.upload_quota_bytes = 150 * 1024).await;
    let uploads = server_uploads_dir(&server);
    let rows = |n: usize| -> Vec<u8> { (0..n).map(|i| format!("{i}\n")).collect::<String>().into_bytes() };
    let file = |n: usize| [b"n\n".to_vec(), rows(n)].concat();
    // Each about 88 KB: one fits the quota, two do not.
    let late = form("late", &[("late.csv", file(15_000))]);
    let stream = begin_raw(&server.url, &late, 10_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = upload(&server.url, None, form("early", &[("early.csv", file(15_000))])).await;
    assert_eq!(status, 201, "{body}");
    // The late one streamed within the quota as it stood when it began; at publish
    // the early one counts, and it is refused.
    let (status, body) = finish_raw(stream, &late, 10_000).await;
    assert_eq!((status, body["error"]["type"].as_str()), (413, Some("QUOTA_EXCEEDED")), "{body}");
    assert_uploads_dir(&uploads, &["early"]).await;
    assert_eq!(uploaded_ids(&server.url, None).await, ["early"]);

    // Two uploads under way: a third of the same owner waits its turn (429).
    let (one, two) = (form("one", &[("one.csv", file(10))]), form("two", &[("two.csv", file(10))]));
    let (sent_one, sent_two) = (into_first_file(&one), into_first_file(&two));
    let first = begin_raw(&server.url, &one, sent_one).await;
    let second = begin_raw(&server.url, &two, sent_two).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = upload(&server.url, None, form("three", &[("three.csv", file(10))])).await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("CLIENT_LIMIT")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2 uploads under way"), "{body}");
    let (a, b) = tokio::join!(finish_raw(first, &one, sent_one), finish_raw(second, &two, sent_two));
    assert_eq!((a.0, b.0), (201, 201), "{a:?} {b:?}");
    let (status, body) = upload(&server.url, None, form("three", &[("three.csv", file(10))])).await;
    assert_eq!(status, 201, "{body}");
    assert_uploads_dir(&uploads, &["early", "one", "three", "two"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_is_its_owners_and_unknown_to_everyone_else() {
    let server = TestServer::start(|c| c.auth.admin_token = Some(ApiKey::new(ADMIN))).await;
    let mut tokens = Vec::new();
    for subject in ["alice", "bob"] {
        let body = json!({"subject": subject, "datasets": ["*"]});
        let (status, minted) = call(&server.url, reqwest::Method::POST, "/admin/tokens", Some(ADMIN), Some(body)).await;
        assert_eq!(status, 201, "{minted}");
        tokens.push(minted["token"].as_str().unwrap().to_string());
    }
    let (alice, bob) = (Some(tokens[0].as_str()), Some(tokens[1].as_str()));
    let csv = || vec![("customers.csv", CUSTOMERS.as_bytes().to_vec())];

    // Anonymous callers may query, not upload.
    let (status, body) = upload(&server.url, None, form("anon", &csv())).await;
    assert_eq!((status, body["error"]["type"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    let (status, body) = upload(&server.url, alice, form("alices", &csv())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["owner"], "alice");
    let (status, run) = query(&server.url, alice, "alices", "SELECT COUNT(*) FROM customers").await;
    assert_eq!((status, &run["result"]["rows"]), (200, &json!([[3]])), "{run}");

    // Bob, with every curated dataset granted, does not see it at all.
    assert!(uploaded_ids(&server.url, bob).await.is_empty());
    let (status, body) = query(&server.url, bob, "alices", "SELECT COUNT(*) FROM customers").await;
    assert_eq!((status, body["error"]["type"].as_str()), (404, Some("UNKNOWN_DATASET")), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().contains("alices, "), "{body}");
    let (status, _) = call(&server.url, reqwest::Method::GET, "/datasets/alices/schema", bob, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server.url, reqwest::Method::DELETE, "/datasets/alices", bob, None).await;
    assert_eq!(status, 404);
    let (status, _) =
        call(&server.url, reqwest::Method::GET, &format!("/runs/{}", run["run_id"].as_str().unwrap()), bob, None).await;
    assert_eq!(status, 404);
    // Bob cannot take its id either.
    let (status, body) = upload(&server.url, bob, form("alices", &csv())).await;
    assert_eq!((status, body["error"]["type"].as_str()), (409, Some("DATASET_EXISTS")), "{body}");

    // The admin sees it, and may delete it.
    assert_eq!(uploaded_ids(&server.url, Some(ADMIN)).await, ["alices"]);
    let (status, _) = call(&server.url, reqwest::Method::DELETE, "/datasets/alices", Some(ADMIN), None).await;
    assert_eq!(status, 204);
    assert!(uploaded_ids(&server.url, alice).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_streams_to_disk_without_growing_the_service() {
    let store = tempfile::tempdir().unwrap();
    let service = BinaryService::start(store.path(), &[]);
    service.wait_ready().await;
    // 200 MB of CSV, then a field the service refuses only once the file is on disk:
    // everything streams and is written, and nothing runs in the sandbox (whose memory
    // would count in the service's).
    let row = b"12345,some words in a row,2024-01-02\n";
    let mut csv = b"n,words,day\n".to_vec();
    while csv.len() < 200 << 20 {
        csv.extend_from_slice(row);
    }
    let Form { boundary, mut body } = form("big", &[("big.csv", csv)]);
    body.truncate(body.len() - format!("--{boundary}--\r\n").len());
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"extra\"\r\n\r\nx\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    // The peak counts from here: not the module's load before.
    service.reset_peak_memory();
    let (rss_before, peak_before) = service.memory();
    assert!(peak_before < rss_before + (8 << 20), "the peak was reset: {peak_before} vs {rss_before}");
    let started = Instant::now();
    let response = client()
        .post(format!("{}/datasets", service.url))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let refusal: Value = response.json().await.unwrap();
    assert_eq!((status, refusal["error"]["type"].as_str()), (400, Some("INVALID_UPLOAD")), "{refusal}");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("extra"), "{refusal}");
    let (_, peak) = service.memory();
    let grew = peak.saturating_sub(rss_before);
    eprintln!(
        "a 200 MB upload: peak RSS {} MiB over {} MiB before, in {:?}",
        grew >> 20,
        rss_before >> 20,
        started.elapsed()
    );
    assert!(grew < 64 << 20, "the service grew by {} MiB while a 200 MB body streamed through it", grew >> 20);
    assert_uploads_dir(&store.path().join("uploads"), &[]).await;
}
