//! The shoal node: a peer in a file-sharing network that speaks the seed's XML-RPC protocol
//! and shoal's extensions, serves file data over HTTP, and downloads into its share.
//!
//! Map of the modules (each states its invariant at its top):
//! - [`node`]: start and stop; owns the cancellation token and the task tracker.
//! - [`api`]: the one facade every request goes through (XML-RPC, HTTP, CLI).
//! - [`http`]: the server; the only place that knows HTTP on the serving side.
//! - [`client`]: every outbound call, each with a timeout and a size cap.
//! - [`peers`], [`peer_url`]: the peer table and URL spellings.
//! - [`search`]: query ids, the seen-query memory, patterns.
//! - [`engine`]: the multi-source download engine (pieces, verification, resume, retries).
//! - [`downloads`]: the node's background downloads, listed, paused, resumed after restarts.
//! - [`download`]: placing downloaded files without ever overwriting; files from seed nodes.
//! - [`faults`]: fault codes and the mapping of API errors to faults and statuses.
//! - [`tasks`]: background work (rescans, introductions, peer exchange).

pub mod api;
pub mod client;
pub mod download;
pub mod downloads;
pub mod engine;
pub mod faults;
pub mod http;
pub mod node;
pub mod options;
pub mod peer_url;
pub mod peers;
pub mod search;
pub mod tasks;

pub use api::{Api, ApiError, Hit, Match};
pub use node::Node;
pub use options::NodeOptions;
