//! Finding records and fields: the one loop every query pays.
//!
//! The splitter reads 64 bytes at a time and turns them into two bit masks, the
//! separators and terminators (`,` `\n` `\r`) and the quotes, with 16-byte SIMD
//! compares: wasm simd128 in the guest (wasmtime compiles it to SSE one for one),
//! SSE2 natively, a plain loop elsewhere. It then walks the set bits. Quoted regions
//! come from a prefix XOR of the quote mask (as in simdjson), so a separator inside
//! quotes is not a boundary, and no byte is looked at twice.
//!
//! Only the projected columns' fields are recorded, as spans into the caller's
//! window: nothing is copied here. Every field that holds a quote is checked to be in
//! the one form that csv-core reads the same way (`"…"` with `""` escapes); anything
//! else that csv-core reads in its own way (a bare `\r`, an empty line, a quote inside
//! an unquoted field, text after a closing quote, a ragged row, a quote left open) is
//! reported as [`Unsupported`], and the reader hands the file to arrow-csv from the
//! current batch on. So the splitter never has to agree with csv-core on odd input:
//! it only has to recognise it.

/// What the fast path does not handle, and why the reader handed over to arrow-csv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// A projected column's type is not one the fast path decodes.
    ColumnType,
    /// A non-nullable column, a column projected twice, or a batch size of 0.
    Shape,
    /// A field holds a quote but is not `"…"` with `""` escapes.
    Quoting,
    /// A `\r` not followed by `\n`.
    BareCarriageReturn,
    /// An empty line (csv-core skips it).
    EmptyLine,
    /// A record with more or fewer fields than the header.
    FieldCount,
    /// The file ends inside a quoted field.
    UnclosedQuote,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A record longer than the fast path buffers.
    LongRecord,
    /// A value that does not parse as its column's type (arrow-csv reports it).
    Value,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsupported::ColumnType => "a projected column's type is read by arrow-csv",
            Unsupported::Shape => "a non-nullable column, a column projected twice, or a batch size of 0",
            Unsupported::Quoting => "a field's quoting is not \"…\" with \"\" escapes",
            Unsupported::BareCarriageReturn => "a carriage return without a line feed",
            Unsupported::EmptyLine => "an empty line",
            Unsupported::FieldCount => "a record whose field count differs from the header's",
            Unsupported::UnclosedQuote => "a quoted field left open at the end of the file",
            Unsupported::InvalidUtf8 => "bytes that are not UTF-8",
            Unsupported::LongRecord => "a record longer than the fast path's buffer",
            Unsupported::Value => "a value that does not parse as its column's type",
        })
    }
}

/// Marks a column the query does not read.
pub(crate) const NOT_PROJECTED: u32 = u32::MAX;
/// Set in [`Span::start`] when the field's text has `""` escapes to undo.
const ESCAPED: u32 = 1 << 31;
/// The largest window the splitter takes: spans are `u32` with one flag bit.
pub(crate) const MAX_WINDOW: usize = (ESCAPED - 1) as usize;

/// One field's text in the window: quotes already stripped, escapes maybe not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize, escaped: bool) -> Span {
        Span { start: start as u32 | if escaped { ESCAPED } else { 0 }, end: end as u32 }
    }

    pub(crate) fn start(self) -> usize {
        (self.start & !ESCAPED) as usize
    }

    pub(crate) fn end(self) -> usize {
        self.end as usize
    }

    pub(crate) fn is_escaped(self) -> bool {
        self.start & ESCAPED != 0
    }

    /// The text is empty (an empty field or `""`): arrow-csv reads it as NULL.
    pub(crate) fn is_empty(self) -> bool {
        self.end() == self.start()
    }
}

/// Complete records found at the front of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    pub records: usize,
    /// Bytes up to and including the last record's terminator.
    pub consumed: usize,
}

/// Splits records into fields, keeping the projected ones.
#[derive(Debug)]
pub(crate) struct Splitter {
    num_fields: usize,
    /// For each column of the file, its slot in the output, or [`NOT_PROJECTED`].
    slot_of_field: Vec<u32>,
    /// For each output slot, one span per record found.
    pub(crate) spans: Vec<Vec<Span>>,
}

impl Splitter {
    pub(crate) fn new(num_fields: usize, projection: &[usize]) -> Splitter {
        let mut slot_of_field = vec![NOT_PROJECTED; num_fields];
        for (slot, &field) in projection.iter().enumerate() {
            slot_of_field[field] = slot as u32;
        }
        Splitter { num_fields, slot_of_field, spans: vec![Vec::new(); projection.len()] }
    }

