//! Identity and access, end to end: the admin token, minted tokens (HTTP and CLI),
//! grants per dataset, ownership of runs, threads, turns and exports, anonymous
//! use and its denial, per-principal fairness, trusted proxies, and OIDC against a
//! local issuer made here with its own RSA and EC keys (discovery, JWKS, rotation,
//! an unreachable issuer) — and every bad credential a clear 401/403/404 that
//! leaks nothing.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orchestrator::config::{AnonymousAccess, ApiKey};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, client, datasets_dir, workspace_binary};

const ADMIN: &str = "admin-token-of-the-auth-tests-0123456789";
const SLOW: &str = "SELECT COUNT(*) FROM tickets a, tickets b, tickets c";

/// A request with an optional bearer token: status, JSON body (or the text), the
/// `WWW-Authenticate` header.
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = client().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), challenge)
}

async fn get_as(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, body, _) = call(server, Method::GET, path, token, None).await;
    (status, body)
}

async fn run_as(server: &TestServer, token: Option<&str>, dataset: &str, sql: &str) -> (u16, Value) {
    let (status, body, _) =
        call(server, Method::POST, "/runs", token, Some(json!({"dataset_id": dataset, "sql": sql}))).await;
    (status, body)
}

async fn mint(server: &TestServer, body: Value) -> (String, String) {
    let (status, minted, _) = call(server, Method::POST, "/admin/tokens", Some(ADMIN), Some(body)).await;
    assert_eq!(status, 201, "{minted}");
    (minted["token"].as_str().unwrap().to_string(), minted["token_id"].as_str().unwrap().to_string())
}

fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

