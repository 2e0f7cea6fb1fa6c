//! CSV to Arrow, built for the sandbox.
//!
//! Every query csv-analyst serves starts with a CSV scan, and in the wasm guest that
//! scan was most of the time: arrow-csv runs csv-core's byte-at-a-time state machine
//! and copies every field of every record, used or not, before decoding the projected
//! ones. [`CsvReader`] reads the same files into the same Arrow arrays another way:
//!
//! - [`split`] finds separators, quotes and terminators 64 bytes at a time with SIMD
//!   compares and keeps only the projected fields, as spans into its read buffer;
//! - the whole window is checked to be UTF-8 in one pass (`simdutf8`), as arrow-csv
//!   checks every field it copies;
//! - [`columns`] decodes the spans straight into Arrow arrays, with the value parsers
//!   arrow-csv itself calls.
//!
//! It must give exactly what arrow-csv gives, for every file. So the fast path only
//! handles what it can recognise as unambiguous (see [`Unsupported`]); at anything
//! else (a bare `\r`, an empty line, odd quoting, a ragged row, bad UTF-8, a value that
//! does not parse, a column type it does not decode) it stops, and the reader re-opens
//! the file and continues with arrow-csv itself, skipping the rows already returned.
//! Errors therefore come from arrow-csv, word for word and with the same line numbers,
//! and answers match by construction on the slow path and by test on the fast one
//! (`tests/differential.rs`: generated datasets, the foreign corpus, edge cases, and a
//! property test comparing both readers on arbitrary bytes).

mod columns;
mod split;

use std::io::{self, BufReader, Read};

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::{ArrowError, SchemaRef};

use crate::columns::Decode;
use crate::split::{MAX_WINDOW, Splitter};

pub use crate::split::Unsupported;

/// Bytes past a window's end that are always allocated, for fixed-size copies.
const PADDING: usize = 64;

/// How the reader batches and buffers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records per batch (the last may have fewer).
    pub batch_size: usize,
    /// Bytes read at a time; each read is one call into the host in the sandbox.
    pub read_bytes: usize,
    /// A record longer than this goes to arrow-csv (which then holds it whole).
    pub max_record_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch_size: 8192, read_bytes: 1 << 20, max_record_bytes: 16 << 20 }
    }
}

/// Reads one CSV file with a header row as batches of the projected columns.
pub struct CsvReader<R> {
    open: Box<dyn FnMut() -> io::Result<R> + Send>,
    file_schema: SchemaRef,
    projection: Vec<usize>,
    projected: SchemaRef,
    options: Options,
    state: State<R>,
    /// Data rows returned so far.
    rows: usize,
    fallback: Option<Unsupported>,
}

enum State<R> {
    Fast(Box<Fast<R>>),
    Slow(Box<arrow_csv::reader::BufReader<BufReader<R>>>),
    Done,
}

impl<R: Read> CsvReader<R> {
    /// A reader of the file `open` opens (it is called again if the reader hands over
    /// to arrow-csv), whose header row is followed by records of `file_schema`, giving
    /// the columns `projection` lists, in that order.
    pub fn new(
        file_schema: SchemaRef,
        projection: Vec<usize>,
        options: Options,
        mut open: impl FnMut() -> io::Result<R> + Send + 'static,
    ) -> Result<Self, ArrowError> {
        let projected = SchemaRef::new(file_schema.project(&projection)?);
        let decoders: Option<Vec<Decode>> =
            projected.fields().iter().map(|field| Decode::for_type(field.data_type())).collect();
        let mut seen = vec![false; file_schema.fields().len()];
        let repeated = projection.iter().any(|&i| std::mem::replace(&mut seen[i], true));
        let shape_ok = !repeated && options.batch_size > 0 && projected.fields().iter().all(|f| f.is_nullable());
        let input = open()?;
        let mut reader = CsvReader {
            open: Box::new(open),
            file_schema,
            projection,
            projected,
            options,
            state: State::Done,
            rows: 0,
            fallback: None,
        };
        let start_slow = |reader: &mut CsvReader<R>, input: R, reason: Unsupported| {
            reader.fallback = Some(reason);
            reader.arrow_csv(input).map(|slow| State::Slow(Box::new(slow)))
        };
        reader.state = match decoders {
            Some(_) if !shape_ok => start_slow(&mut reader, input, Unsupported::Shape)?,
            Some(decoders) => State::Fast(Box::new(Fast::new(input, &reader, decoders))),
            None => start_slow(&mut reader, input, Unsupported::ColumnType)?,
        };
        Ok(reader)
    }

    /// Why the fast path handed over to arrow-csv, if it did.
    pub fn fallback(&self) -> Option<Unsupported> {
        self.fallback
    }

