//! The Anthropic Messages dialect: `POST {base}/v1/messages` with `tool_use`.
//!
//! Wire details this file handles: the system prompt is a top-level field; an
//! assistant turn is a list of `text` and `tool_use` blocks (`input` an object);
//! tool results are `tool_result` blocks in a user turn, consecutive ones merged
//! into one turn (the API wants user and assistant to alternate); a streamed reply
//! is `message_start` (input tokens), per block `content_block_start` /
//! `content_block_delta` (`text_delta`, or `input_json_delta.partial_json`
//! fragments) / `content_block_stop`, then `message_delta` (output tokens, stop
//! reason) and `message_stop`, with `ping` and `error` events in between.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::LlmError;
use super::quote::{MAX_QUOTED_CHARS, excerpt, shorten};
use super::sse::SseEvent;
use super::types::{ModelReply, ModelRequest, Role, ToolCall, Usage};

const PROVIDER: &str = "anthropic";
/// The `anthropic-version` header every request carries.
pub(super) const API_VERSION: &str = "2023-06-01";

fn bad(message: impl Into<String>) -> LlmError {
    LlmError::BadResponse { provider: PROVIDER, message: message.into() }
}

/// A call's arguments as the object `tool_use.input` must be: the model's text
/// parsed, or `{}` when it is empty or not a JSON object (the tool result sent
/// after it tells the model what was wrong).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({}),
    }
}

pub(super) fn request_body(model: &str, request: &ModelRequest, stream: bool) -> Value {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let text_block = (!message.content.is_empty()).then(|| json!({"type": "text", "text": message.content}));
        let (role, blocks): (&'static str, Vec<Value>) = match message.role {
            Role::User => ("user", text_block.into_iter().collect()),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.as_deref().unwrap_or_default(),
                    "content": message.content,
                })],
            ),
            Role::Assistant => {
                let calls = message.tool_calls.iter().map(|call| {
                    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(&call.arguments)})
                });
                ("assistant", text_block.into_iter().chain(calls).collect())
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // In a user turn the tool results come first, text after them.
            blocks.sort_by_key(|block| block["type"] != "tool_result");
            json!({"role": role, "content": blocks})
        })
        .collect();
    let mut body = json!({"model": model, "max_tokens": request.max_tokens, "messages": messages, "stream": stream});
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| json!({"name": tool.name, "description": tool.description, "input_schema": tool.parameters}));
        body["tools"] = Value::Array(tools.collect());
    }
    body
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    content: Option<Vec<Block>>,
    usage: Option<WireUsage>,
    stop_reason: Option<String>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Input tokens including the cached ones (all of them were sent).
    fn input(&self) -> Option<u64> {
        let parts = [self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens];
        parts.iter().any(Option::is_some).then(|| parts.iter().flatten().sum())
    }
}

fn input_text(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

/// A non-streamed reply.
pub(super) fn parse_reply(body: &[u8]) -> Result<ModelReply, LlmError> {
    let message: WireMessage = serde_json::from_slice(body).map_err(|problem| {
        bad(format!("the body is not a message ({problem}): {}", excerpt(&String::from_utf8_lossy(body))))
    })?;
    if message.kind.as_deref() == Some("error") {
        return Err(reported_error(message.error.as_ref().unwrap_or(&Value::Null)));
    }
    let Some(content) = message.content else {
        return Err(bad(format!("the message has no content: {}", excerpt(&String::from_utf8_lossy(body)))));
    };
    let mut reply = ModelReply { stop_reason: message.stop_reason, ..ModelReply::default() };
    for block in content {
        match block {
            Block::Text { text } => reply.text.push_str(&text),
            Block::ToolUse { id, name, input } => {
                reply.tool_calls.push(ToolCall { id, name, arguments: input_text(&input) })
            }
            Block::Other => {}
        }
    }
    let usage = message.usage.unwrap_or_default();
    reply.usage = Usage { input_tokens: usage.input().unwrap_or(0), output_tokens: usage.output_tokens.unwrap_or(0) };
    Ok(reply)
}

/// An `error` object (`{"type", "message"}`) in a body or an `error` event.
fn reported_error(error: &Value) -> LlmError {
    let kind = error["type"].as_str().unwrap_or("error");
    let message =
        shorten(&format!("{kind}: {}", error["message"].as_str().unwrap_or("(no message)")), MAX_QUOTED_CHARS);
    match kind {
        "overloaded_error" | "api_error" => LlmError::Unavailable { provider: PROVIDER, attempts: 1, message },
        "rate_limit_error" => LlmError::RateLimited { provider: PROVIDER, attempts: 1, message },
        _ => bad(format!("the stream reported an error: {message}")),
    }
}

#[derive(Debug, Default)]
struct ToolBlock {
    id: String,
    name: String,
    json: String,
}

/// A streamed reply being put together.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    text: String,
    /// Tool-use blocks by their content index.
    tools: BTreeMap<u64, ToolBlock>,
    usage: Usage,
    stop_reason: Option<String>,
}

