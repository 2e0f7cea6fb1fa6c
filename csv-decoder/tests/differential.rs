//! The fast reader against arrow-csv, which it must match exactly: the same arrays for
//! every file either reads, the same error, word for word, for every file it refuses.
//!
//! Over the generated datasets, the foreign corpus, hand-made edge cases and hostile
//! files, and as property tests over arbitrary bytes and over records the `csv` crate
//! writes. Where the fast path should have handled a file itself, the tests also
//! check that it did not hand over to arrow-csv: a differential test that always
//! falls back would compare arrow-csv with itself.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use csv_decoder::{CsvReader, Options, Unsupported};
use proptest::prelude::*;

/// What a reader made of a file: the batches concatenated, or the error's text.
type Outcome = Result<RecordBatch, String>;

fn fast(data: &[u8], schema: &SchemaRef, projection: &[usize], options: &Options) -> (Outcome, Option<Unsupported>) {
    let bytes: Arc<[u8]> = data.into();
    let mut reader =
        CsvReader::new(schema.clone(), projection.to_vec(), options.clone(), move || Ok(Cursor::new(bytes.clone())))
            .expect("the reader opens");
    let batches: Result<Vec<RecordBatch>, _> = reader.by_ref().collect();
    let projected = Arc::new(schema.project(projection).unwrap());
    (batches.map(|b| concat(&projected, &b)).map_err(|e| e.to_string()), reader.fallback())
}

fn arrow_csv(data: &[u8], schema: &SchemaRef, projection: &[usize], batch_size: usize) -> Outcome {
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(batch_size)
        .with_projection(projection.to_vec())
        .build_buffered(Cursor::new(data.to_vec()))
        .map_err(|e| e.to_string())?;
    let batches: Result<Vec<RecordBatch>, _> = reader.collect();
    let projected = Arc::new(schema.project(projection).unwrap());
    batches.map(|b| concat(&projected, &b)).map_err(|e| e.to_string())
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, batches).expect("batches of one schema")
}

/// Checks both readers agree, and returns why the fast path handed over, if it did.
fn same(data: &[u8], schema: &SchemaRef, projection: &[usize], options: &Options) -> Option<Unsupported> {
    let (ours, fallback) = fast(data, schema, projection, options);
    let theirs = arrow_csv(data, schema, projection, options.batch_size);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.num_rows(), b.num_rows(), "row count; fallback {fallback:?}; input {:?}", lossy(data));
            assert_eq!(a.columns(), b.columns(), "columns; fallback {fallback:?}; input {:?}", lossy(data));
        }
        (Err(a), Err(b)) => assert!(same_error(a, b), "{a:?} vs {b:?}; fallback {fallback:?}; input {:?}", lossy(data)),
        _ => assert_eq!(ours, theirs, "fallback {fallback:?}; input {:?}", lossy(data)),
    }
    fallback
}

/// Whether two errors say the same. One detail arrow-csv words by the state of its own
/// read buffer: a row with too many fields "got 3" or "got more than 2" fields depending
/// on where the buffer ended. Those two agree when the count exceeds the bound, and two
/// bounds always agree (both are true of a row with more fields than either: read with
/// buffers of different sizes, as the fast path's fallback and the reference here are, a
/// row may be cut at different fields); the line, the expected count and everything else
/// must match exactly.
fn same_error(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let split = |e: &str| -> Option<(String, String)> {
        let at = e.find(" got ").filter(|_| e.contains("incorrect number of fields"))?;
        Some((e[..at].to_string(), e[at + 5..].to_string()))
    };
    let (Some((head_a, got_a)), Some((head_b, got_b))) = (split(a), split(b)) else { return false };
    let more_than = |got: &str| got.strip_prefix("more than ").and_then(|n| n.parse::<usize>().ok());
    let exactly = |got: &str| got.parse::<usize>().ok();
    let agree = match (more_than(&got_a), exactly(&got_a), more_than(&got_b), exactly(&got_b)) {
        (Some(bound), _, _, Some(count)) | (_, Some(count), Some(bound), _) => count > bound,
        (Some(_), _, Some(_), _) => true,
        _ => false,
    };
    head_a == head_b && agree
}

