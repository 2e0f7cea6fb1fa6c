//! The service's one state, as the HTTP layer sees it: the configuration, the run,
//! chat, auth and upload services, and the metrics.
//!
//! Built once by the composition root ([`crate::server::build_state`]) and handed to
//! axum; handlers take the service they need from it. Nothing below `api` imports
//! this module: each service gets its own narrow pieces when it is built.
//!
//! May use: the services and the leaves. Used only by `api` and `server`.

use std::sync::Arc;

use crate::auth::Auth;
use crate::chat::Chat;
use crate::config::Config;
use crate::datasets::Catalog;
use crate::metrics::Metrics;
use crate::readiness::ReadyChecks;
use crate::runs::Runs;
use crate::sandbox::Provider;
use crate::uploads::Uploads;

/// A cheap handle (an `Arc` inside).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    runs: Runs,
    chat: Chat,
    auth: Auth,
    uploads: Uploads,
    ready_checks: ReadyChecks,
}

impl AppState {
    pub fn new(config: Config, runs: Runs, chat: Chat, auth: Auth, uploads: Uploads) -> AppState {
        AppState { inner: Arc::new(Inner { config, runs, chat, auth, uploads, ready_checks: ReadyChecks::default() }) }
    }

    pub fn uploads(&self) -> &Uploads {
        &self.inner.uploads
    }

    /// `/readyz`'s cached checks.
    pub fn ready_checks(&self) -> &ReadyChecks {
        &self.inner.ready_checks
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn runs(&self) -> &Runs {
        &self.inner.runs
    }

    pub fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    pub fn catalog(&self) -> &Catalog {
        self.inner.runs.catalog()
    }

    pub fn provider(&self) -> &Provider {
        self.inner.runs.provider()
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.runs.metrics()
    }
}
