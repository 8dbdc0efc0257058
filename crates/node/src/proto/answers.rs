//! The answers' types by their former paths. Each answer now lives beside its call, in
//! [`super::calls`] (one file per method, both directions); these re-exports keep the paths
//! that code outside the protocol still names.

pub use super::calls::{DownloadRow, FolderEntry, FolderPage, LocateAnswer, PeerRow, SearchMatch, SourceRow, peers_answer, search_answer};