impl StreamState {
    /// Takes one event; true at `message_stop`.
    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, LlmError> {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|problem| bad(format!("a stream event is not JSON ({problem}): {}", excerpt(&event.data))))?;
        let kind = data["type"].as_str().or(event.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                if let Ok(usage) = WireUsage::deserialize(&data["message"]["usage"]) {
                    self.usage.input_tokens = usage.input().unwrap_or(0);
                    self.usage.output_tokens = usage.output_tokens.unwrap_or(0);
                }
            }
            "content_block_start" => {
                let index = block_index(&data)?;
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("text") => self.add_text(block["text"].as_str().unwrap_or(""), on_text),
                    Some("tool_use") => {
                        // The input arrives as deltas; a non-empty `input` here is a
                        // server that sent it whole.
                        let json = match &block["input"] {
                            Value::Object(fields) if !fields.is_empty() => block["input"].to_string(),
                            _ => String::new(),
                        };
                        let id = block["id"].as_str().unwrap_or_default().to_string();
                        let name = block["name"].as_str().unwrap_or_default().to_string();
                        self.tools.insert(index, ToolBlock { id, name, json });
                    }
                    _ => {} // thinking and other blocks are not part of the reply
                }
            }
            "content_block_delta" => {
                let index = block_index(&data)?;
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self.add_text(delta["text"].as_str().unwrap_or(""), on_text),
                    Some("input_json_delta") => {
                        let Some(tool) = self.tools.get_mut(&index) else {
                            return Err(bad(format!("input_json_delta for block {index}, which is not a tool_use")));
                        };
                        tool.json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Ok(usage) = WireUsage::deserialize(&data["usage"]) {
                    if let Some(output) = usage.output_tokens {
                        self.usage.output_tokens = output;
                    }
                    if let Some(input) = usage.input() {
                        self.usage.input_tokens = input;
                    }
                }
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_string());
                }
            }
            "message_stop" => return Ok(true),
            "error" => return Err(reported_error(&data["error"])),
            _ => {} // ping, content_block_stop, and events added later
        }
        Ok(false)
    }

    fn add_text(&mut self, fragment: &str, on_text: &mut (dyn FnMut(&str) + Send)) {
        if !fragment.is_empty() {
            on_text(fragment);
            self.text.push_str(fragment);
        }
    }

    /// The reply. `at_eof`: the body ended without `message_stop` — a cut stream.
    pub(super) fn finish(self, at_eof: bool) -> Result<ModelReply, LlmError> {
        if at_eof {
            return Err(bad("the stream ended before its end (message_stop never came)"));
        }
        let tool_calls = self
            .tools
            .into_values()
            .map(|tool| ToolCall {
                id: tool.id,
                name: tool.name,
                arguments: if tool.json.is_empty() { "{}".to_string() } else { tool.json },
            })
            .collect();
        Ok(ModelReply { text: self.text, tool_calls, usage: self.usage, stop_reason: self.stop_reason })
    }
}