#[test]
fn too_many_fields_may_be_worded_two_ways_but_not_more() {
    let got = |s: &str| format!("Csv error: incorrect number of fields for line 3, expected 2 got {s}");
    assert!(same_error(&got("3"), &got("more than 2")));
    assert!(same_error(&got("more than 2"), &got("5")));
    assert!(same_error(&got("more than 3"), &got("more than 2")));
    assert!(!same_error(&got("3"), &got("4")));
    assert!(!same_error(&got("1"), &got("more than 2")));
    assert!(!same_error(&got("3"), &got("more than 2").replace("line 3", "line 4")));
    assert!(!same_error(&got("more than 3"), &got("more than 2").replace("expected 2", "expected 1")));
}

fn lossy(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    if text.len() > 400 {
        format!("{}… ({} bytes)", &text[..text.floor_char_boundary(400)], data.len())
    } else {
        text.into()
    }
}

/// Every projection worth trying: all columns, each alone, reversed, none (COUNT(*)).
fn projections(columns: usize) -> Vec<Vec<usize>> {
    let mut all = vec![(0..columns).collect::<Vec<_>>(), (0..columns).rev().collect(), vec![]];
    all.extend((0..columns).map(|c| vec![c]));
    all
}

fn option_sets() -> Vec<Options> {
    vec![
        Options::default(),
        Options { batch_size: 7, read_bytes: 1000, max_record_bytes: 1 << 20 },
        Options { batch_size: 1, read_bytes: 1, max_record_bytes: 1 << 20 },
    ]
}

/// The types arrow-csv infers (as the guest does for undeclared columns), if it can.
fn try_inferred(data: &[u8]) -> Option<SchemaRef> {
    let (schema, _) =
        arrow_csv::reader::Format::default().with_header(true).infer_schema(Cursor::new(data), Some(10_000)).ok()?;
    // A column with no values infers as Null; the guest reads those as text.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

fn inferred(data: &[u8]) -> SchemaRef {
    try_inferred(data).expect("arrow-csv infers the file's types")
}

fn all_text(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>(),
    ))
}

/// The registry's declared types, as the guest maps them.
fn declared(registry: &protocol::registry::Registry, relative: &str) -> Option<SchemaRef> {
    let file = registry.datasets.iter().flat_map(|d| &d.files).find(|f| f.path == relative)?;
    let fields: Vec<Field> = file
        .column_decls()
        .iter()
        .map(|c| {
            let data_type = match c.column_type {
                protocol::ColumnType::Integer => DataType::Int64,
                protocol::ColumnType::Double => DataType::Float64,
                protocol::ColumnType::Varchar => DataType::Utf8,
                protocol::ColumnType::Boolean => DataType::Boolean,
                protocol::ColumnType::Date => DataType::Date32,
                protocol::ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            };
            Field::new(&c.name, data_type, true)
        })
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "csv") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn generated_datasets_read_the_same_and_stay_on_the_fast_path() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dataset_generator::generate(dir.path(), 3).unwrap();
    let files = csv_files(dir.path());
    assert!(files.len() >= 5, "the generator wrote {files:?}");
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let relative = path.strip_prefix(dir.path()).unwrap().to_str().unwrap().to_string();
        let declared = declared(&registry, &relative).unwrap_or_else(|| panic!("{relative} is not in the registry"));
        for schema in [inferred(&data), all_text(&declared), declared] {
            for projection in projections(schema.fields().len()) {
                // (Byte-at-a-time reads are for the small files below: too slow here.)
                for options in option_sets().into_iter().take(2) {
                    let fallback = same(&data, &schema, &projection, &options);
                    assert_eq!(fallback, None, "{relative} {projection:?} {schema:?}");
                }
            }
        }
    }
}