async fn with_admin(customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
    TestServer::start(|c| {
        c.auth.admin_token = Some(ApiKey::new(ADMIN));
        customize(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auth_every_request_is_the_local_user_and_tokens_are_not_offered() {
    let server = TestServer::start(|_| {}).await;
    let (status, me) = get_as(&server, "/me", Some("whatever")).await;
    assert_eq!(status, 200, "a bearer header means nothing in single-user mode: {me}");
    assert_eq!(
        (me["subject"].as_str(), me["sign_in"].as_str(), me["admin"].as_bool()),
        (Some("local"), Some("none"), Some(true))
    );
    let (status, body, _) =
        call(&server, Method::POST, "/admin/tokens", None, Some(json!({"subject": "a", "datasets": ["*"]}))).await;
    assert_eq!((status, error_type(&body)), (404, "AUTH_NOT_CONFIGURED"), "{body}");
    let (status, run) = run_as(&server, None, "support", "SELECT 1 AS x").await;
    assert_eq!((status, run["details"]["principal"].as_str()), (200, Some("local")));

    // DNS rebinding: a page of evil.example rebound to 127.0.0.1 reaches the port under
    // its own name, and gets nothing; the probes answer whatever the name.
    let as_host = |path: &str, host: &str| client().get(format!("{}{path}", server.url)).header("host", host).send();
    let response = as_host("/runs", "evil.example:8000").await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_type(&response.json::<Value>().await.unwrap()), "FORBIDDEN_HOST");
    assert_eq!(as_host("/healthz", "evil.example").await.unwrap().status(), 200);
    assert_eq!(as_host("/runs", "localhost:8000").await.unwrap().status(), 200);
    let named = TestServer::start(|c| c.allowed_hosts = vec!["csv.internal".into()]).await;
    let response = client().get(format!("{}/runs", named.url)).header("host", "csv.internal").send().await.unwrap();
    assert_eq!(response.status(), 200, "a name in ALLOWED_HOSTS");
    // With auth on, a request needs credentials a rebinding page does not have: not checked.
    let with_auth = with_admin(|_| {}).await;
    let response =
        client().get(format!("{}/me", with_auth.url)).header("host", "csv.example.com").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_grant_datasets_and_own_their_runs_threads_and_exports() {
    let server = with_admin(|_| {}).await;

    // Anonymous: the seed's curl keeps working, and its run is anonymous.
    let (status, anonymous_run) = run_as(&server, None, "support", "SELECT COUNT(*) AS n FROM tickets").await;
    assert_eq!((status, anonymous_run["status"].as_str()), (200, Some("succeeded")), "{anonymous_run}");
    assert_eq!(anonymous_run["details"]["principal"], "anonymous");
    let anonymous_id = anonymous_run["run_id"].as_str().unwrap().to_string();

    // Minting: admins only; the secret is shown once, in the service's shape.
    let body = json!({"subject": "alice", "datasets": ["support"]});
    let (status, refused, challenge) = call(&server, Method::POST, "/admin/tokens", None, Some(body.clone())).await;
    assert_eq!((status, error_type(&refused)), (401, "UNAUTHORIZED"), "{refused}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"csv-analyst\""));
    let (alice, alice_id) = mint(&server, body.clone()).await;
    assert!(alice.starts_with("csa_") && alice.len() >= 4 + 16 + 1 + 43, "{alice}");
    let (bob, _) = mint(&server, json!({"subject": "bob", "datasets": ["*"]})).await;
    let (status, refused, _) = call(&server, Method::POST, "/admin/tokens", Some(&alice), Some(body)).await;
    assert_eq!((status, error_type(&refused)), (403, "FORBIDDEN"), "{refused}");
    for (bad, why) in [
        (json!({"subject": "anonymous", "datasets": ["*"]}), "reserved"),
        (json!({"subject": "x", "datasets": ["nope"]}), "no dataset"),
        (json!({"subject": "x", "datasets": []}), "at least one"),
        (json!({"subject": "x", "datasets": ["*"], "expires_in_s": 0}), "at least 1"),
        (json!({"subject": "x", "datasets": ["*"], "scopes": ["all"]}), "unknown field"),
    ] {
        let (status, body, _) = call(&server, Method::POST, "/admin/tokens", Some(ADMIN), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(why) || why == "reserved", "{bad} → {body}");
    }

    // Grants: alice sees and uses only support; another dataset is as if it did not exist.
    let (_, datasets) = get_as(&server, "/datasets", Some(&alice)).await;
    let ids: Vec<&str> = datasets["datasets"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["support"]);
    let (status, body) = get_as(&server, "/datasets/ecommerce/schema", Some(&alice)).await;
    assert_eq!((status, error_type(&body)), (404, "UNKNOWN_DATASET"), "{body}");
    let (status, body) = run_as(&server, Some(&alice), "ecommerce", "SELECT 1").await;
    assert_eq!((status, error_type(&body)), (404, "UNKNOWN_DATASET"), "{body}");
    assert_eq!(body["error"]["message"], "no dataset \"ecommerce\"; datasets: support");
    let (status, body, _) = call(
        &server,
        Method::POST,
        "/chat",
        Some(&alice),
        Some(json!({"dataset_id": "ecommerce", "message": "SQL: SELECT 1"})),
    )
    .await;
    assert_eq!((status, error_type(&body)), (404, "UNKNOWN_DATASET"), "{body}");

    // Ownership: alice's run is hers, with her token's id; bob gets 404s.
    let (status, run) = run_as(&server, Some(&alice), "support", "SELECT 'secret-of-alice' AS s").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["details"]["principal"].as_str(), run["details"]["token_id"].as_str()),
        (Some("alice"), Some(alice_id.as_str()))
    );
    let run_id = run["run_id"].as_str().unwrap().to_string();
    for path in [format!("/runs/{run_id}"), format!("/runs/{run_id}/status"), format!("/runs/{run_id}/result.csv")] {
        let (status, body) = get_as(&server, &path, Some(&bob)).await;
        assert_eq!((status, error_type(&body)), (404, "RUN_NOT_FOUND"), "{path}: {body}");
        assert!(!body.to_string().contains("secret-of-alice"));
        let (status, _) = get_as(&server, &path, None).await;
        assert_eq!(status, 404, "anonymous: {path}");
        let (status, _) = get_as(&server, &path, Some(&alice)).await;
        assert_eq!(status, 200, "alice: {path}");
        let (status, _) = get_as(&server, &path, Some(ADMIN)).await;
        assert_eq!(status, 200, "the admin: {path}");
    }
    let (status, _) = get_as(&server, &format!("/runs/{anonymous_id}"), Some(&alice)).await;
    assert_eq!(status, 404, "an anonymous run is not alice's");

    // Lists are one's own; everyone's only for the admin.
    let listed = |body: &Value| -> Vec<String> {
        body["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(&get_as(&server, "/runs", Some(&alice)).await.1), vec![run_id.clone()]);
    assert_eq!(listed(&get_as(&server, "/runs", None).await.1), vec![anonymous_id.clone()]);
    assert!(listed(&get_as(&server, "/runs", Some(&bob)).await.1).is_empty());
    let (status, body) = get_as(&server, "/runs?all=true", Some(&alice)).await;
    assert_eq!((status, error_type(&body)), (403, "FORBIDDEN"));
    let everyone = listed(&get_as(&server, "/runs?all=true", Some(ADMIN)).await.1);
    assert!(everyone.contains(&run_id) && everyone.contains(&anonymous_id), "{everyone:?}");

    // Threads and turns: alice's, 404 to bob, whether read, continued or deleted.
    let (status, turn, _) = call(
        &server,
        Method::POST,
        "/chat",
        Some(&alice),
        Some(json!({"dataset_id": "support", "message": "SQL: SELECT 2 AS two"})),
    )
    .await;
    assert_eq!((status, turn["status"].as_str()), (200, Some("succeeded")), "{turn}");
    let (thread_id, turn_id) = (turn["thread_id"].as_str().unwrap(), turn["turn_id"].as_str().unwrap());
    for path in [format!("/threads/{thread_id}/messages"), format!("/chat/turns/{turn_id}")] {
        let (status, body) = get_as(&server, &path, Some(&bob)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("SELECT 2"), "{body}");
        assert_eq!(get_as(&server, &path, Some(&alice)).await.0, 200, "{path}");
    }
    let continued = json!({"dataset_id": "support", "thread_id": thread_id, "message": "SQL: SELECT 3"});
    let (status, body, _) = call(&server, Method::POST, "/chat", Some(&bob), Some(continued)).await;
    assert_eq!((status, error_type(&body)), (404, "THREAD_NOT_FOUND"), "{body}");
    let (status, _, _) = call(&server, Method::DELETE, &format!("/threads/{thread_id}"), Some(&bob), None).await;
    assert_eq!(status, 404);
    assert_eq!(get_as(&server, "/threads", Some(&alice)).await.1["threads"].as_array().unwrap().len(), 1);
    assert!(get_as(&server, "/threads", Some(&bob)).await.1["threads"].as_array().unwrap().is_empty());

    // A narrower token of the same subject (a script's, say) sees none of alice's
    // records on datasets it is not granted: grants bound records too.
    let (narrow, _) = mint(&server, json!({"subject": "alice", "datasets": ["ecommerce"]})).await;
    for path in [format!("/runs/{run_id}"), format!("/runs/{run_id}/result.csv"), format!("/chat/turns/{turn_id}")] {
        assert_eq!(get_as(&server, &path, Some(&narrow)).await.0, 404, "{path}");
    }
    assert!(listed(&get_as(&server, "/runs", Some(&narrow)).await.1).is_empty());
    assert!(get_as(&server, "/threads", Some(&narrow)).await.1["threads"].as_array().unwrap().is_empty());

    // The list of tokens shows no secret and no hash.
    let (status, tokens) = get_as(&server, "/admin/tokens", Some(ADMIN)).await;
    assert_eq!(status, 200);
    let text = tokens.to_string();
    assert!(!text.contains(&alice[20..]) && !text.contains("sha256"), "{text}");
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 3);
    assert_eq!(get_as(&server, "/admin/tokens", Some(&alice)).await.0, 403);

    // Revocation is effective at once; an expired token is refused as such.
    let (status, _, _) = call(&server, Method::DELETE, &format!("/admin/tokens/{alice_id}"), Some(ADMIN), None).await;
    assert_eq!(status, 204);
    let (status, body) = get_as(&server, "/runs", Some(&alice)).await;
    assert_eq!((status, error_type(&body)), (401, "UNAUTHORIZED"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    let (status, body, _) = call(&server, Method::DELETE, "/admin/tokens/ffffffffffffffff", Some(ADMIN), None).await;
    assert_eq!((status, error_type(&body)), (404, "TOKEN_NOT_FOUND"));
    let (short, _) = mint(&server, json!({"subject": "carol", "datasets": ["*"], "expires_in_s": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get_as(&server, "/me", Some(&short)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_are_401s_that_echo_nothing_and_never_fall_back_to_anonymous() {
    let server = with_admin(|_| {}).await;
    let (alice, _) = mint(&server, json!({"subject": "alice", "datasets": ["support"]})).await;
    let (_, secret) = alice[4..].split_once('_').unwrap();
    let wrong_secret = format!("{}_{}", &alice[..20], secret.chars().rev().collect::<String>());
    let huge = format!("csa_{}", "a".repeat(10_000));
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("basic scheme", b"Basic YWxpY2U6cGFzcw==".to_vec()),
        ("no token", b"Bearer".to_vec()),
        ("empty token", b"Bearer ".to_vec()),
        ("garbled", b"Bearer csa_not-a-token".to_vec()),
        ("not UTF-8", b"Bearer \xff\xfe".to_vec()),
        ("a 10 KB token", format!("Bearer {huge}").into_bytes()),
        ("unknown token", format!("Bearer csa_0123456789abcdef_{}", "A".repeat(43)).into_bytes()),
        ("wrong secret", format!("Bearer {wrong_secret}").into_bytes()),
        ("a JWT without OIDC", b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".to_vec()),
    ];
    for (what, header) in headers {
        let response = client()
            .get(format!("{}/runs", server.url))
            .header("authorization", reqwest::header::HeaderValue::from_bytes(&header).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(response.headers().contains_key("www-authenticate"), "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_type(&body), "UNAUTHORIZED", "{what}: {body}");
        let text = body.to_string();
        assert!(!text.contains(secret) && !text.contains("aaaaaaaaaa"), "{what} echoed: {text}");
    }
    // Probes and the page need no token whatever the header says.
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        let response = client().get(format!("{}{path}", server.url)).bearer_auth("garbage").send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_use_can_be_denied_or_narrowed() {
    let server = with_admin(|c| c.auth.auth_anonymous = AnonymousAccess::Deny).await;
    for path in ["/runs", "/datasets", "/threads", "/me", "/schemas/plan", "/datasets/support/schema"] {
        let (status, body) = get_as(&server, path, None).await;
        assert_eq!((status, error_type(&body)), (401, "UNAUTHORIZED"), "{path}: {body}");
    }
    let (status, body) = run_as(&server, None, "support", "SELECT 1").await;
    assert_eq!((status, error_type(&body)), (401, "UNAUTHORIZED"), "{body}");
    for path in ["/healthz", "/readyz", "/metrics", "/", "/assets/app.js"] {
        assert_eq!(client().get(format!("{}{path}", server.url)).send().await.unwrap().status(), 200, "{path}");
    }
    let (status, me) = get_as(&server, "/me", Some(ADMIN)).await;
    assert_eq!((status, me["subject"].as_str(), me["admin"].as_bool()), (200, Some("admin"), Some(true)), "{me}");

    let narrowed = with_admin(|c| c.auth.auth_anonymous_datasets = vec!["sensors".into()]).await;
    let (_, datasets) = get_as(&narrowed, "/datasets", None).await;
    assert_eq!(datasets["datasets"].as_array().unwrap().len(), 1, "{datasets}");
    assert_eq!(datasets["datasets"][0]["id"], "sensors");
    let (status, body) = run_as(&narrowed, None, "support", "SELECT 1").await;
    assert_eq!((status, error_type(&body)), (404, "UNKNOWN_DATASET"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fairness_is_per_principal_and_client_ids_are_believed_only_from_trusted_proxies() {
    let server = with_admin(|c| {
        c.max_concurrent_runs = Some(3);
        c.max_runs_per_client = Some(1);
        c.run_timeout_seconds = 3.0;
    })
    .await;
    let (alice, _) = mint(&server, json!({"subject": "alice", "datasets": ["*"]})).await;
    let (bob, _) = mint(&server, json!({"subject": "bob", "datasets": ["*"]})).await;
    let url = format!("{}/runs", server.url);
    let slow = {
        let (url, alice) = (url.clone(), alice.clone());
        tokio::spawn(async move {
            let body = json!({"dataset_id": "support", "sql": SLOW});
            let response = client().post(url).bearer_auth(alice).header("x-client-id", "one").json(&body).send();
            response.await.unwrap().status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Another x-client-id does not make alice another client.
    let body = json!({"dataset_id": "support", "sql": "SELECT 1"});
    let response = client().post(&url).bearer_auth(&alice).header("x-client-id", "two").json(&body).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(error_type(&response.json::<Value>().await.unwrap()), "CLIENT_LIMIT");
    // Bob is another principal.
    let (status, run) = run_as(&server, Some(&bob), "support", "SELECT 1 AS one").await;
    assert_eq!((status, run["status"].as_str()), (200, Some("succeeded")), "{run}");
    // Anonymous callers are counted by address: a made-up x-client-id from an untrusted
    // peer does not give a second share.
    let anonymous = {
        let url = url.clone();
        tokio::spawn(async move {
            let body = json!({"dataset_id": "support", "sql": SLOW});
            client().post(url).header("x-client-id", "a").json(&body).send().await.unwrap().status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = client().post(&url).header("x-client-id", "b").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 429, "x-client-id from an untrusted peer must not split anonymous fairness");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(anonymous.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_user_and_an_untrusted_one_is_ignored() {
    let trusted = TestServer::start(|c| {
        c.auth.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.auth.trusted_proxy_header = Some("X-Forwarded-User".into());
        c.auth.trusted_proxy_datasets = vec!["support".into()];
    })
    .await;
    let me = |server: &TestServer, user: &str| {
        let request = client().get(format!("{}/me", server.url)).header("x-forwarded-user", user);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = me(&trusted, "carol").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["subject"].as_str(), body["kind"].as_str(), body["sign_in"].as_str()),
        (Some("carol"), Some("proxy"), Some("none"))
    );
    assert_eq!(body["datasets"], json!(["support"]));
    let (status, body) = me(&trusted, "anonymous").await;
    assert_eq!((status, error_type(&body)), (401, "UNAUTHORIZED"), "a proxy cannot name a reserved subject");
    // A proxy that appends the header rather than replacing it would let the client
    // choose the user: two values are refused.
    let response = client()
        .get(format!("{}/me", trusted.url))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let untrusted = TestServer::start(|c| {
        c.auth.trusted_proxies = vec!["10.0.0.0/8".into()];
        c.auth.trusted_proxy_header = Some("X-Forwarded-User".into());
    })
    .await;
    let (status, body) = me(&untrusted, "carol").await;
    assert_eq!((status, body["subject"].as_str()), (200, Some("anonymous")), "{body}");
}

// ---- OIDC ----

/// A signing key of the local issuer: its private half for signing, its public JWK.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key as PEM (for the HS256-with-the-public-key attack).
    public_pem: Vec<u8>,
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the OIDC tests make their keys with the `openssl` command: install openssl (.ci/run does)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

impl Key {
    fn new(kid: &str, alg: Algorithm) -> Key {
        let private_pem = match alg {
            Algorithm::RS256 => openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], b""),
            _ => openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], b""),
        };
        let public_pem = openssl(&["pkey", "-pubout"], &private_pem);
        // DER, as the crate's signers take it: PKCS#1 for RSA, PKCS#8 for EC.
        let encoding = match alg {
            Algorithm::RS256 => {
                EncodingKey::from_rsa_der(&openssl(&["rsa", "-traditional", "-outform", "DER"], &private_pem))
            }
            _ => EncodingKey::from_ec_der(&openssl(&["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"], &private_pem)),
        };
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Key { kid: kid.to_string(), alg, encoding, jwk, public_pem }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(self.alg) };
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The local issuer: discovery and JWKS on a loopback port, counting key-set fetches.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&Key]) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let published = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()));
        // An encryption key the crate cannot parse sits in the set, as real issuers'
        // do: it must be skipped, not break the others.
        published.lock().unwrap().push(json!({"kty": "oct-weird", "use": "enc", "kid": "enc-1"}));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let (keys_served, counted) = (published.clone(), fetches.clone());
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
            .route(
                "/jwks",
                get(move || async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": *keys_served.lock().unwrap() }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer { url, keys: published, fetches }
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(issuer: &str, sub: &str) -> Value {
    json!({
        "iss": issuer, "aud": "csv-analyst", "sub": sub, "iat": now_s(), "exp": now_s() + 600,
        "csv_analyst_datasets": ["support"], "groups": ["staff"],
    })
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_jwts_are_verified_against_the_issuers_keys_and_every_forgery_is_refused() {
    let (rsa, ec) = (Key::new("rsa-1", Algorithm::RS256), Key::new("ec-1", Algorithm::ES256));
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let server = TestServer::start(|c| {
        c.auth.oidc_issuer = Some(issuer.url.clone());
        c.auth.oidc_audience = Some("csv-analyst".into());
        c.auth.oidc_admin_claim = Some("groups".into());
        c.auth.oidc_admin_value = Some("csv-admins".into());
    })
    .await;
    let ok = claims(&issuer.url, "dana");

    // RS256 and ES256: the subject, its grants, its runs.
    for key in [&rsa, &ec] {
        let token = key.sign(&ok);
        let (status, me) = get_as(&server, "/me", Some(&token)).await;
        assert_eq!(status, 200, "{:?}: {me}", key.alg);
        assert_eq!(
            (me["subject"].as_str(), me["kind"].as_str(), me["admin"].as_bool()),
            (Some("dana"), Some("oidc"), Some(false))
        );
        let (status, run) = run_as(&server, Some(&token), "support", "SELECT 1 AS one").await;
        assert_eq!((status, run["details"]["principal"].as_str()), (200, Some("dana")), "{run}");
        let (status, body) = run_as(&server, Some(&token), "sensors", "SELECT 1").await;
        assert_eq!((status, error_type(&body)), (404, "UNKNOWN_DATASET"));
    }
    let mut admin = ok.clone();
    admin["groups"] = json!(["staff", "csv-admins"]);
    assert_eq!(get_as(&server, "/admin/tokens", Some(&rsa.sign(&admin))).await.0, 200, "the admin claim");
    assert_eq!(get_as(&server, "/admin/tokens", Some(&rsa.sign(&ok))).await.0, 403);

    // Forgeries and bad claims: each a 401 naming what is wrong.
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        change(&mut c);
        c
    };
    let other_key = Key { kid: "rsa-1".into(), ..Key::new("x", Algorithm::RS256) };
    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let hs256 = {
        let header = Header { kid: Some("rsa-1".into()), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &ok, &EncodingKey::from_secret(&rsa.public_pem).unwrap()).unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("signed by another key", other_key.sign(&ok), "signature"),
        ("wrong audience", rsa.sign(&with(&|c| c["aud"] = json!("another-service"))), "aud"),
        ("another issuer", rsa.sign(&with(&|c| c["iss"] = json!("https://evil.example"))), "iss"),
        ("expired", rsa.sign(&with(&|c| c["exp"] = json!(now_s() - 120))), "expired"),
        ("not yet valid", rsa.sign(&with(&|c| c["nbf"] = json!(now_s() + 600))), "nbf"),
        (
            "no sub",
            rsa.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })),
            "sub",
        ),
        ("a reserved sub", rsa.sign(&with(&|c| c["sub"] = json!("admin"))), "sub"),
        ("alg none", format!("{header_none}.{}.", base64url(ok.to_string().as_bytes())), "JWT"),
        ("HS256 with the public key as secret", hs256, "HS256"),
        ("a key the issuer does not publish", Key::new("rsa-9", Algorithm::RS256).sign(&ok), "does not publish"),
    ];
    for (what, token, why) in cases {
        let (status, body, challenge) = call(&server, Method::GET, "/runs", Some(&token), None).await;
        assert_eq!((status, error_type(&body)), (401, "UNAUTHORIZED"), "{what}: {body}");
        assert!(challenge.is_some(), "{what}");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{what}: {body}");
        assert!(!body.to_string().contains(&token[..20]), "{what}: the body echoes the token");
    }

    // A flood of unknown key ids costs the issuer at most a fetch per two seconds.
    let before = issuer.fetches.load(Ordering::SeqCst);
    let started = Instant::now();
    for i in 0..20 {
        let token = Key { kid: format!("made-up-{i}"), ..Key::new("y", Algorithm::ES256) }.sign(&ok);
        assert_eq!(get_as(&server, "/me", Some(&token)).await.0, 401);
    }
    let fetched = issuer.fetches.load(Ordering::SeqCst) - before;
    let allowed = 1 + (started.elapsed().as_secs() / 2) as usize;
    assert!(fetched <= allowed, "{fetched} JWKS fetches for 20 unknown kids in {:?}", started.elapsed());

    // A rotation: a new key is found by fetching the set again.
    let rotated = Key::new("rsa-2", Algorithm::RS256);
    issuer.keys.lock().unwrap().push(rotated.jwk.clone());
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, me) = get_as(&server, "/me", Some(&rotated.sign(&ok))).await;
    assert_eq!((status, me["subject"].as_str()), (200, Some("dana")), "{me}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_issuer_is_a_503_and_a_reason_in_readyz_never_a_crash_or_a_401() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start_unready(|c| {
        c.auth.admin_token = Some(ApiKey::new(ADMIN));
        c.auth.oidc_issuer = Some(format!("http://{closed}"));
        c.auth.oidc_audience = Some("csv-analyst".into());
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(900);
    let readyz = loop {
        let (status, body) = get_as(&server, "/readyz", None).await;
        if status == 503 && body["reason"].as_str().is_some_and(|r| r.contains("cannot be reached")) {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz never said why: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(readyz["reason"].as_str().unwrap().contains(&closed.to_string()), "{readyz}");
    let jwt = Key::new("rsa-1", Algorithm::RS256).sign(&claims(&format!("http://{closed}"), "dana"));
    let (status, body, _) = call(&server, Method::GET, "/runs", Some(&jwt), None).await;
    assert_eq!((status, error_type(&body)), (503, "AUTH_UNAVAILABLE"), "{body}");
    // The service's own tokens do not depend on the issuer.
    let (status, me) = get_as(&server, "/me", Some(ADMIN)).await;
    assert_eq!((status, me["subject"].as_str()), (200, Some("admin")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_revoked_during_a_chat_stream_ends_it_with_a_401_event() {
    use crate::fake_llm::{FakeLlm, Reply};
    let fake = FakeLlm::start().await;
    fake.script([Reply::Stall(Duration::from_secs(30))]);
    let base = fake.openai_base_url();
    let server = with_admin(|c| {
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Openai;
        c.llm.openai_base_url = Some(base);
        c.llm.openai_api_key = Some("sk-test-not-a-real-key".into());
        c.llm.llm_timeout_seconds = 60.0;
    })
    .await;
    let (alice, alice_id) = mint(&server, json!({"subject": "alice", "datasets": ["support"]})).await;
    let mut response = client()
        .post(format!("{}/chat/stream", server.url))
        .bearer_auth(&alice)
        .json(&json!({"dataset_id": "support", "message": "How many tickets are there?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: status") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (status, _, _) = call(&server, Method::DELETE, &format!("/admin/tokens/{alice_id}"), Some(ADMIN), None).await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(revoked.elapsed() < Duration::from_secs(5), "the stream went on for {:?}", revoked.elapsed());
    assert!(seen.contains("event: error") && seen.contains("\"type\":\"UNAUTHORIZED\""), "{seen}");
    assert!(seen.contains("revoked") && seen.contains("event: done"), "{seen}");
    assert!(fake.wait_for_disconnect(Duration::from_secs(2)).await, "the model request outlived the revocation");
    // The turn is recorded, cancelled, and alice's token no longer reads it.
    let (_, threads) = get_as(&server, "/threads?all=true", Some(ADMIN)).await;
    let thread_id = threads["threads"][0]["thread_id"].as_str().unwrap().to_string();
    let path = format!("/threads/{thread_id}/messages");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, messages) = get_as(&server, &path, Some(ADMIN)).await;
        if messages["messages"].as_array().unwrap().last().unwrap()["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "the turn was never recorded cancelled: {messages}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_as(&server, &path, Some(&alice)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tokens_cli_and_the_service_share_the_store_and_no_secret_reaches_the_log() {
    let store = tempfile::tempdir().unwrap();
    let binary = workspace_binary("orchestrator");
    let cli = |args: &[&str]| {
        let output = Command::new(&binary)
            .env_clear()
            .env("DATASETS_DIR", datasets_dir())
            .env("RUN_STORE_PATH", store.path().join("runs.sqlite"))
            .args(["tokens"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        (output.status.success(), stdout, String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (ok, created, stderr) = cli(&["create", "--subject", "erin", "--datasets", "support", "--expires-in", "30d"]);
    assert!(ok, "{stderr}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let token_id = created["token_id"].as_str().unwrap().to_string();
    assert!(created["expires_at"].is_string(), "{created}");
    let (ok, listed, _) = cli(&["list"]);
    assert!(ok && listed.contains(&token_id) && !listed.contains(&token[21..]), "{listed}");
    let (ok, _, stderr) = cli(&["create", "--subject", "x", "--datasets", "nope"]);
    assert!(!ok && stderr.contains("no dataset \"nope\""), "{stderr}");

    // The service, with the admin token and a log at debug level.
    let log = store.path().join("orchestrator.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(&binary)
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATASETS_DIR", datasets_dir())
        .env("RUN_STORE_PATH", store.path().join("runs.sqlite"))
        .env("RUNNER_CACHE_DIR", crate::support::cache_dir())
        .env("ADMIN_TOKEN", ADMIN)
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    crate::support::wait_until_ready(&url).await;
    let post = |token: String| {
        let url = url.clone();
        async move {
            let body = json!({"dataset_id": "support", "sql": "SELECT 1 AS one"});
            let response = client().post(format!("{url}/runs")).bearer_auth(token).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, run) = post(token.clone()).await;
    assert_eq!((status, run["details"]["principal"].as_str()), (200, Some("erin")), "{run}");
    let forged = format!("{}{}", &token[..token.len() - 4], "AAAA");
    assert_eq!(post(forged.clone()).await.0, 401);
    let (ok, _, stderr) = cli(&["revoke", &token_id]);
    assert!(ok, "{stderr}");
    let (status, body) = post(token.clone()).await;
    assert_eq!(status, 401, "revoked by the CLI, refused by the running service at once: {body}");
    let response = client().get(format!("{url}/admin/tokens")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("serving"), "the log was captured: {log}");
    for secret in [&token[21..], &forged[21..], ADMIN] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}
