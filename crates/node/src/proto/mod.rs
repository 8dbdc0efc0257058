//! The wire protocol of a shoal node: one type per call and per answer, and the checks that
//! every field passes where it enters. No I/O happens here.
//!
//! **Participants.** A *node* shares a directory and answers XML-RPC on `POST /` (and `/RPC2`);
//! its *owner* holds the node's secret; *callers* are anyone who can reach the port; *peers*
//! are other nodes (shoal nodes, or the seed's Python nodes, which speak only `hello`, `query`
//! and `fetch`).
//!
//! **Goals.** The seed's three methods keep their signatures and faults (100 not found, 200
//! access denied), so seed nodes join a shoal network unchanged. shoal's own methods live under
//! `shoal.`: `shoal.locate` and `shoal.search` carry a query id, a TTL, the history and a time
//! budget so that a flood search sends at most one message per direction per link. Answers name
//! holders by their node URL and files by their BLAKE3 content id, so a downloader checks every
//! byte against the id and never has to believe the holder.
//!
//! **Non-goals.** No authentication of peers (anyone may answer; nothing an answer says is
//! believed until it is bound to a content id); no confidentiality (plain HTTP; a later
//! transport adds keys and encryption); no owner actions from other machines without the secret.
//!
//! **Limits.** Decoding is where limits are enforced ([`limits`]): a field over its bound
//! refuses the call (inbound) or drops the item (answers from peers), so no layer above sees an
//! unbounded string, list or number. Names pass the same check as local names
//! ([`shoal_index::check_name`]); holder URLs are reduced to a node's base URL ([`url::holder`]).
//!
//! **Listing a folder.** `shoal.list_folder(path, cursor)` lists every file under the shared
//! folder `path` (`""` or `"/"`: the whole share; a trailing `/` is optional), recursively, in
//! byte order of their names: `{files: [{path, size, id}], next}`. `path` of an entry is the
//! file's name in the share (relative to its root, as `/files/<name>` takes it), `id` its content
//! id. A page holds at most [`limits::MAX_LIST_ENTRIES`] entries and
//! [`limits::LIST_ANSWER_BYTES`] of XML; `next` is there when more may follow, and is the last
//! path given: the caller passes it back as `cursor`, and the next page starts after that name
//! (exclusive), so paging stays stable while files come and go (a file added behind the cursor
//! is missed, none is given twice). Public, like `list()`: it says what `shoal.search` would.
//! A listing is only a claim: each file is still fetched by its content id and checked, and a
//! path that fails the name check (`..`, absolute, hidden, control characters) is dropped.
//! Example: `shoal.list_folder("photos", "")` →
//! `{files: [{path: "photos/2024/a.jpg", size: 16384, id: "af13…"}, …], next: "photos/2024/z.jpg"}`.
//!
//! Calls and their answers, one file per method with both directions: [`calls`]. Fault codes:
//! [`faults`].

pub mod calls;
pub mod faults;
pub mod have;
pub mod ticket;
pub mod url;

/// The bounds of the protocol.
pub mod limits {
    /// The largest file size shoal considers (1 PiB): a larger claim is a lie.
    pub const MAX_SIZE: u64 = shoal_index::MAX_SIZE;
    /// Longest URL accepted in any field.
    pub const MAX_URL_BYTES: usize = 512;
    /// Most entries in a history list (the seed stops at 6).
    pub const MAX_HISTORY: usize = 16;
    /// Longest query id.
    pub const MAX_QUERY_ID: usize = 128;
    /// Longest search pattern.
    pub const MAX_PATTERN: usize = 1024;
    /// Most matches read from one search answer.
    pub const MAX_MATCHES: usize = 256;
    /// Most holder URLs kept per match.
    pub const MAX_HOLDERS_PER_MATCH: usize = 16;
    /// Most holder URLs kept from one whole answer.
    pub const MAX_HOLDERS_PER_ANSWER: usize = 512;
    /// Most matches a merged search result holds (what one node answers, whatever its peers said).
    pub const MAX_MERGED: usize = 1024;
    /// Most holders a merged match keeps.
    pub const MAX_MERGED_HOLDERS: usize = 2 * MAX_HOLDERS_PER_MATCH;
    /// Most peer URLs read from one peer-exchange answer.
    pub const MAX_PEERS_PER_ANSWER: usize = 256;
    /// Most targets in one download request.
    pub const MAX_TARGETS: usize = 64;
    /// Largest search answer read from a peer (256 matches of 16 holders fit well inside).
    pub const SEARCH_ANSWER_BYTES: usize = 1 << 20;
    /// Largest `shoal.locate` answer without content.
    pub const LOCATE_ANSWER_BYTES: usize = 16 << 10;
    /// Largest peer-exchange answer.
    pub const PEERS_ANSWER_BYTES: usize = 256 << 10;
    /// Largest answer to `hello` or a probe.
    pub const SMALL_ANSWER_BYTES: usize = 16 << 10;
    /// Most entries in one page of `shoal.list_folder`.
    pub const MAX_LIST_ENTRIES: usize = 1000;
    /// Largest `shoal.list_folder` answer: a node fills a page up to this (estimated
    /// conservatively), and a peer's answer is read up to it.
    pub const LIST_ANSWER_BYTES: usize = 1 << 20;
    /// Most members named in one `shoal.swarm` answer.
    pub const MAX_SWARM_ANSWER: usize = 32;
    /// Largest `shoal.swarm` answer read from a peer.
    pub const SWARM_ANSWER_BYTES: usize = 64 << 10;
}
