//! Auth: who is calling. Turns a request's credentials into a
//! [`Principal`](crate::access::Principal) (what that principal may see is
//! [`crate::access`]'s business), and keeps the service's own tokens.
//!
//! - No ADMIN_TOKEN, ADMIN_TOKEN_FILE, OIDC_ISSUER or TRUSTED_PROXY_HEADER: single-user
//!   mode. Every request is the local user, and per-client fairness keys on
//!   `x-client-id` or the address, as before there was auth.
//! - Otherwise, in this order: a bearer token (the admin token, a minted `csa_…`
//!   token, or an issuer's JWT); else the user header of a trusted proxy; else
//!   anonymous (AUTH_ANONYMOUS=run) or 401 (deny). Credentials that are present and
//!   bad — garbled, too long, unknown, revoked, expired, badly signed — are a 401,
//!   never a quiet fall back to anonymous.
//!
//! Secrets never reach a log line, an error message or a record: errors say what
//! kind of credential failed and why, and records keep a token's id.
//!
//! May use: [`crate::access`], the store (tokens), the configuration, errors.
//! Knows nothing of HTTP: the edge hands it the header values ([`Credentials`]).

pub mod oidc;
pub mod proxy;
pub mod service;
pub mod tokens;

pub use self::service::{Auth, Caller, Credentials, MAX_AUTHORIZATION_BYTES};
