//! The run service: accept a query, check it, run it in a sandbox, record it — the
//! one path every query takes, from `POST /runs`, the chat agent and (next) MCP.
//!
//! A client's share (MAX_RUNS_PER_CLIENT) is checked first, before anything is
//! written: a client over it gets 429 and costs the store nothing, whether its
//! queries would have run or been refused.
//!
//! A run that reaches a sandbox is owned by a task of its own ([`Runs::execute`]
//! spawns it): when the HTTP client goes away mid-run, the task still finishes,
//! records the real outcome and balances the metrics. A run is recorded when it
//! starts and again when it ends (a refused query is recorded once, already
//! finished, and compactly: [`crate::store::REFUSED_QUERY_BYTES`]), so the store
//! always knows about anything that reached a sandbox.
//!
//! May use: the store, the sandbox, the policy and plan compiler, the datasets,
//! metrics and errors. Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::ErrorType;
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::admission::{Admission, ClientTicket};
use super::limits::{Limits, RunSettings};
use super::submission::{Origin, Query, RunSubmission};
use crate::access::Principal;
use crate::datasets::{Catalog, CatalogEntry, SchemaView};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan;
use crate::policy::{self, Scope};
use crate::sandbox::Provider;
use crate::store::{QueryType, Run, RunState, Store, StoredSql, Timings, now};

/// Runs listed by `GET /runs` when no limit is given, and at most.
pub const DEFAULT_LIST_LIMIT: usize = 20;
pub const MAX_LIST_LIMIT: usize = 500;

/// A dataset's schema, computed once however many requests ask for it together.
pub(super) type SchemaCell = Arc<OnceCell<Arc<SchemaView>>>;

/// The run service. A cheap handle (an `Arc` inside): a run's own task keeps a
/// clone so that it can finish after its caller is gone.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RunSettings,
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    provider: Arc<Provider>,
    admission: Admission,
    metrics: Arc<Metrics>,
    schemas: Mutex<HashMap<String, SchemaCell>>,
}

