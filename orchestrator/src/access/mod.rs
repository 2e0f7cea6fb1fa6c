//! Access: what a caller may see and do. A [`Principal`] is who a request is from
//! (`crate::auth` finds out; this module only reads it): a subject, how it was
//! recognised, the datasets granted to it, and whether it is an admin.
//!
//! The rules, in one place:
//! - a dataset is usable when it is granted ([`Principal::may_use`]); one that is
//!   not is answered as if it did not exist;
//! - a run, a chat thread (with its turns) and a CSV export belong to the subject
//!   that made them: another subject is told they do not exist
//!   ([`Principal::may_see`]); the admin sees everything;
//! - lists show one's own records; the admin may ask for everyone's
//!   ([`Principal::list_scope`]);
//! - in single-user mode (no auth configured) every request is the [`LOCAL`] user,
//!   who owns everything.
//!
//! A leaf: uses only [`crate::error`].

pub mod principal;

pub use self::principal::{ADMIN, ANONYMOUS, Grants, LOCAL, Principal, RESERVED_SUBJECTS, Via};
