//! Handlers of `/admin/tokens` (mint, list, revoke the service's tokens) and `/me`
//! (who the caller is, for the page).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Authenticated};
use crate::access::{Principal, Via};
use crate::auth::tokens::MintRequest;
use crate::error::Error;
use crate::state::AppState;

/// Only admins, and only when auth is configured (tokens mean nothing without it).
fn admin_only(state: &AppState, principal: &Principal) -> Result<(), Error> {
    if !state.auth().enabled() {
        return Err(Error::AuthNotConfigured(
            "auth is not configured (single-user mode): set ADMIN_TOKEN, ADMIN_TOKEN_FILE or OIDC_ISSUER to use \
             tokens"
                .into(),
        ));
    }
    if principal.is_anonymous() {
        return Err(Error::Unauthorized("the /admin routes need an admin token".into()));
    }
    principal.require_admin()
}

pub async fn create_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<MintRequest>,
) -> Result<Response, ApiError> {
    admin_only(&state, &caller.principal)?;
    let minted = state.auth().mint(&request).await?;
    let r = &minted.record;
    let body = json!({
        "token": minted.token,
        "token_id": r.token_id,
        "subject": r.subject,
        "datasets": r.datasets,
        "admin": r.admin,
        "expires_at": r.expires_at,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Value>, ApiError> {
    admin_only(&state, &caller.principal)?;
    let tokens = state.auth().tokens().await?;
    let views: Vec<_> = tokens.iter().map(|t| t.view()).collect();
    Ok(Json(json!({ "tokens": views })))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(token_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin_only(&state, &caller.principal)?;
    state.auth().revoke(&token_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /me`: who the caller is, what it may use, and whether the page should offer
/// a token box.
pub async fn me(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Json<Value> {
    let p = &caller.principal;
    let sign_in = if state.auth().enabled() && p.via != Via::Proxy { "token" } else { "none" };
    let expires_at = p.expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    Json(json!({
        "auth_configured": state.auth().enabled(),
        "subject": p.subject,
        "kind": p.via,
        "admin": p.admin,
        "token_id": p.token_id,
        "datasets": p.datasets,
        "expires_at": expires_at,
        "sign_in": sign_in,
    }))
}
