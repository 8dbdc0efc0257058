//! The one place where API errors become XML-RPC faults and HTTP statuses. Messages never carry
//! a path, a URL or a peer's error text to a caller who is not the owner: internal causes are
//! logged and answered generically.

use shoal_xmlrpc::Fault;

use crate::proto::faults::*;
use crate::service::ApiError;

/// The fault an API error is answered with.
pub fn fault_of(error: &ApiError) -> Fault {
    let code = match error {
        ApiError::NotFound(_) | ApiError::Unresolved(_) => NOT_FOUND,
        ApiError::AccessDenied => ACCESS_DENIED,
        ApiError::TooLarge { .. } => TOO_LARGE,
        ApiError::Exists(_) => EXISTS,
        ApiError::Ambiguous { .. } => AMBIGUOUS,
        ApiError::OutputRefused => OUTPUT_REFUSED,
        ApiError::BadRequest(_) => BAD_CALL,
        ApiError::Download { .. } => DOWNLOAD_FAILED,
        ApiError::Internal(_) => INTERNAL,
        ApiError::Busy => BUSY,
    };
    let message = match error {
        // The seed's wording, which its clients print.
        ApiError::NotFound(_) => "Could not handle the query".to_string(),
        ApiError::AccessDenied => "Access denied".to_string(),
        // What failed inside is the owner's business: it is logged, not told to callers.
        ApiError::Internal(detail) => {
            tracing::warn!(%detail, "internal error");
            "internal error".to_string()
        }
        other => other.to_string(),
    };
    Fault::new(code, message)
}

/// The HTTP status an API error is answered with on the data paths.
pub fn status_of(error: &ApiError) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match error {
        ApiError::NotFound(_) | ApiError::Unresolved(_) => StatusCode::NOT_FOUND,
        ApiError::AccessDenied => StatusCode::FORBIDDEN,
        ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::Exists(_) | ApiError::Ambiguous { .. } => StatusCode::CONFLICT,
        ApiError::BadRequest(_) | ApiError::OutputRefused => StatusCode::BAD_REQUEST,
        ApiError::Download { .. } => StatusCode::BAD_GATEWAY,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ApiError::Busy => StatusCode::TOO_MANY_REQUESTS,
    }
}
