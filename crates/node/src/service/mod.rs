//! The service layer: the [`Api`] facade every frontend calls (`api`, its errors in `error`,
//! the views it gives them in `views`), the one door to downloads (`fetch`) with its table of
//! downloads (`downloads`), turning a user's targets into jobs (one file: `resolve`; folders and
//! globs: `folder`), a download without a node for `shoal get` (`session`), and fetching from
//! seed nodes (`seed`). The binary reaches the node through this layer (and the node's start,
//! state and options), never below it (`tests/layers.rs`).

pub mod api;
pub mod downloads;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod remote;
pub mod resolve;
pub mod seed;
pub mod session;
pub mod slots;
pub mod swarm;
pub mod views;

/// What a search finds, as the facade answers it.
pub use crate::discovery::{Hit, Match};
pub use crate::engine::{Partial, Partials};
pub use api::{Api, ApiError, Inner};
pub use fetch::{FIND_MORE_EVERY, Fetcher};
pub use views::Viewer;
