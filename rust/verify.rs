//! Verification: hash stored files on a pool of threads and give each adapter its whole
//! verdict (hash, size, the seal's modes, the PEFT link) in this one place. Workers report
//! through a channel; the calling thread alone sees the events (so it alone may call back into
//! Python), and may cancel the batch.

use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::files::{open_regular, SEALED_MODE};
use crate::hash::hash_reader;
use crate::staging::{CONFIG_FILE, PEFT_WEIGHTS_FILE, WEIGHTS_FILE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Mismatch,
    Missing,
    Unreadable,
}

/// The verdicts' names in declaration order, as Python sees them (`_core.VERDICTS`).
pub const VERDICTS: [&str; 4] = ["ok", "mismatch", "missing", "unreadable"];

impl Verdict {
    pub fn as_str(self) -> &'static str {
        VERDICTS[self as usize]
    }

    /// The worse of two: a file that is gone is worse than one that cannot be read, which is
    /// worse than one that reads wrong. An adapter's verdict is the worst of its files'.
    pub fn worst(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Ok => 0,
            Verdict::Mismatch => 1,
            Verdict::Unreadable => 2,
            Verdict::Missing => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
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

/// What an adapter's directory must hold, from its record. `dir` is where the registry keeps
/// the adapter (its root and id); `recorded_path` is the row's `file_path`, which must agree.
#[derive(Debug, Clone)]
pub struct Expected {
    pub dir: PathBuf,
    pub file_hash: String,
    pub file_size: u64,
    pub config_hash: String,
    pub recorded_path: PathBuf,
}

/// An adapter's verdict and one line per problem, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterReport {
    pub verdict: Verdict,
    pub problems: Vec<String>,
}

/// What the calling thread hears while a batch runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub files_done: usize,
    pub files_total: usize,
    pub bytes_done: u64,
}

/// What a worker says about the file it is on.
#[derive(Debug, Clone, Copy)]
pub enum Tick {
    Bytes(u64),
    FileDone,
}

