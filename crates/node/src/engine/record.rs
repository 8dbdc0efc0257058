//! Resume records: what a download is and which of its pieces are verified and written, kept in
//! the state store (table `downloads`, keyed by the target path) so that a download survives
//! SIGKILL, a power cut or Ctrl-C.
//!
//! A record is committed with full durability at most every `commit_interval`; a piece counts
//! as done in a record only after its bytes were written to the partial file. After a power cut
//! the partial file may hold less than the record says, so a resumed download with piece hashes
//! checks every piece the record calls done before trusting it.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const DOWNLOADS: TableDefinition<&str, &str> = TableDefinition::new("downloads");

/// One unfinished download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub target: String,
    pub name: String,
    pub id: Option<String>,
    pub size: u64,
    pub piece_size: u64,
    pub peers: Vec<String>,
    pub mirrors: Vec<String>,
    /// The content id the whole file must have when no piece hashes are known (`--hash`).
    pub expect: Option<String>,
    pub force: bool,
    /// The download belongs to a node (it resumes it on start), not to a `shoal get` command.
    #[serde(default)]
    pub by_node: bool,
    /// Done pieces as a bit set, hex encoded.
    pub done: String,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the download store, {step}: {reason}")]
pub struct RecordError {
    step: &'static str,
    reason: String,
}

fn err(step: &'static str) -> impl Fn(&dyn std::fmt::Display) -> RecordError {
    move |e| RecordError {
        step,
        reason: e.to_string(),
    }
}

pub fn encode_done(done: &[bool]) -> String {
    let mut bytes = vec![0u8; done.len().div_ceil(8)];
    for (i, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        bytes[i / 8] |= 1 << (i % 8);
    }
    hex::encode(bytes)
}

pub fn decode_done(hex_bits: &str, count: u64) -> Vec<bool> {
    let bytes = hex::decode(hex_bits).unwrap_or_default();
    (0..count as usize)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

/// The downloads table of a state store.
#[derive(Clone)]
pub struct Records {
    db: Arc<redb::Database>,
}

impl Records {
    pub fn new(db: Arc<redb::Database>) -> Result<Self, RecordError> {
        let txn = db.begin_write().map_err(|e| err("begin")(&e))?;
        txn.open_table(DOWNLOADS).map_err(|e| err("open table")(&e))?;
        txn.commit().map_err(|e| err("commit")(&e))?;
        Ok(Records { db })
    }

    pub fn get(&self, target: &Path) -> Result<Option<Record>, RecordError> {
        let key = target.to_string_lossy();
        let txn = self.db.begin_read().map_err(|e| err("begin read")(&e))?;
        let table = txn.open_table(DOWNLOADS).map_err(|e| err("open table")(&e))?;
        let Some(value) = table.get(key.as_ref()).map_err(|e| err("read")(&e))? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(value.value()).ok())
    }

    pub fn all(&self) -> Result<Vec<Record>, RecordError> {
        let txn = self.db.begin_read().map_err(|e| err("begin read")(&e))?;
        let table = txn.open_table(DOWNLOADS).map_err(|e| err("open table")(&e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| err("iterate")(&e))? {
            let (_, value) = row.map_err(|e| err("read")(&e))?;
            if let Ok(record) = serde_json::from_str(value.value()) {
                out.push(record);
            }
        }
        Ok(out)
    }

    pub fn put(&self, record: &Record) -> Result<(), RecordError> {
        let json = serde_json::to_string(record).map_err(|e| err("encode")(&e))?;
        let txn = self.db.begin_write().map_err(|e| err("begin write")(&e))?;
        {
            let mut table = txn.open_table(DOWNLOADS).map_err(|e| err("open table")(&e))?;
            table.insert(record.target.as_str(), json.as_str()).map_err(|e| err("write")(&e))?;
        }
        txn.commit().map_err(|e| err("commit")(&e))
    }

    pub fn remove(&self, target: &Path) -> Result<(), RecordError> {
        let key = target.to_string_lossy();
        let txn = self.db.begin_write().map_err(|e| err("begin write")(&e))?;
        {
            let mut table = txn.open_table(DOWNLOADS).map_err(|e| err("open table")(&e))?;
            table.remove(key.as_ref()).map_err(|e| err("remove")(&e))?;
        }
        txn.commit().map_err(|e| err("commit")(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_bits_round_trip() {
        let done = vec![true, false, true, true, false, false, false, false, true];
        assert_eq!(decode_done(&encode_done(&done), 9), done);
        assert_eq!(decode_done("zz", 3), vec![false; 3], "garbage decodes as nothing done");
    }
}
