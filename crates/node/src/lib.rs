//! The shoal node: a peer in a file-sharing network that speaks the seed's XML-RPC protocol
//! and shoal's extensions, serves file data over HTTP, and downloads into its share.
//!
//! The modules are layers; each imports only the ones listed before it (ARCHITECTURE.md states
//! the rule and the trust boundaries):
//! - [`proto`]: wire types of every call and answer, with the checks done where they enter;
//!   no I/O.
//! - [`net`]: every outbound request: address policy, redirects, timeouts, caps, budgets.
//! - [`engine`]: the multi-source download engine; knows sources, not where they come from.
//! - [`discovery`]: the flood search, holders of an id, peer exchange, the peer table.
//! - [`service`]: the [`Api`] facade, the node's downloads, target resolution, seed fetches.
//! - [`http`]: the frontends: the server, XML-RPC with one method table, file data, the JSON API,
//!   the web UI and `/metrics`.
//! - [`options`], [`state`]: what a node can be told; the files of its state directory.
//! - [`node`], [`tasks`]: wiring, start and stop, background work.

pub mod proto;

pub mod net;

pub mod engine;

pub mod discovery;

pub mod service;

pub mod http;

pub mod node;
pub mod options;
pub mod state;
pub mod tasks;

pub use discovery::{Hit, Match};
pub use node::Node;
pub use options::NodeOptions;
pub use service::{Api, ApiError};
