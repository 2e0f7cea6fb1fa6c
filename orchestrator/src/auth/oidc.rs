//! OIDC: bearer JWTs of the team's identity provider (OIDC_ISSUER), verified with
//! `jsonwebtoken` against the keys the issuer publishes.
//!
//! - The keys: the issuer's discovery document (`/.well-known/openid-configuration`,
//!   whose `issuer` must be OIDC_ISSUER) names its JWKS; both are fetched at start
//!   (and retried in the background while the issuer cannot be reached: that never
//!   stops the service from starting, and `/readyz` recovers by itself), kept for
//!   [`JWKS_MAX_AGE`], and fetched again when a JWT names a key
//!   the set does not have (a rotation) — at most once per [`JWKS_REFETCH_MIN`],
//!   whatever a flood of made-up key ids asks. Keys the crate cannot use (an
//!   encryption key, an unknown type) are skipped, not fatal.
//! - A JWT: RS256 or ES256 only (`none` and the HMAC algorithms are refused before any
//!   key is looked at, so a public key can never be used as an HMAC secret); `iss`,
//!   `aud`, `exp` and `nbf` checked with [`LEEWAY_S`] of clock skew; `sub` required.
//! - Unreachable issuer: a JWT that needs keys the service does not have is
//!   [`OidcError::Unavailable`] (503), never a 401 for a token that may be valid, and
//!   `/readyz` says why.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::access::{Grants, RESERVED_SUBJECTS};
use crate::config::AuthConfig;

/// Keys older than this are fetched again on the next use (kept if that fails).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// Fetches of the issuer at most once per this, however many requests ask.
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(2);
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: u64 = 60;
/// A discovery document or key set larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long a fetch of the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the start-up fetch is retried while the issuer is unreachable.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Why a JWT was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// The token is not valid (401).
    Invalid(String),
    /// The issuer cannot be reached to get its keys (503).
    Unavailable(String),
}

/// What a verified JWT says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub subject: String,
    pub datasets: Grants,
    pub admin: bool,
    pub expires_at: Option<SystemTime>,
}

