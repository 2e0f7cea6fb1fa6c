//! The auth service ([`Auth`]): credentials in, a [`Caller`] out; and the admin
//! routes' token operations.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::oidc::{Oidc, OidcError};
use super::proxy::TrustedProxies;
use super::tokens::{self, MintRequest, Minted};
use crate::access::{ADMIN, Grants, Principal, Via};
use crate::config::{AnonymousAccess, AuthConfig};
use crate::error::Error;
use crate::store::{Store, TokenRecord};

/// An `Authorization` header longer than this is refused unread (a JWT of a
/// generous issuer is 2–3 KB).
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// `x-client-id` values longer than this are ignored.
const MAX_CLIENT_ID_CHARS: usize = 100;

/// What a request carries that says who it is from, as the edge read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header's bytes (`None`: no header).
    pub authorization: Option<&'a [u8]>,
    /// The connection's peer address (`None`: not served over a connection).
    pub peer: Option<IpAddr>,
    pub forwarded_for: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// TRUSTED_PROXY_HEADER's value.
    pub proxy_user: Option<&'a [u8]>,
    /// Whether that header came more than once (a proxy that appends rather than
    /// overwrites would let the client choose the user): refused.
    pub proxy_user_repeated: bool,
}

/// Who a request is from, and the key its runs are counted under for fairness
/// (MAX_RUNS_PER_CLIENT): the subject, or for anonymous callers their address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// `None` when the address is unknown (a router served without connections).
    pub client: Option<String>,
}

/// The auth service. A cheap handle.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    store: Arc<dyn Store>,
    /// SHA-256 of the admin token.
    admin_hash: Option<[u8; 32]>,
    anonymous: Option<Grants>,
    oidc: Option<Oidc>,
    proxies: TrustedProxies,
    proxy_header: Option<String>,
    proxy_datasets: Grants,
    /// The catalogue's dataset ids, which tokens may be granted.
    dataset_ids: Vec<String>,
}

impl Auth {
    /// From validated settings: reads ADMIN_TOKEN_FILE, checks the dataset lists
    /// against the catalogue's ids.
    pub fn new(config: &AuthConfig, store: Arc<dyn Store>, dataset_ids: Vec<String>) -> Result<Auth, String> {
        config.validate()?;
        let admin_token = match (&config.admin_token, &config.admin_token_file) {
            (Some(token), _) => Some(token.expose().trim().to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read ADMIN_TOKEN_FILE={}: {e}", path.display()))?;
                let token = text.trim().to_string();
                if token.chars().count() < crate::config::MIN_ADMIN_TOKEN_CHARS {
                    return Err(format!(
                        "ADMIN_TOKEN_FILE={} must hold at least {} characters",
                        path.display(),
                        crate::config::MIN_ADMIN_TOKEN_CHARS
                    ));
                }
                Some(token)
            }
            (None, None) => None,
        };
        let grants = |name: &str, ids: &[String]| -> Result<Grants, String> {
            for id in ids.iter().filter(|id| id.as_str() != "*") {
                if !dataset_ids.contains(id) {
                    return Err(format!("{name}: no dataset {id:?}; datasets: {}", dataset_ids.join(", ")));
                }
            }
            Ok(Grants::from_list(ids))
        };
        let anonymous = match config.auth_anonymous {
            AnonymousAccess::Run => Some(grants("AUTH_ANONYMOUS_DATASETS", &config.auth_anonymous_datasets)?),
            AnonymousAccess::Deny => None,
        };
        let proxy_datasets = grants("TRUSTED_PROXY_DATASETS", &config.trusted_proxy_datasets)?;
        Ok(Auth {
            inner: Arc::new(Inner {
                enabled: config.enabled(),
                store,
                admin_hash: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
                anonymous,
                oidc: Oidc::from_config(config)?,
                proxies: TrustedProxies::parse(&config.trusted_proxies)?,
                proxy_header: config.trusted_proxy_header.clone(),
                proxy_datasets,
                dataset_ids,
            }),
        })
    }

