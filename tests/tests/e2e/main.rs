//! csv-analyst's end-to-end tests, in one binary. See `tests/src/lib.rs`.

mod api;
mod chart;
mod fake_kube;
mod guest;
mod images;
mod k8s;
mod support;