#[test]
fn the_foreign_corpus_reads_the_same() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/foreign")];
    if let Some(corpus) = std::env::var_os("CSV_CORPUS_DIR") {
        dirs.push(PathBuf::from(corpus));
    }
    let mut checked = 0;
    for dir in dirs {
        for path in csv_files(&dir) {
            let data = std::fs::read(&path).unwrap();
            let schema = inferred(&data);
            for projection in projections(schema.fields().len()) {
                for options in option_sets().into_iter().take(2) {
                    if let Some(reason) = same(&data, &schema, &projection, &options) {
                        eprintln!("{}: arrow-csv read it ({reason})", path.display());
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} foreign CSV files found");
}

/// `(name, file, handled by the fast path)`: each read with every projection and
/// option set, as text and as inferred types.
const EDGE_CASES: &[(&str, &str, bool)] = &[
    ("quoted separators and newlines", "a,b\n\"x,y\",\"1\n2\"\n\"\",z\n", true),
    ("escaped quotes", "a,b\n\"say \"\"hi\"\"\",\"\"\"\"\n\"\"\"a\"\"\",b\n", true),
    ("CRLF", "a,b\r\n1,2\r\n3,4\r\n", true),
    ("CRLF without a final terminator", "a,b\r\n1,2\r\n3,4", true),
    ("no trailing newline", "a,b\n1,2\n3,4", true),
    ("a trailing CR ends the file", "a,b\n1,2\r", true),
    ("empty fields", "a,b,c\n,,\n1,,\n,,x\n", true),
    ("only a header", "a,b\n", true),
    ("only a header, no newline", "a,b", true),
    ("an empty file", "", true),
    ("multibyte text", "name,n\nélan,1\n日本語,2\n\"ü,ö\",3\n🙂🙂,4\n", true),
    ("numbers with spaces", "a,b\n 12 , 1.5 \n-3,1e3\n", true),
    ("booleans in any case", "a,b\nTRUE,False\ntrue,fAlSe\n", true),
    ("dates and timestamps", "d,t\n2024-02-29,2024-02-29 13:45:00\n1970-01-01,1970-01-01T00:00:00.123456\n", true),
    ("a bare CR", "a,b\n1,2\r3,4\n", false),
    ("an empty line", "a,b\n1,2\n\n3,4\n", false),
    ("empty lines at the end", "a,b\n1,2\n\n\n", false),
    ("a quote inside a field", "a,b\n1,x\"y\n", false),
    ("text after a closing quote", "a,b\n1,\"x\"y\n", false),
    ("a ragged row, short", "a,b\n1,2\n3\n", false),
    ("a ragged row, long", "a,b\n1,2\n3,4,5\n", false),
    ("a quote never closed", "a,b\n1,\"2\n3,4\n", false),
    ("a value that does not parse", "a,b\n1,2\nthree,4\n", false),
    ("NUL bytes", "a,b\n1,\0\0\n\0,2\n", true),
    ("a BOM before the header", "\u{feff}a,b\n1,2\n", true),
];

#[test]
fn edge_cases_read_the_same() {
    for (name, data, fast_path) in EDGE_CASES {
        let data = data.as_bytes();
        let text_schema = Arc::new(Schema::new(
            (0..count_header_fields(data))
                .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let mut schemas = vec![text_schema];
        schemas.extend(try_inferred(data));
        for schema in schemas {
            for projection in projections(schema.fields().len()) {
                for options in option_sets() {
                    let fallback = same(data, &schema, &projection, &options);
                    if *fast_path && schema.fields().iter().all(|f| f.data_type() == &DataType::Utf8) {
                        assert_eq!(fallback, None, "{name}: {projection:?}");
                    }
                }
            }
        }
    }
}

fn count_header_fields(data: &[u8]) -> usize {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(data);
    reader.records().next().and_then(Result::ok).map_or(1, |r| r.len())
}

#[test]
fn invalid_utf8_is_refused_as_arrow_csv_refuses_it() {
    let schema =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int64, true)]));
    for data in [&b"a,b\n\xff\xfe,1\n"[..], b"a,b\nok,1\n\xc3,2\n", b"a,b\nx,1\n\xe6\x97,2\n"] {
        for projection in projections(2) {
            for options in option_sets() {
                let fallback = same(data, &schema, &projection, &options);
                assert_eq!(fallback, Some(Unsupported::InvalidUtf8));
            }
        }
    }
    // A multibyte character cut by every read boundary is still one character.
    let data = "a,b\nnaïve café,1\n日本,2\n".as_bytes();
    for read_bytes in 1..8 {
        let options = Options { batch_size: 2, read_bytes, max_record_bytes: 1 << 20 };
        assert_eq!(same(data, &schema, &[0, 1], &options), None);
    }
}

#[test]
fn a_record_longer_than_the_buffer_goes_to_arrow_csv() {
    let long = "x".repeat(5000);
    let data = format!("a,b\n1,{long}\n2,\"{long},{long}\"\n3,y\n");
    let schema =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]));
    // Longer than a read, shorter than the limit: the window grows.
    let grows = Options { batch_size: 2, read_bytes: 100, max_record_bytes: 1 << 20 };
    assert_eq!(same(data.as_bytes(), &schema, &[0, 1], &grows), None);
    // Longer than the limit: arrow-csv takes the rest of the file, from the batch.
    let limited = Options { batch_size: 2, read_bytes: 100, max_record_bytes: 4096 };
    assert_eq!(same(data.as_bytes(), &schema, &[0, 1], &limited), Some(Unsupported::LongRecord));
    assert_eq!(same(data.as_bytes(), &schema, &[1], &limited), Some(Unsupported::LongRecord));
}

