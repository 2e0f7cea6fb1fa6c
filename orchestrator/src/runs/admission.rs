//! Admission: the run slots (MAX_CONCURRENT_RUNS, waiting at most QUEUE_TIMEOUT_MS)
//! and each client's share of them (MAX_RUNS_PER_CLIENT), so that a noisy client is
//! refused before a quiet one waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::RunSettings;
use crate::error::Error;

pub struct Admission {
    slots: Arc<Semaphore>,
    slot_count: usize,
    queue_timeout: Duration,
    runs_per_client: usize,
    /// Runs waiting or running, per client.
    clients: Arc<Mutex<HashMap<String, usize>>>,
    /// Runs refused for capacity (a slot or a client's share).
    rejections: Counter,
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

impl Admission {
    pub fn new(settings: &RunSettings, rejections: Counter) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(settings.slots)),
            slot_count: settings.slots,
            queue_timeout: settings.queue_timeout,
            runs_per_client: settings.runs_per_client,
            clients: Arc::default(),
            rejections,
        }
    }

    /// A run slot, waiting at most QUEUE_TIMEOUT_MS for one to free up.
    pub async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.rejections.inc();
                Err(Error::CapacityExceeded(format!(
                    "all {} run slots are busy and none freed up within {} ms; retry shortly",
                    self.slot_count,
                    self.queue_timeout.as_millis()
                )))
            }
        }
    }

    /// Admits one more run of `client`, within MAX_RUNS_PER_CLIENT.
    pub fn admit(&self, client: &str) -> Result<ClientTicket, Error> {
        let limit = self.runs_per_client;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let count = clients.entry(client.to_string()).or_insert(0);
        if *count >= limit {
            self.rejections.inc();
            return Err(Error::ClientLimit(format!(
                "this client already has {count} runs waiting or running (MAX_RUNS_PER_CLIENT={limit}); retry when one ends"
            )));
        }
        *count += 1;
        Ok(ClientTicket { clients: self.clients.clone(), client: client.to_string() })
    }

    /// Waits, at most `within`, until every run slot is free (every sandbox stopped).
    pub async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.slot_count).unwrap_or(u32::MAX);
        matches!(tokio::time::timeout(within, self.slots.acquire_many(all)).await, Ok(Ok(_)))
    }
}
