//! Provider text quoted in error messages: a provider's error body read for its
//! message ([`provider_message`]), shortened, and scrubbed of the API key
//! ([`redact`]).
//!
//! Uses nothing else of the llm module; the key type is `crate::config`'s.

use crate::config::ApiKey;

/// A provider's error text is quoted up to this many characters.
pub(super) const MAX_QUOTED_CHARS: usize = 300;

/// The message of a provider's error body (`{"error": {"type", "message"}}` in both
/// dialects; `{"error": "…"}` from some compatible servers; else the text itself),
/// scrubbed of the key and shortened.
pub(super) fn provider_message(body: &[u8], key: Option<&ApiKey>) -> String {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => {
            let error = json.get("error").unwrap_or(&json);
            match (error.get("type").and_then(|t| t.as_str()), error.get("message").and_then(|m| m.as_str())) {
                (Some(kind), Some(message)) => format!("{kind}: {message}"),
                (None, Some(message)) => message.to_string(),
                _ => match error.as_str() {
                    Some(message) => message.to_string(),
                    None => text.trim().to_string(),
                },
            }
        }
        Err(_) => text.trim().to_string(),
    };
    if message.is_empty() { "(empty body)".to_string() } else { shorten(&redact(&message, key), MAX_QUOTED_CHARS) }
}

/// `text` without the key in it.
pub(super) fn redact(text: &str, key: Option<&ApiKey>) -> String {
    match key {
        Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "[redacted]"),
        _ => text.to_string(),
    }
}

pub(super) fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Shortens what a malformed body or event looked like, for an error message.
pub(super) fn excerpt(text: &str) -> String {
    shorten(text.trim(), 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_are_quoted_shortened_and_redacted() {
        let key = ApiKey::new("sk-secret-123");
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-secret-123.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            provider_message(openai, Some(&key)),
            "invalid_request_error: Incorrect API key provided: [redacted]."
        );
        let anthropic = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(provider_message(anthropic, None), "authentication_error: invalid x-api-key");
        assert_eq!(provider_message(br#"{"error":"model not found"}"#, None), "model not found");
        assert_eq!(provider_message(b"  Bad Gateway\n", None), "Bad Gateway");
        assert_eq!(provider_message(b"", None), "(empty body)");
        // The key is removed before shortening, so a cut cannot leave half of it.
        let long = format!("{}sk-secret-123 and more", "x".repeat(295));
        assert_eq!(provider_message(long.as_bytes(), Some(&key)), format!("{}[reda…", "x".repeat(295)));
        assert_eq!(shorten("ééé", 2), "éé…");
    }
}
