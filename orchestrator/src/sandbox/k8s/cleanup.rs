//! Deleting the Jobs the provider gives up on, and holding the run's slot until
//! they are gone, so that `K8S_MAX_CONCURRENT_JOBS` bounds the Jobs in the cluster.
//!
//! A [`JobCleanup`] exists from just before the create request until the provider
//! is done with the Job. Every way out of a run goes through it: [`JobCleanup::keep`]
//! (the Job finished and may stay for its TTL), [`JobCleanup::release`] (the API
//! refused to create it), [`JobCleanup::delete`] (everything else), or its `Drop`
//! (the run's future was dropped: a cancelled or shut-down run), which spawns the
//! deletion. The run's concurrency permit moves along and is released only when the
//! Job is gone: deleted (background propagation, so its pods go with it), already
//! absent, or — if the API server cannot be reached — once the Job's own
//! `activeDeadlineSeconds` has passed, when Kubernetes has stopped its pod anyway.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// How long a run waits for its Job's deletion before handing it to a background
/// task (the run's result does not wait for an unreachable API server).
const INLINE_DELETE_TIMEOUT: Duration = Duration::from_secs(3);

/// The Job of one run, until it is gone or may stay.
pub struct JobCleanup {
    jobs: Api<Job>,
    name: String,
    permit: Option<OwnedSemaphorePermit>,
    /// Past this, Kubernetes has stopped the Job's pod on its own: deletion stops
    /// being retried and the slot is released.
    retry_until: Instant,
}

impl JobCleanup {
    pub fn new(jobs: Api<Job>, name: String, permit: OwnedSemaphorePermit, retry_until: Instant) -> JobCleanup {
        JobCleanup { jobs, name, permit: Some(permit), retry_until }
    }

    /// No Job exists (the API refused to create it): the slot is free now.
    pub fn release(mut self) {
        self.permit.take();
    }

    /// The Job finished on its own and stays for `ttlSecondsAfterFinished`: the
    /// slot is free now.
    pub fn keep(mut self) {
        self.permit.take();
    }

    /// Deletes the Job (background propagation). One attempt here; if it does not
    /// succeed within a few seconds, a background task keeps trying, holding the slot.
    pub async fn delete(mut self) {
        match tokio::time::timeout(INLINE_DELETE_TIMEOUT, delete_once(&self.jobs, &self.name)).await {
            Ok(Ok(())) => {
                tracing::debug!(job = %self.name, "deleted the run's Job");
                self.permit.take();
            }
            Ok(Err(e)) => tracing::warn!(job = %self.name, error = %e, "cannot delete the run's Job yet; retrying"),
            Err(_) => tracing::warn!(job = %self.name, "deleting the run's Job is slow; retrying in the background"),
        }
        // Dropping `self` with the permit still inside hands it to the background deletion.
    }
}

impl Drop for JobCleanup {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let (jobs, name, retry_until) = (self.jobs.clone(), std::mem::take(&mut self.name), self.retry_until);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(delete_until_gone(jobs, name, permit, retry_until));
            }
            Err(_) => tracing::error!(
                job = %name,
                "no runtime left to delete the run's Job; activeDeadlineSeconds and its TTL will remove it"
            ),
        }
    }
}

/// Deletes `name`; a Job that is already gone counts as deleted.
async fn delete_once(jobs: &Api<Job>, name: &str) -> Result<(), kube::Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Retries the deletion with backoff until it succeeds or `retry_until` passes,
/// then releases the slot.
async fn delete_until_gone(jobs: Api<Job>, name: String, permit: OwnedSemaphorePermit, retry_until: Instant) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let deleted = (|| delete_once(&jobs, &name))
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .adjust(|_, delay| delay.filter(|d| Instant::now() + *d < retry_until))
        .notify(|e, delay| tracing::debug!(job = %name, error = %e, ?delay, "retrying the Job's deletion"))
        .await;
    match deleted {
        Ok(()) => tracing::info!(job = %name, "deleted the run's Job"),
        Err(e) => tracing::warn!(
            job = %name,
            error = %e,
            "gave up deleting the run's Job; its activeDeadlineSeconds has passed and its TTL will remove it"
        ),
    }
    drop(permit);
}
