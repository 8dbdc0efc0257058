//! The fault codes of the XML-RPC interface (the mapping from API errors is `http::faults`).
//!
//! 100 and 200 are the seed's; the others are shoal's own. Python's `SimpleXMLRPCServer`
//! answers 1 for a call it cannot dispatch, and shoal does the same for malformed calls.

/// A malformed call, an unknown method, or wrong parameters (as Python's server answers).
pub const BAD_CALL: i32 = 1;
/// The seed's UNHANDLED: nothing in the network has the file.
pub const NOT_FOUND: i32 = 100;
/// The seed's ACCESS_DENIED: a wrong secret or a name outside the share.
pub const ACCESS_DENIED: i32 = 200;
/// The content is over the XML-RPC size limit; the message names the HTTP path to use.
pub const TOO_LARGE: i32 = 300;
/// The name stands for several versions in the network (different content ids); nothing was
/// fetched, the message names them.
pub const AMBIGUOUS: i32 = 301;
/// A download's output is outside the places a node writes to (its share, its download
/// directory, its state directory's `incoming/`); nothing was started. `shoal get` beside a
/// running node then hands the download over into `incoming/` and moves the file itself.
pub const OUTPUT_REFUSED: i32 = 302;
/// The name exists in the share already; nothing was overwritten.
pub const EXISTS: i32 = 409;
/// The download failed.
pub const DOWNLOAD_FAILED: i32 = 500;
/// Something failed inside the node.
pub const INTERNAL: i32 = 501;
/// The caller made too many requests of this kind; it may try again later.
pub const BUSY: i32 = 429;
