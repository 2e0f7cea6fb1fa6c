//! The model client (`orchestrator::llm`) against the fake provider, in both
//! dialects, streamed and not: replies and tool calls put together exactly, the
//! headers each provider wants, which failures are retried and which are not,
//! timeouts, cut streams, a dropped request closing its connection, and the API key
//! never showing in an error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::llm::{
    LlmClient, LlmConfig, LlmError, Message, ModelReply, ModelRequest, ProviderChoice, ToolCall, ToolSpec, Usage,
};
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Recorded, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

const DIALECTS: [Dialect; 2] = [Dialect::OpenAi, Dialect::Anthropic];
const KEY: &str = "sk-test-SECRET-7f3a9c21e5";

fn config(dialect: Dialect, fake: &FakeLlm, key: Option<&str>) -> LlmConfig {
    let base = LlmConfig { llm_timeout_seconds: 5.0, llm_max_retries: 2, ..LlmConfig::default() };
    match dialect {
        Dialect::OpenAi => LlmConfig {
            llm_provider: ProviderChoice::Openai,
            openai_base_url: Some(fake.openai_base_url()),
            openai_api_key: key.map(Into::into),
            openai_model: "fake-gpt".into(),
            ..base
        },
        Dialect::Anthropic => LlmConfig {
            llm_provider: ProviderChoice::Anthropic,
            anthropic_base_url: Some(fake.anthropic_base_url()),
            anthropic_api_key: key.map(Into::into),
            anthropic_model: "fake-claude".into(),
            ..base
        },
    }
}

fn client(config: &LlmConfig) -> LlmClient {
    LlmClient::from_config(config).expect("valid settings").expect("configured")
}

