//! The embedded index: which names the share holds, under which content id, with which outboard.
//!
//! Three redb tables, all prefixed `index_` so they can live in the node's one database file:
//!
//! - `index_files`: name → [`FileEntry`] in a small versioned binary encoding;
//! - `index_ids`: content id → names (a multimap, since the same content may sit under two names);
//! - `index_outboards`: content id → pre-order bao outboard, kept while any name has that id.
//!
//! Every change to a name updates the three tables in one write transaction, so they never
//! disagree after a crash.

use std::fs::Metadata;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use redb::{
    MultimapTable, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};

use crate::hash::ContentId;

const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("index_files");
const IDS: MultimapTableDefinition<&[u8; 32], &str> = MultimapTableDefinition::new("index_ids");
const OUTBOARDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("index_outboards");

/// Version byte of the [`FileEntry`] encoding.
const ENTRY_VERSION: u8 = 1;
/// Length of an encoded [`FileEntry`]: version, size, mtime, inode, id.
const ENTRY_LEN: usize = 1 + 8 + 8 + 8 + 32;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("index store: {step}: {source}")]
    Db {
        step: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("index store: corrupt record in {table} for {key}: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: &'static str,
    },
}

/// Wraps any redb error with the step that failed.
fn db<E: Into<redb::Error>>(step: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db { step, source: e.into() }
}

/// What the index knows about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 for earlier times).
    pub mtime_ns: u64,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
    pub id: ContentId,
}

impl FileEntry {
    /// An entry for content `id` described by the file's current metadata.
    pub fn from_metadata(meta: &Metadata, id: ContentId) -> Self {
        FileEntry {
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            inode: inode(meta),
            id,
        }
    }

    /// True when `meta` has the size, modification time and inode this entry was made from, so
    /// the file can be trusted to still hold content `id` without hashing it again.
    pub fn matches(&self, meta: &Metadata) -> bool {
        self.size == meta.len() && self.mtime_ns == mtime_ns(meta) && self.inode == inode(meta)
    }

    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0] = ENTRY_VERSION;
        out[1..9].copy_from_slice(&self.size.to_le_bytes());
        out[9..17].copy_from_slice(&self.mtime_ns.to_le_bytes());
        out[17..25].copy_from_slice(&self.inode.to_le_bytes());
        out[25..57].copy_from_slice(&self.id.0);
        out
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason| StoreError::Corrupt {
            table: "index_files",
            key: name.to_owned(),
            reason,
        };
        let bytes: &[u8; ENTRY_LEN] = bytes.try_into().map_err(|_| corrupt("entry has the wrong length"))?;
        if bytes[0] != ENTRY_VERSION {
            return Err(corrupt("unknown entry version"));
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[25..57]);
        Ok(FileEntry {
            size: u64_at(1),
            mtime_ns: u64_at(9),
            inode: u64_at(17),
            id: ContentId(id),
        })
    }
}

fn mtime_ns(meta: &Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(unix)]
fn inode(meta: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &Metadata) -> u64 {
    0
}

/// One file to record in a batch: its name, entry and outboard.
pub(crate) type PutItem = (String, FileEntry, Vec<u8>);

/// The three tables, opened inside one write transaction.
struct WriteTables<'txn> {
    files: Table<'txn, &'static str, &'static [u8]>,
    ids: MultimapTable<'txn, &'static [u8; 32], &'static str>,
    outboards: Table<'txn, &'static [u8; 32], &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            files: txn.open_table(FILES).map_err(db("open table index_files"))?,
            ids: txn.open_multimap_table(IDS).map_err(db("open table index_ids"))?,
            outboards: txn.open_table(OUTBOARDS).map_err(db("open table index_outboards"))?,
        })
    }

    fn put(&mut self, name: &str, entry: &FileEntry, outboard: &[u8]) -> Result<(), StoreError> {
        let old = self
            .files
            .insert(name, entry.encode().as_slice())
            .map_err(db("insert into index_files"))?
            .map(|old| FileEntry::decode(name, old.value()))
            .transpose()?;
        if let Some(old) = old
            && old.id != entry.id
        {
            self.unlink(name, &old.id)?;
        }
        self.ids.insert(&entry.id.0, name).map_err(db("insert into index_ids"))?;
        let present = self.outboards.get(&entry.id.0).map_err(db("read index_outboards"))?.is_some();
        if !present {
            self.outboards
                .insert(&entry.id.0, outboard)
                .map_err(db("insert into index_outboards"))?;
        }
        Ok(())
    }

    /// Removes `name`; returns its entry if it was there.
    fn remove(&mut self, name: &str) -> Result<Option<FileEntry>, StoreError> {
        let old = self
            .files
            .remove(name)
            .map_err(db("remove from index_files"))?
            .map(|old| FileEntry::decode(name, old.value()))
            .transpose()?;
        if let Some(old) = &old {
            self.unlink(name, &old.id)?;
        }
        Ok(old)
    }

    /// Drops the mapping from `id` to `name`, and the outboard when no name is left.
    fn unlink(&mut self, name: &str, id: &ContentId) -> Result<(), StoreError> {
        self.ids.remove(&id.0, name).map_err(db("remove from index_ids"))?;
        let orphan = self.ids.get(&id.0).map_err(db("read index_ids"))?.is_empty();
        if orphan {
            self.outboards.remove(&id.0).map_err(db("remove from index_outboards"))?;
        }
        Ok(())
    }
}

