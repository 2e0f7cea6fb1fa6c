//! The HTTP surface: the router ([`router::router`], assembled in one place) and
//! thin handlers, one file per resource. Each handler extracts, calls a method of
//! a service ([`crate::runs::Runs`], [`crate::chat::Chat`]) or reads the
//! catalogue, and serialises. Domain errors become `{"error": {"type", "message"}}`
//! with a status code in [`error`], in one place.
//!
//! Who the caller is comes from [`crate::auth`] through one extractor
//! ([`extract::Authenticated`]); what they may see is decided by the services
//! ([`crate::access`] holds the rules).
//!
//! May use: the services, the datasets, the page and [`crate::state::AppState`];
//! nothing below imports this module.

pub mod admin;
pub mod chat;
pub mod datasets;
pub mod error;
pub mod extract;
pub mod health;
pub mod router;
pub mod runs;

pub use self::error::ApiError;
pub use self::extract::{Authenticated, ClientAddr, ConnectionScope, PROBE_PATHS};
pub use self::router::{MAX_REQUEST_ID_CHARS, router};
