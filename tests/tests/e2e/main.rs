//! csv-analyst's end-to-end tests, in one binary. See `tests/src/lib.rs`.

mod api;
mod auth;
mod bounds;
mod browser;
mod chart;
mod chat;
mod dialect;
mod docs;
mod export;
mod fake_kube;
mod fake_llm;
mod functions;
mod guest;
mod images;
mod k8s;
mod layers;
mod llm_client;
mod mcp;
mod postgres;
mod replicas;
mod spill;
mod store;
mod support;
mod uploads;