/// The index tables in the node's redb database.
#[derive(Clone)]
pub struct IndexStore {
    db: Arc<redb::Database>,
}

impl std::fmt::Debug for IndexStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexStore").finish_non_exhaustive()
    }
}

impl IndexStore {
    /// Opens the index in `db`, creating its tables if they are missing.
    pub fn new(db: Arc<redb::Database>) -> Result<Self, StoreError> {
        let store = IndexStore { db };
        store.write(|_| Ok(()))?;
        Ok(store)
    }

    /// The entry recorded for `name`.
    pub fn get(&self, name: &str) -> Result<Option<FileEntry>, StoreError> {
        let txn = self.read_txn()?;
        let files = txn.open_table(FILES).map_err(db("open table index_files"))?;
        let value = files.get(name).map_err(db("read index_files"))?;
        value.map(|v| FileEntry::decode(name, v.value())).transpose()
    }

    /// A name holding content `id` (the first in name order) and its entry.
    pub fn by_id(&self, id: &ContentId) -> Result<Option<(String, FileEntry)>, StoreError> {
        let txn = self.read_txn()?;
        let ids = txn.open_multimap_table(IDS).map_err(db("open table index_ids"))?;
        let name = match ids.get(&id.0).map_err(db("read index_ids"))?.next() {
            Some(name) => name.map_err(db("read index_ids"))?.value().to_owned(),
            None => return Ok(None),
        };
        let files = txn.open_table(FILES).map_err(db("open table index_files"))?;
        let value = files
            .get(name.as_str())
            .map_err(db("read index_files"))?
            .ok_or_else(|| StoreError::Corrupt {
                table: "index_ids",
                key: id.to_string(),
                reason: "maps to a name missing from index_files",
            })?;
        let entry = FileEntry::decode(&name, value.value())?;
        drop(value);
        Ok(Some((name, entry)))
    }