    /// Whether auth is configured (else: single-user mode).
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The header an authenticating proxy names the user in, if one is trusted.
    pub fn proxy_header(&self) -> Option<&str> {
        self.inner.proxy_header.as_deref()
    }

    /// Starts keeping the OIDC issuer's keys in the background (inside a runtime).
    pub fn start(&self) {
        if self.inner.oidc.is_some() {
            let auth = self.clone();
            tokio::spawn(async move {
                if let Some(oidc) = &auth.inner.oidc {
                    oidc.maintain().await;
                }
            });
        }
    }

    /// `Err(why)` while the OIDC issuer's keys cannot be had.
    pub fn readiness(&self) -> Result<(), String> {
        self.inner.oidc.as_ref().map_or(Ok(()), Oidc::readiness)
    }

    /// Who a request is from.
    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<Caller, Error> {
        let inner = &self.inner;
        let trusted_peer = credentials.peer.is_some_and(|peer| inner.proxies.trusts(peer));
        let client_id = credentials
            .client_id
            .filter(|id| !id.is_empty() && id.len() <= MAX_CLIENT_ID_CHARS && id.chars().all(|c| c.is_ascii_graphic()));
        let address = credentials.peer.map(|peer| inner.proxies.client_address(peer, credentials.forwarded_for));
        if !inner.enabled {
            // Single-user mode: fairness as before auth existed.
            let client = match (client_id, address) {
                (Some(id), _) => Some(format!("id:{id}")),
                (None, Some(ip)) => Some(format!("ip:{ip}")),
                (None, None) => None,
            };
            return Ok(Caller { principal: Principal::local(), client });
        }
        let principal = match credentials.authorization {
            Some(header) => self.bearer(header).await?,
            None => match (credentials.proxy_user, &inner.proxy_header) {
                (Some(_), Some(_)) if trusted_peer && credentials.proxy_user_repeated => {
                    return Err(Error::Unauthorized("the proxy's user header came more than once".into()));
                }
                (Some(user), Some(_)) if trusted_peer => proxy_principal(user, &inner.proxy_datasets)?,
                _ => match &inner.anonymous {
                    Some(datasets) => Principal::anonymous(datasets.clone()),
                    None => {
                        return Err(Error::Unauthorized(
                            "this service needs a token: send `Authorization: Bearer <token>`".into(),
                        ));
                    }
                },
            },
        };
        let client = if !principal.is_anonymous() {
            Some(format!("sub:{}", principal.subject))
        } else {
            match (client_id.filter(|_| trusted_peer), address) {
                (Some(id), _) => Some(format!("id:{id}")),
                (None, Some(ip)) => Some(format!("ip:{ip}")),
                (None, None) => None,
            }
        };
        Ok(Caller { principal, client })
    }

