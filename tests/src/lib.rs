//! csv-analyst's end-to-end tests live in `tests/e2e/`, one test binary:
//!
//! - `guest`: the DataFusion guest's answers, checked against the CSV files parsed
//!   independently, on the project's datasets and on a foreign corpus
//!   (`CSV_CORPUS_DIR`); the CPU and memory bombs; a CSV larger than the memory cap.
//! - `api`: the orchestrator over real HTTP on loopback.
//!
//! Run them with the rest: `cargo test --release`.
