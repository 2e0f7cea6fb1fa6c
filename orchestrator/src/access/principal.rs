//! [`Principal`] and [`Grants`]: who a request is from and what it may use, with the
//! rules of ownership and listing as methods (see the module above for the rules).

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::Serializer;

use crate::error::Error;

/// The subject of every request in single-user mode.
pub const LOCAL: &str = "local";
/// The subject of requests without a token, when anonymous use is allowed.
pub const ANONYMOUS: &str = "anonymous";
/// The subject of the bootstrap admin token (ADMIN_TOKEN).
pub const ADMIN: &str = "admin";

/// Subjects no token, identity provider or proxy may claim: they name the service's
/// own principals, and runs recorded under them.
pub const RESERVED_SUBJECTS: [&str; 3] = [LOCAL, ANONYMOUS, ADMIN];

/// Datasets a principal may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// Every dataset (`"*"`).
    All,
    /// These dataset ids.
    Only(BTreeSet<String>),
}

impl Grants {
    /// From a list of dataset ids, where `"*"` means all.
    pub fn from_list<S: AsRef<str>>(ids: &[S]) -> Grants {
        if ids.iter().any(|id| id.as_ref() == "*") {
            Grants::All
        } else {
            Grants::Only(ids.iter().map(|id| id.as_ref().to_string()).collect())
        }
    }

    pub fn allows(&self, dataset_id: &str) -> bool {
        match self {
            Grants::All => true,
            Grants::Only(ids) => ids.contains(dataset_id),
        }
    }

    /// As a list: `["*"]` or the ids.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Grants::All => vec!["*".to_string()],
            Grants::Only(ids) => ids.iter().cloned().collect(),
        }
    }
}

/// `"*"` or a list of ids.
impl Serialize for Grants {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Grants::All => serializer.serialize_str("*"),
            Grants::Only(ids) => ids.serialize(serializer),
        }
    }
}

/// How a principal was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Single-user mode: no auth is configured.
    Local,
    /// The bootstrap admin token (ADMIN_TOKEN or ADMIN_TOKEN_FILE).
    AdminToken,
    /// A token the service minted (`csa_…`).
    Token,
    /// A JWT of the OIDC issuer.
    Oidc,
    /// A user header set by a trusted authenticating proxy.
    Proxy,
    /// No credentials, where anonymous use is allowed.
    Anonymous,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The owner of what this principal makes: a token's subject, an OIDC `sub`, a
    /// proxy's user, or one of [`RESERVED_SUBJECTS`].
    pub subject: String,
    pub via: Via,
    /// The id of the token used (a minted token's id, or `admin`), if any.
    pub token_id: Option<String>,
    pub datasets: Grants,
    pub admin: bool,
    /// When the credentials stop being valid (a token's or a JWT's expiry).
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    /// The single user of a service without auth: every dataset, owns everything.
    pub fn local() -> Principal {
        Principal {
            subject: LOCAL.to_string(),
            via: Via::Local,
            token_id: None,
            datasets: Grants::All,
            admin: true,
            expires_at: None,
        }
    }

    /// A caller without credentials, allowed `datasets`.
    pub fn anonymous(datasets: Grants) -> Principal {
        Principal {
            subject: ANONYMOUS.to_string(),
            via: Via::Anonymous,
            token_id: None,
            datasets,
            admin: false,
            expires_at: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.via == Via::Anonymous
    }

    /// Whether this principal may query, describe or chat about `dataset_id`.
    pub fn may_use(&self, dataset_id: &str) -> bool {
        self.datasets.allows(dataset_id)
    }

    /// Whether this principal may see a record owned by `owner` (a run, a thread):
    /// its own, or anything for the admin and the local user. A record without an
    /// owner (made before auth existed) is the admin's to see.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        self.admin || self.via == Via::Local || owner == Some(self.subject.as_str())
    }

    /// Whose records a list shows: `None` for everyone's (the local user always; the
    /// admin when asking for `all`), else this subject's own.
    pub fn list_scope(&self, all: bool) -> Result<Option<String>, Error> {
        match (self.via, all, self.admin) {
            (Via::Local, _, _) | (_, true, true) => Ok(None),
            (_, true, false) => Err(Error::Forbidden("all=true lists everyone's records: it is for admins".into())),
            (_, false, _) => Ok(Some(self.subject.clone())),
        }
    }

    /// `Forbidden` unless this principal is an admin (the `/admin` routes).
    pub fn require_admin(&self) -> Result<(), Error> {
        if self.admin {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("{} is not an admin: the /admin routes need an admin token", self.subject)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            subject: "alice".into(),
            via: Via::Token,
            token_id: Some("t1".into()),
            datasets: Grants::from_list(&["support"]),
            admin: false,
            expires_at: None,
        }
    }

    #[test]
    fn grants_and_ownership() {
        let alice = alice();
        assert!(alice.may_use("support") && !alice.may_use("sales"));
        assert!(alice.may_see(Some("alice")) && !alice.may_see(Some("bob")) && !alice.may_see(None));
        assert_eq!(alice.list_scope(false), Ok(Some("alice".into())));
        assert!(matches!(alice.list_scope(true), Err(Error::Forbidden(_))));
        assert!(matches!(alice.require_admin(), Err(Error::Forbidden(_))));

        let anonymous = Principal::anonymous(Grants::All);
        assert!(anonymous.may_see(Some(ANONYMOUS)) && !anonymous.may_see(Some("alice")));

        let admin = Principal { admin: true, ..alice.clone() };
        assert!(admin.may_see(Some("bob")) && admin.may_see(None));
        assert_eq!(admin.list_scope(false), Ok(Some("alice".into())));
        assert_eq!(admin.list_scope(true), Ok(None));

        let local = Principal::local();
        assert_eq!(local.list_scope(false), Ok(None));
        assert!(local.may_see(None) && local.may_use("anything"));
        assert_eq!(serde_json::to_value(Grants::All).unwrap(), serde_json::json!("*"));
        assert_eq!(serde_json::to_value(&alice.datasets).unwrap(), serde_json::json!(["support"]));
    }
}
