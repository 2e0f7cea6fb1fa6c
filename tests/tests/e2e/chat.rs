//! The analyst agent end to end: the orchestrator with its real sandbox, talking to
//! the fake model server (`fake_llm`), which plays scripted replies, records every
//! request and injects faults. Each test asserts exact outcomes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{Csv, TestServer, client, datasets_dir, workspace_binary};

const COUNT_SQL: &str = "SELECT COUNT(*) AS ticket_count FROM tickets";

fn ticket_count() -> usize {
    Csv::load(&datasets_dir().join("support/tickets.csv")).rows.len()
}

fn sql_call(sql: &str) -> Reply {
    Reply::tool_call("run_sql", json!({ "sql": sql }).to_string())
}

/// A server whose model is the fake, speaking OpenAI.
async fn server(fake: &FakeLlm, customize: impl FnOnce(&mut orchestrator::Config)) -> TestServer {
    let base = fake.openai_base_url();
    TestServer::start(move |c| {
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Openai;
        c.llm.openai_base_url = Some(base);
        c.llm.openai_api_key = Some("sk-test-not-a-real-key".into());
        c.llm.llm_timeout_seconds = 5.0;
        customize(c);
    })
    .await
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = client().post(format!("{}{path}", server.url)).json(&body).send().await.unwrap();
    let code = response.status().as_u16();
    let text = response.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn chat(server: &TestServer, body: Value) -> Value {
    let (code, body) = post(server, "/chat", body).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// The text of every message the fake received, as one string per request.
fn request_texts(fake: &FakeLlm) -> Vec<String> {
    fake.requests().iter().map(|r| r.body.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_is_answered_with_one_query_whose_rows_equal_post_runs() {
    let fake = FakeLlm::start().await;
    let n = ticket_count();
    fake.script([sql_call(COUNT_SQL), Reply::text(format!("There are {} tickets.", fmt_thousands(n)))]);
    let server = server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets are there?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["assistant_message"], format!("There are {} tickets.", fmt_thousands(n)));
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["details"]["query_mode"], "chat");
    assert_eq!(body["details"]["compiled_sql"], COUNT_SQL);
    // The vocabulary of `/runs`; the names above are the deprecated ones.
    assert_eq!(body["details"]["query_type"], "chat");
    assert_eq!(body["details"]["sql"], COUNT_SQL);
    assert_eq!(body["details"]["llm"]["steps"], 2);
    assert_eq!(body["details"]["llm"]["provider"], "openai");
    assert!(body["details"]["llm"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(body["details"]["attempts"].as_array().unwrap().len(), 1);
    let (_, direct) = server.post_run(json!({"dataset_id": "support", "sql": COUNT_SQL})).await;
    assert_eq!(body["result"]["rows"], direct["result"]["rows"]);
    assert_eq!(body["result"]["rows"], json!([[n]]));

    // The run is a normal run, linked to its turn.
    let run_id = body["run_id"].as_str().unwrap();
    let (code, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200);
    assert_eq!(run["details"]["turn_id"], body["turn_id"]);
    assert!(run["details"]["dataset_version_hash"].as_str().unwrap().starts_with("sha256:"));

    // The model saw the dataset's schema and the tools bound to it, and the result rows.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0].body.to_string();
    assert!(first.contains("resolution_time_hours") && first.contains("run_sql") && first.contains("describe_column"));
    assert!(!first.contains("\"dataset_id\""), "tools take no dataset id");
    // The prompt states the dialect's choices docs/sql.md documents.
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("dividing two integers gives a fraction (7 / 2 = 3.5"), "{system}");
    assert!(system.contains("NULLs sort last in both directions"), "{system}");
    let second = requests[1].body.to_string();
    assert!(second.contains(&format!("[[{n}]]")), "the result rows went back to the model: {second}");

    // The turn records exactly what the model saw.
    let (code, turn) = server.get(&format!("/chat/turns/{}", body["turn_id"].as_str().unwrap())).await;
    assert_eq!(code, 200);
    assert_eq!(turn["response"], body);
    let context = turn["context"].to_string();
    assert!(context.contains("How many tickets are there?") && context.contains(&format!("[[{n}]]")));
    assert_eq!(turn["attempts"][0]["run_id"], json!(run_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_column_is_fixed_on_the_second_attempt_with_a_hint() {
    let fake = FakeLlm::start().await;
    fake.script([
        sql_call("SELECT priorty, COUNT(*) AS n FROM tickets GROUP BY priorty"),
        sql_call("SELECT priority, COUNT(*) AS n FROM tickets GROUP BY priority ORDER BY n DESC"),
        Reply::text("Most tickets have the priority shown first."),
    ]);
    let server = server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "Tickets per priority?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    let attempts = body["details"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[0]["error_type"], "SQL_PLAN_ERROR");
    assert_eq!(attempts[1]["status"], "succeeded");
    assert_eq!(body["run_id"], attempts[1]["run_id"]);
    let second = &fake.requests()[1].body;
    let tool_message = second["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").unwrap();
    let content: Value = serde_json::from_str(tool_message["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["error_type"], "SQL_PLAN_ERROR");
    assert_eq!(content["did_you_mean"][0], "priority", "{content}");
}

#[tokio::test(flavor = "multi_thread")]
async fn four_failures_stop_at_three_runs_and_ddl_never_reaches_a_sandbox() {
    let fake = FakeLlm::start().await;
    fake.script([
        sql_call("DROP TABLE tickets"),
        sql_call("SELECT nope FROM tickets"),
        sql_call("SELECT * FROM ecommerce.orders"),
        sql_call("SELECT 1/0 FROM nowhere"),
    ]);
    let server = server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "Break things"})).await;
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["error"]["type"], "AGENT_STEP_LIMIT");
    assert_eq!(body["run_id"], Value::Null);
    assert_eq!(body["result"], Value::Null);
    let attempts = body["details"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "the fourth query is over LLM_MAX_SQL_ATTEMPTS");
    assert_eq!(fake.requests().len(), 4);
    // DDL: rejected by the policy, before any sandbox (no queue time, no start).
    assert_eq!(attempts[0]["status"], "rejected");
    assert_eq!(attempts[0]["error_type"], "SQL_NOT_ALLOWED");
    let (_, ddl) = server.get(&format!("/runs/{}", attempts[0]["run_id"].as_str().unwrap())).await;
    assert_eq!(ddl["details"]["started_at"], Value::Null, "{ddl}");
    // Another dataset's table is refused.
    assert_eq!(attempts[2]["status"], "rejected");
    assert_eq!(attempts[2]["error_type"], "UNKNOWN_TABLE");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_schema_exposure_no_cell_value_reaches_the_model() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::tool_call("describe_column", json!({"table": "tickets", "column": "category"}).to_string()),
        sql_call("SELECT category, AVG(csat_score) AS csat FROM tickets GROUP BY category ORDER BY csat DESC"),
        Reply::text("The table shows the average satisfaction per category."),
    ]);
    let server = server(&fake, |c| c.chat.llm_data_exposure = orchestrator::config::DataExposure::Schema).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "Satisfaction by category?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert!(body["result"]["rows"].as_array().unwrap().len() > 1, "the user still sees the table");
    let csv = Csv::load(&datasets_dir().join("support/tickets.csv"));
    let texts = request_texts(&fake).join("\n");
    // Every distinct text cell of the table, and the result's own values.
    let mut cells: Vec<String> = Vec::new();
    for name in ["category", "priority", "channel", "status", "agent_id", "created_at"] {
        for value in csv.values(name) {
            if !cells.iter().any(|c| c == value) {
                cells.push(value.to_string());
            }
        }
    }
    for row in body["result"]["rows"].as_array().unwrap() {
        cells.push(row[1].to_string());
    }
    // The registry's own descriptions are schema the curator wrote (the category
    // column's lists its values): they go to the model in every mode.
    let registry = std::fs::read_to_string(datasets_dir().join("registry.json")).unwrap();
    cells.retain(|cell| !registry.contains(cell.as_str()));
    assert!(cells.len() > 100, "the check covers the data: {} cells", cells.len());
    for cell in &cells {
        assert!(
            !texts.contains(&format!("\"{cell}\"")) && !texts.contains(&format!(" {cell} ")),
            "{cell:?} reached the model"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_made_up_number_is_flagged() {
    let fake = FakeLlm::start().await;
    let n = ticket_count();
    fake.script([sql_call(COUNT_SQL), Reply::text(format!("There are {n} tickets, and 4,321 of them are urgent."))]);
    let server = server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["warnings"], json!([{"type": "UNGROUNDED_NUMBER", "value": "4,321"}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_reports_in_order_ends_once_and_its_result_is_the_chat_body() {
    let fake = FakeLlm::start().await;
    let n = ticket_count();
    let answer = format!("There are {n} tickets in all.");
    fake.script([sql_call(COUNT_SQL), Reply::text(answer.clone())]);
    let server = server(&fake, |_| {}).await;
    let response = client()
        .post(format!("{}/chat/stream", server.url))
        .json(&json!({"dataset_id": "support", "message": "How many tickets are there?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let text = response.text().await.unwrap();
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "done").count(), 1, "{names:?}");
    assert_eq!(names.last(), Some(&"done"));
    assert_eq!(names.iter().filter(|n| **n == "result").count(), 1);
    let position = |name: &str| names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no {name}: {names:?}"));
    assert!(position("status") < position("tool_call"));
    assert!(position("tool_call") < position("tool_result"));
    assert!(position("tool_result") < position("token"));
    assert!(position("token") < position("result"));
    assert!(names.iter().filter(|n| **n == "token").count() >= 2, "the answer streamed in fragments");
    let ids: Vec<u64> = events.iter().map(|(_, id, _)| id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids count up: {ids:?}");
    let tokens: String =
        events.iter().filter(|(n, _, _)| n == "token").map(|(_, _, d)| d["content"].as_str().unwrap()).collect();
    assert_eq!(tokens, answer);
    let result = &events[position("result")].2;
    assert_eq!(result["assistant_message"], answer);
    let done = &events[position("done")].2;
    assert_eq!(done["turn_id"], result["turn_id"]);
    let tool_result = &events[position("tool_result")].2;
    assert_eq!(tool_result["row_count"], 1);
    assert_eq!(tool_result["status"], "succeeded");

    // The result event is the /chat body: the one stored for the turn, and the one
    // /chat gives for the same script (ids and timings aside).
    let (_, turn) = server.get(&format!("/chat/turns/{}", result["turn_id"].as_str().unwrap())).await;
    assert_eq!(&turn["response"], result);
    fake.script([sql_call(COUNT_SQL), Reply::text(answer.clone())]);
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets are there?"})).await;
    assert_eq!(comparable(&body), comparable(result));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_client_that_disconnects_cancels_the_turn_and_the_model_request() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::SlowText {
        text: "one two three four five six seven eight nine ten".into(),
        every: Duration::from_millis(400),
    }]);
    let server = server(&fake, |_| {}).await;
    let response = client()
        .post(format!("{}/chat/stream", server.url))
        .json(&json!({"dataset_id": "support", "message": "Tell me slowly"}))
        .send()
        .await
        .unwrap();
    let mut response = response;
    let mut seen = String::new();
    while !seen.contains("event: token") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(response);
    let gone = Instant::now();
    assert!(fake.wait_for_disconnect(Duration::from_secs(1)).await, "the model request outlived its client");
    assert!(gone.elapsed() <= Duration::from_millis(1500));
    // The turn is recorded cancelled.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, threads) = server.get("/threads").await;
        let thread_id = threads["threads"][0]["thread_id"].as_str().unwrap().to_string();
        let (_, messages) = server.get(&format!("/threads/{thread_id}/messages")).await;
        let last = messages["messages"].as_array().unwrap().last().unwrap().clone();
        if last["role"] == "assistant" {
            assert_eq!(last["status"], "cancelled", "{messages}");
            break;
        }
        assert!(Instant::now() < deadline, "the turn was never recorded: {messages}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn model_faults_end_the_turn_with_their_type() {
    // 401: no retry.
    let fake = FakeLlm::start().await;
    fake.script([Reply::error(401, "invalid api key")]);
    let server = server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["type"], "LLM_AUTH_ERROR");
    assert_eq!(fake.requests().len(), 1, "a 401 is not retried");

    // 429 with Retry-After: retried, then answered.
    fake.script([Reply::rate_limited(1), sql_call(COUNT_SQL), Reply::text("Counted.")]);
    let started = Instant::now();
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was honoured");
    assert_eq!(fake.requests().len(), 4);

    // A stall past LLM_TIMEOUT_SECONDS.
    let fake = FakeLlm::start().await;
    fake.script([Reply::Stall(Duration::from_secs(30))]);
    let server = crate::chat::server(&fake, |c| {
        c.llm.llm_timeout_seconds = 1.0;
        c.llm.llm_max_retries = 0;
    })
    .await;
    let started = Instant::now();
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["error"]["type"], "LLM_TIMEOUT", "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The model fails after a run succeeded: the service summarises the result.
    let fake = FakeLlm::start().await;
    fake.script([sql_call(COUNT_SQL), Reply::error(500, "boom"), Reply::error(500, "boom"), Reply::error(500, "boom")]);
    let server = crate::chat::server(&fake, |_| {}).await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["assistant_message"], format!("ticket_count: {}", ticket_count()));
    assert_eq!(body["warnings"][0]["type"], "LLM_SUMMARY_FAILED");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_model_only_sql_and_plan_messages_work() {
    let server = TestServer::start(|c| c.llm.llm_provider = orchestrator::llm::ProviderChoice::None).await;
    let (code, body) = post(&server, "/chat", json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["type"], "LLM_NOT_CONFIGURED");
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 200);
    let (code, ready) = server.get("/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(ready["llm"]["configured"], false);

    let body = chat(&server, json!({"dataset_id": "support", "message": format!("SQL: {COUNT_SQL}")})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["details"]["query_mode"], "sql");
    assert_eq!(body["result"]["rows"], json!([[ticket_count()]]));
    assert_eq!(body["assistant_message"], format!("ticket_count: {}", ticket_count()));

    let plan = json!({"table": "tickets", "select": [{"column": "priority"}, {"agg": "count", "as": "n"}],
                      "group_by": ["priority"], "order_by": [{"column": "n", "direction": "desc"}]});
    let body = chat(&server, json!({"dataset_id": "support", "message": format!("PLAN: {plan}")})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["details"]["query_mode"], "plan");
    assert_eq!(body["details"]["plan_json"], plan);
    assert_eq!(body["details"]["query_type"], "plan");
    assert_eq!(body["details"]["plan"], plan);
    let (_, direct) = server
        .post_run(json!({"dataset_id": "support", "sql": "SELECT priority, COUNT(*) AS n FROM tickets GROUP BY priority ORDER BY n DESC"}))
        .await;
    assert_eq!(body["result"]["rows"], direct["result"]["rows"]);

    // Bad requests are 4xx and store nothing.
    let cases = [
        (json!({"dataset_id": "nope", "message": "SQL: SELECT 1"}), 404, "UNKNOWN_DATASET"),
        (json!({"dataset_id": "support", "message": ""}), 400, "INVALID_REQUEST"),
        (json!({"dataset_id": "support", "message": "x".repeat(4001)}), 400, "INVALID_REQUEST"),
        (json!({"dataset_id": "support", "message": "SQL: SELECT 1", "thread_id": "nope"}), 404, "THREAD_NOT_FOUND"),
        (json!({"dataset_id": "support"}), 400, "INVALID_REQUEST"),
    ];
    for (request, want_code, want_type) in cases {
        let (code, body) = post(&server, "/chat", request.clone()).await;
        assert_eq!((code, body["error"]["type"].as_str().unwrap_or("")), (want_code, want_type), "{request}");
    }
    let thread_id = body["thread_id"].as_str().unwrap();
    let (code, body) =
        post(&server, "/chat", json!({"dataset_id": "ecommerce", "message": "SQL: SELECT 1", "thread_id": thread_id}))
            .await;
    assert_eq!((code, body["error"]["type"].as_str().unwrap()), (409, "THREAD_DATASET_CONFLICT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_carry_history_stay_apart_and_survive_a_restart() {
    let fake = FakeLlm::start().await;
    fake.script([sql_call(COUNT_SQL), Reply::text("Counted them.")]);
    let server = server(&fake, |_| {}).await;
    let first = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    let thread_id = first["thread_id"].as_str().unwrap().to_string();

    // A follow-up in the same thread: the model sees the previous SQL.
    fake.script([Reply::text("As before.")]);
    let follow = chat(&server, json!({"dataset_id": "support", "message": "And again?", "thread_id": thread_id})).await;
    assert_eq!(follow["thread_id"], json!(thread_id));
    let texts = request_texts(&fake);
    assert!(texts[2].contains(COUNT_SQL) && texts[2].contains("How many tickets?"), "{}", texts[2]);

    // Another thread does not see it.
    fake.script([Reply::text("Fresh start.")]);
    let other = chat(&server, json!({"dataset_id": "support", "message": "Hello there"})).await;
    assert_ne!(other["thread_id"], json!(thread_id));
    assert!(!request_texts(&fake)[3].contains("How many tickets?"));

    let (_, threads) = server.get("/threads?limit=10").await;
    assert_eq!(threads["threads"].as_array().unwrap().len(), 2);

    // Threads survive a restart.
    let store = server.stop().await;
    let base = fake.openai_base_url();
    let server = TestServer::start_in(store, move |c| {
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Openai;
        c.llm.openai_base_url = Some(base);
    })
    .await;
    let (code, messages) = server.get(&format!("/threads/{thread_id}/messages")).await;
    assert_eq!(code, 200);
    let roles: Vec<&str> =
        messages["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["user", "assistant", "user", "assistant"]);
    assert_eq!(messages["messages"][0]["content"], "How many tickets?");
    let response = client().delete(format!("{}/threads/{thread_id}", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let (code, body) = server.get(&format!("/threads/{thread_id}/messages")).await;
    assert_eq!((code, body["error"]["type"].as_str().unwrap()), (404, "THREAD_NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_answers_through_the_same_loop() {
    let fake = FakeLlm::start().await;
    let n = ticket_count();
    fake.script([sql_call(COUNT_SQL), Reply::text(format!("{n} tickets."))]);
    let base = fake.anthropic_base_url();
    let server = TestServer::start(move |c| {
        c.llm.llm_provider = orchestrator::llm::ProviderChoice::Anthropic;
        c.llm.anthropic_base_url = Some(base);
        c.llm.anthropic_api_key = Some("sk-ant-test".into());
    })
    .await;
    let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["details"]["llm"]["provider"], "anthropic");
    assert_eq!(body["result"]["rows"], json!([[n]]));
    assert!(fake.requests().iter().all(|r| r.path == "/v1/messages"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_run_through_post_runs_with_literals_bound() {
    let server = TestServer::start(|_| {}).await;
    let plan = json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}],
                      "filters": [{"column": "category", "op": "=", "value": "x'; DROP TABLE tickets; --"}]});
    let (code, body) = server.post_run(json!({"dataset_id": "support", "query_type": "plan", "plan": plan})).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["result"]["rows"], json!([[0]]), "the value stayed a literal");
    assert_eq!(body["details"]["query_type"], "plan");
    assert_eq!(body["details"]["plan"], plan);
    assert!(body["details"]["sql"].as_str().unwrap().contains("'x''; DROP TABLE tickets; --'"));

    let bad = json!({"table": "tickets", "select": [{"agg": "count", "as": "n"}], "filters": [{"colum": "x", "op": "=", "value": 1}]});
    let (_, body) = server.post_run(json!({"dataset_id": "support", "query_type": "plan", "plan": bad})).await;
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["type"], "INVALID_REQUEST");
    assert!(body["error"]["message"].as_str().unwrap().contains("filters[0]"), "{body}");

    let (code, schema) = server.get("/schemas/plan").await;
    assert_eq!(code, 200);
    assert!(schema["properties"]["filters"].is_object(), "{schema}");
}

/// The orchestrator binary, with a key in its environment: the key appears in no
/// log line, response or stored record.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_never_leaves_the_process() {
    let fake = FakeLlm::start().await;
    let key = "sk-live-ZZTOPSECRETZZ-0123456789";
    fake.script([
        Reply::error(401, "bad key sk-live-ZZTOPSECRETZZ-0123456789"),
        sql_call(COUNT_SQL),
        Reply::text("ok"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log.txt");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(workspace_binary("orchestrator"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPENAI_API_KEY", key)
        .env("OPENAI_BASE_URL", fake.openai_base_url())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATASETS_DIR", datasets_dir())
        .env("RUN_STORE_PATH", dir.path().join("runs.sqlite"))
        .env("RUNNER_CACHE_DIR", crate::support::cache_dir())
        .env("LOG_LEVEL", "debug")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.txt")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    crate::support::wait_until_ready(&url).await;
    let mut seen = String::new();
    for path in ["/readyz", "/metrics"] {
        seen.push_str(&client().get(format!("{url}{path}")).send().await.unwrap().text().await.unwrap());
    }
    for _ in 0..2 {
        let response = client()
            .post(format!("{url}/chat"))
            .json(&json!({"dataset_id": "support", "message": "How many tickets?"}))
            .send()
            .await
            .unwrap();
        seen.push_str(&response.text().await.unwrap());
    }
    assert!(seen.contains("LLM_AUTH_ERROR"), "{seen}");
    let _ = child.kill();
    let _ = child.wait();
    let mut everything = seen;
    for file in ["log.txt", "err.txt", "runs.sqlite", "runs.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            everything.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(everything.contains("How many tickets?"), "the store and logs were read");
    assert!(!everything.contains("ZZTOPSECRETZZ"), "the key leaked");
    assert!(fake.requests()[0].header("authorization") == Some(&format!("Bearer {key}")[..]));
}

/// A guest (hand-written WAT, run in the same sandbox through RUNNER_MODULE) that
/// answers every query with `result`, one JSON line on stdout, whatever was asked.
fn scripted_guest(dir: &std::path::Path, result: &Value) -> std::path::PathBuf {
    let line = format!("{result}\n");
    let escaped = line.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let len = line.len() as u32;
    let le: String = len.to_le_bytes().iter().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "\10\00\00\00{le}")
          (data (i32.const 16) "{escaped}")
          (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    );
    let path = dir.join("scripted.wat");
    std::fs::write(&path, wat).unwrap();
    path
}

/// A sandbox may answer with any shape (a faulty or hostile guest, a Job's log):
/// no rows, rows with no cells, no columns at all. Chat turns (SQL:, a model's
/// answer, the service's own summary when the model fails), the CSV download and
/// the dataset schema all answer 200 with a clear text, never a panic or a 500.
#[tokio::test(flavor = "multi_thread")]
async fn results_of_any_shape_never_break_a_chat_turn() {
    let shape = |columns: Value, rows: Value| {
        let row_count = rows.as_array().unwrap().len();
        let types: Vec<&str> = columns.as_array().unwrap().iter().map(|_| "BIGINT").collect();
        json!({"status": "success", "columns": columns, "column_types": types, "rows": rows,
               "row_count": row_count, "truncated": false, "exec_time_ms": 0, "error": null})
    };
    let cases = [
        ("no rows", shape(json!(["n"]), json!([])), "0 rows with columns n.", "n\n"),
        ("one cell short", shape(json!(["n"]), json!([[]])), "n: (no value)", "n\n\"\"\n"),
        (
            "rows with no cells",
            shape(json!(["n"]), json!([[], []])),
            "2 rows with columns n. First row: n = (no value).",
            "n\n\"\"\n\"\"\n",
        ),
        (
            "one row with no cells",
            shape(json!(["a", "b"]), json!([[]])),
            "One row: a = (no value), b = (no value).",
            "a,b\n,\n",
        ),
        ("no columns", shape(json!([]), json!([[]])), "One row with no columns.", ""),
        ("no columns, a stray cell", shape(json!([]), json!([[7]])), "One row with no columns.", ""),
        ("no columns and no rows", shape(json!([]), json!([])), "No rows and no columns.", ""),
    ];
    for (what, result, summary, csv) in cases {
        let dir = tempfile::tempdir().unwrap();
        let module = scripted_guest(dir.path(), &result);
        let fake = FakeLlm::start().await;
        fake.script([
            sql_call(COUNT_SQL),
            Reply::text("Here is what the query returned."),
            sql_call(COUNT_SQL),
            Reply::error(500, "boom"),
        ]);
        let server = server(&fake, |c| {
            c.runner_module = Some(module);
            c.llm.llm_max_retries = 0;
        })
        .await;

        // SQL: runs directly and is summarised by the service.
        let body = chat(&server, json!({"dataset_id": "support", "message": format!("SQL: {COUNT_SQL}")})).await;
        assert_eq!(body["status"], "succeeded", "{what}: {body}");
        assert_eq!(body["assistant_message"], summary, "{what}");
        assert_eq!(body["result"]["rows"], result["rows"], "{what}");
        let run_id = body["run_id"].as_str().unwrap().to_string();

        // The model sees the result (its schema too, computed by the same guest) and answers.
        let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
        assert_eq!(body["status"], "succeeded", "{what}: {body}");
        assert_eq!(body["assistant_message"], "Here is what the query returned.", "{what}");

        // The model fails after the query: the service's summary stands in.
        let body = chat(&server, json!({"dataset_id": "support", "message": "How many tickets?"})).await;
        assert_eq!(body["status"], "succeeded", "{what}: {body}");
        assert_eq!(body["assistant_message"], summary, "{what}");
        assert_eq!(body["warnings"][0]["type"], "LLM_SUMMARY_FAILED", "{what}");

        // The stored run, its CSV and the dataset's schema.
        let (code, run) = server.get(&format!("/runs/{run_id}")).await;
        assert_eq!(code, 200, "{what}: {run}");
        let response = client().get(format!("{}/runs/{run_id}/result.csv", server.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{what}");
        let text = response.text().await.unwrap();
        if !csv.is_empty() {
            assert_eq!(text, csv, "{what}");
        }
        let (code, schema) = server.get("/datasets/support/schema").await;
        assert_eq!(code, 200, "{what}: {schema}");
        let (code, _) = server.get("/healthz").await;
        assert_eq!(code, 200, "{what}");
    }
}

/// `6000` → `6,000`.
fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `(event, id, data)` of each event of an SSE body.
fn parse_sse(text: &str) -> Vec<(String, String, Value)> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !name.is_empty() {
            events.push((name, id, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    events
}

/// A /chat body without what differs between two runs of the same script.
fn comparable(body: &Value) -> Value {
    let mut body = body.clone();
    for key in ["turn_id", "thread_id", "run_id"] {
        body[key] = Value::Null;
    }
    body["result"]["exec_time_ms"] = Value::Null;
    body["result"]["stats"] = Value::Null;
    for attempt in body["details"]["attempts"].as_array_mut().unwrap() {
        attempt["run_id"] = Value::Null;
    }
    body["details"]["llm"]["input_tokens"] = Value::Null;
    body["details"]["llm"]["output_tokens"] = Value::Null;
    body
}
