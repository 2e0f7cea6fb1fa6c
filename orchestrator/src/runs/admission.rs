//! Admission: the run slots (MAX_CONCURRENT_RUNS, waiting at most QUEUE_TIMEOUT_MS)
//! and each client's share of them (MAX_RUNS_PER_CLIENT), so that a noisy client is
//! refused before a quiet one waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::limits::RunSettings;
use crate::error::Error;

pub struct Admission {
    slots: Arc<Semaphore>,
    slot_count: usize,
    queue_timeout: Duration,
    runs_per_client: usize,
    /// Runs waiting or running, per client.
    clients: Arc<Mutex<HashMap<String, usize>>>,
    /// Told whenever a client's run ends (a ticket is given back).
    released: Arc<Notify>,
    /// Runs refused for capacity (a slot or a client's share).
    rejections: Counter,
}

/// A client's place among the runs in flight; given back on drop.
pub struct ClientTicket {
    clients: Arc<Mutex<HashMap<String, usize>>>,
    released: Arc<Notify>,
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
        drop(clients);
        self.released.notify_waiters();
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
            released: Arc::default(),
            rejections,
        }
    }

    /// A run slot, waiting at most QUEUE_TIMEOUT_MS for one to free up.
    pub async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.acquire_slot_within(self.queue_timeout).await
    }

    /// A run slot, waiting at most `wait` for one to free up (an upload, whose
    /// client has sent its whole body already, waits longer than a query).
    pub async fn acquire_slot_within(&self, wait: Duration) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.rejections.inc();
                Err(Error::CapacityExceeded(format!(
                    "all {} run slots are busy and none freed up within {} ms; retry shortly",
                    self.slot_count,
                    wait.as_millis()
                )))
            }
        }
    }

    /// Admits one more run of `client`, within MAX_RUNS_PER_CLIENT.
    pub fn admit(&self, client: &str) -> Result<ClientTicket, Error> {
        self.try_admit(client).map_err(|count| self.client_limit(count))
    }

    /// Admits one more run of `client`, waiting at most `wait` for one of its runs
    /// to end when it has its share already (an upload whose body has arrived waits
    /// rather than making its client send it again).
    pub async fn admit_within(&self, client: &str, wait: Duration) -> Result<ClientTicket, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_admit(client) {
                Ok(ticket) => return Ok(ticket),
                Err(count) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(self.client_limit(count));
                    }
                }
            }
        }
    }

    /// A ticket, or the client's runs in flight when it has its share already.
    fn try_admit(&self, client: &str) -> Result<ClientTicket, usize> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let count = clients.entry(client.to_string()).or_insert(0);
        if *count >= self.runs_per_client {
            return Err(*count);
        }
        *count += 1;
        Ok(ClientTicket { clients: self.clients.clone(), released: self.released.clone(), client: client.to_string() })
    }

    fn client_limit(&self, count: usize) -> Error {
        self.rejections.inc();
        let limit = self.runs_per_client;
        Error::ClientLimit(format!(
            "this client already has {count} runs waiting or running (MAX_RUNS_PER_CLIENT={limit}); retry when one ends"
        ))
    }

    /// Waits, at most `within`, until every run slot is free (every sandbox stopped).
    pub async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.slot_count).unwrap_or(u32::MAX);
        matches!(tokio::time::timeout(within, self.slots.acquire_many(all)).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(runs_per_client: usize) -> Admission {
        let settings = RunSettings {
            timeout: Duration::from_secs(1),
            max_rows: 1,
            max_output_bytes: 1,
            memory_limit_bytes: 1,
            spill_limit_bytes: 0,
            slots: 2,
            queue_timeout: Duration::from_millis(10),
            runs_per_client,
        };
        Admission::new(&settings, Counter::default())
    }

    #[tokio::test]
    async fn a_waiting_admission_gets_the_ticket_a_run_gives_back_and_no_more() {
        let admission = Arc::new(admission(1));
        let held = admission.admit("a").unwrap();
        assert!(matches!(admission.admit("a"), Err(Error::ClientLimit(_))), "refused at once");
        let _other = admission.admit("b").expect("another client's share is its own");

        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit_within("a", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "it waits while the client has its share");
        drop(held);
        let ticket = tokio::time::timeout(Duration::from_secs(2), waiting).await.unwrap().unwrap().unwrap();

        let started = std::time::Instant::now();
        let refused = admission.admit_within("a", Duration::from_millis(100)).await;
        assert!(matches!(refused, Err(Error::ClientLimit(_))));
        assert!(started.elapsed() >= Duration::from_millis(100), "waited the whole time");
        drop(ticket);
        assert!(admission.admit("a").is_ok());
    }
}
