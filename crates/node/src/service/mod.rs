//! The service layer: the [`Api`] facade every frontend calls, the node's background downloads,
//! turning a user's targets into a download job (one file: `resolve`; folders and globs:
//! `folder`), and fetching from seed nodes.

pub mod api;
pub mod downloads;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod resolve;
pub mod seed;
pub mod session;

pub use api::{Api, ApiError, Inner};
pub use fetch::{FIND_MORE_EVERY, Fetcher};
