//! A model provider on loopback, written for the tests: it speaks OpenAI Chat
//! Completions (`POST /v1/chat/completions`) and Anthropic Messages
//! (`POST /v1/messages`), streamed and not, plays the replies a test scripted in
//! order, records every request, and injects the faults a real provider has.
//!
//! - Replies are queued with [`FakeLlm::script`]; each request takes the next one,
//!   whichever dialect it speaks. An empty queue answers 500 with
//!   "fake LLM: no scripted reply left", so a test that calls the model more often
//!   than it scripted fails loudly.
//! - Streams look like the real ones: OpenAI `data:` chunks (a comment first, a role
//!   chunk, text fragments, tool-call fragments by `index` with `id` and `name`
//!   first and the arguments split mid-JSON, a `finish_reason` chunk, a
//!   `choices: []` chunk with `usage` when `stream_options.include_usage` asks for
//!   it, `data: [DONE]`); Anthropic events (`message_start` with input tokens,
//!   `ping`, `content_block_start` / `content_block_delta` (`text_delta`,
//!   `input_json_delta` starting with `""`) / `content_block_stop`,
//!   `message_delta` with output tokens, `message_stop`). Every event is written
//!   in two pieces cut at its middle byte — inside a line, maybe inside a UTF-8
//!   character — so clients must reassemble.
//! - Non-streamed tool calls carry `content: null` (OpenAI); Anthropic's `input` is
//!   the parsed arguments (malformed arguments, which the real API never sends
//!   unstreamed, go as a JSON string).
//! - Tool-call ids are deterministic: `call_{n}_{i}` (OpenAI) and `toolu_{n}_{i}`
//!   (Anthropic) for the i-th call (from 0) of the n-th request (from 1).
//! - Token usage is deterministic: input = request body bytes / 4, output =
//!   (text + arguments bytes) / 4, each at least 1; [`Recorded::usage_sent`] says
//!   what was reported.
//! - A client that goes away before a reply's end (stream or stall) is recorded:
//!   [`Recorded::disconnected`], [`FakeLlm::disconnects`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer to one model request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Text, streamed in fragments of at most 5 characters (at least two).
    Text(String),
    /// One tool call; `arguments` is the raw text (it may be malformed JSON),
    /// streamed in fragments of 7 characters.
    ToolCall { name: String, arguments: String },
    /// Several tool calls in one reply: `(name, arguments)`.
    ToolCalls(Vec<(String, String)>),
    /// Text, then tool calls, in one reply (as Anthropic models often answer).
    TextAndToolCalls { text: String, calls: Vec<(String, String)> },
    /// An HTTP error: status, optional `Retry-After` seconds, body as given.
    Status { code: u16, retry_after: Option<u32>, body: String },
    /// Accepts the request, then sends nothing at all (not even headers) for that
    /// long; then answers 504.
    Stall(Duration),
    /// Sends the headers and the first half of the reply (the stream's first events,
    /// or half of a JSON body), then nothing for that long, then cuts the connection.
    StallMidBody(Duration),
    /// Text streamed one fragment every `every` (for disconnect tests).
    SlowText { text: String, every: Duration },
    /// Starts the reply, then cuts the connection before its end (`[DONE]` /
    /// `message_stop` never sent; a JSON body stops halfway).
    CutStream,
    /// Streamed: a provider error event after the first event (`{"error": {type,
    /// message}}` for OpenAI, `event: error` for Anthropic), then the stream ends.
    /// Not streamed: HTTP 500 with that error as the body.
    StreamError { kind: String, message: String },
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text(text.into())
    }

    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> Reply {
        Reply::ToolCall { name: name.into(), arguments: arguments.into() }
    }

    /// An HTTP error whose body is `{"error": {"type": "fake_error", "message": …}}`,
    /// the shape both providers use.
    pub fn error(code: u16, message: &str) -> Reply {
        let body = json!({"type": "error", "error": {"type": "fake_error", "message": message}}).to_string();
        Reply::Status { code, retry_after: None, body }
    }

    /// 429 with `Retry-After: seconds`.
    pub fn rate_limited(seconds: u32) -> Reply {
        let body = json!({"error": {"type": "rate_limit_error", "message": "fake LLM: slow down"}}).to_string();
        Reply::Status { code: 429, retry_after: Some(seconds), body }
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `/v1/chat/completions` or `/v1/messages`.
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body (a JSON string holding the raw text if it was not JSON).
    pub body: Value,
    /// Size of the raw body.
    pub body_bytes: usize,
    /// The client went away before the reply's end.
    pub disconnected: bool,
    /// `(input, output)` tokens the reply reported, if it got that far.
    pub usage_sent: Option<(u64, u64)>,
}

