//! csv-analyst's end-to-end tests live in `tests/e2e/`, one test binary:
//!
//! - `guest`: the DataFusion guest's answers, checked against the CSV files parsed
//!   independently, on the project's datasets and on a foreign corpus
//!   (`CSV_CORPUS_DIR`); the CPU and memory bombs; a CSV larger than the memory cap.
//! - `api`: the orchestrator over real HTTP on loopback: every endpoint and status,
//!   the policy, bad input, concurrency, restarts, SIGTERM and a crash mid-run.
//! - `k8s` (with `fake_kube`, a loopback Kubernetes API server that runs Jobs with the
//!   real `runner-host exec`): the Kubernetes provider and every fault it maps.
//! - `chart`: the Helm chart rendered, validated and checked; `images`: the runner
//!   image built with `make build-runner-k8s` answering in a locked-down container.
//!
//! Run them with the rest: `cargo test --release`.
