//! The fault codes of the XML-RPC interface and the one place where API errors become faults.
//!
//! 100 and 200 are the seed's; the others are shoal's own. Python's `SimpleXMLRPCServer`
//! answers 1 for a call it cannot dispatch, and shoal does the same for malformed calls.

use shoal_xmlrpc::Fault;

use crate::api::ApiError;

/// A malformed call, an unknown method, or wrong parameters (as Python's server answers).
pub const BAD_CALL: i32 = 1;
/// The seed's UNHANDLED: nothing in the network has the file.
pub const NOT_FOUND: i32 = 100;
/// The seed's ACCESS_DENIED: a wrong secret or a name outside the share.
pub const ACCESS_DENIED: i32 = 200;
/// The content is over the XML-RPC size limit; the message names the HTTP path to use.
pub const TOO_LARGE: i32 = 300;
/// The name exists in the share already; nothing was overwritten.
pub const EXISTS: i32 = 409;
/// The download failed.
pub const DOWNLOAD_FAILED: i32 = 500;
/// Something failed inside the node.
pub const INTERNAL: i32 = 501;

/// The fault an API error is answered with.
pub fn fault_of(error: &ApiError) -> Fault {
    let code = match error {
        ApiError::NotFound(_) | ApiError::Unresolved(_) => NOT_FOUND,
        ApiError::AccessDenied => ACCESS_DENIED,
        ApiError::TooLarge { .. } => TOO_LARGE,
        ApiError::Exists(_) => EXISTS,
        ApiError::BadRequest(_) => BAD_CALL,
        ApiError::Download { .. } => DOWNLOAD_FAILED,
        ApiError::Internal(_) => INTERNAL,
    };
    let message = match error {
        // The seed's wording, which its clients print.
        ApiError::NotFound(_) => "Could not handle the query".to_string(),
        ApiError::AccessDenied => "Access denied".to_string(),
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
        ApiError::Exists(_) => StatusCode::CONFLICT,
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::Download { .. } => StatusCode::BAD_GATEWAY,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