    /// Finds up to `max_records` complete records at the front of `data`, which starts
    /// at a record boundary. `eof` says `data` ends the file (so a last record needs no
    /// terminator); otherwise a record cut by the end of `data` is left for the next call.
    /// The spans found replace the previous call's.
    pub(crate) fn split(&mut self, data: &[u8], eof: bool, max_records: usize) -> Result<Split, Unsupported> {
        if data.len() > MAX_WINDOW {
            // Spans could not address it (the reader never makes such a window).
            return Err(Unsupported::LongRecord);
        }
        for spans in &mut self.spans {
            spans.clear();
        }
        let mut state = State { record_start: 0, field_start: 0, field: 0, field_start_quotes: 0, records: 0 };
        let mut in_quote = 0u64;
        let mut quotes_before = 0u32;
        let mut skip_lf = usize::MAX;
        let mut tail = [0u8; 64];

        let mut base = 0;
        while base < data.len() {
            let block: &[u8; 64] = match data.get(base..base + 64) {
                Some(block) => block.try_into().expect("a 64-byte slice"),
                None => {
                    let rest = &data[base..];
                    tail[..rest.len()].copy_from_slice(rest);
                    tail[rest.len()..].fill(0);
                    &tail
                }
            };
            let (structural, quotes) = masks(block);
            let inside = if quotes == 0 { in_quote } else { prefix_xor(quotes) ^ in_quote };
            in_quote = ((inside as i64) >> 63) as u64;
            let mut bits = structural & !inside;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                let at = base + bit as usize;
                if at == skip_lf {
                    continue;
                }
                let quotes_here = quotes_before + (quotes & ((1u64 << bit) - 1)).count_ones();
                let byte = data[at];
                if byte == b',' {
                    self.close_field(data, &mut state, at, quotes_here)?;
                    state.field += 1;
                    state.field_start = at + 1;
                    continue;
                }
                // A terminator: `\n`, `\r\n`, or a `\r` that ends the file.
                let next = if byte == b'\n' {
                    at + 1
                } else {
                    match data.get(at + 1) {
                        Some(b'\n') => {
                            skip_lf = at + 1;
                            at + 2
                        }
                        Some(_) => return Err(Unsupported::BareCarriageReturn),
                        None if eof => at + 1,
                        // The `\n` may be in the next read: leave the record for then.
                        None => return Ok(self.incomplete(&state)),
                    }
                };
                if state.field == 0 && at == state.record_start {
                    return Err(Unsupported::EmptyLine);
                }
                self.close_field(data, &mut state, at, quotes_here)?;
                self.close_record(&mut state, next)?;
                if state.records == max_records {
                    return Ok(Split { records: state.records, consumed: next });
                }
            }
            quotes_before += quotes.count_ones();
            base += 64;
        }

        if !eof || state.record_start >= data.len() {
            return Ok(self.incomplete(&state));
        }
        // The last record of the file, without a terminator.
        if in_quote != 0 {
            return Err(Unsupported::UnclosedQuote);
        }
        self.close_field(data, &mut state, data.len(), quotes_before)?;
        self.close_record(&mut state, data.len())?;
        Ok(Split { records: state.records, consumed: data.len() })
    }

    /// Records the field that ends at `end`, after checking its quotes.
    #[inline(always)]
    fn close_field(&mut self, data: &[u8], state: &mut State, end: usize, quotes_here: u32) -> Result<(), Unsupported> {
        let start = state.field_start;
        let quotes = quotes_here - state.field_start_quotes;
        state.field_start_quotes = quotes_here;
        let span = if quotes == 0 { Span::new(start, end, false) } else { quoted(data, start, end, quotes)? };
        if let Some(&slot) = self.slot_of_field.get(state.field)
            && slot != NOT_PROJECTED
        {
            self.spans[slot as usize].push(span);
        }
        Ok(())
    }

    fn close_record(&mut self, state: &mut State, next: usize) -> Result<(), Unsupported> {
        if state.field + 1 != self.num_fields {
            return Err(Unsupported::FieldCount);
        }
        state.records += 1;
        state.record_start = next;
        state.field_start = next;
        state.field = 0;
        Ok(())
    }

    /// Stops before the record in progress, dropping the spans it added.
    fn incomplete(&mut self, state: &State) -> Split {
        for spans in &mut self.spans {
            spans.truncate(state.records);
        }
        Split { records: state.records, consumed: state.record_start }
    }
}

