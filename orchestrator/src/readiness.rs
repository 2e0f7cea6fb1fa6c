//! `/readyz`'s slow checks, cached: the sandbox's (with Kubernetes, a handful of API
//! calls) and the store's (a round trip to PostgreSQL). A kubelet probes every few
//! seconds on every replica; without a cache each probe repeated every call, and
//! probes that overlap would stack them. Here one check runs at a time and its answer
//! serves every probe for [`READY_CACHE_FOR`].
//!
//! May use: nothing of the service (it is handed the checks to run).

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a check's answer is reused.
pub const READY_CACHE_FOR: Duration = Duration::from_secs(3);

/// The answers of the slow checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The sandbox's detail, or why it cannot run.
    pub sandbox: Result<String, String>,
    /// Why the store cannot be used, if it cannot.
    pub store: Result<(), String>,
}

/// The cache, one per service.
#[derive(Default)]
pub struct ReadyChecks {
    last: tokio::sync::Mutex<Option<(Instant, Checked)>>,
}

impl ReadyChecks {
    /// The cached answer, or (when older than [`READY_CACHE_FOR`]) a new one from
    /// `sandbox` and `store`, run together. Callers that arrive meanwhile wait for it.
    pub async fn get(
        &self,
        sandbox: impl Future<Output = Result<String, String>>,
        store: impl Future<Output = Result<(), String>>,
    ) -> Checked {
        let mut last = self.last.lock().await;
        if let Some((at, checked)) = last.as_ref()
            && at.elapsed() < READY_CACHE_FOR
        {
            return checked.clone();
        }
        let (sandbox, store) = tokio::join!(sandbox, store);
        let checked = Checked { sandbox, store };
        *last = Some((Instant::now(), checked.clone()));
        checked
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn one_check_serves_every_probe_until_it_is_stale() {
        let checks = ReadyChecks::default();
        let calls = AtomicUsize::new(0);
        let sandbox = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>("ok".to_string())
        };
        let probes = (0..5).map(|_| checks.get(sandbox(), async { Err("down".to_string()) }));
        let answers = futures::future::join_all(probes).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "five probes at once made one check");
        assert!(answers.iter().all(|a| a.sandbox.as_deref() == Ok("ok") && a.store == Err("down".into())));
        // Age the answer past the cache's time.
        *checks.last.lock().await =
            Some((Instant::now() - READY_CACHE_FOR - Duration::from_millis(1), answers[0].clone()));
        checks.get(sandbox(), async { Ok(()) }).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a stale answer is checked again");
    }
}
