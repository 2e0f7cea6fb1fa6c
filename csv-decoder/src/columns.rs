//! From spans to Arrow arrays, with arrow-csv's own rules for each value.
//!
//! Values are parsed by the same functions arrow-csv calls (`arrow_cast`'s `Parser`
//! and `string_to_datetime`), an empty text is NULL as arrow-csv's default null rule
//! says, and booleans follow arrow-csv's `parse_bool`. So a value that parses gives
//! the same array element, and one that does not is handed to arrow-csv, which reports
//! it in its own words.

use std::sync::Arc;

use arrow_array::types::{
    ArrowTimestampType, Date32Type, Date64Type, Float64Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, StringArray};
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_cast::parse::{Parser, string_to_datetime};
use arrow_schema::{DataType, TimeUnit};
use chrono::Utc;

use crate::split::{Span, Unsupported};

/// How a projected column is decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decode {
    Utf8,
    Boolean,
    Int64,
    Float64,
    Date32,
    Date64,
    Timestamp(TimeUnit),
}

impl Decode {
    /// The fast path's decoder for `data_type`, if it has one.
    pub(crate) fn for_type(data_type: &DataType) -> Option<Decode> {
        Some(match data_type {
            DataType::Utf8 => Decode::Utf8,
            DataType::Boolean => Decode::Boolean,
            DataType::Int64 => Decode::Int64,
            DataType::Float64 => Decode::Float64,
            DataType::Date32 => Decode::Date32,
            DataType::Date64 => Decode::Date64,
            DataType::Timestamp(unit, None) => Decode::Timestamp(*unit),
            _ => return None,
        })
    }

    /// The column of `spans` over `data`, which is valid UTF-8 up to the last span's
    /// end and may run on past it (the bytes after are read, never used, by short copies).
    pub(crate) fn build(self, data: &[u8], spans: &[Span], scratch: &mut Vec<u8>) -> Result<ArrayRef, Unsupported> {
        Ok(match self {
            Decode::Utf8 => Arc::new(utf8(data, spans)),
            Decode::Boolean => Arc::new(boolean(data, spans, scratch)?),
            Decode::Int64 => Arc::new(primitive::<Int64Type>(data, spans, scratch)?),
            Decode::Float64 => Arc::new(primitive::<Float64Type>(data, spans, scratch)?),
            Decode::Date32 => Arc::new(primitive::<Date32Type>(data, spans, scratch)?),
            Decode::Date64 => Arc::new(primitive::<Date64Type>(data, spans, scratch)?),
            Decode::Timestamp(TimeUnit::Second) => Arc::new(timestamp::<TimestampSecondType>(data, spans, scratch)?),
            Decode::Timestamp(TimeUnit::Millisecond) => {
                Arc::new(timestamp::<TimestampMillisecondType>(data, spans, scratch)?)
            }
            Decode::Timestamp(TimeUnit::Microsecond) => {
                Arc::new(timestamp::<TimestampMicrosecondType>(data, spans, scratch)?)
            }
            Decode::Timestamp(TimeUnit::Nanosecond) => {
                Arc::new(timestamp::<TimestampNanosecondType>(data, spans, scratch)?)
            }
        })
    }
}

/// Copies shorter than this are done as one fixed-size copy: wasmtime runs a
/// variable-length `memory.copy` as a call into the host, a fixed one inline.
const SHORT_COPY: usize = 16;

