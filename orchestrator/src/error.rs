//! The service's domain errors: what went wrong, in words, with no HTTP in sight.
//!
//! Service functions (runs, datasets, chat) return these; `crate::api` turns each
//! into a status code and `{"error": {"type", "message"}}` in one place. Queries that
//! run and fail are not errors here: they are runs, with a status and an error type.
//!
//! A leaf: it uses nothing of this crate (each lower layer converts its own errors
//! into these, e.g. `StoreError` in `crate::store`).

/// Why a request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a missing field, a bad limit, an empty message.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no dataset {id:?}; datasets: {}", known.join(", "))]
    UnknownDataset { id: String, known: Vec<String> },
    #[error("no run {0:?}")]
    RunNotFound(String),
    #[error("no thread {0:?}")]
    ThreadNotFound(String),
    #[error("no chat turn {0:?}")]
    TurnNotFound(String),
    #[error("no token {0:?}")]
    TokenNotFound(String),
    /// No credentials where they are needed, or credentials that are not valid:
    /// malformed, unknown, revoked, expired, badly signed.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this (a non-admin on `/admin`).
    #[error("{0}")]
    Forbidden(String),
    /// `/admin` of a service without auth (single-user mode).
    #[error("{0}")]
    AuthNotConfigured(String),
    /// The identity provider cannot be reached to check a token.
    #[error("{0}")]
    AuthUnavailable(String),
    /// A thread is bound to the dataset it started with.
    #[error("thread {thread_id:?} is about dataset {thread_dataset:?}, not {requested:?}; start a new thread")]
    ThreadDatasetConflict { thread_id: String, thread_dataset: String, requested: String },
    /// An upload that cannot be read as multipart, names no id or file, or names
    /// them badly.
    #[error("{0}")]
    InvalidUpload(String),
    /// An upload whose files the sandbox could not read or type.
    #[error("{0}")]
    UploadInvalid(String),
    /// An upload larger than UPLOAD_MAX_BYTES.
    #[error("{0}")]
    UploadTooLarge(String),
    /// An upload past its owner's UPLOAD_QUOTA_BYTES.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A dataset id that is taken (by a curated dataset, an upload, or an upload
    /// under way).
    #[error("{0}")]
    DatasetExists(String),
    /// Deleting a curated dataset.
    #[error("{0}")]
    CuratedDataset(String),
    /// Uploads cannot be run where runs execute (k8s without K8S_UPLOADS_PVC).
    #[error("{0}")]
    UploadsUnavailable(String),
    /// Every run slot is busy.
    #[error("{0}")]
    CapacityExceeded(String),
    /// One client has as many runs waiting or running as MAX_RUNS_PER_CLIENT allows.
    #[error("{0}")]
    ClientLimit(String),
    /// The sandbox cannot start runs yet (module loading) or at all.
    #[error("{0}")]
    SandboxNotReady(String),
    #[error("the run store is unavailable: {0}")]
    StoreUnavailable(String),
    /// `/chat` without a model.
    #[error("{0}")]
    LlmNotConfigured(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The `type` the error carries on the wire.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::UnknownDataset { .. } => "UNKNOWN_DATASET",
            Error::RunNotFound(_) => "RUN_NOT_FOUND",
            Error::ThreadNotFound(_) => "THREAD_NOT_FOUND",
            Error::TurnNotFound(_) => "TURN_NOT_FOUND",
            Error::TokenNotFound(_) => "TOKEN_NOT_FOUND",
            Error::Unauthorized(_) => "UNAUTHORIZED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::AuthNotConfigured(_) => "AUTH_NOT_CONFIGURED",
            Error::AuthUnavailable(_) => "AUTH_UNAVAILABLE",
            Error::ThreadDatasetConflict { .. } => "THREAD_DATASET_CONFLICT",
            Error::InvalidUpload(_) => "INVALID_UPLOAD",
            Error::UploadInvalid(_) => "UPLOAD_INVALID",
            Error::UploadTooLarge(_) => "UPLOAD_TOO_LARGE",
            Error::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            Error::DatasetExists(_) => "DATASET_EXISTS",
            Error::CuratedDataset(_) => "CURATED_DATASET",
            Error::UploadsUnavailable(_) => "UPLOADS_UNAVAILABLE",
            Error::CapacityExceeded(_) => "CAPACITY_EXCEEDED",
            Error::ClientLimit(_) => "CLIENT_LIMIT",
            Error::SandboxNotReady(_) => "SANDBOX_NOT_READY",
            Error::StoreUnavailable(_) => "STORE_UNAVAILABLE",
            Error::LlmNotConfigured(_) => "LLM_NOT_CONFIGURED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }
}

/// An error with its causes, as one line ("error sending request: client error
/// (Connect): tcp connect error: Connection refused"): many libraries' own message
/// stops at the first. A cause already in the text is not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