impl Runs {
    pub fn new(
        settings: RunSettings,
        catalog: Arc<Catalog>,
        store: Arc<dyn Store>,
        provider: Arc<Provider>,
        metrics: Arc<Metrics>,
    ) -> Runs {
        let admission = Admission::new(&settings, metrics.capacity_rejections.clone());
        Runs {
            inner: Arc::new(Inner {
                settings,
                catalog,
                store,
                provider,
                admission,
                metrics,
                schemas: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn settings(&self) -> &RunSettings {
        &self.inner.settings
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub fn provider(&self) -> &Provider {
        &self.inner.provider
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// The limits of a run that asked for `max_rows` and `timeout_seconds`.
    pub fn limits(&self, max_rows: Option<u64>, timeout_seconds: Option<f64>) -> Result<Limits, Error> {
        Limits::new(&self.inner.settings, max_rows, timeout_seconds)
    }

    /// The cache cell of a dataset's schema.
    pub(super) fn schema_cell(&self, dataset_id: &str) -> SchemaCell {
        let mut schemas = self.inner.schemas.lock().unwrap_or_else(|p| p.into_inner());
        schemas.entry(dataset_id.to_string()).or_default().clone()
    }

    /// Forgets a cached schema (after a computation that hit a failing table).
    pub fn forget_schema(&self, dataset_id: &str) {
        self.inner.schemas.lock().unwrap_or_else(|p| p.into_inner()).remove(dataset_id);
    }

    /// The sandbox request for `sql` over `dataset` under `limits`; for a provider
    /// whose runner checks its files, with the version they must have.
    pub fn request(&self, dataset: &CatalogEntry, sql: &str, limits: Limits) -> protocol::RunRequest {
        let mut request = self.settings().request(dataset, sql, limits);
        if self.provider().checks_versions() {
            request.expected_version = self.catalog().expected_version(dataset);
        }
        request
    }

    /// Accepts, checks, runs and records one query; returns the finished run.
    pub async fn submit(&self, submission: RunSubmission, origin: Origin) -> Result<Run, Error> {
        let query = submission.query()?;
        let limits = self.limits(submission.max_rows, submission.timeout_seconds)?;
        self.execute(&submission.dataset_id, query, limits, origin).await
    }

    /// Runs `query` over `dataset_id` under `limits`: the one path every query takes,
    /// from `POST /runs` and from the chat agent alike.
    pub async fn execute(&self, dataset_id: &str, query: Query, limits: Limits, origin: Origin) -> Result<Run, Error> {
        let accepted = Instant::now();
        let dataset = self.catalog().dataset_for(dataset_id, &origin.principal)?;
        // The client's share, before anything is written: held until the run is
        // recorded (refused) or its task ends.
        let ticket: Option<ClientTicket> =
            origin.client.as_deref().map(|client| self.admission().admit(client)).transpose()?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!(
            "run",
            run_id = %run_id,
            request_id = origin.request_id.as_deref().unwrap_or(""),
            dataset = %dataset.id,
            provider = self.provider().kind().as_str(),
            job_name = tracing::field::Empty,
        );
        let mut run = Run {
            run_id,
            status: RunState::Running,
            dataset_id: dataset.id.clone(),
            dataset_version_hash: self.catalog().version_hash(&dataset),
            query_type: QueryType::Sql,
            sql: StoredSql::new(""),
            plan: None,
            tables: Vec::new(),
            result: None,
            error: None,
            sandbox_provider: self.provider().kind().as_str().to_string(),
            job_name: None,
            request_id: origin.request_id,
            turn_id: origin.turn_id,
            created_at: now(),
            started_at: None,
            finished_at: None,
            timings: Timings::default(),
            principal: Some(origin.principal.subject.clone()),
            token_id: origin.principal.token_id.clone(),
            origin: Some(origin.channel.to_string()),
        };

        // The SQL to check: as sent, or compiled from the plan.
        let sql = match query {
            Query::Sql(sql) => sql,
            Query::Plan(plan_json) => {
                run.query_type = QueryType::Plan;
                let scope = self.plan_scope(&dataset, limits.max_rows).await?;
                let compiled = plan::compile(&plan_json, &scope);
                run.plan = Some(plan_json);
                match compiled {
                    Ok(compiled) => compiled.sql,
                    Err(e) => {
                        let message = plan_error_message(&e);
                        return self
                            .record_refused(run, "", ErrorType::InvalidRequest, &message, accepted)
                            .instrument(span)
                            .await;
                    }
                }
            }
        };

        let scope = Scope { dataset_id: dataset.id.clone(), tables: dataset.table_names() };
        let checked_sql = sql.clone();
        let verdict = tokio::task::spawn_blocking(move || policy::check(&checked_sql, &scope))
            .await
            .map_err(|e| Error::Internal(format!("the SQL policy check failed: {e}")))?;
        let approved = match verdict {
            Ok(approved) => approved,
            Err(refusal) => {
                let refused = self.record_refused(run, &sql, refusal.error_type, &refusal.message, accepted);
                return refused.instrument(span).await;
            }
        };
        run.sql = StoredSql::new(&sql);
        run.tables = approved.tables;

        self.provider().accepting().map_err(Error::SandboxNotReady)?;
        let permit = self.admission().acquire_slot().await?;
        run.timings.queued_ms = Some(ms(accepted.elapsed()));
        self.metrics().queue_wait.observe(accepted.elapsed().as_secs_f64());
        run.started_at = Some(now());
        self.store().insert(&run).await?;

        let request = self.request(&dataset, &sql, limits);
        let root = dataset.root();
        let owned = self.clone();
        // The run's own task: it finishes and records the run even when the caller's
        // future is dropped (a client that hangs up).
        let task = tokio::spawn(
            async move {
                let _ticket = ticket;
                let metrics = owned.metrics();
                metrics.in_flight.inc();
                let started = Instant::now();
                let execution = owned.provider().run(&run.run_id, request, root, permit).await;
                metrics.in_flight.dec();
                if let Some(job) = &execution.job_name {
                    tracing::Span::current().record("job_name", job.as_str());
                }
                run.job_name = execution.job_name;
                run.timings.run_ms = Some(ms(started.elapsed()));
                run.timings.total_ms = Some(ms(accepted.elapsed()));
                run.finish_with(execution.result);
                let stored = owned.store().finish(&run).await;
                owned.observe(&run);
                stored.map(|()| run)
            }
            .instrument(span),
        );
        task.await.map_err(|e| Error::Internal(format!("the run's task failed: {e}")))?.map_err(Error::from)
    }

    /// A run refused before any sandbox: recorded once, already finished, compactly
    /// ([`Run::refuse`]). The caller holds the client's ticket until it is written.
    async fn record_refused(
        &self,
        mut run: Run,
        sql: &str,
        error_type: ErrorType,
        message: &str,
        accepted: Instant,
    ) -> Result<Run, Error> {
        run.timings.total_ms = Some(ms(accepted.elapsed()));
        run.refuse(sql, error_type, message);
        self.store().insert(&run).await?;
        self.observe(&run);
        Ok(run)
    }

    /// Metrics and the one log line per run.
    fn observe(&self, run: &Run) {
        let total_ms = run.timings.total_ms.unwrap_or_default();
        self.metrics().observe_run(run.status.as_str(), &run.sandbox_provider, total_ms / 1000.0);
        let result = run.result.as_ref();
        tracing::info!(
            status = run.status.as_str(),
            error_type = run.error.as_ref().map(|e| e.error_type.as_str()).unwrap_or(""),
            rows = result.map_or(0, |r| r.row_count),
            duration_ms = total_ms,
            "run finished"
        );
    }

    /// `GET /runs/{id}` (and its export): a run `principal` may see, on a dataset it
    /// may use. Another's is answered as one that does not exist.
    pub async fn get(&self, run_id: &str, principal: &Principal) -> Result<Run, Error> {
        match self.store().get(run_id).await? {
            Some(run)
                if principal.may_see(run.principal.as_deref())
                    && self.catalog().may_use(principal, &run.dataset_id) =>
            {
                Ok(run)
            }
            _ => Err(Error::RunNotFound(run_id.to_string())),
        }
    }

    /// `GET /runs`: the newest runs, one's own (or everyone's: `all`, for the admin),
    /// from the store's summary columns (no rows).
    pub async fn list(&self, limit: Option<usize>, principal: &Principal, all: bool) -> Result<Vec<Run>, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(Error::invalid(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
        }
        let owner = principal.list_scope(all)?;
        // A run on a dataset no longer granted (a narrower token of the same subject)
        // is not shown, as everywhere.
        let mut runs = self.store().list(limit, owner).await?;
        runs.retain(|run| self.catalog().may_use(principal, &run.dataset_id));
        Ok(runs)
    }
}

fn plan_error_message(e: &plan::PlanError) -> String {
    match &e.path {
        Some(path) => format!("invalid plan at {path}: {}", e.message),
        None => format!("invalid plan: {}", e.message),
    }
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