impl Recorded {
    /// The first value of a header, by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn streaming(&self) -> bool {
        self.body["stream"] == json!(true)
    }
}

#[derive(Default)]
struct Log {
    queue: VecDeque<Reply>,
    requests: Vec<Recorded>,
}

struct Shared {
    log: Mutex<Log>,
    disconnects: tokio::sync::watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }
}

/// The fake provider. Dropping it stops the server.
pub struct FakeLlm {
    shared: Arc<Shared>,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    pub async fn start() -> FakeLlm {
        let (disconnects, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared { log: Mutex::new(Log::default()), disconnects });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLlm { shared, address, task }
    }

    /// For `OPENAI_BASE_URL`: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// For `ANTHROPIC_BASE_URL`: `http://127.0.0.1:PORT`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Appends replies to the queue.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().queue.extend(replies);
    }

    /// Scripted replies not played yet.
    pub fn remaining(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Replies whose client went away before their end.
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Waits until at least one client went away early; false if none did within `within`.
    pub async fn wait_for_disconnect(&self, within: Duration) -> bool {
        self.wait_for_disconnects(1, within).await
    }

    /// Waits until at least `count` clients went away early.
    pub async fn wait_for_disconnects(&self, count: usize, within: Duration) -> bool {
        let mut receiver = self.shared.disconnects.subscribe();
        tokio::time::timeout(within, receiver.wait_for(|seen| *seen >= count)).await.is_ok_and(|r| r.is_ok())
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(shared, Dialect::OpenAi, "/v1/chat/completions", headers, body).await
}

async fn anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(shared, Dialect::Anthropic, "/v1/messages", headers, body).await
}

/// Marks its request disconnected when dropped before `finished` is set: hyper drops
/// a handler or a body stream when the client closes the connection.
struct DisconnectGuard {
    shared: Arc<Shared>,
    index: usize,
    finished: bool,
}

impl DisconnectGuard {
    /// The reply reached its end.
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.lock().requests[self.index].disconnected = true;
            self.shared.disconnects.send_modify(|count| *count += 1);
        }
    }
}

/// What a reply says, and how it is delivered.
struct Content {
    text: String,
    calls: Vec<(String, String)>,
}

#[derive(Clone, Copy)]
enum Ending {
    Complete,
    Cut,
    StallThenCut(Duration),
}