    /// arrow-csv over `input`, from the first row not yet returned.
    fn arrow_csv(&self, input: R) -> Result<arrow_csv::reader::BufReader<BufReader<R>>, ArrowError> {
        let builder = arrow_csv::ReaderBuilder::new(self.file_schema.clone())
            .with_header(true)
            .with_batch_size(self.options.batch_size)
            .with_projection(self.projection.clone());
        // `with_bounds` adds the header to both bounds: `usize::MAX - 1` is "no end".
        let builder = if self.rows == 0 { builder } else { builder.with_bounds(self.rows, usize::MAX - 1) };
        builder.build_buffered(BufReader::with_capacity(self.options.read_bytes, input))
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match &mut self.state {
                State::Fast(fast) => match fast.next_batch(&self.projected, &self.options) {
                    Ok(Some(batch)) => {
                        self.rows += batch.num_rows();
                        return Some(Ok(batch));
                    }
                    Ok(None) => {
                        self.state = State::Done;
                        return None;
                    }
                    Err(FastError::Io(e)) => {
                        self.state = State::Done;
                        return Some(Err(e.into()));
                    }
                    Err(FastError::Unsupported(reason)) => {
                        self.fallback = Some(reason);
                        let slow = (self.open)().map_err(ArrowError::from).and_then(|input| self.arrow_csv(input));
                        match slow {
                            Ok(reader) => self.state = State::Slow(Box::new(reader)),
                            Err(e) => {
                                self.state = State::Done;
                                return Some(Err(e));
                            }
                        }
                    }
                },
                State::Slow(reader) => {
                    let next = reader.next();
                    match &next {
                        Some(Ok(batch)) => self.rows += batch.num_rows(),
                        Some(Err(_)) | None => self.state = State::Done,
                    }
                    return next;
                }
                State::Done => return None,
            }
        }
    }
}

enum FastError {
    Io(io::Error),
    Unsupported(Unsupported),
}

impl From<Unsupported> for FastError {
    fn from(reason: Unsupported) -> Self {
        FastError::Unsupported(reason)
    }
}

/// The fast path's state: a window `buf[start..end]` of the file, starting at a
/// record boundary.
struct Fast<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    header_done: bool,
    splitter: Splitter,
    decoders: Vec<Decode>,
    scratch: Vec<u8>,
    /// The last batch's bytes, and a quarter more.
    batch_bytes: usize,
}

impl<R: Read> Fast<R> {
    fn new(input: R, reader: &CsvReader<R>, decoders: Vec<Decode>) -> Fast<R> {
        Fast {
            input,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
            header_done: false,
            splitter: Splitter::new(reader.file_schema.fields().len(), &reader.projection),
            decoders,
            scratch: Vec::new(),
            batch_bytes: 0,
        }
    }

    fn next_batch(&mut self, projected: &SchemaRef, options: &Options) -> Result<Option<RecordBatch>, FastError> {
        let mut want = options.read_bytes.max(self.batch_bytes).max(1);
        loop {
            self.fill(want).map_err(FastError::Io)?;
            let window = &self.buf[self.start..self.end];
            if window.is_empty() {
                return Ok(None);
            }
            let max_records = if self.header_done { options.batch_size.max(1) } else { 1 };
            let split = self.splitter.split(window, self.eof, max_records)?;
            if split.records < max_records && !self.eof {
                // The window ends inside the batch: read on and split again, so that
                // batches hold `batch_size` records as arrow-csv's do. (Where a batch
                // ends decides which of two errors in one file arrow-csv meets first.)
                let record_so_far = window.len() - split.consumed;
                if record_so_far >= options.max_record_bytes || window.len() >= MAX_WINDOW {
                    return Err(Unsupported::LongRecord.into());
                }
                want = window.len() * 2;
                continue;
            }
            if split.records == 0 {
                return Ok(None);
            }
            simdutf8::basic::from_utf8(&window[..split.consumed]).map_err(|_| Unsupported::InvalidUtf8)?;
            let data = &self.buf[self.start..];
            self.start += split.consumed;
            // The next window starts big enough for a batch like this one.
            if self.header_done {
                self.batch_bytes = split.consumed + split.consumed / 4;
            }
            if !self.header_done {
                self.header_done = true;
                continue;
            }
            let arrays = self
                .decoders
                .iter()
                .zip(&self.splitter.spans)
                .map(|(decode, spans)| decode.build(data, spans, &mut self.scratch))
                .collect::<Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(split.records));
            // The arrays follow the projected schema, one element per record, all
            // nullable (checked when the reader was made): this cannot fail, and if it
            // did, arrow-csv would say why.
            let batch = RecordBatch::try_new_with_options(projected.clone(), arrays, &options)
                .map_err(|_| Unsupported::Shape)?;
            return Ok(Some(batch));
        }
    }

    /// Reads until the window holds `want` bytes (at most [`MAX_WINDOW`], which spans
    /// can address) or the file ends.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let want = want.min(MAX_WINDOW);
        if self.eof || self.end - self.start >= want {
            return Ok(());
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < want + PADDING {
            self.buf.resize(want + PADDING, 0);
        }
        while self.end < want {
            match self.input.read(&mut self.buf[self.end..want]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
