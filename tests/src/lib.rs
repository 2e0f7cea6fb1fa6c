//! csv-analyst's end-to-end tests live in `tests/e2e/`, one test binary:
//!
//! - `guest`: the DataFusion guest's answers, checked against the CSV files parsed
//!   independently, on the project's datasets and on foreign ones (the vendored
//!   `fixtures/foreign`, and `CSV_CORPUS_DIR` when set); the table functions and one
//!   query per function package; the CPU and memory bombs; a CSV larger than the
//!   memory cap, in flat memory.
//! - `dialect`: the SQL docs/sql.md documents (NULL order, rounding casts, fractional
//!   division, FROM-first, ORDER BY ALL, nested values, introspection) through
//!   `POST /runs`, and the guest's own bound on parsing.
//! - `export`: `GET /runs/{id}/result.csv`, the whole recorded result streamed, marked
//!   `X-Truncated` when the run was cut, nested values as JSON in their cells.
//! - `functions`: the DuckDB and PostgreSQL spellings the guest adds or renames, and
//!   the refusals that name what to write instead.
//! - `api`: the orchestrator over real HTTP on loopback: every endpoint and status,
//!   the policy, bad input, concurrency, restarts, SIGTERM and a crash mid-run.
//! - `k8s` (with `fake_kube`, a loopback Kubernetes API server that runs Jobs with the
//!   real `runner-host exec`): the Kubernetes provider and every fault it maps.
//! - `chart`: the Helm chart rendered, validated and checked; `images`: the runner
//!   image built with `make build-runner-k8s` answering in a locked-down container.
//! - `layers`: no import cycle among the orchestrator's files (docs/architecture.md);
//!   `docs`: every relative link in README.md and docs/ resolves.
//!
//! Run them with the rest: `cargo test --release`. A check that cannot run (a tool
//! missing under `CSV_ANALYST_SKIP_MISSING_TOOLS=1`, `CSV_CORPUS_DIR` unset) is written
//! to stderr past libtest's capture and to `<target>/tmp/skipped-checks.txt`; tests
//! refuse a `target/release` binary older than its sources.