async fn answer(shared: Arc<Shared>, dialect: Dialect, path: &str, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value =
        serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    let recorded = Recorded {
        path: path.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: body.clone(),
        body_bytes: raw.len(),
        disconnected: false,
        usage_sent: None,
    };
    let (index, reply) = {
        let mut log = shared.lock();
        log.requests.push(recorded);
        (log.requests.len() - 1, log.queue.pop_front())
    };
    let Some(reply) = reply else {
        let error =
            json!({"type": "error", "error": {"type": "fake_error", "message": "fake LLM: no scripted reply left"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response();
    };
    let streaming = body["stream"] == json!(true);
    let (content, pace, ending) = match reply {
        Reply::Status { code, retry_after, body } => {
            let mut response = Response::new(Body::from(body.clone()));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            let content_type =
                if serde_json::from_str::<Value>(&body).is_ok() { "application/json" } else { "text/plain" };
            response.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, seconds.to_string().parse().unwrap());
            }
            return response;
        }
        Reply::Stall(duration) => {
            let guard = DisconnectGuard { shared, index, finished: false };
            tokio::time::sleep(duration).await;
            guard.finish();
            return (StatusCode::GATEWAY_TIMEOUT, "fake LLM: the stall ended").into_response();
        }
        Reply::StreamError { kind, message } => {
            if !streaming {
                let error = json!({"type": "error", "error": {"type": kind, "message": message}});
                return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response();
            }
            let model = body["model"].as_str().unwrap_or("fake-model").to_string();
            let events = error_stream(dialect, &model, index + 1, input_tokens(raw.len()), &kind, &message);
            let guard = DisconnectGuard { shared, index, finished: false };
            return event_stream(events_to_steps(events, &[], Duration::ZERO), guard);
        }
        Reply::Text(text) => (Content { text, calls: vec![] }, Duration::ZERO, Ending::Complete),
        Reply::ToolCall { name, arguments } => {
            (Content { text: String::new(), calls: vec![(name, arguments)] }, Duration::ZERO, Ending::Complete)
        }
        Reply::ToolCalls(calls) => (Content { text: String::new(), calls }, Duration::ZERO, Ending::Complete),
        Reply::TextAndToolCalls { text, calls } => (Content { text, calls }, Duration::ZERO, Ending::Complete),
        Reply::SlowText { text, every } => (Content { text, calls: vec![] }, every, Ending::Complete),
        Reply::CutStream => (
            Content { text: "This answer is cut off before it ends.".into(), calls: vec![] },
            Duration::ZERO,
            Ending::Cut,
        ),
        Reply::StallMidBody(duration) => (
            Content { text: "This answer stalls halfway.".into(), calls: vec![] },
            Duration::ZERO,
            Ending::StallThenCut(duration),
        ),
    };

    let usage = (input_tokens(raw.len()), output_tokens(&content));
    shared.lock().requests[index].usage_sent = Some(usage);
    let model = body["model"].as_str().unwrap_or("fake-model").to_string();
    let number = index + 1;
    let guard = DisconnectGuard { shared, index, finished: false };
    if streaming {
        let include_usage = body["stream_options"]["include_usage"] == json!(true);
        let (events, paced) = match dialect {
            Dialect::OpenAi => openai_stream(&model, number, &content, usage, include_usage),
            Dialect::Anthropic => anthropic_stream(&model, number, &content, usage),
        };
        let mut steps = events_to_steps(events.clone(), &paced, pace);
        match ending {
            Ending::Complete => {}
            Ending::Cut | Ending::StallThenCut(_) => {
                // Keep the first half of the events (never the end marker), then stop.
                let keep = events.len().div_ceil(2).min(events.len() - 1);
                steps = events_to_steps(events[..keep].to_vec(), &paced, pace);
                match ending {
                    Ending::StallThenCut(duration) => steps.push(Step::Sleep(duration)),
                    _ => steps.push(Step::Sleep(FLUSH_BEFORE_CUT)),
                }
                steps.push(Step::Cut);
            }
        }
        return event_stream(steps, guard);
    }

    let whole = match dialect {
        Dialect::OpenAi => openai_whole(&model, number, &content, usage),
        Dialect::Anthropic => anthropic_whole(&model, number, &content, usage),
    };
    let bytes = Bytes::from(whole.to_string());
    let mut steps = Vec::new();
    if !pace.is_zero() {
        steps.push(Step::Sleep(pace * fragments(&content.text, 5).len() as u32));
    }
    match ending {
        Ending::Complete => steps.push(Step::Send(bytes)),
        Ending::Cut => {
            steps.extend([Step::Send(bytes.slice(..bytes.len() / 2)), Step::Sleep(FLUSH_BEFORE_CUT), Step::Cut])
        }
        Ending::StallThenCut(duration) => {
            steps.extend([Step::Send(bytes.slice(..bytes.len() / 2)), Step::Sleep(duration), Step::Cut])
        }
    }
    let mut response = streamed_body(steps, guard).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

fn input_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64 / 4).max(1)
}

