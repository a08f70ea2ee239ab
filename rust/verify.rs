//! Parallel batch verification: hash (path, expected SHA-256) pairs on a pool of threads and
//! give each a verdict. Workers report through a channel; the calling thread alone sees the
//! events (so it alone may call back into Python), and may cancel the batch.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::files::open_regular;
use crate::hash::hash_reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Mismatch,
    Missing,
    Unreadable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "mismatch",
            Verdict::Missing => "missing",
            Verdict::Unreadable => "unreadable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The digest of what was read, where the file could be read whole.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// Why a file was missing or unreadable.
    pub detail: Option<String>,
}

/// What the calling thread hears while a batch runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub items_done: usize,
    pub items_total: usize,
    pub bytes_done: u64,
}

enum Event {
    Bytes(u64),
    Done(usize, Outcome),
}

/// Hash one file (never through a symlink, never blocking on a FIFO) against `expected`.
pub fn verify_one(path: &Path, expected: &str, mut on_bytes: impl FnMut(u64)) -> Outcome {
    let fail = |verdict, e: io::Error| Outcome {
        verdict,
        sha256: None,
        size: None,
        detail: Some(e.to_string()),
    };
    let (mut file, _) = match open_regular(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fail(Verdict::Missing, e),
        Err(e) => return fail(Verdict::Unreadable, e),
    };
    let digest = match hash_reader(&mut file, |n| on_bytes(n as u64)) {
        Ok(digest) => digest,
        Err(e) => return fail(Verdict::Unreadable, e),
    };
    let verdict = if digest.sha256.eq_ignore_ascii_case(expected) {
        Verdict::Ok
    } else {
        Verdict::Mismatch
    };
    Outcome {
        verdict,
        sha256: Some(digest.sha256),
        size: Some(digest.size),
        detail: None,
    }
}

/// Verify every item on `threads` workers. `observe` runs on the calling thread after each
/// burst of events; returning `Break` cancels the items not yet started and returns `None`.
pub fn verify_batch(
    items: &[(PathBuf, String)],
    threads: usize,
    mut observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<Outcome>> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let mut results: Vec<Option<Outcome>> = vec![None; items.len()];
    let (tx, rx) = mpsc::channel::<Event>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, cancelled) = (&next, &cancelled);
            scope.spawn(move || loop {
                if cancelled.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, expected)) = items.get(i) else {
                    break;
                };
                let outcome = verify_one(path, expected, |n| {
                    let _ = tx.send(Event::Bytes(n));
                });
                let _ = tx.send(Event::Done(i, outcome));
            });
        }
        drop(tx);
        let mut progress = Progress {
            items_done: 0,
            items_total: items.len(),
            bytes_done: 0,
        };
        while let Ok(first) = rx.recv() {
            // Drain what is queued, then report once for the whole burst.
            for event in std::iter::once(first).chain(rx.try_iter()) {
                match event {
                    Event::Bytes(n) => progress.bytes_done += n,
                    Event::Done(i, outcome) => {
                        results[i] = Some(outcome);
                        progress.items_done += 1;
                    }
                }
            }
            if observe(progress).is_break() {
                cancelled.store(true, Ordering::Relaxed);
                break;
            }
        }
    });
    if cancelled.load(Ordering::Relaxed) {
        return None;
    }
    Some(
        results
            .into_iter()
            .map(|r| r.expect("every item ran"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_file, CHUNK};
    use std::fs;

    #[test]
    fn verdicts_for_each_kind_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        fs::write(&good, vec![5u8; 3 * CHUNK + 1]).unwrap();
        let good_sha = hash_file(&good).unwrap().sha256;
        let bad = dir.path().join("bad");
        fs::write(&bad, b"tampered").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let items = vec![
            (good.clone(), good_sha.to_uppercase()),
            (bad, good_sha.clone()),
            (dir.path().join("gone"), good_sha.clone()),
            (dir.path().to_path_buf(), good_sha.clone()),
            (link, good_sha.clone()),
        ];
        let mut last = None;
        let out = verify_batch(&items, 3, |p| {
            last = Some(p);
            ControlFlow::Continue(())
        })
        .unwrap();
        let verdicts: Vec<_> = out.iter().map(|o| o.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Ok,
                Verdict::Mismatch,
                Verdict::Missing,
                Verdict::Unreadable,
                Verdict::Unreadable
            ]
        );
        assert_eq!(out[0].size, Some(3 * CHUNK as u64 + 1));
        let last = last.unwrap();
        assert_eq!((last.items_done, last.items_total), (5, 5));
        assert_eq!(last.bytes_done, 3 * CHUNK as u64 + 1 + 8);
    }

    #[test]
    fn breaking_cancels_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        let items: Vec<_> = (0..1000).map(|_| (f.clone(), String::new())).collect();
        assert!(verify_batch(&items, 2, |_| ControlFlow::Break(())).is_none());
        assert_eq!(
            verify_batch(&[], 2, |_| ControlFlow::Continue(())),
            Some(vec![])
        );
    }
}