pub struct Oidc {
    issuer: String,
    audience: String,
    datasets_claim: String,
    admin: Option<(String, String)>,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<KeyCache>,
    /// `None` until the first fetch ended; then the last one's outcome.
    status: Mutex<Option<Result<(), String>>>,
    /// Whether keys were ever fetched (they are kept through an outage).
    has_keys: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl Oidc {
    /// The verifier OIDC_ISSUER asks for, if set (the configuration is validated).
    pub fn from_config(config: &AuthConfig) -> Result<Option<Oidc>, String> {
        let (Some(issuer), Some(audience)) = (&config.oidc_issuer, &config.oidc_audience) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the OIDC client: {e}"))?;
        Ok(Some(Oidc {
            issuer: issuer.clone(),
            audience: audience.clone(),
            datasets_claim: config.oidc_datasets_claim.clone(),
            admin: config.oidc_admin_claim.clone().zip(config.oidc_admin_value.clone()),
            http,
            keys: tokio::sync::Mutex::new(KeyCache::default()),
            status: Mutex::new(None),
            has_keys: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Keeps the keys fresh while the service runs (spawned at start): fetches them
    /// at once, again every [`RETRY_EVERY`] while the issuer cannot be reached (so
    /// `/readyz` recovers by itself, with no JWT needed to trigger a fetch), and again
    /// once they are [`JWKS_MAX_AGE`] old.
    pub async fn maintain(&self) {
        loop {
            let healthy = {
                let mut cache = self.keys.lock().await;
                let old = cache.fetched_at.is_none_or(|at| at.elapsed() > JWKS_MAX_AGE);
                if (old || self.last_fetch_failed()) && cache.may_fetch() {
                    self.refresh(&mut cache).await.is_ok()
                } else {
                    !self.last_fetch_failed()
                }
            };
            tokio::time::sleep(if healthy { JWKS_MAX_AGE / 4 } else { RETRY_EVERY }).await;
        }
    }

    /// `Err(why)` while the issuer's keys cannot be had. Keys fetched once keep the
    /// service ready through a later outage: JWTs still verify with them.
    pub fn readiness(&self) -> Result<(), String> {
        if self.has_keys.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        match &*self.status.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Err(format!("fetching the keys of the OIDC issuer {}", self.issuer)),
            Some(outcome) => outcome.clone(),
        }
    }

    /// Whether the last fetch failed (for the background refresh to retry soon).
    fn last_fetch_failed(&self) -> bool {
        matches!(&*self.status.lock().unwrap_or_else(|p| p.into_inner()), Some(Err(_)))
    }

    /// Verifies a JWT: its algorithm, signature, issuer, audience and times.
    pub async fn verify(&self, token: &str) -> Result<Verified, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OidcError::Invalid("the bearer token is neither a token of this service nor a JWT".into()))?;
        let alg = header.alg;
        if !matches!(alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(OidcError::Invalid(format!("JWTs signed with {alg:?} are not accepted: RS256 or ES256 only")));
        }
        let jwk = self.key_for(header.kid.as_deref(), alg).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OidcError::Invalid(format!("the issuer's key for this JWT cannot be used: {e}")))?;
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(rejection)?;
        self.claims(&data.claims)
    }

    fn claims(&self, claims: &Map<String, Value>) -> Result<Verified, OidcError> {
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().trim();
        if subject.is_empty() || subject.chars().count() > super::tokens::MAX_SUBJECT_CHARS {
            return Err(OidcError::Invalid("the JWT's sub is empty or too long".into()));
        }
        if subject.chars().any(char::is_control) || RESERVED_SUBJECTS.iter().any(|r| r.eq_ignore_ascii_case(subject)) {
            return Err(OidcError::Invalid(format!("the JWT's sub {subject:?} is not a subject this service accepts")));
        }
        let datasets = match claims.get(&self.datasets_claim) {
            Some(Value::String(one)) => Grants::from_list(&[one.as_str()]),
            Some(Value::Array(ids)) => {
                let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                Grants::from_list(&ids)
            }
            _ => Grants::Only(Default::default()),
        };
        let admin = self.admin.as_ref().is_some_and(|(claim, value)| match claims.get(claim) {
            Some(Value::String(s)) => s == value,
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value.as_str())),
            Some(Value::Bool(b)) => value == &b.to_string(),
            _ => false,
        });
        let expires_at = claims.get("exp").and_then(Value::as_u64).map(|s| UNIX_EPOCH + Duration::from_secs(s));
        Ok(Verified { subject: subject.to_string(), datasets, admin, expires_at })
    }

    /// The issuer's key for a JWT's `kid` (or its only key of the right type, without
    /// one), fetching the keys when there are none yet or they do not have it (old
    /// keys are refreshed in the background, not on a request's time).
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, OidcError> {
        let mut cache = self.keys.lock().await;
        if cache.keys.is_empty() && cache.may_fetch() {
            self.refresh(&mut cache).await.map_err(OidcError::Unavailable)?;
        }
        if cache.keys.is_empty() && cache.fetched_at.is_none() {
            return Err(OidcError::Unavailable(self.readiness().err().unwrap_or_default()));
        }
        if let Some(jwk) = find(&cache.keys, kid, alg) {
            return Ok(jwk.clone());
        }
        // A key the set does not have: perhaps a rotation.
        if cache.may_fetch() {
            self.refresh(&mut cache).await.map_err(OidcError::Unavailable)?;
            if let Some(jwk) = find(&cache.keys, kid, alg) {
                return Ok(jwk.clone());
            }
        }
        Err(OidcError::Invalid(match kid {
            Some(kid) => format!("the JWT is signed with a key ({kid:?}) the issuer does not publish"),
            None => "the JWT names no key (kid) and the issuer publishes more than one".into(),
        }))
    }

    /// Fetches the discovery document and the key set into `cache`, and records the
    /// outcome for `/readyz`.
    async fn refresh(&self, cache: &mut KeyCache) -> Result<(), String> {
        let outcome = self.fetch_keys().await;
        // From the fetch's end: a slow issuer is not asked again at once.
        cache.attempted_at = Some(Instant::now());
        let status = match &outcome {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "fetched the OIDC issuer's keys");
                cache.keys = keys.clone();
                cache.fetched_at = Some(Instant::now());
                self.has_keys.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, error = %why, "cannot fetch the OIDC issuer's keys");
                Err(format!("the OIDC issuer {} cannot be reached: {why}", self.issuer))
            }
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.clone());
        status
    }

    async fn fetch_keys(&self) -> Result<Vec<Jwk>, String> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let discovery = self.get_json(&discovery_url).await?;
        let issuer = discovery.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(format!("its discovery document names another issuer ({issuer:?})"));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("its discovery document has no jwks_uri")?
            .to_string();
        let secure = jwks_uri.starts_with("https://") || (self.issuer.starts_with("http://") && is_loopback(&jwks_uri));
        if !secure {
            return Err(format!("its jwks_uri is not https: {jwks_uri}"));
        }
        let set = self.get_json(&jwks_uri).await?;
        let keys = set.get("keys").and_then(Value::as_array).ok_or("its key set has no keys")?;
        let usable: Vec<Jwk> = keys.iter().filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok()).collect();
        if usable.is_empty() {
            return Err("its key set has no key this service can use".into());
        }
        Ok(JwkSet { keys: usable }.keys)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self.http.get(url).send().await.map_err(|e| crate::error::chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| crate::error::chain(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url} answered no JSON: {e}"))
    }
}

impl KeyCache {
    fn may_fetch(&self) -> bool {
        self.attempted_at.is_none_or(|at| at.elapsed() >= JWKS_REFETCH_MIN)
    }
}

/// The key with id `kid` (of a type `alg` can use), or without a `kid` the only
/// such key.
fn find<'a>(keys: &'a [Jwk], kid: Option<&str>, alg: Algorithm) -> Option<&'a Jwk> {
    // A signing key of the JWT's type: not one published for encryption, nor one
    // whose own `alg` is another.
    let fits = |jwk: &&Jwk| {
        let for_signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
        let same_alg = jwk.common.key_algorithm.is_none_or(|a| a.to_string() == format!("{alg:?}"));
        let same_type = matches!(
            (&jwk.algorithm, alg),
            (AlgorithmParameters::RSA(_), Algorithm::RS256) | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
        );
        for_signing && same_alg && same_type
    };
    match kid {
        Some(kid) => keys.iter().filter(fits).find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut candidates = keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        }
    }
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| crate::config::is_loopback(&u))
}

/// Why `jsonwebtoken` refused a JWT, in words that name the claim.
fn rejection(e: jsonwebtoken::errors::Error) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ExpiredSignature => "the JWT has expired (exp)".to_string(),
        ErrorKind::ImmatureSignature => "the JWT is not valid yet (nbf)".to_string(),
        ErrorKind::InvalidAudience => "the JWT is not for this service (aud)".to_string(),
        ErrorKind::InvalidIssuer => "the JWT is from another issuer (iss)".to_string(),
        ErrorKind::InvalidSignature => "the JWT's signature does not verify with the issuer's key".to_string(),
        ErrorKind::InvalidAlgorithm => "the JWT's algorithm does not match the issuer's key".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the JWT has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the JWT's {claim} claim is malformed"),
        _ => "the JWT is not valid".to_string(),
    };
    OidcError::Invalid(why)
}