fn output_tokens(content: &Content) -> u64 {
    let bytes = content.text.len() + content.calls.iter().map(|(_, arguments)| arguments.len()).sum::<usize>();
    (bytes as u64 / 4).max(1)
}

/// `text` cut into pieces of `size` characters (two halves if that gives only one).
fn fragments(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![];
    }
    let size = if chars.len() <= size { chars.len().div_ceil(2) } else { size };
    chars.chunks(size).map(|piece| piece.iter().collect()).collect()
}

fn call_id(dialect: Dialect, number: usize, position: usize) -> String {
    match dialect {
        Dialect::OpenAi => format!("call_{number}_{position}"),
        Dialect::Anthropic => format!("toolu_{number}_{position}"),
    }
}

/// One SSE event's bytes.
fn sse(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// The OpenAI stream's events, and which of them carry a text fragment (paced).
fn openai_stream(
    model: &str,
    number: usize,
    content: &Content,
    usage: (u64, u64),
    include_usage: bool,
) -> (Vec<Bytes>, Vec<usize>) {
    let id = format!("chatcmpl-fake-{number}");
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                    "usage": null}),
        )
    };
    let mut events = vec![Bytes::from_static(b": fake LLM stream\n\n")];
    events.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    let mut paced = Vec::new();
    for fragment in fragments(&content.text, 5) {
        paced.push(events.len());
        events.push(chunk(json!({"content": fragment}), Value::Null));
    }
    for (position, (name, arguments)) in content.calls.iter().enumerate() {
        let id = call_id(Dialect::OpenAi, number, position);
        events.push(chunk(
            json!({"tool_calls": [{"index": position, "id": id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for fragment in fragments(arguments, 7) {
            events.push(chunk(
                json!({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]}),
                Value::Null,
            ));
        }
    }
    let finish = if content.calls.is_empty() { "stop" } else { "tool_calls" };
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        events.push(sse(
            None,
            &json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                    "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1}}),
        ));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    (events, paced)
}

/// The Anthropic stream's events, and which of them carry a text fragment (paced).
fn anthropic_stream(model: &str, number: usize, content: &Content, usage: (u64, u64)) -> (Vec<Bytes>, Vec<usize>) {
    let mut events = vec![
        sse(
            Some("message_start"),
            &json!({"type": "message_start", "message": {"id": format!("msg_fake_{number}"), "type": "message",
                    "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": usage.0, "output_tokens": 1}}}),
        ),
        sse(Some("ping"), &json!({"type": "ping"})),
    ];
    let mut paced = Vec::new();
    let mut index = 0;
    if !content.text.is_empty() {
        events.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        for fragment in fragments(&content.text, 5) {
            paced.push(events.len());
            events.push(sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": fragment}}),
            ));
        }
        events.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    for (position, (name, arguments)) in content.calls.iter().enumerate() {
        events.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use",
                    "id": call_id(Dialect::Anthropic, number, position), "name": name, "input": {}}}),
        ));
        for fragment in std::iter::once(String::new()).chain(fragments(arguments, 7)) {
            events.push(sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            ));
        }
        events.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    let stop_reason = if content.calls.is_empty() { "end_turn" } else { "tool_use" };
    events.push(sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": usage.1}}),
    ));
    events.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
    (events, paced)
}

