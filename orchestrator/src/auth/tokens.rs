//! The service's own tokens: `csa_<id>_<secret>`, where the id (16 hex digits) names
//! the token in lists and logs and the secret is 256 random bits (base64url, 43
//! characters). The store keeps only the SHA-256 of the secret — right for a random
//! secret, which no dictionary holds — and a presented secret is compared to it in
//! constant time. A secret is shown once, when it is minted.
//!
//! [`create`], [`list`] and [`revoke`] are what `POST/GET/DELETE /admin/tokens` and
//! `orchestrator tokens create|list|revoke` do, against the same store.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::access::RESERVED_SUBJECTS;
use crate::error::Error;
use crate::store::{Store, TokenRecord, now};

/// What every token of this service starts with (secret scanners can match it).
pub const PREFIX: &str = "csa_";
/// Hex digits of a token's id.
const ID_CHARS: usize = 16;
/// Random bytes of a token's secret: 256 bits.
const SECRET_BYTES: usize = 32;
/// base64url characters of the secret (no padding).
const SECRET_CHARS: usize = 43;
/// Characters of a subject at most.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// The longest lifetime a token may be minted with: ten years.
pub const MAX_EXPIRES_IN_S: u64 = 10 * 366 * 86_400;

/// `POST /admin/tokens` (and the CLI's `tokens create`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub subject: String,
    /// Dataset ids, or `["*"]` for all.
    pub datasets: Vec<String>,
    /// Seconds until the token expires; none: it does not.
    #[serde(default)]
    pub expires_in_s: Option<u64>,
    #[serde(default)]
    pub admin: bool,
}

/// A token just minted: the only moment its secret exists outside its holder.
pub struct Minted {
    /// The whole token, `csa_<id>_<secret>`.
    pub token: String,
    pub record: TokenRecord,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted").field("token", &"[redacted]").field("record", &self.record).finish()
    }
}

/// Checks a mint request, makes the token and records it.
pub async fn create(store: &dyn Store, datasets: &[&str], request: &MintRequest) -> Result<Minted, Error> {
    let subject = check_subject(&request.subject)?;
    if request.datasets.is_empty() {
        return Err(Error::invalid("datasets must name at least one dataset id, or be [\"*\"] for all"));
    }
    for id in &request.datasets {
        if id != "*" && !datasets.contains(&id.as_str()) {
            return Err(Error::invalid(format!("no dataset {id:?}; datasets: {}", datasets.join(", "))));
        }
    }
    let expires_at = match request.expires_in_s {
        None => None,
        Some(0) => return Err(Error::invalid("expires_in_s must be at least 1")),
        Some(s) if s > MAX_EXPIRES_IN_S => {
            return Err(Error::invalid(format!("expires_in_s must be at most {MAX_EXPIRES_IN_S} (ten years)")));
        }
        Some(s) => Some(humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(s)).to_string()),
    };
    let token_id = hex(&random::<{ ID_CHARS / 2 }>()?);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<SECRET_BYTES>()?);
    let mut datasets: Vec<String> = request.datasets.clone();
    datasets.sort();
    datasets.dedup();
    if datasets.iter().any(|d| d == "*") {
        datasets = vec!["*".to_string()];
    }
    let record = TokenRecord {
        token_id: token_id.clone(),
        subject,
        datasets,
        admin: request.admin,
        secret_sha256: secret_hash(&secret),
        created_at: now(),
        expires_at,
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    tracing::info!(token_id = %record.token_id, subject = %record.subject, admin = record.admin, "token minted");
    Ok(Minted { token: format!("{PREFIX}{token_id}_{secret}"), record })
}

/// Every token, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<TokenRecord>, Error> {
    Ok(store.tokens().await?)
}

/// Revokes a token, effective at once (its next use is a 401).
pub async fn revoke(store: &dyn Store, token_id: &str) -> Result<(), Error> {
    if store.revoke_token(token_id, &now()).await? {
        tracing::info!(token_id = %token_id, "token revoked");
        Ok(())
    } else {
        Err(Error::TokenNotFound(token_id.to_string()))
    }
}

/// The id and secret of a token of this service's shape, or `None`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_CHARS)?, rest.get(ID_CHARS..)?.strip_prefix('_')?);
    let id_ok = id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let secret_ok =
        secret.len() == SECRET_CHARS && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Whether `secret` is the one whose hash a token record keeps, compared in
/// constant time (the hashes, of equal length).
pub fn secret_matches(record: &TokenRecord, secret: &str) -> bool {
    constant_time_eq(record.secret_sha256.as_bytes(), secret_hash(secret).as_bytes())
}

/// SHA-256 of a secret, hex.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Equal bytes, compared without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Whether a token record is past its expiry.
pub fn expired(record: &TokenRecord, at: SystemTime) -> bool {
    record.expires_at.as_deref().is_some_and(|e| humantime::parse_rfc3339(e).map_or(true, |e| e <= at))
}

/// A subject a token may carry: 1 to [`MAX_SUBJECT_CHARS`] visible characters, not
/// one of the service's own ([`RESERVED_SUBJECTS`]).
pub fn check_subject(subject: &str) -> Result<String, Error> {
    let subject = subject.trim();
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(Error::invalid(format!("subject must have 1 to {MAX_SUBJECT_CHARS} characters")));
    }
    if subject.chars().any(char::is_control) {
        return Err(Error::invalid("subject must not contain control characters"));
    }
    if RESERVED_SUBJECTS.iter().any(|r| r.eq_ignore_ascii_case(subject)) {
        return Err(Error::invalid(format!(
            "subject {subject:?} is the service's own ({}): choose another",
            RESERVED_SUBJECTS.join(", ")
        )));
    }
    Ok(subject.to_string())
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no random numbers from the OS: {e}")))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_their_exact_shape() {
        let secret = "A".repeat(SECRET_CHARS);
        let token = format!("csa_0123456789abcdef_{secret}");
        assert_eq!(parse(&token), Some(("0123456789abcdef", secret.as_str())));
        for bad in [
            "csa_0123456789abcdef".to_string(),
            format!("csa_0123456789ABCDEF_{secret}"),
            format!("csa_0123456789abcde_{secret}"),
            format!("csa_0123456789abcdef_{secret}A"),
            format!("csa_0123456789abcdef_{}", "é".repeat(22)),
            format!("xyz_0123456789abcdef_{secret}"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
        assert!(check_subject("Anonymous").is_err() && check_subject(" ").is_err() && check_subject("a\nb").is_err());
        assert_eq!(check_subject(" alice ").unwrap(), "alice");
    }
}
