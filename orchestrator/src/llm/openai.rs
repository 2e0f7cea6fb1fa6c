//! The OpenAI Chat Completions dialect: `POST {base}/chat/completions` with function
//! tools, for the public API and every OpenAI-compatible server.
//!
//! Wire details this file handles: the system prompt is the first message; an
//! assistant message carries `tool_calls` (and `content: null` when it has no
//! text); a tool result is a `tool` message with `tool_call_id`; a streamed reply is
//! `data:` chunks whose `delta.tool_calls[i]` fragments are joined by `index` (the
//! first carries `id` and `name`, `arguments` arrives in pieces), then a chunk with
//! `choices: []` and `usage`, then `data: [DONE]`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::LlmError;
use super::quote::{MAX_QUOTED_CHARS, excerpt, shorten};
use super::sse::SseEvent;
use super::types::{ModelReply, ModelRequest, Role, ToolCall, Usage};

const PROVIDER: &str = "openai";

fn bad(message: impl Into<String>) -> LlmError {
    LlmError::BadResponse { provider: PROVIDER, message: message.into() }
}

/// The request body. `max_tokens_field`: `max_completion_tokens` for the public
/// API (its newer models refuse `max_tokens`), `max_tokens` for compatible servers.
pub(super) fn request_body(model: &str, request: &ModelRequest, stream: bool, max_tokens_field: &str) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        messages.push(match message.role {
            Role::User => json!({"role": "user", "content": message.content}),
            Role::Assistant => {
                let content = if message.content.is_empty() && !message.tool_calls.is_empty() {
                    Value::Null
                } else {
                    json!(message.content)
                };
                let mut value = json!({"role": "assistant", "content": content});
                if !message.tool_calls.is_empty() {
                    let calls = message.tool_calls.iter().map(|call| {
                        let arguments = if call.arguments.is_empty() { "{}" } else { call.arguments.as_str() };
                        json!({"id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": arguments}})
                    });
                    value["tool_calls"] = Value::Array(calls.collect());
                }
                value
            }
            Role::Tool => json!({
                "role": "tool",
                "tool_call_id": message.tool_call_id.as_deref().unwrap_or_default(),
                "content": message.content,
            }),
        });
    }
    let mut body = json!({"model": model, "messages": messages, "stream": stream});
    body[max_tokens_field] = json!(request.max_tokens);
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(|tool| {
            json!({"type": "function",
                   "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}})
        });
        body["tools"] = Value::Array(tools.collect());
    }
    body
}

#[derive(Debug, Deserialize)]
struct Completion {
    choices: Option<Vec<Choice>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    content: Option<Value>,
    refusal: Option<String>,
    tool_calls: Option<Vec<WireCall>>,
}

#[derive(Debug, Deserialize)]
struct WireCall {
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        Usage { input_tokens: self.prompt_tokens.unwrap_or(0), output_tokens: self.completion_tokens.unwrap_or(0) }
    }
}

/// `content` as text: a string, or the text parts of an array (some servers).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|part| part["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// Arguments as the raw text the model wrote (a few servers send an object instead).
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A non-streamed reply.
pub(super) fn parse_reply(body: &[u8]) -> Result<ModelReply, LlmError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|problem| bad(format!("the body is not a chat completion ({problem}): {}", body_excerpt(body))))?;
    if let Some(error) = &completion.error {
        return Err(reported_error(error));
    }
    let Some(choice) = completion.choices.unwrap_or_default().into_iter().next() else {
        return Err(bad(format!("the completion has no choices: {}", body_excerpt(body))));
    };
    let Some(message) = choice.message else {
        return Err(bad(format!("the completion's choice has no message: {}", body_excerpt(body))));
    };
    let mut text = message.content.as_ref().map(content_text).unwrap_or_default();
    if text.is_empty() {
        text = message.refusal.unwrap_or_default();
    }
    let tool_calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(position, call)| {
            let function = call.function.unwrap_or(WireFunction { name: None, arguments: None });
            ToolCall {
                id: call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{position}")),
                name: function.name.unwrap_or_default(),
                arguments: function.arguments.as_ref().map(arguments_text).unwrap_or_default(),
            }
        })
        .collect();
    Ok(ModelReply {
        text,
        tool_calls,
        usage: completion.usage.unwrap_or_default().usage(),
        stop_reason: choice.finish_reason,
    })
}

fn body_excerpt(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(body))
}

