//! The sources of a download: what kind each is, how users see it, and what its connections
//! share while the download runs.

use std::fmt;

/// What a source is: a shoal node serving `/content/<id>` (checked piece by piece against the
/// content id) or a plain HTTP mirror (the owner's word; checked whole at the end unless a
/// shoal node gave the verification data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Peer,
    Mirror,
}

impl SourceKind {
    /// The kind as it is written on the wire (XML-RPC, JSON, `--json`) and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Peer => "peer",
            SourceKind::Mirror => "mirror",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::SourceKind;

    #[test]
    fn kinds_are_named_as_on_the_wire() {
        assert_eq!(SourceKind::Peer.name(), "peer");
        assert_eq!(SourceKind::Mirror.name(), "mirror");
        assert_eq!(SourceKind::Mirror.to_string(), "mirror");
    }
}