#[test]
fn errors_after_the_first_batch_keep_arrow_csv_line_numbers() {
    let mut data = String::from("a,b\n");
    for i in 0..100 {
        data.push_str(&format!("{i},{}\n", i * 2));
    }
    data.push_str("100,oops\n101,202\n");
    let schema =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Int64, true)]));
    for options in option_sets() {
        let (ours, fallback) = fast(data.as_bytes(), &schema, &[0, 1], &options);
        assert_eq!(fallback, Some(Unsupported::Value));
        let message = ours.unwrap_err();
        assert!(message.contains("'oops'") && message.contains("at line 101"), "{message}");
        assert_eq!(same(data.as_bytes(), &schema, &[1], &options), Some(Unsupported::Value));
        // A projection that does not read the bad column never sees it.
        assert_eq!(same(data.as_bytes(), &schema, &[0], &options), None);
    }
}

#[test]
fn shapes_the_fast_path_does_not_take_are_read_by_arrow_csv() {
    let data = b"a,b\n1,x\n,y\n";
    let nullable =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]));
    let strict =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Utf8, true)]));
    // A NULL in a non-nullable column is arrow-csv's error, not a panic.
    assert_eq!(same(data, &strict, &[0, 1], &Options::default()), Some(Unsupported::Shape));
    assert_eq!(same(data, &strict, &[1], &Options::default()), None);
    assert_eq!(same(data, &nullable, &[1, 1], &Options::default()), Some(Unsupported::Shape));
    let no_batches = Options { batch_size: 0, ..Options::default() };
    assert_eq!(same(data, &nullable, &[0, 1], &no_batches), Some(Unsupported::Shape));
}

#[test]
fn column_types_without_a_fast_decoder_are_read_by_arrow_csv() {
    let schema =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true), Field::new("b", DataType::Utf8, true)]));
    let data = b"a,b\n1,x\n2,y\n";
    assert_eq!(same(data, &schema, &[0, 1], &Options::default()), Some(Unsupported::ColumnType));
    assert_eq!(same(data, &schema, &[1], &Options::default()), None);
}

/// A column's type for the property tests, and how to write a random value of it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    fn values(self) -> BoxedStrategy<String> {
        match self {
            Kind::Text => proptest::string::string_regex("[a-zé日,\"\r\n x0-9]{0,12}").unwrap().boxed(),
            Kind::Int => prop_oneof![Just(String::new()), any::<i64>().prop_map(|v| v.to_string())].boxed(),
            Kind::Float => prop_oneof![
                Just(String::new()),
                any::<f64>().prop_map(|v| v.to_string()),
                (-1000i32..1000).prop_map(|v| format!("{}.{}", v, v.abs() % 97))
            ]
            .boxed(),
            Kind::Bool => prop_oneof![Just(String::new()), Just("true".into()), Just("FALSE".into())].boxed(),
            Kind::Date => prop_oneof![
                Just(String::new()),
                (1i32..3000, 1u32..13, 1u32..32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            ]
            .boxed(),
            Kind::Timestamp => prop_oneof![
                Just(String::new()),
                (1900i32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..1_000_000, any::<bool>()).prop_map(
                    |(y, mo, d, h, mi, us, t)| format!(
                        "{y:04}-{mo:02}-{d:02}{}{h:02}:{mi:02}:{:02}.{us:06}",
                        if t { 'T' } else { ' ' },
                        us % 60
                    )
                )
            ]
            .boxed(),
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Text),
        Just(Kind::Int),
        Just(Kind::Float),
        Just(Kind::Bool),
        Just(Kind::Date),
        Just(Kind::Timestamp)
    ]
}

