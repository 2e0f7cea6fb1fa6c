//! csv-analyst's end-to-end tests, in one binary. See `tests/src/lib.rs`.

mod api;
mod fake_kube;
mod guest;
mod k8s;
mod support;
mod chart;
mod images;
