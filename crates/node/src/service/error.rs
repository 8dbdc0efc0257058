//! What went wrong in a call on the [`super::Api`]: one enum, each variant mapped to one fault
//! code and HTTP status by the HTTP layer (`http::faults`). Texts meant for strangers are
//! generic: what failed inside, and where, is logged.

use shoal_index::NameError;

/// What went wrong in an API call. Each variant maps to one fault code and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} was not found")]
    NotFound(String),
    /// Not found, with the reason in full (e.g. what a download's targets resolved to).
    #[error("{0}")]
    Unresolved(String),
    #[error("access denied")]
    AccessDenied,
    #[error("{name} is {size} bytes, over the {limit}-byte XML-RPC limit; GET {path} instead")]
    TooLarge { name: String, size: u64, limit: u64, path: String },
    #[error("{0} already exists in the share; nothing was overwritten")]
    Exists(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A download's output lies outside the share, the download directory and the state
    /// directory's `incoming/` (a hand-over from `shoal get` then lands in `incoming/`).
    #[error(
        "bad request: a node downloads only into its share, its download directory (--download-dir) or its state directory's incoming/"
    )]
    OutputRefused,
    /// The peers disagree on what a name is: nothing was fetched.
    #[error("{name}: {detail}; nothing was fetched")]
    Ambiguous { name: String, detail: String },
    #[error("download of {name} failed: {reason}")]
    Download { name: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("too many requests; try again later")]
    Busy,
}

impl From<NameError> for ApiError {
    fn from(_: NameError) -> Self {
        // One answer for every refused name, so that nothing outside the share can be probed.
        ApiError::AccessDenied
    }
}

impl From<crate::net::CallError> for ApiError {
    fn from(error: crate::net::CallError) -> Self {
        ApiError::Internal(error.to_string())
    }
}