fn options() -> impl Strategy<Value = Options> {
    (1usize..20, 1usize..300).prop_map(|(batch_size, read_bytes)| Options {
        batch_size,
        read_bytes,
        max_record_bytes: 1 << 20,
    })
}

/// A file of `kinds` columns, written by the `csv` crate: always canonical CSV.
fn written_file() -> impl Strategy<Value = (Vec<Kind>, Vec<u8>)> {
    proptest::collection::vec(kind(), 1..5)
        .prop_flat_map(|kinds| {
            let row = kinds.iter().map(|k| k.values()).collect::<Vec<_>>();
            (Just(kinds), proptest::collection::vec(row, 0..40), any::<bool>(), any::<bool>(), 0..3u8)
        })
        .prop_map(|(kinds, rows, crlf, trailing, quoting)| {
            let style = match quoting {
                0 => csv::QuoteStyle::Necessary,
                1 => csv::QuoteStyle::Always,
                _ => csv::QuoteStyle::NonNumeric,
            };
            let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
            let mut writer = csv::WriterBuilder::new().quote_style(style).terminator(terminator).from_writer(vec![]);
            writer.write_record((0..kinds.len()).map(|i| format!("c{i}"))).unwrap();
            for row in &rows {
                writer.write_record(row).unwrap();
            }
            let mut data = writer.into_inner().unwrap();
            if !trailing && !rows.is_empty() {
                while data.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    data.pop();
                }
            }
            (kinds, data)
        })
}

fn schema_of(kinds: &[Kind]) -> SchemaRef {
    Arc::new(Schema::new(
        kinds.iter().enumerate().map(|(i, k)| Field::new(format!("c{i}"), k.data_type(), true)).collect::<Vec<_>>(),
    ))
}

proptest! {
    // 256 cases each by default; `make fuzz` sets PROPTEST_CASES for a longer run.

    /// Records the `csv` crate writes are canonical: the fast path reads them itself.
    #[test]
    fn written_files_read_the_same_on_the_fast_path((kinds, data) in written_file(), options in options()) {
        let schema = schema_of(&kinds);
        for projection in projections(kinds.len()) {
            let fallback = same(&data, &schema, &projection, &options);
            // Only a value the csv crate writes that arrow's parser refuses (a float
            // such as `inf`) may send a typed column to arrow-csv.
            prop_assert!(fallback.is_none() || fallback == Some(Unsupported::Value), "{fallback:?}");
        }
    }

    /// Any bytes at all: both readers give the same arrays or the same error.
    #[test]
    fn arbitrary_bytes_read_the_same(
        kinds in proptest::collection::vec(kind(), 1..4),
        // Mostly text that splits cleanly, so that the fast path runs often and the
        // odd bytes (quotes, CR, invalid UTF-8, NUL) land in all kinds of places.
        body in proptest::collection::vec(prop_oneof![
            3 => Just(b','), 1 => Just(b'"'), 3 => Just(b'\n'), 1 => Just(b'\r'), 6 => Just(b'a'), 6 => Just(b'1'),
            1 => Just(b'-'), 1 => Just(b'.'), 1 => Just(b' '), 1 => Just(0xc3), 1 => Just(0xa9), 1 => Just(0xff),
            1 => Just(0)
        ], 0..120),
        options in options(),
    ) {
        let schema = schema_of(&kinds);
        let mut data: Vec<u8> = (0..kinds.len()).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",").into_bytes();
        data.push(b'\n');
        data.extend_from_slice(&body);
        for projection in projections(kinds.len()) {
            same(&data, &schema, &projection, &options);
        }
    }
}
