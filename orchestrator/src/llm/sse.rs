//! An incremental parser for `text/event-stream` (Server-Sent Events), the framing
//! both providers stream in. The network hands us bytes cut anywhere — inside a
//! line, between `\r` and `\n`, even inside a UTF-8 character — so the parser keeps
//! the unfinished line and turns only complete lines into events.
//!
//! It follows the WHATWG rules that matter here: lines end with `\r\n`, `\n` or
//! `\r`; a blank line ends an event; `:` starts a comment; `data` lines of one event
//! are joined with `\n`; one space after the colon is dropped; unknown fields are
//! ignored. At the end of the stream a pending event is still delivered (some
//! servers omit the final blank line); the caller decides whether the stream was
//! complete.

/// One event: its `event:` name (if any) and its `data:` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("the event stream has a line that is not UTF-8")]
    NotUtf8,
    #[error("the event stream has a line longer than {0} bytes")]
    LineTooLong(usize),
}

/// A line longer than this is refused (no provider sends one; a broken server might).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseParser {
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` first in the next one belongs to it.
    after_cr: bool,
    /// No byte seen yet (a UTF-8 byte order mark is skipped there).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser { at_start: true, ..SseParser::default() }
    }

    /// Feeds the next bytes; returns the events they completed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append(&bytes[..end])?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events)?;
            if bytes[end] == b'\r' {
                match bytes.get(end + 1) {
                    Some(b'\n') => bytes = &bytes[end + 2..],
                    Some(_) => bytes = &bytes[end + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[end + 1..];
            }
        }
        self.append(bytes)?;
        Ok(events)
    }

    /// The end of the stream: an unfinished last line counts as a line, and a pending
    /// event is delivered.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events)?;
        }
        self.process_line(b"", &mut events)?;
        Ok(events.pop())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        let bytes = if self.at_start && !bytes.is_empty() {
            // The byte order mark may itself arrive in pieces.
            let bom = b"\xEF\xBB\xBF";
            let mut candidate = self.line.clone();
            candidate.extend_from_slice(bytes);
            if candidate.len() < bom.len() && bom.starts_with(&candidate) {
                self.line = candidate;
                return Ok(());
            }
            self.at_start = false;
            if candidate.starts_with(bom) {
                self.line.clear();
                let skip = bom.len() - (candidate.len() - bytes.len());
                &bytes[skip..]
            } else {
                bytes
            }
        } else {
            bytes
        };
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong(MAX_LINE_BYTES));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.at_start = false;
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                events.push(SseEvent { event: self.event.take(), data });
            }
            self.event = None;
            self.has_data = false;
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {} // id, retry and unknown fields do not matter to a one-shot client.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: name.map(str::to_string), data: data.to_string() }
    }

    /// Feeds `input` cut at every given position, collecting every event including the final one.
    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Result<Vec<SseEvent>, SseError> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            events.extend(parser.push(&input[start..cut])?);
            start = cut;
        }
        events.extend(parser.finish()?);
        Ok(events)
    }

    const STREAM: &str = ": keep-alive comment\r\n\
        event: message_start\r\n\
        data: {\"a\":\"é😀\"}\r\n\
        \r\n\
        data: first\n\
        data:second\n\
        id: 7\n\
        retry: 100\n\
        \n\
        event: ping\rdata: {}\r\r\
        data: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            event(Some("message_start"), "{\"a\":\"é😀\"}"),
            event(None, "first\nsecond"),
            event(Some("ping"), "{}"),
            event(None, "[DONE]"),
        ]
    }

    #[test]
    fn whole_stream_at_once() {
        assert_eq!(parse_in_pieces(STREAM.as_bytes(), &[]).unwrap(), expected());
    }

    #[test]
    fn every_single_cut_position_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(parse_in_pieces(bytes, &[cut]).unwrap(), expected(), "cut at byte {cut}");
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(parse_in_pieces(bytes, &cuts).unwrap(), expected());
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: x\r").unwrap(), vec![]);
        assert_eq!(parser.push(b"\n").unwrap(), vec![]);
        assert_eq!(parser.push(b"\r").unwrap(), vec![event(None, "x")]);
        assert_eq!(parser.push(b"\ndata: y\n\n").unwrap(), vec![event(None, "y")]);
        assert_eq!(parser.finish().unwrap(), None);
    }

    #[test]
    fn event_name_without_data_is_not_dispatched_and_does_not_leak() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"event: lonely\n\ndata: z\n\n").unwrap(), vec![event(None, "z")]);
    }

    #[test]
    fn empty_data_line_is_an_event_with_empty_data() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data\n\ndata:\n\n").unwrap(), vec![event(None, ""), event(None, "")]);
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data:  two\n\n").unwrap(), vec![event(None, " two")]);
    }

    #[test]
    fn pending_event_is_delivered_at_the_end() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: [DONE]").unwrap(), vec![]);
        assert_eq!(parser.finish().unwrap(), Some(event(None, "[DONE]")));
    }

    #[test]
    fn byte_order_mark_is_skipped_even_in_pieces() {
        let input = b"\xEF\xBB\xBFdata: a\n\n";
        for cut in 0..=input.len() {
            assert_eq!(parse_in_pieces(input, &[cut]).unwrap(), vec![event(None, "a")], "cut at byte {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: \xFF\xFE\n\n"), Err(SseError::NotUtf8));
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut parser = SseParser::new();
        let chunk = vec![b'a'; 1024 * 1024];
        let mut result = Ok(vec![]);
        for _ in 0..17 {
            result = parser.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::LineTooLong(MAX_LINE_BYTES)));
    }
}