fn request() -> ModelRequest {
    ModelRequest {
        system: "You answer questions about the support dataset.".into(),
        messages: vec![Message::user("Which priority has the slowest resolution?")],
        tools: vec![ToolSpec {
            name: "run_sql".into(),
            description: "Runs one SQL query on the dataset.".into(),
            parameters: json!({"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}),
        }],
        max_tokens: 256,
    }
}

/// One call, streamed or not; returns the outcome and the text fragments seen.
async fn ask(
    client: &LlmClient,
    request: &ModelRequest,
    streaming: bool,
) -> (Result<ModelReply, LlmError>, Vec<String>) {
    let mut fragments = Vec::new();
    let outcome = if streaming {
        let mut on_text = |text: &str| fragments.push(text.to_string());
        client.complete_streaming(request, &mut on_text).await
    } else {
        client.complete(request).await
    };
    (outcome, fragments)
}

fn usage_sent(recorded: &Recorded) -> Usage {
    let (input_tokens, output_tokens) = recorded.usage_sent.expect("the fake reported usage");
    Usage { input_tokens, output_tokens }
}

fn call_id(dialect: Dialect, request_number: usize, position: usize) -> String {
    match dialect {
        Dialect::OpenAi => format!("call_{request_number}_{position}"),
        Dialect::Anthropic => format!("toolu_{request_number}_{position}"),
    }
}

/// `text` in the fake's fragments: 5 characters each.
fn five_char_pieces(text: &str) -> Vec<String> {
    text.chars().collect::<Vec<_>>().chunks(5).map(|piece| piece.iter().collect()).collect()
}

/// Calls equal, exactly — except that unstreamed Anthropic replies carry the
/// arguments as an object, which comes back as the same JSON in serde_json's spelling.
fn assert_same_calls(dialect: Dialect, streaming: bool, actual: &[ToolCall], expected: &[ToolCall]) {
    if dialect == Dialect::Anthropic && !streaming {
        let as_json = |calls: &[ToolCall]| -> Vec<(String, String, Value)> {
            calls
                .iter()
                .map(|c| (c.id.clone(), c.name.clone(), serde_json::from_str(&c.arguments).expect("JSON arguments")))
                .collect()
        };
        assert_eq!(as_json(actual), as_json(expected));
    } else {
        assert_eq!(actual, expected, "{dialect:?} streaming={streaming}");
    }
}

#[tokio::test]
async fn llm_client_text_reply_in_both_dialects_streamed_and_not() {
    let text = "Priority «urgent» takes 41.5 h — the slowest 😀.";
    for dialect in DIALECTS {
        for streaming in [false, true] {
            let fake = FakeLlm::start().await;
            fake.script([Reply::text(text)]);
            let llm = client(&config(dialect, &fake, Some(KEY)));
            let (outcome, fragments) = ask(&llm, &request(), streaming).await;
            let requests = fake.requests();
            assert_eq!(requests.len(), 1);
            let recorded = &requests[0];
            let stop = if dialect == Dialect::OpenAi { "stop" } else { "end_turn" };
            assert_eq!(
                outcome.unwrap(),
                ModelReply {
                    text: text.into(),
                    tool_calls: vec![],
                    usage: usage_sent(recorded),
                    stop_reason: Some(stop.into())
                },
                "{dialect:?} streaming={streaming}"
            );
            assert_eq!(usage_sent(recorded).input_tokens, recorded.body_bytes as u64 / 4);
            assert!(recorded.body_bytes > 100);
            if streaming {
                assert_eq!(fragments, five_char_pieces(text), "{dialect:?}");
            } else {
                assert_eq!(fragments, Vec::<String>::new());
            }
            assert_eq!(recorded.streaming(), streaming);
            match dialect {
                Dialect::OpenAi => {
                    assert_eq!(recorded.path, "/v1/chat/completions");
                    assert_eq!(recorded.body["model"], "fake-gpt");
                    assert_eq!(recorded.body["max_tokens"], 256);
                    assert_eq!(
                        recorded.body["messages"][0],
                        json!({"role": "system", "content": "You answer questions about the support dataset."})
                    );
                    let options = if streaming { json!({"include_usage": true}) } else { Value::Null };
                    assert_eq!(recorded.body["stream_options"], options);
                }
                Dialect::Anthropic => {
                    assert_eq!(recorded.path, "/v1/messages");
                    assert_eq!(recorded.body["model"], "fake-claude");
                    assert_eq!(recorded.body["max_tokens"], 256);
                    assert_eq!(recorded.body["system"], "You answer questions about the support dataset.");
                }
            }
            // A stream read to its end is not a disconnect.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(fake.disconnects(), 0, "{dialect:?} streaming={streaming}");
        }
    }
}

#[tokio::test]
async fn llm_client_tool_call_arguments_in_fragments_are_reassembled_exactly() {
    let arguments =
        r#"{"sql": "SELECT priority, AVG(resolution_hours) AS \"h\" FROM tickets WHERE title LIKE '%é%' GROUP BY 1"}"#;
    for dialect in DIALECTS {
        for streaming in [false, true] {
            let fake = FakeLlm::start().await;
            fake.script([Reply::tool_call("run_sql", arguments)]);
            let (outcome, fragments) = ask(&client(&config(dialect, &fake, None)), &request(), streaming).await;
            let reply = outcome.unwrap();
            assert_eq!(reply.text, "");
            assert_eq!(fragments, Vec::<String>::new());
            assert_eq!(
                reply.stop_reason.as_deref(),
                Some(if dialect == Dialect::OpenAi { "tool_calls" } else { "tool_use" })
            );
            let expected = ToolCall { id: call_id(dialect, 1, 0), name: "run_sql".into(), arguments: arguments.into() };
            assert_same_calls(dialect, streaming, &reply.tool_calls, &[expected]);
        }
    }
}

#[tokio::test]
async fn llm_client_malformed_arguments_pass_through_unchanged() {
    let arguments = r#"{"sql": "SELECT * FROM tickets WHERE"#;
    for (dialect, streaming) in [(Dialect::OpenAi, false), (Dialect::OpenAi, true), (Dialect::Anthropic, true)] {
        let fake = FakeLlm::start().await;
        fake.script([Reply::tool_call("run_sql", arguments)]);
        let (outcome, _) = ask(&client(&config(dialect, &fake, None)), &request(), streaming).await;
        assert_eq!(
            outcome.unwrap().tool_calls,
            vec![ToolCall { id: call_id(dialect, 1, 0), name: "run_sql".into(), arguments: arguments.into() }],
            "{dialect:?} streaming={streaming}"
        );
    }
}

#[tokio::test]
async fn llm_client_two_tool_calls_and_text_in_one_reply() {
    let calls = vec![
        ("run_sql".to_string(), r#"{"sql":"SELECT COUNT(*) FROM tickets"}"#.to_string()),
        ("describe_column".to_string(), r#"{"table":"tickets","column":"priority"}"#.to_string()),
    ];
    for dialect in DIALECTS {
        for streaming in [false, true] {
            let fake = FakeLlm::start().await;
            fake.script([
                Reply::ToolCalls(calls.clone()),
                Reply::TextAndToolCalls { text: "Two checks first.".into(), calls: calls.clone() },
            ]);
            let llm = client(&config(dialect, &fake, None));
            let expected = |number: usize| -> Vec<ToolCall> {
                calls
                    .iter()
                    .enumerate()
                    .map(|(position, (name, arguments))| ToolCall {
                        id: call_id(dialect, number, position),
                        name: name.clone(),
                        arguments: arguments.clone(),
                    })
                    .collect()
            };
            let (first, _) = ask(&llm, &request(), streaming).await;
            let first = first.unwrap();
            assert_eq!(first.text, "");
            assert_same_calls(dialect, streaming, &first.tool_calls, &expected(1));
            let (second, fragments) = ask(&llm, &request(), streaming).await;
            let second = second.unwrap();
            assert_eq!(second.text, "Two checks first.");
            assert_same_calls(dialect, streaming, &second.tool_calls, &expected(2));
            if streaming {
                assert_eq!(fragments.concat(), "Two checks first.");
            }
            assert_eq!(fake.remaining(), 0);
        }
    }
}

#[tokio::test]
async fn llm_client_history_with_tool_results_is_sent_in_each_dialect_shape() {
    let mut history = request();
    history.messages.extend([
        Message::assistant(
            "",
            vec![
                ToolCall { id: "c1".into(), name: "run_sql".into(), arguments: r#"{"sql":"SELECT 1"}"#.into() },
                ToolCall { id: "c2".into(), name: "run_sql".into(), arguments: r#"{"sql": "SEL"#.into() },
            ],
        ),
        Message::tool_result("c1", r#"{"rows":[[1]]}"#),
        Message::tool_result("c2", r#"{"error_type":"MALFORMED_ARGUMENTS"}"#),
    ]);
    for dialect in DIALECTS {
        let fake = FakeLlm::start().await;
        fake.script([Reply::text("Done.")]);
        let (outcome, _) = ask(&client(&config(dialect, &fake, None)), &history, true).await;
        assert_eq!(outcome.unwrap().text, "Done.");
        let body = &fake.requests()[0].body;
        let expected = match dialect {
            Dialect::OpenAi => json!([
                {"role": "system", "content": "You answer questions about the support dataset."},
                {"role": "user", "content": "Which priority has the slowest resolution?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "run_sql", "arguments": "{\"sql\":\"SELECT 1\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "run_sql", "arguments": "{\"sql\": \"SEL"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"rows\":[[1]]}"},
                {"role": "tool", "tool_call_id": "c2", "content": "{\"error_type\":\"MALFORMED_ARGUMENTS\"}"},
            ]),
            Dialect::Anthropic => json!([
                {"role": "user", "content": [{"type": "text", "text": "Which priority has the slowest resolution?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c1", "name": "run_sql", "input": {"sql": "SELECT 1"}},
                    {"type": "tool_use", "id": "c2", "name": "run_sql", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "{\"rows\":[[1]]}"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "{\"error_type\":\"MALFORMED_ARGUMENTS\"}"},
                ]},
            ]),
        };
        assert_eq!(body["messages"], expected, "{dialect:?}");
        let tools = match dialect {
            Dialect::OpenAi => json!([{"type": "function", "function": {"name": "run_sql",
                "description": "Runs one SQL query on the dataset.", "parameters": request().tools[0].parameters}}]),
            Dialect::Anthropic => json!([{"name": "run_sql", "description": "Runs one SQL query on the dataset.",
                "input_schema": request().tools[0].parameters}]),
        };
        assert_eq!(body["tools"], tools, "{dialect:?}");
    }
}

#[tokio::test]
async fn llm_client_requests_carry_the_right_auth_headers() {
    for dialect in DIALECTS {
        for key in [Some(KEY), None] {
            let fake = FakeLlm::start().await;
            fake.script([Reply::text("ok"), Reply::text("ok")]);
            let llm = client(&config(dialect, &fake, key));
            ask(&llm, &request(), false).await.0.unwrap();
            ask(&llm, &request(), true).await.0.unwrap();
            for recorded in fake.requests() {
                assert_eq!(recorded.header("content-type"), Some("application/json"));
                match dialect {
                    Dialect::OpenAi => {
                        let bearer = key.map(|k| format!("Bearer {k}"));
                        assert_eq!(recorded.header("authorization"), bearer.as_deref());
                        assert_eq!(recorded.header("x-api-key"), None);
                        assert_eq!(recorded.header("anthropic-version"), None);
                    }
                    Dialect::Anthropic => {
                        assert_eq!(recorded.header("x-api-key"), key);
                        assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
                        assert_eq!(recorded.header("authorization"), None);
                    }
                }
            }
        }
    }
}

/// The key appears neither in the error's text nor in its Debug form, and neither
/// does anything else the test can see.
fn assert_no_key(error: &LlmError) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(KEY), "the key leaked: {text}");
        assert!(!text.contains("SECRET"), "part of the key leaked: {text}");
    }
}

#[tokio::test]
async fn llm_client_unauthorized_is_an_auth_error_without_retry() {
    for dialect in DIALECTS {
        let fake = FakeLlm::start().await;
        let echo = json!({"error": {"type": "authentication_error", "message": format!("Incorrect API key provided: {KEY}.")}});
        fake.script([Reply::Status { code: 401, retry_after: None, body: echo.to_string() }, Reply::text("unused")]);
        let (outcome, _) = ask(&client(&config(dialect, &fake, Some(KEY))), &request(), false).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), "LLM_AUTH_ERROR");
        let provider = if dialect == Dialect::OpenAi { "openai" } else { "anthropic" };
        assert_eq!(
            error.to_string(),
            format!(
                "{provider} refused the credentials (HTTP 401): authentication_error: Incorrect API key provided: \
                 [redacted]."
            )
        );
        assert!(matches!(error, LlmError::Auth { status: 401, .. }));
        assert_no_key(&error);
        assert_eq!(fake.requests().len(), 1, "a 401 is never retried");
        assert_eq!(fake.remaining(), 1);
    }
}

#[tokio::test]
async fn llm_client_other_client_errors_are_not_retried() {
    for (code, error_type) in [(400, "LLM_BAD_REQUEST"), (403, "LLM_AUTH_ERROR"), (404, "LLM_BAD_REQUEST")] {
        let fake = FakeLlm::start().await;
        fake.script([Reply::error(code, "no such model"), Reply::text("unused")]);
        let (outcome, _) = ask(&client(&config(Dialect::OpenAi, &fake, None)), &request(), true).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), error_type, "HTTP {code}");
        assert!(error.to_string().ends_with(&format!("(HTTP {code}): fake_error: no such model")), "{error}");
        assert_eq!(fake.requests().len(), 1, "HTTP {code} is never retried");
    }
}

#[tokio::test]
async fn llm_client_the_key_never_appears_in_any_error() {
    let echo = format!("upstream said: key {KEY} is bad");
    let cases: Vec<(Dialect, bool, Reply)> = vec![
        (Dialect::OpenAi, false, Reply::Status { code: 400, retry_after: None, body: echo.clone() }),
        (Dialect::Anthropic, false, Reply::Status { code: 400, retry_after: None, body: echo.clone() }),
        (Dialect::OpenAi, false, Reply::Status { code: 500, retry_after: None, body: echo.clone() }),
        (Dialect::Anthropic, true, Reply::Status { code: 429, retry_after: Some(0), body: echo.clone() }),
        (Dialect::OpenAi, true, Reply::StreamError { kind: "server_error".into(), message: echo.clone() }),
        (Dialect::Anthropic, true, Reply::StreamError { kind: "invalid_request_error".into(), message: echo.clone() }),
        (Dialect::OpenAi, true, Reply::CutStream),
    ];
    for (dialect, streaming, reply) in cases {
        let fake = FakeLlm::start().await;
        fake.script([reply.clone()]);
        let settings = LlmConfig { llm_max_retries: 0, ..config(dialect, &fake, Some(KEY)) };
        let llm = client(&settings);
        assert!(!format!("{llm:?}").contains(KEY));
        assert!(!format!("{settings:?}").contains(KEY));
        let (outcome, _) = ask(&llm, &request(), streaming).await;
        let error = outcome.unwrap_err();
        assert_no_key(&error);
        if !matches!(reply, Reply::CutStream) {
            assert!(error.to_string().contains("upstream said: key [redacted] is bad"), "{error}");
        }
    }
}

#[tokio::test]
async fn llm_client_rate_limit_waits_for_retry_after_then_succeeds() {
    for dialect in DIALECTS {
        let fake = FakeLlm::start().await;
        fake.script([Reply::rate_limited(1), Reply::text("after the wait")]);
        let started = Instant::now();
        let (outcome, _) = ask(&client(&config(dialect, &fake, None)), &request(), true).await;
        let elapsed = started.elapsed();
        assert_eq!(outcome.unwrap().text, "after the wait");
        assert_eq!(fake.requests().len(), 2);
        assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}

#[tokio::test]
async fn llm_client_rate_limit_that_persists_ends_as_rate_limited() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::rate_limited(0), Reply::rate_limited(0), Reply::text("unused")]);
    let settings = LlmConfig { llm_max_retries: 1, ..config(Dialect::Anthropic, &fake, None) };
    let (outcome, _) = ask(&client(&settings), &request(), false).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, LlmError::RateLimited { attempts: 2, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "anthropic is rate limiting this client (attempts: 2): rate_limit_error: fake LLM: slow down"
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn llm_client_server_errors_are_retried_with_backoff() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::error(500, "boom"), Reply::error(503, "busy"), Reply::text("third time")]);
    let started = Instant::now();
    let (outcome, _) = ask(&client(&config(Dialect::OpenAi, &fake, None)), &request(), false).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.unwrap().text, "third time");
    assert_eq!(fake.requests().len(), 3);
    // Backoff 0.5 s, then 1 s.
    assert!(elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4), "{elapsed:?}");

    let fake = FakeLlm::start().await;
    fake.script([
        Reply::error(500, "a"),
        Reply::error(502, "b"),
        Reply::error(529, "overloaded"),
        Reply::text("unused"),
    ]);
    let (outcome, _) = ask(&client(&config(Dialect::Anthropic, &fake, None)), &request(), true).await;
    let error = outcome.unwrap_err();
    assert_eq!(error.to_string(), "anthropic is unavailable (attempts: 3): HTTP 529: fake_error: overloaded");
    assert_eq!(error.error_type(), "LLM_UNAVAILABLE");
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.remaining(), 1);
}