struct State {
    record_start: usize,
    field_start: usize,
    /// The field's index in its record.
    field: usize,
    /// Quotes seen before the field's first byte.
    field_start_quotes: u32,
    records: usize,
}

/// A field `data[start..end]` holding `quotes` quote bytes: it must be `"…"` with every
/// inner quote doubled, which csv-core reads as the text between the outer quotes.
fn quoted(data: &[u8], start: usize, end: usize, quotes: u32) -> Result<Span, Unsupported> {
    if end - start < 2 || data[start] != b'"' || data[end - 1] != b'"' {
        return Err(Unsupported::Quoting);
    }
    if quotes == 2 {
        return Ok(Span::new(start + 1, end - 1, false));
    }
    let inner = &data[start + 1..end - 1];
    let mut i = 0;
    while let Some(k) = inner[i..].iter().position(|&b| b == b'"') {
        if inner.get(i + k + 1) != Some(&b'"') {
            return Err(Unsupported::Quoting);
        }
        i += k + 2;
    }
    Ok(Span::new(start + 1, end - 1, true))
}

/// Bit `i` set where bits `0..=i` of `x` hold an odd number of ones: inside quotes,
/// counting the opening quote and not the closing one.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// (separators and terminators, quotes) of 64 bytes, one bit per byte.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    use core::arch::wasm32::*;
    let (comma, lf, cr, quote) = (u8x16_splat(b','), u8x16_splat(b'\n'), u8x16_splat(b'\r'), u8x16_splat(b'"'));
    let mut structural = 0u64;
    let mut quotes = 0u64;
    for i in 0..4 {
        // SAFETY: `block` holds 64 bytes, so 16 from `16 * i` are in bounds;
        // `v128_load` has no alignment requirement.
        let v = unsafe { v128_load(block.as_ptr().add(16 * i).cast::<v128>()) };
        let s = v128_or(v128_or(u8x16_eq(v, comma), u8x16_eq(v, lf)), u8x16_eq(v, cr));
        structural |= u64::from(u8x16_bitmask(s)) << (16 * i);
        quotes |= u64::from(u8x16_bitmask(u8x16_eq(v, quote))) << (16 * i);
    }
    (structural, quotes)
}

/// (separators and terminators, quotes) of 64 bytes, one bit per byte.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    use core::arch::x86_64::*;
    let mut structural = 0u64;
    let mut quotes = 0u64;
    // SAFETY: SSE2 is part of x86-64, so these intrinsics are always available;
    // `block` holds 64 bytes, so the 16 loaded from `16 * i` are in bounds, and
    // `_mm_loadu_si128` has no alignment requirement.
    unsafe {
        let (comma, lf, cr, quote) = (
            _mm_set1_epi8(b',' as i8),
            _mm_set1_epi8(b'\n' as i8),
            _mm_set1_epi8(b'\r' as i8),
            _mm_set1_epi8(b'"' as i8),
        );
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            let s = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, lf)), _mm_cmpeq_epi8(v, cr));
            structural |= u64::from(_mm_movemask_epi8(s) as u16) << (16 * i);
            quotes |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16) << (16 * i);
        }
    }
    (structural, quotes)
}

/// (separators and terminators, quotes) of 64 bytes, one bit per byte.
#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    scalar_masks(block)
}

