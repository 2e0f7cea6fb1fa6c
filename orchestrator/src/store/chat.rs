//! A chat thread and its turns, as the store keeps them. The chat service
//! (`crate::chat`) builds them; the store only writes and reads them.

/// A chat thread.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Thread {
    pub thread_id: String,
    pub dataset_id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
    /// The subject it belongs to (`None`: made before identities were recorded).
    pub principal: Option<String>,
}

/// A chat turn: one user message and what the service answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub turn_id: String,
    pub thread_id: String,
    /// A run status, or `cancelled` (or `running` while it runs).
    pub status: String,
    pub user_message: String,
    pub assistant_message: Option<String>,
    /// The `/chat` body, once the turn ended.
    pub response: Option<serde_json::Value>,
    /// The exact messages sent to the model.
    pub context: Option<serde_json::Value>,
    pub created_at: String,
    pub finished_at: Option<String>,
}