#[tokio::test]
async fn llm_client_unscripted_call_fails_loudly() {
    let fake = FakeLlm::start().await;
    let settings = LlmConfig { llm_max_retries: 0, ..config(Dialect::OpenAi, &fake, None) };
    let error = ask(&client(&settings), &request(), false).await.0.unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai is unavailable (attempts: 1): HTTP 500: fake_error: fake LLM: no scripted reply left"
    );
}

#[tokio::test]
async fn llm_client_connection_refused_is_unavailable_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let settings = LlmConfig {
        llm_provider: ProviderChoice::Openai,
        openai_base_url: Some(format!("http://{address}/v1")),
        llm_max_retries: 1,
        ..LlmConfig::default()
    };
    let started = Instant::now();
    let error = client(&settings).complete(&request()).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(matches!(error, LlmError::Unavailable { attempts: 2, .. }), "{error:?}");
    let expected_start = format!("openai is unavailable (attempts: 2): {address}: ");
    assert!(error.to_string().starts_with(&expected_start), "{error}");
    assert!(error.to_string().contains("Connection refused"), "{error}");
}

#[tokio::test]
async fn llm_client_stall_longer_than_the_timeout_is_a_timeout() {
    let cases = [
        (Dialect::OpenAi, false, Reply::Stall(Duration::from_secs(5))),
        (Dialect::Anthropic, true, Reply::Stall(Duration::from_secs(5))),
        (Dialect::OpenAi, true, Reply::StallMidBody(Duration::from_secs(5))),
        (Dialect::Anthropic, true, Reply::StallMidBody(Duration::from_secs(5))),
        (Dialect::Anthropic, false, Reply::StallMidBody(Duration::from_secs(5))),
    ];
    for (dialect, streaming, reply) in cases {
        let fake = FakeLlm::start().await;
        fake.script([reply.clone(), Reply::text("unused")]);
        let settings = LlmConfig { llm_timeout_seconds: 1.0, ..config(dialect, &fake, None) };
        let started = Instant::now();
        let (outcome, fragments) = ask(&client(&settings), &request(), streaming).await;
        let elapsed = started.elapsed();
        let error = outcome.unwrap_err();
        assert!(matches!(error, LlmError::Timeout { .. }), "{reply:?}: {error:?}");
        assert_eq!(error.error_type(), "LLM_TIMEOUT");
        assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(2), "{reply:?}: {elapsed:?}");
        assert_eq!(fake.requests().len(), 1, "a timeout is not retried");
        if streaming && matches!(reply, Reply::StallMidBody(_)) {
            assert!(!fragments.is_empty(), "the first half of the stream arrived");
        }
        // The abandoned request's connection is closed, and the fake sees it go.
        assert!(fake.wait_for_disconnect(Duration::from_secs(1)).await, "{reply:?}");
        assert!(fake.requests()[0].disconnected);
    }
}

