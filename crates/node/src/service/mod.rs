//! The service layer: the [`Api`] facade every frontend calls, the views it gives them
//! (`views`), the node's background downloads, turning a user's targets into a download job
//! (one file: `resolve`; folders and globs: `folder`), and fetching from seed nodes.

pub mod api;
pub mod downloads;
pub mod folder;
pub mod resolve;
pub mod seed;
pub mod views;

pub use api::{Api, ApiError, FIND_MORE_EVERY, Inner};
pub use views::Viewer;