/// A stream that reports a provider error after its first event.
fn error_stream(dialect: Dialect, model: &str, number: usize, input: u64, kind: &str, message: &str) -> Vec<Bytes> {
    match dialect {
        Dialect::OpenAi => vec![
            sse(
                None,
                &json!({"id": format!("chatcmpl-fake-{number}"), "object": "chat.completion.chunk", "created": 0,
                        "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                        "finish_reason": null}]}),
            ),
            sse(None, &json!({"error": {"type": kind, "message": message}})),
        ],
        Dialect::Anthropic => vec![
            sse(
                Some("message_start"),
                &json!({"type": "message_start", "message": {"id": format!("msg_fake_{number}"), "type": "message",
                        "role": "assistant", "model": model, "content": [],
                        "usage": {"input_tokens": input, "output_tokens": 1}}}),
            ),
            sse(Some("error"), &json!({"type": "error", "error": {"type": kind, "message": message}})),
        ],
    }
}

fn openai_whole(model: &str, number: usize, content: &Content, usage: (u64, u64)) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if content.text.is_empty() && !content.calls.is_empty() { Value::Null } else { json!(content.text) },
        "refusal": null,
    });
    if !content.calls.is_empty() {
        let calls = content.calls.iter().enumerate().map(|(position, (name, arguments))| {
            json!({"id": call_id(Dialect::OpenAi, number, position), "type": "function",
                   "function": {"name": name, "arguments": arguments}})
        });
        message["tool_calls"] = Value::Array(calls.collect());
    }
    json!({
        "id": format!("chatcmpl-fake-{number}"), "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": if content.calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1},
    })
}

fn anthropic_whole(model: &str, number: usize, content: &Content, usage: (u64, u64)) -> Value {
    let mut blocks = Vec::new();
    if !content.text.is_empty() {
        blocks.push(json!({"type": "text", "text": content.text}));
    }
    for (position, (name, arguments)) in content.calls.iter().enumerate() {
        let input = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!(arguments));
        blocks.push(json!({"type": "tool_use", "id": call_id(Dialect::Anthropic, number, position),
                           "name": name, "input": input}));
    }
    json!({
        "id": format!("msg_fake_{number}"), "type": "message", "role": "assistant", "model": model,
        "content": blocks,
        "stop_reason": if content.calls.is_empty() { "end_turn" } else { "tool_use" },
        "stop_sequence": null,
        "usage": {"input_tokens": usage.0, "output_tokens": usage.1},
    })
}

/// A pause before a cut, so hyper has written what came before it: a body that fails
/// at once is dropped unsent, and the client would see a refused request, not a cut reply.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(50);

enum Step {
    Send(Bytes),
    Sleep(Duration),
    /// Ends the body with an error: hyper closes the connection without finishing it.
    Cut,
}

/// Each event written in two pieces cut at its middle byte; a pause before each
/// paced event.
fn events_to_steps(events: Vec<Bytes>, paced: &[usize], pace: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    for (position, event) in events.into_iter().enumerate() {
        if !pace.is_zero() && paced.contains(&position) {
            steps.push(Step::Sleep(pace));
        }
        let middle = event.len() / 2;
        steps.push(Step::Send(event.slice(..middle)));
        steps.push(Step::Send(event.slice(middle..)));
    }
    steps
}

fn event_stream(steps: Vec<Step>, guard: DisconnectGuard) -> Response {
    let mut response = streamed_body(steps, guard).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, "text/event-stream; charset=utf-8".parse().unwrap());
    headers.insert(header::CACHE_CONTROL, "no-cache".parse().unwrap());
    response
}

/// A body that plays `steps`; `guard` notices a client that leaves before the end.
fn streamed_body(steps: Vec<Step>, guard: DisconnectGuard) -> Body {
    let stream = futures::stream::unfold((VecDeque::from(steps), guard), |(mut steps, mut guard)| async move {
        loop {
            match steps.pop_front() {
                None => {
                    guard.finish();
                    return None;
                }
                Some(Step::Sleep(duration)) => tokio::time::sleep(duration).await,
                Some(Step::Send(bytes)) if bytes.is_empty() => {}
                Some(Step::Send(bytes)) => return Some((Ok::<Bytes, std::io::Error>(bytes), (steps, guard))),
                Some(Step::Cut) => {
                    guard.finished = true;
                    return Some((Err(std::io::Error::other("fake LLM: connection cut")), (VecDeque::new(), guard)));
                }
            }
        }
    });
    Body::from_stream(stream)
}
