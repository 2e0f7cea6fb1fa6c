//! The model client the analyst agent talks through: a small, provider-neutral
//! client of our own on `reqwest`, so no vendor SDK decides our types, retries or
//! logging. Two wire dialects sit behind one interface:
//!
//! - [`openai`]: Chat Completions with function tools — the public OpenAI API and
//!   any OpenAI-compatible server (vLLM, Ollama, llama.cpp's `llama-server`), which
//!   then needs no key;
//! - [`anthropic`]: the Messages API with `tool_use`.
//!
//! Both stream over Server-Sent Events ([`sse`]). The agent speaks only the neutral
//! types here ([`ModelRequest`], [`Message`], [`ToolCall`], [`ModelReply`]).
//!
//! Behaviour every caller can rely on:
//! - each attempt is bounded by `LLM_TIMEOUT_SECONDS`, from sending the request to
//!   the last byte of the stream; a timeout is not retried (a stalled provider would
//!   only stall again, and the agent's turn has its own budget);
//! - up to `LLM_MAX_RETRIES` retries on 429 (waiting `Retry-After` seconds, at most
//!   10 s, else 0.5 s, 1 s, 2 s …), on 5xx and on connection failures — only before a
//!   successful response started; never on other 4xx;
//! - dropping a returned future drops its HTTP request at once (nothing is spawned);
//! - the API key appears in no error, `Debug` output or log line: it lives in
//!   [`ApiKey`], whose `Debug` prints `[redacted]`, and every error message is
//!   scrubbed of the key before it leaves this module.
//!
//! The parts, each using only those listed before it:
//! - `types`: the neutral request and reply types;
//! - `quote`: provider text in error messages, shortened and scrubbed of the key;
//! - `error`: [`LlmError`];
//! - `settings`: the settings ([`LlmConfig`]) checked and resolved, and [`LlmStatus`];
//! - [`sse`]: the Server-Sent Events parser;
//! - `openai`, `anthropic`: the two wire dialects, each with its streaming state;
//! - `client`: [`LlmClient`], with its deadlines, retries and streaming.
//!
//! May use: [`crate::config`] (its settings) and [`crate::error`]. Knows nothing of
//! chat turns, runs or HTTP: the agent above it decides what to ask.

mod anthropic;
mod client;
mod error;
mod openai;
mod quote;
mod settings;
pub mod sse;
mod types;

pub use crate::config::{ApiKey, LlmConfig, ProviderChoice};
pub use client::LlmClient;
pub use error::LlmError;
pub use settings::LlmStatus;
pub use types::{Message, ModelReply, ModelRequest, Role, ToolCall, ToolSpec, Usage};
