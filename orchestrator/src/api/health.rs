//! Probes and metrics: `/healthz` (the process answers), `/readyz` (runs can
//! start: the auth settings, the store, the sandbox; it names the check that failed,
//! and reports the model's settings and the policy's checkers) and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::llm::LlmClient;
use crate::policy;
use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long `/readyz` waits for the store (a kubelet's probe gives up after a few
/// seconds).
const STORE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(State(state): State<AppState>) -> Response {
    let llm = LlmClient::status(&state.config().llm);
    let provider = state.provider().kind().as_str();
    let checkers = policy::checker_status();
    let stuck_runs = state.provider().stuck_runs();
    // Dataset ids are for callers they are granted to (GET /datasets) once auth is on.
    let datasets =
        if state.auth().enabled() { json!(state.catalog().ids().len()) } else { json!(state.catalog().ids()) };
    let auth = if state.auth().enabled() { "on" } else { "single_user" };
    // The sandbox's and the store's checks are cached (crate::readiness); the
    // auth settings' is a read of memory.
    let store = state.runs().store();
    let checked = state
        .ready_checks()
        .get(state.provider().readiness(), async {
            match tokio::time::timeout(STORE_CHECK_TIMEOUT, store.check()).await {
                Ok(checked) => checked.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {STORE_CHECK_TIMEOUT:?}")),
            }
        })
        .await;
    let readiness = match (state.auth().readiness(), checked.store, checked.sandbox) {
        (Err(reason), _, _) => Err(("auth", reason)),
        (Ok(()), Err(reason), _) => Err(("store", format!("the run store cannot be used: {reason}"))),
        (Ok(()), Ok(()), Err(reason)) => Err(("sandbox", reason)),
        (Ok(()), Ok(()), Ok(detail)) => Ok(detail),
    };
    match readiness {
        Ok(detail) => Json(json!({
            "status": "ready",
            "sandbox_provider": provider,
            "sandbox": detail,
            "datasets": datasets,
            "auth": auth,
            "llm": llm,
            // Runs stopped past their deadline whose threads are still blocked in a
            // host call: they hold no slot, but each holds its guest's memory.
            "stuck_runs": stuck_runs,
            // SQL checks that overran their budget and still hold a checker.
            "policy_checkers": {"total": checkers.checkers, "busy": checkers.busy, "overrunning": checkers.overrunning},
        }))
        .into_response(),
        Err((check, reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "failed_check": check,
                "sandbox_provider": provider,
                "reason": reason,
                "llm": llm,
            })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics().render()).into_response()
}