    /// The principal of an `Authorization` header.
    async fn bearer(&self, header: &[u8]) -> Result<Principal, Error> {
        if header.len() > MAX_AUTHORIZATION_BYTES {
            return Err(Error::Unauthorized(format!(
                "the Authorization header has {} bytes; no token of this service or its issuer is longer than {}",
                header.len(),
                MAX_AUTHORIZATION_BYTES
            )));
        }
        let garbled = || Error::Unauthorized("the Authorization header must be `Bearer <token>`".into());
        let text = std::str::from_utf8(header).map_err(|_| garbled())?;
        let (scheme, token) = text.trim().split_once(' ').ok_or_else(garbled)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(garbled());
        }
        if let Some(hash) = &self.inner.admin_hash
            && tokens::constant_time_eq(hash, &Sha256::digest(token.as_bytes()))
        {
            return Ok(Principal {
                subject: ADMIN.to_string(),
                via: Via::AdminToken,
                token_id: Some(ADMIN.to_string()),
                datasets: Grants::All,
                admin: true,
                expires_at: None,
            });
        }
        if token.starts_with(tokens::PREFIX) {
            return self.minted(token).await;
        }
        match &self.inner.oidc {
            Some(oidc) if token.split('.').count() == 3 => match oidc.verify(token).await {
                Ok(verified) => Ok(Principal {
                    subject: verified.subject,
                    via: Via::Oidc,
                    token_id: None,
                    datasets: verified.datasets,
                    admin: verified.admin,
                    expires_at: verified.expires_at,
                }),
                Err(OidcError::Invalid(why)) => Err(Error::Unauthorized(why)),
                Err(OidcError::Unavailable(why)) => Err(Error::AuthUnavailable(why)),
            },
            _ => Err(Error::Unauthorized("the bearer token is not a token of this service".into())),
        }
    }

    /// The principal of a minted token: known, its secret matching, not revoked, not
    /// expired. One message for unknown and wrong secrets, so ids cannot be probed.
    async fn minted(&self, token: &str) -> Result<Principal, Error> {
        let unknown = || Error::Unauthorized("unknown token".into());
        let (token_id, secret) = tokens::parse(token).ok_or_else(unknown)?;
        let record = self.inner.store.token(token_id).await?.ok_or_else(unknown)?;
        if !tokens::secret_matches(&record, secret) {
            return Err(unknown());
        }
        if record.revoked_at.is_some() {
            return Err(Error::Unauthorized(format!("token {token_id} was revoked")));
        }
        if tokens::expired(&record, SystemTime::now()) {
            return Err(Error::Unauthorized(format!("token {token_id} has expired")));
        }
        Ok(Principal {
            subject: record.subject.clone(),
            via: Via::Token,
            token_id: Some(record.token_id.clone()),
            datasets: Grants::from_list(&record.datasets),
            admin: record.admin,
            expires_at: record.expires_at.as_deref().and_then(|e| humantime::parse_rfc3339(e).ok()),
        })
    }

    /// Whether a principal's credentials still hold (for a stream that outlives the
    /// request that opened it): a minted token not since revoked, no expiry passed.
    /// Unsure (the store cannot be read) counts as valid.
    pub async fn still_valid(&self, principal: &Principal) -> Result<(), String> {
        if principal.expires_at.is_some_and(|at| at <= SystemTime::now()) {
            return Err("the token has expired".into());
        }
        if principal.via == Via::Token
            && let Some(token_id) = &principal.token_id
        {
            match self.inner.store.token(token_id).await {
                Ok(Some(record)) if record.revoked_at.is_none() => {}
                Ok(_) => return Err(format!("token {token_id} was revoked")),
                Err(e) => tracing::warn!(error = %e, "cannot recheck a token; the stream goes on"),
            }
        }
        Ok(())
    }

    /// `POST /admin/tokens`.
    pub async fn mint(&self, request: &MintRequest) -> Result<Minted, Error> {
        let ids: Vec<&str> = self.inner.dataset_ids.iter().map(String::as_str).collect();
        tokens::create(self.inner.store.as_ref(), &ids, request).await
    }

    /// `GET /admin/tokens`.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        tokens::list(self.inner.store.as_ref()).await
    }

    /// `DELETE /admin/tokens/{id}`.
    pub async fn revoke(&self, token_id: &str) -> Result<(), Error> {
        tokens::revoke(self.inner.store.as_ref(), token_id).await
    }
}

/// The user a trusted proxy names.
fn proxy_principal(user: &[u8], datasets: &Grants) -> Result<Principal, Error> {
    let user = std::str::from_utf8(user)
        .ok()
        .and_then(|u| tokens::check_subject(u).ok())
        .ok_or_else(|| Error::Unauthorized("the proxy's user header does not name a valid subject".into()))?;
    Ok(Principal {
        subject: user,
        via: Via::Proxy,
        token_id: None,
        datasets: datasets.clone(),
        admin: false,
        expires_at: None,
    })
}
