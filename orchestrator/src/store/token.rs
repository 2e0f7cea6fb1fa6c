//! A token the service minted, as the store keeps it: who it is for, what it grants,
//! and the SHA-256 of its secret (never the secret). `crate::auth::tokens` makes and
//! checks them; the store only writes and reads them.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public part of the token (`csa_<token_id>_<secret>`), its name in lists.
    pub token_id: String,
    pub subject: String,
    /// Dataset ids, or `["*"]`.
    pub datasets: Vec<String>,
    pub admin: bool,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A token as `GET /admin/tokens` and `orchestrator tokens list` show it: everything
/// but the hash.
#[derive(Debug, Serialize)]
pub struct TokenView<'a> {
    pub token_id: &'a str,
    pub subject: &'a str,
    pub datasets: &'a [String],
    pub admin: bool,
    pub created_at: &'a str,
    pub expires_at: Option<&'a str>,
    pub revoked_at: Option<&'a str>,
    pub revoked: bool,
}

impl TokenRecord {
    pub fn view(&self) -> TokenView<'_> {
        TokenView {
            token_id: &self.token_id,
            subject: &self.subject,
            datasets: &self.datasets,
            admin: self.admin,
            created_at: &self.created_at,
            expires_at: self.expires_at.as_deref(),
            revoked_at: self.revoked_at.as_deref(),
            revoked: self.revoked_at.is_some(),
        }
    }
}