/// The strings, NULL where the text is empty.
fn utf8(data: &[u8], spans: &[Span]) -> StringArray {
    let bytes: usize = spans.iter().map(|s| s.end() - s.start()).sum();
    let mut values: Vec<u8> = Vec::with_capacity(bytes + SHORT_COPY);
    let mut offsets: Vec<i32> = Vec::with_capacity(spans.len() + 1);
    let mut nulls = NullBufferBuilder::new(spans.len());
    offsets.push(0);
    for &span in spans {
        let (start, end) = (span.start(), span.end());
        if span.is_escaped() {
            unescape(&data[start..end], &mut values);
        } else if end - start <= SHORT_COPY && start + SHORT_COPY <= data.len() {
            let chunk: &[u8; SHORT_COPY] = data[start..start + SHORT_COPY].try_into().expect("16 bytes");
            let len = values.len();
            values.extend_from_slice(chunk);
            values.truncate(len + end - start);
        } else {
            values.extend_from_slice(&data[start..end]);
        }
        nulls.append(!span.is_empty());
        // The window is at most `MAX_WINDOW` (< 2^31) bytes: the offsets fit.
        offsets.push(values.len() as i32);
    }
    // SAFETY: the offsets start at 0, never decrease and end at `values.len()`. Every
    // value is valid UTF-8: the reader checked the whole window, and each span starts
    // and ends next to an ASCII byte (a separator, terminator or quote) or at the
    // window's ends, so it starts and ends on character boundaries; undoing `""`
    // escapes removes ASCII bytes only.
    unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            nulls.finish(),
        )
    }
}

/// Appends `text` with each `""` made `"`.
fn unescape(text: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < text.len() {
        out.push(text[i]);
        i += if text[i] == b'"' { 2 } else { 1 };
    }
}

/// The field's text: borrowed, or unescaped into `scratch`.
fn text<'a>(data: &'a [u8], span: Span, scratch: &'a mut Vec<u8>) -> &'a str {
    let bytes = if span.is_escaped() {
        scratch.clear();
        unescape(&data[span.start()..span.end()], scratch);
        &scratch[..]
    } else {
        &data[span.start()..span.end()]
    };
    // SAFETY: see `utf8`: the window is valid UTF-8 and spans end on character boundaries.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

fn primitive<T: ArrowPrimitiveType + Parser>(
    data: &[u8],
    spans: &[Span],
    scratch: &mut Vec<u8>,
) -> Result<PrimitiveArray<T>, Unsupported> {
    parsed(data, spans, scratch, |s| T::parse(s))
}

fn timestamp<T: ArrowTimestampType>(
    data: &[u8],
    spans: &[Span],
    scratch: &mut Vec<u8>,
) -> Result<PrimitiveArray<T>, Unsupported> {
    parsed(data, spans, scratch, |s| {
        let date = string_to_datetime(&Utc, s).ok()?;
        match T::UNIT {
            TimeUnit::Second => Some(date.timestamp()),
            TimeUnit::Millisecond => Some(date.timestamp_millis()),
            TimeUnit::Microsecond => Some(date.timestamp_micros()),
            TimeUnit::Nanosecond => date.timestamp_nanos_opt(),
        }
    })
}

fn parsed<T: ArrowPrimitiveType>(
    data: &[u8],
    spans: &[Span],
    scratch: &mut Vec<u8>,
    parse: impl Fn(&str) -> Option<T::Native>,
) -> Result<PrimitiveArray<T>, Unsupported> {
    let mut values: Vec<T::Native> = Vec::with_capacity(spans.len());
    let mut nulls = NullBufferBuilder::new(spans.len());
    for &span in spans {
        if span.is_empty() {
            values.push(T::Native::default());
            nulls.append_null();
        } else {
            values.push(parse(text(data, span, scratch)).ok_or(Unsupported::Value)?);
            nulls.append_non_null();
        }
    }
    Ok(PrimitiveArray::new(ScalarBuffer::from(values), nulls.finish()))
}

fn boolean(data: &[u8], spans: &[Span], scratch: &mut Vec<u8>) -> Result<BooleanArray, Unsupported> {
    spans
        .iter()
        .map(|&span| {
            if span.is_empty() {
                return Ok(None);
            }
            // arrow-csv's `parse_bool`.
            let s = text(data, span, scratch);
            if s.eq_ignore_ascii_case("false") {
                Ok(Some(false))
            } else if s.eq_ignore_ascii_case("true") {
                Ok(Some(true))
            } else {
                Err(Unsupported::Value)
            }
        })
        .collect()
}