    /// The outboard of content `id`, if any name holds it.
    pub fn outboard(&self, id: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read_txn()?;
        let outboards = txn.open_table(OUTBOARDS).map_err(db("open table index_outboards"))?;
        let value = outboards.get(&id.0).map_err(db("read index_outboards"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every entry, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, FileEntry)>, StoreError> {
        let txn = self.read_txn()?;
        let files = txn.open_table(FILES).map_err(db("open table index_files"))?;
        let mut out = Vec::new();
        for item in files.iter().map_err(db("iterate index_files"))? {
            let (key, value) = item.map_err(db("iterate index_files"))?;
            let name = key.value().to_owned();
            let entry = FileEntry::decode(&name, value.value())?;
            out.push((name, entry));
        }
        Ok(out)
    }

    /// The entry for `name` itself and every entry under directory `name` (names starting with
    /// `name/`), sorted by name. An empty `name` is the root: everything.
    pub(crate) fn list_within(&self, name: &str) -> Result<Vec<(String, FileEntry)>, StoreError> {
        if name.is_empty() {
            return self.list();
        }
        let txn = self.read_txn()?;
        let files = txn.open_table(FILES).map_err(db("open table index_files"))?;
        let mut out = Vec::new();
        if let Some(value) = files.get(name).map_err(db("read index_files"))? {
            out.push((name.to_owned(), FileEntry::decode(name, value.value())?));
        }
        // Every name under `name/` sorts between `name/` and `name0` ('0' follows '/').
        let (start, end) = (format!("{name}/"), format!("{name}0"));
        for item in files.range(start.as_str()..end.as_str()).map_err(db("range over index_files"))? {
            let (key, value) = item.map_err(db("range over index_files"))?;
            let name = key.value().to_owned();
            let entry = FileEntry::decode(&name, value.value())?;
            out.push((name, entry));
        }
        Ok(out)
    }

    /// At most `limit` entries under directory `dir` (names starting with `dir/`; an empty `dir`
    /// is the root: everything) whose names sort after `after` (exclusive; empty: from the
    /// start), in name order. One range read, so a page costs what it returns.
    pub fn list_page(&self, dir: &str, after: &str, limit: usize) -> Result<Vec<(String, FileEntry)>, StoreError> {
        use std::ops::Bound;
        let txn = self.read_txn()?;
        let files = txn.open_table(FILES).map_err(db("open table index_files"))?;
        let (start, end) = if dir.is_empty() {
            (String::new(), None)
        } else {
            // Every name under `dir/` sorts between `dir/` and `dir0` ('0' follows '/').
            (format!("{dir}/"), Some(format!("{dir}0")))
        };
        let lower = if after.is_empty() || after < start.as_str() {
            Bound::Included(start.as_str())
        } else {
            Bound::Excluded(after)
        };
        let upper = match &end {
            // A cursor at or past the end: nothing is left (and the range would be reversed).
            Some(end) if after >= end.as_str() => return Ok(Vec::new()),
            Some(end) => Bound::Excluded(end.as_str()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in files.range::<&str>((lower, upper)).map_err(db("range over index_files"))? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(db("range over index_files"))?;
            let name = key.value().to_owned();
            let entry = FileEntry::decode(&name, value.value())?;
            out.push((name, entry));
        }
        Ok(out)
    }

    /// Records `name` as holding `entry`, with the outboard of its content.
    pub fn put(&self, name: &str, entry: &FileEntry, outboard: &[u8]) -> Result<(), StoreError> {
        self.write(|tables| tables.put(name, entry, outboard))
    }

    /// Forgets `name`; returns whether it was recorded. The outboard stays while another name
    /// holds the same content.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tables| Ok(tables.remove(name)?.is_some()))
    }

    /// Records several files in one transaction.
    pub(crate) fn put_many(&self, items: &[PutItem]) -> Result<(), StoreError> {
        self.write(|tables| {
            items
                .iter()
                .try_for_each(|(name, entry, outboard)| tables.put(name, entry, outboard))
        })
    }

    /// Removes each name whose entry is still exactly the one given (a compare-and-delete, so an
    /// entry recorded meanwhile by someone else survives). Returns how many were removed.
    pub(crate) fn remove_unchanged(&self, items: &[(String, FileEntry)]) -> Result<usize, StoreError> {
        self.write(|tables| {
            let mut removed = 0;
            for (name, expected) in items {
                let current = tables
                    .files
                    .get(name.as_str())
                    .map_err(db("read index_files"))?
                    .map(|v| FileEntry::decode(name, v.value()))
                    .transpose()?;
                if current.as_ref() == Some(expected) {
                    tables.remove(name)?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().map_err(db("open read transaction"))
    }

    /// Runs `f` over the tables in one write transaction and commits if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(db("open write transaction"))?;
        let out = {
            let mut tables = WriteTables::open(&txn)?;
            f(&mut tables)?
        };
        txn.commit().map_err(db("commit write transaction"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    fn store() -> (tempfile::TempDir, IndexStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let store = IndexStore::new(Arc::new(db)).unwrap();
        (dir, store)
    }

    fn entry(content: &[u8], inode: u64) -> (FileEntry, Vec<u8>) {
        let hashed = hash_bytes(content);
        let entry = FileEntry {
            size: hashed.size,
            mtime_ns: 1_700_000_000_123_456_789,
            inode,
            id: hashed.id,
        };
        (entry, hashed.outboard)
    }

    #[test]
    fn entry_encoding_round_trips_and_rejects_garbage() {
        let (e, _) = entry(b"hello", u64::MAX - 3);
        assert_eq!(FileEntry::decode("x", &e.encode()).unwrap(), e);
        let mut bad = e.encode();
        bad[0] = 9;
        let err = FileEntry::decode("some/name", &bad).unwrap_err();
        assert!(err.to_string().contains("some/name"), "{err}");
        assert!(FileEntry::decode("x", &bad[..10]).is_err());
    }

    #[test]
    fn put_get_list_remove() {
        let (_dir, store) = store();
        let big = vec![7u8; 100_000];
        let (a, a_out) = entry(&big, 1);
        let (b, b_out) = entry(b"b", 2);
        assert!(!a_out.is_empty());
        store.put("z/a.bin", &a, &a_out).unwrap();
        store.put("b.txt", &b, &b_out).unwrap();
        assert_eq!(store.get("z/a.bin").unwrap(), Some(a));
        assert_eq!(store.get("missing").unwrap(), None);
        assert_eq!(store.by_id(&a.id).unwrap(), Some(("z/a.bin".into(), a)));
        assert_eq!(store.outboard(&a.id).unwrap(), Some(a_out));
        let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b.txt", "z/a.bin"]);
        assert!(store.remove("z/a.bin").unwrap());
        assert!(!store.remove("z/a.bin").unwrap());
        assert_eq!(store.by_id(&a.id).unwrap(), None);
        assert_eq!(store.outboard(&a.id).unwrap(), None);
    }

    #[test]
    fn duplicates_share_one_outboard() {
        let (_dir, store) = store();
        let content = vec![3u8; 50_000];
        let (first, outboard) = entry(&content, 1);
        let second = FileEntry { inode: 2, ..first };
        store.put("one", &first, &outboard).unwrap();
        store.put("two", &second, &outboard).unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(store.remove("one").unwrap());
        assert_eq!(store.by_id(&first.id).unwrap(), Some(("two".into(), second)));
        assert_eq!(store.outboard(&first.id).unwrap(), Some(outboard));
        assert!(store.remove("two").unwrap());
        assert_eq!(store.outboard(&first.id).unwrap(), None);
    }

    #[test]
    fn replacing_content_drops_the_old_id() {
        let (_dir, store) = store();
        let (old, old_out) = entry(&[1u8; 40_000], 1);
        let (new, new_out) = entry(&[2u8; 40_000], 1);
        store.put("f", &old, &old_out).unwrap();
        store.put("f", &new, &new_out).unwrap();
        assert_eq!(store.by_id(&old.id).unwrap(), None);
        assert_eq!(store.outboard(&old.id).unwrap(), None);
        assert_eq!(store.by_id(&new.id).unwrap(), Some(("f".into(), new)));
        assert_eq!(store.outboard(&new.id).unwrap(), Some(new_out));
    }

    #[test]
    fn pages_of_a_directory_follow_the_cursor() {
        let (_dir, store) = store();
        let (e, out) = entry(b"x", 1);
        for name in ["a/x", "a/y/z", "a/yy", "a0", "ab/c", "b"] {
            store.put(name, &e, &out).unwrap();
        }
        let names = |dir: &str, after: &str, limit: usize| -> Vec<String> {
            store.list_page(dir, after, limit).unwrap().into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names("a", "", 10), ["a/x", "a/y/z", "a/yy"]);
        assert_eq!(names("a", "", 2), ["a/x", "a/y/z"]);
        assert_eq!(names("a", "a/y/z", 2), ["a/yy"], "the cursor is exclusive");
        assert_eq!(names("a", "a/yy", 2), Vec::<String>::new());
        assert_eq!(names("a", "0", 1), ["a/x"], "a cursor before the directory starts it");
        assert_eq!(names("", "a0", 10), ["ab/c", "b"]);
        assert!(names("a", "zzz", 10).is_empty(), "a cursor past the directory ends it");
    }

    #[test]
    fn list_within_takes_the_name_and_whole_components_below_it() {
        let (_dir, store) = store();
        let (e, out) = entry(b"x", 1);
        for name in ["a", "a!", "a/b", "a/c/d", "a0", "ab", "b"] {
            store.put(name, &e, &out).unwrap();
        }
        let names = |within: &str| -> Vec<String> { store.list_within(within).unwrap().into_iter().map(|(n, _)| n).collect() };
        assert_eq!(names("a"), ["a", "a/b", "a/c/d"]);
        assert_eq!(names("a/c"), ["a/c/d"]);
        assert_eq!(names("b"), ["b"]);
        assert!(names("c").is_empty());
        assert_eq!(names("").len(), 7);
    }

    #[test]
    fn remove_unchanged_spares_newer_entries() {
        let (_dir, store) = store();
        let (old, out) = entry(b"old", 1);
        let (newer, newer_out) = entry(b"newer", 1);
        store.put("kept", &old, &out).unwrap();
        store.put("gone", &old, &out).unwrap();
        store.put("kept", &newer, &newer_out).unwrap();
        let removed = store.remove_unchanged(&[("kept".into(), old), ("gone".into(), old)]).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(store.get("kept").unwrap(), Some(newer));
        assert_eq!(store.get("gone").unwrap(), None);
    }
}