/// An `error` object in a body or stream (`{"message", "type", "code"}`).
fn reported_error(error: &Value) -> LlmError {
    let kind = error["type"].as_str().or_else(|| error["code"].as_str()).unwrap_or("error");
    let message = error["message"].as_str().or_else(|| error.as_str()).unwrap_or("(no message)");
    let message = shorten(&format!("{kind}: {message}"), MAX_QUOTED_CHARS);
    if kind.contains("rate_limit") {
        LlmError::RateLimited { provider: PROVIDER, attempts: 1, message }
    } else if kind == "server_error" || kind.contains("overloaded") {
        LlmError::Unavailable { provider: PROVIDER, attempts: 1, message }
    } else {
        bad(format!("the reply reported an error: {message}"))
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u64,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<Value>,
    refusal: Option<String>,
    tool_calls: Option<Vec<DeltaCall>>,
}

#[derive(Debug, Deserialize)]
struct DeltaCall {
    index: Option<u64>,
    id: Option<String>,
    function: Option<DeltaFunction>,
}

#[derive(Debug, Deserialize)]
struct DeltaFunction {
    name: Option<String>,
    arguments: Option<Value>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// A streamed reply being put together.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    text: String,
    /// By the `index` the chunks give.
    calls: BTreeMap<u64, PartialCall>,
    usage: Usage,
    stop_reason: Option<String>,
}

impl StreamState {
    /// Takes one event; true at `[DONE]`.
    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|problem| bad(format!("a stream chunk is not JSON ({problem}): {}", excerpt(data))))?;
        if let Some(error) = &chunk.error {
            return Err(reported_error(error));
        }
        if let Some(usage) = &chunk.usage {
            self.usage = usage.usage();
        }
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(delta) = choice.delta {
                for fragment in [delta.content.as_ref().map(content_text), delta.refusal].into_iter().flatten() {
                    if !fragment.is_empty() {
                        on_text(&fragment);
                        self.text.push_str(&fragment);
                    }
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.add_call_fragment(call);
                }
            }
            if choice.finish_reason.is_some() {
                self.stop_reason = choice.finish_reason;
            }
        }
        Ok(false)
    }

    fn add_call_fragment(&mut self, call: DeltaCall) {
        let id = call.id.filter(|id| !id.is_empty());
        // Some servers leave out `index`: then a new id starts a new call, and a
        // fragment without either continues the last one.
        let index = match (call.index, &id) {
            (Some(index), _) => index,
            (None, Some(id)) => match self.calls.iter().find(|(_, partial)| &partial.id == id) {
                Some((index, _)) => *index,
                None => self.calls.keys().next_back().map_or(0, |last| last + 1),
            },
            (None, None) => self.calls.keys().next_back().copied().unwrap_or(0),
        };
        let partial = self.calls.entry(index).or_default();
        if let Some(id) = id
            && partial.id.is_empty()
        {
            partial.id = id;
        }
        if let Some(function) = call.function {
            if let Some(name) = function.name.filter(|name| !name.is_empty())
                && partial.name.is_empty()
            {
                partial.name = name;
            }
            if let Some(arguments) = &function.arguments {
                partial.arguments.push_str(&arguments_text(arguments));
            }
        }
    }

    /// The reply. `at_eof`: the body ended without `[DONE]`, which is accepted
    /// only after a `finish_reason` (some compatible servers omit `[DONE]`).
    pub(super) fn finish(self, at_eof: bool) -> Result<ModelReply, LlmError> {
        if at_eof && self.stop_reason.is_none() {
            return Err(bad("the stream ended before its end ([DONE] never came)"));
        }
        let tool_calls = self
            .calls
            .into_values()
            .enumerate()
            .map(|(position, call)| ToolCall {
                id: if call.id.is_empty() { format!("call_{position}") } else { call.id },
                name: call.name,
                arguments: call.arguments,
            })
            .collect();
        Ok(ModelReply { text: self.text, tool_calls, usage: self.usage, stop_reason: self.stop_reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::{Message, ToolSpec};

    fn request() -> ModelRequest {
        ModelRequest {
            system: "You are careful.".into(),
            messages: vec![
                Message::user("How many?"),
                Message::assistant(
                    "",
                    vec![ToolCall {
                        id: "call_1".into(),
                        name: "run_sql".into(),
                        arguments: r#"{"sql":"SELECT 1"}"#.into(),
                    }],
                ),
                Message::tool_result("call_1", r#"{"rows":[[1]]}"#),
                Message::assistant("One.", vec![]),
            ],
            tools: vec![ToolSpec {
                name: "run_sql".into(),
                description: "Runs SQL".into(),
                parameters: json!({"type": "object", "properties": {"sql": {"type": "string"}}}),
            }],
            max_tokens: 512,
        }
    }

    #[test]
    fn request_body_has_the_wire_shape() {
        assert_eq!(
            request_body("gpt-4o-mini", &request(), true, "max_tokens"),
            json!({
                "model": "gpt-4o-mini",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 512,
                "messages": [
                    {"role": "system", "content": "You are careful."},
                    {"role": "user", "content": "How many?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "run_sql", "arguments": "{\"sql\":\"SELECT 1\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "{\"rows\":[[1]]}"},
                    {"role": "assistant", "content": "One."},
                ],
                "tools": [{"type": "function", "function": {"name": "run_sql", "description": "Runs SQL",
                           "parameters": {"type": "object", "properties": {"sql": {"type": "string"}}}}}],
            })
        );
    }

    #[test]
    fn no_tools_means_no_tools_field() {
        let body = request_body("m", &ModelRequest { tools: vec![], ..request() }, false, "max_completion_tokens");
        assert_eq!(body.get("tools"), None);
        assert_eq!(body.get("stream_options"), None);
        assert_eq!(body["max_completion_tokens"], json!(512));
    }

    #[test]
    fn non_streamed_tool_call_with_null_content() {
        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_a","type":"function","function":{"name":"run_sql","arguments":"{\"sql\":\"SELECT"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
        assert_eq!(
            parse_reply(body).unwrap(),
            ModelReply {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_a".into(),
                    name: "run_sql".into(),
                    arguments: r#"{"sql":"SELECT"#.into()
                }],
                usage: Usage { input_tokens: 11, output_tokens: 7 },
                stop_reason: Some("tool_calls".into()),
            }
        );
    }

    #[test]
    fn a_refusal_is_text() {
        let body =
            br#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_reply(body).unwrap().text, "I can't help with that.");
    }

    #[test]
    fn unusable_bodies_are_bad_responses() {
        for (body, expected) in [
            (&b"<html>"[..], "LLM_BAD_RESPONSE"),
            (br#"{"choices":[]}"#, "LLM_BAD_RESPONSE"),
            (br#"{"error":{"message":"busy","type":"server_error"}}"#, "LLM_UNAVAILABLE"),
        ] {
            assert_eq!(parse_reply(body).unwrap_err().error_type(), expected);
        }
    }

    fn feed(state: &mut StreamState, texts: &mut Vec<String>, data: &str) -> bool {
        state.on_event(&SseEvent { event: None, data: data.into() }, &mut |t| texts.push(t.to_string())).unwrap()
    }

    #[test]
    fn streamed_calls_are_joined_by_index() {
        let mut state = StreamState::default();
        let mut texts = Vec::new();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"check."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"run_sql","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"describe_column","arguments":"{\"tab"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"sql\": \"SEL"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ECT 1\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"le\": \"t\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#,
        ] {
            assert!(!feed(&mut state, &mut texts, data));
        }
        assert!(feed(&mut state, &mut texts, "[DONE]"));
        assert_eq!(texts, ["Let me ", "check."]);
        assert_eq!(
            state.finish(false).unwrap(),
            ModelReply {
                text: "Let me check.".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "call_a".into(),
                        name: "run_sql".into(),
                        arguments: r#"{"sql": "SELECT 1"}"#.into()
                    },
                    ToolCall {
                        id: "call_b".into(),
                        name: "describe_column".into(),
                        arguments: r#"{"table": "t"}"#.into()
                    },
                ],
                usage: Usage { input_tokens: 5, output_tokens: 9 },
                stop_reason: Some("tool_calls".into()),
            }
        );
    }

    #[test]
    fn calls_without_index_are_told_apart_by_id() {
        let mut state = StreamState::default();
        let mut texts = Vec::new();
        feed(
            &mut state,
            &mut texts,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"x","arguments":"{}"}}]}}]}"#,
        );
        feed(
            &mut state,
            &mut texts,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"y","arguments":{"k":1}}}]}}]}"#,
        );
        feed(&mut state, &mut texts, r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#);
        let reply = state.finish(true).unwrap();
        let calls: Vec<_> =
            reply.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("a", "x", "{}"), ("b", "y", r#"{"k":1}"#)]);
    }

    #[test]
    fn end_without_done_or_finish_reason_is_a_bad_response() {
        let mut state = StreamState::default();
        feed(&mut state, &mut Vec::new(), r#"{"choices":[{"index":0,"delta":{"content":"Hal"}}]}"#);
        assert_eq!(state.finish(true).unwrap_err().error_type(), "LLM_BAD_RESPONSE");
    }
}
