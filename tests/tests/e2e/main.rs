//! csv-analyst's end-to-end tests, in one binary. See `tests/src/lib.rs`.

mod api;
mod guest;
mod support;