/// The masks one byte at a time: the reference the SIMD versions are tested against.
#[cfg_attr(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"), allow(dead_code))]
fn scalar_masks(block: &[u8; 64]) -> (u64, u64) {
    let mut structural = 0u64;
    let mut quotes = 0u64;
    for (i, &b) in block.iter().enumerate() {
        structural |= u64::from(matches!(b, b',' | b'\n' | b'\r')) << i;
        quotes |= u64::from(b == b'"') << i;
    }
    (structural, quotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per column, each field's text and whether it has escapes.
    type Columns = Vec<Vec<(String, bool)>>;

    fn fields(data: &str, num_fields: usize, eof: bool) -> Result<(Split, Columns), Unsupported> {
        let projection: Vec<usize> = (0..num_fields).collect();
        let mut splitter = Splitter::new(num_fields, &projection);
        let split = splitter.split(data.as_bytes(), eof, usize::MAX)?;
        let texts = splitter
            .spans
            .iter()
            .map(|spans| spans.iter().map(|s| (data[s.start()..s.end()].to_string(), s.is_escaped())).collect())
            .collect();
        Ok((split, texts))
    }

    fn plain(texts: &[&str]) -> Vec<(String, bool)> {
        texts.iter().map(|t| (t.to_string(), false)).collect()
    }

    #[test]
    fn masks_agree_with_the_scalar_reference() {
        let mut block = [0u8; 64];
        for seed in 0..500u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = b",\n\r\"a\xc3\xa9 0\x00\xff"[(x % 11) as usize];
            }
            assert_eq!(masks(&block), scalar_masks(&block), "block {block:?}");
        }
    }

    #[test]
    fn prefix_xor_marks_the_inside_of_quotes() {
        // bits:      ..."ab"...  quote at 3 and 6
        assert_eq!(prefix_xor(0b100_1000), 0b011_1000);
    }

    #[test]
    fn splits_plain_records_with_lf_and_crlf() {
        let (split, f) = fields("a,b\r\nc,d\n", 2, false).unwrap();
        assert_eq!(split, Split { records: 2, consumed: 9 });
        assert_eq!(f, vec![plain(&["a", "c"]), plain(&["b", "d"])]);
    }

    #[test]
    fn a_record_cut_by_the_window_waits_unless_the_file_ends() {
        assert_eq!(fields("a,b\nc,", 2, false).unwrap().0, Split { records: 1, consumed: 4 });
        assert_eq!(fields("a,b\nc,d\r", 2, false).unwrap().0, Split { records: 1, consumed: 4 });
        let (split, f) = fields("a,b\nc,d", 2, true).unwrap();
        assert_eq!(split, Split { records: 2, consumed: 7 });
        assert_eq!(f[1], plain(&["b", "d"]));
    }

    #[test]
    fn quoted_fields_keep_separators_and_mark_escapes() {
        let data = "\"x,\ny\",\"say \"\"hi\"\"\"\n\"\",plain\n";
        let (split, f) = fields(data, 2, true).unwrap();
        assert_eq!(split.records, 2);
        assert_eq!(f[0], vec![("x,\ny".to_string(), false), (String::new(), false)]);
        assert_eq!(f[1], vec![("say \"\"hi\"\"".to_string(), true), ("plain".to_string(), false)]);
    }

    #[test]
    fn quotes_spanning_blocks_are_tracked() {
        let long = "q".repeat(150);
        let data = format!("1,\"{long},{long}\"\n2,x\n");
        let (split, f) = fields(&data, 2, true).unwrap();
        assert_eq!(split.records, 2);
        assert_eq!(f[1][0].0, format!("{long},{long}"));
        assert_eq!(f[0], plain(&["1", "2"]));
    }

    #[test]
    fn what_csv_core_reads_its_own_way_is_reported() {
        assert_eq!(fields("a,b\rc,d\n", 2, true).unwrap_err(), Unsupported::BareCarriageReturn);
        assert_eq!(fields("a,b\n\nc,d\n", 2, true).unwrap_err(), Unsupported::EmptyLine);
        assert_eq!(fields("a,b\nc\n", 2, true).unwrap_err(), Unsupported::FieldCount);
        assert_eq!(fields("a,b,c\n", 2, true).unwrap_err(), Unsupported::FieldCount);
        assert_eq!(fields("a\"b,c\"\n", 2, true).unwrap_err(), Unsupported::Quoting);
        assert_eq!(fields("a\"b,c\n", 2, true).unwrap_err(), Unsupported::UnclosedQuote);
        assert_eq!(fields("\"a\"b,c\n", 2, true).unwrap_err(), Unsupported::Quoting);
        assert_eq!(fields("\"a\"b\"\",c\n", 2, true).unwrap_err(), Unsupported::Quoting);
        assert_eq!(fields("a,\"b\nc\n", 2, true).unwrap_err(), Unsupported::UnclosedQuote);
    }

    #[test]
    fn stops_after_max_records() {
        let projection = [1];
        let mut splitter = Splitter::new(2, &projection);
        let data = b"a,b\nc,d\ne,f\n";
        assert_eq!(splitter.split(data, true, 2).unwrap(), Split { records: 2, consumed: 8 });
        assert_eq!(splitter.spans[0].len(), 2);
        assert_eq!(splitter.split(&data[8..], true, 2).unwrap(), Split { records: 1, consumed: 4 });
        assert_eq!(splitter.spans[0].len(), 1);
    }
}