fn block_index(data: &Value) -> Result<u64, LlmError> {
    data["index"]
        .as_u64()
        .ok_or_else(|| bad(format!("a content block event has no index: {}", excerpt(&data.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::{Message, ToolSpec};

    #[test]
    fn request_body_merges_tool_results_and_puts_them_first() {
        let request = ModelRequest {
            system: "Be brief.".into(),
            messages: vec![
                Message::user("Q"),
                Message::assistant(
                    "Checking.",
                    vec![
                        ToolCall { id: "t1".into(), name: "run_sql".into(), arguments: r#"{"sql":"SELECT 1"}"#.into() },
                        ToolCall { id: "t2".into(), name: "run_sql".into(), arguments: r#"{"sql": broken"#.into() },
                    ],
                ),
                Message::tool_result("t1", "ok"),
                Message::tool_result("t2", "malformed arguments"),
                Message::user("And?"),
                Message::assistant("", vec![]),
            ],
            tools: vec![ToolSpec {
                name: "run_sql".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
        };
        assert_eq!(
            request_body("claude-haiku-4-5", &request, false),
            json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 100,
                "stream": false,
                "system": "Be brief.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Q"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "t1", "name": "run_sql", "input": {"sql": "SELECT 1"}},
                        {"type": "tool_use", "id": "t2", "name": "run_sql", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                        {"type": "tool_result", "tool_use_id": "t2", "content": "malformed arguments"},
                        {"type": "text", "text": "And?"},
                    ]},
                ],
                "tools": [{"name": "run_sql", "description": "d", "input_schema": {"type": "object"}}],
            })
        );
    }

    #[test]
    fn non_streamed_reply_with_text_and_tool_use() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","stop_reason":"tool_use",
            "content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"run_sql","input":{"sql":"SELECT 2"}}],
            "usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":8}}"#;
        assert_eq!(
            parse_reply(body).unwrap(),
            ModelReply {
                text: "Let me look.".into(),
                tool_calls: vec![ToolCall {
                    id: "toolu_1".into(),
                    name: "run_sql".into(),
                    arguments: r#"{"sql":"SELECT 2"}"#.into()
                }],
                usage: Usage { input_tokens: 25, output_tokens: 8 },
                stop_reason: Some("tool_use".into()),
            }
        );
    }

    fn feed(state: &mut StreamState, texts: &mut Vec<String>, event: &str, data: &str) -> Result<bool, LlmError> {
        state.on_event(&SseEvent { event: Some(event.into()), data: data.into() }, &mut |t| texts.push(t.to_string()))
    }

    #[test]
    fn streamed_tool_input_is_joined_and_empty_input_is_an_empty_object() {
        let mut state = StreamState::default();
        let mut texts = Vec::new();
        let events = [
            ("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":30,"output_tokens":1}}}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type":"ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hm"}}"#,
            ),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"run_sql","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"sql\": \"SEL"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ECT 1\"}"}}"#,
            ),
            ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"list","input":{}}}"#,
            ),
            ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}"#,
            ),
        ];
        for (event, data) in events {
            assert!(!feed(&mut state, &mut texts, event, data).unwrap());
        }
        assert!(feed(&mut state, &mut texts, "message_stop", r#"{"type":"message_stop"}"#).unwrap());
        assert_eq!(texts, ["Hm"]);
        assert_eq!(
            state.finish(false).unwrap(),
            ModelReply {
                text: "Hm".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "toolu_a".into(),
                        name: "run_sql".into(),
                        arguments: r#"{"sql": "SELECT 1"}"#.into()
                    },
                    ToolCall { id: "toolu_b".into(), name: "list".into(), arguments: "{}".into() },
                ],
                usage: Usage { input_tokens: 30, output_tokens: 12 },
                stop_reason: Some("tool_use".into()),
            }
        );
    }

    #[test]
    fn error_events_are_classified() {
        let mut state = StreamState::default();
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let error = feed(&mut state, &mut Vec::new(), "error", overloaded).unwrap_err();
        assert_eq!(error.error_type(), "LLM_UNAVAILABLE");
        assert_eq!(error.to_string(), "anthropic is unavailable (attempts: 1): overloaded_error: Overloaded");
    }

    #[test]
    fn end_without_message_stop_is_a_bad_response() {
        let state = StreamState::default();
        assert_eq!(state.finish(true).unwrap_err().error_type(), "LLM_BAD_RESPONSE");
    }
}