enum Event<R> {
    Tick(Tick),
    Done(usize, R),
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

/// The whole verdict of one stored adapter: both files against their hashes (the weights
/// against their size too), then, if the weights are intact, the seal; and the row's path
/// against where the adapter is kept (a path in a row is never followed).
pub fn verify_adapter(expected: &Expected, mut tick: impl FnMut(Tick)) -> AdapterReport {
    let mut report = AdapterReport {
        verdict: Verdict::Ok,
        problems: Vec::new(),
    };
    let kept = expected.dir.join(WEIGHTS_FILE);
    if expected.recorded_path != kept {
        report.verdict = Verdict::Mismatch;
        report.problems.push(format!(
            "its row's file_path {} is not {}, where the registry keeps it",
            expected.recorded_path.display(),
            kept.display()
        ));
    }
    let files = [
        (WEIGHTS_FILE, &expected.file_hash, Some(expected.file_size)),
        (CONFIG_FILE, &expected.config_hash, None),
    ];
    let mut weights_ok = false;
    for (name, hash, size) in files {
        let outcome = verify_one(&expected.dir.join(name), hash, |n| tick(Tick::Bytes(n)));
        tick(Tick::FileDone);
        let mut verdict = outcome.verdict;
        if verdict == Verdict::Ok && size.is_some() && outcome.size != size {
            verdict = Verdict::Mismatch;
        }
        if name == WEIGHTS_FILE {
            weights_ok = verdict == Verdict::Ok;
        }
        if let Some(problem) = file_problem(name, verdict, &outcome, hash, size) {
            report.verdict = report.verdict.worst(verdict);
            report.problems.push(problem);
        }
    }
    if weights_ok {
        for (verdict, problem) in seal_problems(&expected.dir) {
            report.verdict = report.verdict.worst(verdict);
            report.problems.push(problem);
        }
    }
    report
}

fn file_problem(
    name: &str,
    verdict: Verdict,
    outcome: &Outcome,
    hash: &str,
    size: Option<u64>,
) -> Option<String> {
    let unknown = || "?".to_string();
    match verdict {
        Verdict::Ok => None,
        Verdict::Mismatch => Some(format!(
            "{name} does not match its record (sha256 {}, {} bytes; recorded {hash}{})",
            outcome.sha256.clone().unwrap_or_else(unknown),
            outcome.size.map_or_else(unknown, |s| s.to_string()),
            size.map_or_else(String::new, |s| format!(", {s} bytes")),
        )),
        _ => Some(format!(
            "{name} is {}: {}",
            verdict.as_str(),
            outcome.detail.clone().unwrap_or_else(unknown)
        )),
    }
}

/// What is wrong with the seal of a published directory, as (verdict, problem) pairs.
///
/// Its files stay read-only (`SEALED_MODE`): a changed mode means someone made them writable.
/// PEFT loads `adapter_model.safetensors`, which must be the verified file itself (a hard link).
pub fn seal_problems(dir: &Path) -> Vec<(Verdict, String)> {
    let mut found = Vec::new();
    for name in [WEIGHTS_FILE, CONFIG_FILE] {
        let Ok(meta) = fs::symlink_metadata(dir.join(name)) else {
            continue; // the hash check reports it
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode != SEALED_MODE {
            found.push((
                Verdict::Mismatch,
                format!("{name} has mode {mode:04o}; sealed files are {SEALED_MODE:04o}"),
            ));
        }
    }
    let linked = fs::symlink_metadata(dir.join(PEFT_WEIGHTS_FILE))
        .and_then(|link| Ok((link, fs::symlink_metadata(dir.join(WEIGHTS_FILE))?)));
    match linked {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            found.push((Verdict::Missing, format!("{PEFT_WEIGHTS_FILE} is missing")));
        }
        Err(e) => found.push((
            Verdict::Unreadable,
            format!("{PEFT_WEIGHTS_FILE} is unreadable: {e}"),
        )),
        Ok((link, target)) if (link.dev(), link.ino()) != (target.dev(), target.ino()) => {
            found.push((
                Verdict::Mismatch,
                format!("{PEFT_WEIGHTS_FILE} is not the same file as {WEIGHTS_FILE}"),
            ));
        }
        Ok(_) => {}
    }
    found
}

/// Run `work` over every item on `threads` workers, each item `files_each` files of progress.
/// `observe` runs on the calling thread after each burst of events; returning `Break` cancels
/// the items not yet started and returns `None`. Results come back in input order.
pub fn run_batch<T: Sync, R: Send>(
    items: &[T],
    files_each: usize,
    threads: usize,
    work: impl Fn(&T, &mut dyn FnMut(Tick)) -> R + Sync,
    mut observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<R>> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<Event<R>>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, cancelled, work) = (&next, &cancelled, &work);
            scope.spawn(move || loop {
                if cancelled.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    break;
                };
                let result = work(item, &mut |t| {
                    let _ = tx.send(Event::Tick(t));
                });
                let _ = tx.send(Event::Done(i, result));
            });
        }
        drop(tx);
        let mut progress = Progress {
            files_done: 0,
            files_total: items.len() * files_each,
            bytes_done: 0,
        };
        while let Ok(first) = rx.recv() {
            // Drain what is queued, then report once for the whole burst.
            for event in std::iter::once(first).chain(rx.try_iter()) {
                match event {
                    Event::Tick(Tick::Bytes(n)) => progress.bytes_done += n,
                    Event::Tick(Tick::FileDone) => progress.files_done += 1,
                    Event::Done(i, result) => results[i] = Some(result),
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

/// Verify (path, expected sha256) pairs: one `Outcome` per file, in input order.
pub fn verify_batch(
    items: &[(PathBuf, String)],
    threads: usize,
    observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<Outcome>> {
    let work = |(path, expected): &(PathBuf, String), tick: &mut dyn FnMut(Tick)| {
        let outcome = verify_one(path, expected, |n| tick(Tick::Bytes(n)));
        tick(Tick::FileDone);
        outcome
    };
    run_batch(items, 1, threads, work, observe)
}

/// Verify whole adapters: one `AdapterReport` per adapter, in input order.
pub fn verify_adapters(
    items: &[Expected],
    threads: usize,
    observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<AdapterReport>> {
    let work = |expected: &Expected, tick: &mut dyn FnMut(Tick)| verify_adapter(expected, tick);
    run_batch(items, 2, threads, work, observe)
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
        assert_eq!((last.files_done, last.files_total), (5, 5));
        assert_eq!(last.bytes_done, 3 * CHUNK as u64 + 1 + 8);
    }

    /// A published directory as staging leaves it: sealed files and the PEFT hard link.
    fn sealed_adapter(dir: &Path) -> Expected {
        fs::create_dir(dir).unwrap();
        let weights = dir.join(WEIGHTS_FILE);
        fs::write(&weights, vec![3u8; CHUNK + 7]).unwrap();
        fs::write(dir.join(CONFIG_FILE), b"{}").unwrap();
        for name in [WEIGHTS_FILE, CONFIG_FILE] {
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(SEALED_MODE)).unwrap();
        }
        fs::hard_link(&weights, dir.join(PEFT_WEIGHTS_FILE)).unwrap();
        Expected {
            dir: dir.to_path_buf(),
            recorded_path: weights.clone(),
            file_hash: hash_file(&weights).unwrap().sha256,
            file_size: CHUNK as u64 + 7,
            config_hash: hash_file(&dir.join(CONFIG_FILE)).unwrap().sha256,
        }
    }

    #[test]
    fn an_adapter_verdict_covers_hash_size_modes_and_link() {
        let root = tempfile::tempdir().unwrap();
        let intact = sealed_adapter(&root.path().join("intact"));
        let verdict = |e: &Expected| verify_adapter(e, |_| {});
        assert_eq!(verdict(&intact).verdict, Verdict::Ok);
        assert!(verdict(&intact).problems.is_empty());

        let wrong_size = Expected {
            file_size: 1,
            ..intact.clone()
        };
        let report = verdict(&wrong_size);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert!(report.problems[0].contains("1 bytes)"), "{report:?}");

        let mode = sealed_adapter(&root.path().join("mode"));
        fs::set_permissions(
            mode.dir.join(CONFIG_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let report = verdict(&mode);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert_eq!(
            report.problems,
            ["adapter_config.json has mode 0644; sealed files are 0444"]
        );

        let link = sealed_adapter(&root.path().join("link"));
        fs::remove_file(link.dir.join(PEFT_WEIGHTS_FILE)).unwrap();
        assert_eq!(verdict(&link).verdict, Verdict::Missing);
        fs::write(link.dir.join(PEFT_WEIGHTS_FILE), b"other").unwrap();
        let report = verdict(&link);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert!(report.problems[0].contains("is not the same file"));

        let elsewhere = Expected {
            recorded_path: PathBuf::from("/etc/passwd"),
            ..intact.clone()
        };
        let report = verdict(&elsewhere);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert!(
            report.problems[0].contains("/etc/passwd is not"),
            "{report:?}"
        );

        let gone = sealed_adapter(&root.path().join("gone"));
        fs::remove_file(gone.dir.join(WEIGHTS_FILE)).unwrap();
        let report = verdict(&gone);
        assert_eq!(report.verdict, Verdict::Missing);
        assert_eq!(
            report.problems.len(),
            1,
            "the seal is not judged: {report:?}"
        );
    }

    #[test]
    fn the_worst_verdict_wins_and_names_round_trip() {
        use Verdict::*;
        assert_eq!(Ok.worst(Mismatch).worst(Ok), Mismatch);
        assert_eq!(Mismatch.worst(Unreadable), Unreadable);
        assert_eq!(Missing.worst(Unreadable), Missing);
        for v in [Ok, Mismatch, Missing, Unreadable] {
            assert_eq!(
                VERDICTS.iter().position(|n| *n == v.as_str()),
                Some(v as usize)
            );
        }
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
