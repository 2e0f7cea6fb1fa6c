//! The service's one state: configuration, catalogue, store, sandbox provider, run
//! slots, metrics and caches, behind methods.
//!
//! [`AppState`] is a cheap handle (an `Arc` inside): handlers get it from axum, and a
//! run's own task keeps a clone so that it can finish after its request is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::RunRequest;
use protocol::registry::Dataset;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::datasets::SchemaView;
use crate::error::Error;
use crate::llm::LlmClient;
use crate::metrics::Metrics;
use crate::runs::Limits;
use crate::sandbox::Provider;
use crate::store::Store;

/// A dataset's schema, computed once however many requests ask for it together.
pub type SchemaCell = Arc<OnceCell<Arc<SchemaView>>>;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    catalog: Arc<Catalog>,
    store: Store,
    provider: Provider,
    llm: Option<LlmClient>,
    /// One permit per run allowed to execute at once.
    slots: Arc<Semaphore>,
    metrics: Metrics,
    schemas: Mutex<HashMap<String, SchemaCell>>,
    /// Runs waiting or running, per client.
    clients: Arc<Mutex<HashMap<String, usize>>>,
}

/// A client's place among the runs in flight; given back on drop.
pub struct ClientTicket {
    clients: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl Drop for ClientTicket {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = clients.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

impl AppState {
    pub fn new(
        config: Config,
        catalog: Arc<Catalog>,
        store: Store,
        provider: Provider,
        llm: Option<LlmClient>,
    ) -> AppState {
        let slots = Arc::new(Semaphore::new(config.concurrency()));
        AppState {
            inner: Arc::new(Inner {
                config,
                catalog,
                store,
                provider,
                llm,
                slots,
                metrics: Metrics::default(),
                schemas: Mutex::new(HashMap::new()),
                clients: Arc::default(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn provider(&self) -> &Provider {
        &self.inner.provider
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The model client, when one is configured.
    pub fn llm(&self) -> Option<&LlmClient> {
        self.inner.llm.as_ref()
    }

    /// A run slot, waiting at most QUEUE_TIMEOUT_MS for one to free up.
    pub async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        let wait = Duration::from_millis(self.inner.config.queue_timeout_ms);
        match tokio::time::timeout(wait, self.inner.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.inner.metrics.capacity_rejections.inc();
                Err(Error::CapacityExceeded(format!(
                    "all {} run slots are busy and none freed up within {} ms; retry shortly",
                    self.inner.config.concurrency(),
                    self.inner.config.queue_timeout_ms
                )))
            }
        }
    }

    /// Admits one more run of `client`, within MAX_RUNS_PER_CLIENT, so that a noisy
    /// client is refused before a quiet one waits.
    pub fn admit(&self, client: &str) -> Result<ClientTicket, Error> {
        let limit = self.inner.config.runs_per_client();
        let mut clients = self.inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        let count = clients.entry(client.to_string()).or_insert(0);
        if *count >= limit {
            self.inner.metrics.capacity_rejections.inc();
            return Err(Error::ClientLimit(format!(
                "this client already has {count} runs waiting or running (MAX_RUNS_PER_CLIENT={limit}); retry when one ends"
            )));
        }
        *count += 1;
        Ok(ClientTicket { clients: self.inner.clients.clone(), client: client.to_string() })
    }

    /// Waits, at most `within`, until every run slot is free (every sandbox stopped).
    pub async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.inner.config.concurrency()).unwrap_or(u32::MAX);
        matches!(tokio::time::timeout(within, self.inner.slots.acquire_many(all)).await, Ok(Ok(_)))
    }

    /// A request for `sql` over `dataset` with the service's limits, tightened to `limits`.
    pub fn run_request(&self, dataset: &Dataset, sql: &str, limits: Limits) -> RunRequest {
        let mut request = self.inner.config.run_request(dataset, sql);
        request.timeout_ms = limits.timeout_ms;
        request.max_rows = limits.max_rows;
        request
    }

    /// The cache cell of a dataset's schema.
    pub fn schema_cell(&self, dataset_id: &str) -> SchemaCell {
        let mut schemas = self.inner.schemas.lock().unwrap_or_else(|p| p.into_inner());
        schemas.entry(dataset_id.to_string()).or_default().clone()
    }

    /// Forgets a cached schema (after a computation that hit a failing table).
    pub fn forget_schema(&self, dataset_id: &str) {
        self.inner.schemas.lock().unwrap_or_else(|p| p.into_inner()).remove(dataset_id);
    }
}
