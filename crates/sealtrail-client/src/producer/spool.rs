//! The producer's on-disk spool: batches kept while Sealtrail cannot be reached, delivered
//! oldest first when it can, across restarts of the producer.
//!
//! Each batch is one file of NDJSON (the stamped events, as they will be sent), written to
//! a temporary name, fsync'd, renamed and the directory fsync'd, so a file that exists is
//! whole. Names sort by creation (`<nanos>-<counter>.ndjson`), which is delivery order. A
//! file is removed only after the server acknowledged its events (their ids make a resend
//! after a crash harmless); one the server refuses is moved to `refused/`. A lock file
//! keeps two producers from sharing a directory.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the lock file.
const LOCK_FILE: &str = "spool.lock";
/// Where refused batches are moved.
pub const REFUSED_DIR: &str = "refused";

/// A spooled batch on disk.
#[derive(Debug)]
struct SpoolFile {
    path: PathBuf,
    bytes: u64,
    events: u64,
}

/// The spool directory, locked for this producer.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// Held for the producer's life: the lock goes with it.
    _lock: File,
    files: VecDeque<SpoolFile>,
    bytes: u64,
    max_bytes: u64,
    counter: u64,
}

impl Spool {
    /// Opens `dir` (creating it), taking its lock and finding the batches left in it.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir.join(REFUSED_DIR))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the spool {} is in use by another producer", dir.display()),
            )
        })?;
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write cut short: its batch was still in memory, and is lost with the
                // process, or was written again.
                fs::remove_file(entry.path())?;
            } else if name.ends_with(".ndjson") {
                names.push(name);
            }
        }
        names.sort();
        let mut files = VecDeque::new();
        let mut bytes = 0;
        for name in names {
            let path = dir.join(&name);
            let content = fs::read(&path)?;
            let events = content.iter().filter(|b| **b == b'\n').count() as u64;
            bytes += content.len() as u64;
            files.push_back(SpoolFile {
                path,
                bytes: content.len() as u64,
                events,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            files,
            bytes,
            max_bytes,
            counter: 0,
        })
    }

    /// Whether batches are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Files waiting.
    pub(crate) fn files(&self) -> usize {
        self.files.len()
    }

    /// Bytes waiting.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Events waiting.
    pub(crate) fn events(&self) -> u64 {
        self.files.iter().map(|f| f.events).sum()
    }

    /// Writes a batch durably; `Ok(false)` when it would pass the size bound.
    pub(crate) fn push(&mut self, events: &[Vec<u8>]) -> io::Result<bool> {
        let size: u64 = events.iter().map(|e| e.len() as u64 + 1).sum();
        if self.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.counter += 1;
        let name = format!("{nanos:024}-{:010}.ndjson", self.counter);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&temp)?;
        let mut content = Vec::with_capacity(size as usize);
        for event in events {
            content.extend_from_slice(event);
            content.push(b'\n');
        }
        file.write_all(&content)?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        sync_dir(&self.dir)?;
        self.bytes += size;
        self.files.push_back(SpoolFile {
            path,
            bytes: size,
            events: events.len() as u64,
        });
        Ok(true)
    }

    /// The oldest batch's events.
    pub(crate) fn oldest(&self) -> Option<io::Result<Vec<Vec<u8>>>> {
        let file = self.files.front()?;
        Some(fs::read(&file.path).map(|content| {
            content
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        }))
    }

    /// Removes the oldest batch: the server has it.
    pub(crate) fn remove_oldest(&mut self) -> io::Result<()> {
        if let Some(file) = self.files.pop_front() {
            fs::remove_file(&file.path)?;
            sync_dir(&self.dir)?;
            self.bytes -= file.bytes;
        }
        Ok(())
    }

    /// Moves the oldest batch to `refused/`: the server will never take it.
    pub(crate) fn refuse_oldest(&mut self) -> io::Result<()> {
        if let Some(file) = self.files.pop_front() {
            let name = file.path.file_name().expect("spool files have names");
            fs::rename(&file.path, self.dir.join(REFUSED_DIR).join(name))?;
            sync_dir(&self.dir)?;
            self.bytes -= file.bytes;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_back_oldest_first_after_a_reopen_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(Spool::open(dir.path(), 1 << 20).is_err(), "locked");
        assert!(
            spool
                .push(&[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()])
                .unwrap()
        );
        assert!(spool.push(&[b"{\"a\":3}".to_vec()]).unwrap());
        fs::write(dir.path().join("x.ndjson.tmp"), "half").unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((spool.files(), spool.events()), (2, 3));
        assert!(!dir.path().join("x.ndjson.tmp").exists());
        let first = spool.oldest().unwrap().unwrap();
        assert_eq!(first, vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
        spool.remove_oldest().unwrap();
        spool.refuse_oldest().unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join(REFUSED_DIR)).unwrap().count(),
            1
        );
    }

    #[test]
    fn the_size_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 20).unwrap();
        assert!(spool.push(&[vec![b'x'; 10]]).unwrap());
        assert!(!spool.push(&[vec![b'x'; 10]]).unwrap());
        assert_eq!(spool.files(), 1);
    }
}