#[tokio::test]
async fn llm_client_cut_stream_is_a_bad_response() {
    for dialect in DIALECTS {
        for streaming in [true, false] {
            let fake = FakeLlm::start().await;
            fake.script([Reply::CutStream, Reply::text("unused")]);
            let (outcome, fragments) = ask(&client(&config(dialect, &fake, None)), &request(), streaming).await;
            let error = outcome.unwrap_err();
            assert_eq!(error.error_type(), "LLM_BAD_RESPONSE", "{dialect:?} streaming={streaming}: {error}");
            assert_eq!(fake.requests().len(), 1, "a broken reply is not retried");
            if streaming {
                let seen = fragments.concat();
                assert!(!seen.is_empty() && "This answer is cut off before it ends.".starts_with(&seen), "{seen}");
                assert!(error.to_string().contains("broke off before its end"), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn llm_client_error_event_in_a_stream_is_classified() {
    let cases = [
        (Dialect::Anthropic, "overloaded_error", "LLM_UNAVAILABLE"),
        (Dialect::Anthropic, "invalid_request_error", "LLM_BAD_RESPONSE"),
        (Dialect::OpenAi, "server_error", "LLM_UNAVAILABLE"),
        (Dialect::OpenAi, "rate_limit_exceeded", "LLM_RATE_LIMITED"),
    ];
    for (dialect, kind, error_type) in cases {
        let fake = FakeLlm::start().await;
        fake.script([Reply::StreamError { kind: kind.into(), message: "try later".into() }, Reply::text("unused")]);
        let (outcome, _) = ask(&client(&config(dialect, &fake, None)), &request(), true).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), error_type, "{kind}");
        assert!(error.to_string().contains(&format!("{kind}: try later")), "{error}");
        assert_eq!(fake.requests().len(), 1, "a stream that started is not retried");
    }
}

#[tokio::test]
async fn llm_client_dropping_a_stream_closes_the_request_within_a_second() {
    let text = "word ".repeat(60);
    for dialect in DIALECTS {
        let fake = FakeLlm::start().await;
        fake.script([Reply::SlowText { text: text.clone(), every: Duration::from_millis(100) }]);
        let llm = client(&config(dialect, &fake, None));
        let fragments = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = fragments.clone();
        let mut on_text = move |fragment: &str| seen.lock().unwrap().push(fragment.to_string());
        let request = request();
        let call = llm.complete_streaming(&request, &mut on_text);
        // Let a few fragments arrive, then drop the call mid-stream.
        assert!(tokio::time::timeout(Duration::from_millis(450), call).await.is_err());
        let received = fragments.lock().unwrap().len();
        assert!((2..60).contains(&received), "{received} fragments before the drop");
        let dropped = Instant::now();
        assert!(fake.wait_for_disconnect(Duration::from_secs(1)).await, "{dialect:?}: the fake saw no disconnect");
        assert!(dropped.elapsed() < Duration::from_secs(1));
        assert_eq!(fake.disconnects(), 1);
        assert!(fake.requests()[0].disconnected);
    }
}
