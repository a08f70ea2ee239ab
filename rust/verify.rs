//! Verification: hash stored files on a pool of threads and give each adapter its whole
//! verdict (hash, size, the seal's modes, the PEFT link) in this one place. Workers report
//! through a channel; the calling thread alone sees the events (so it alone may call back into
//! Python), and may cancel the batch.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::files::{open_regular_file, SEALED_MODE};
use crate::hash::{hash_reader_pipelined, hash_regular_into, CHUNK, PIPELINE_FROM};
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

/// Hash one file (never through a symlink, never blocking on a FIFO) against `expected`.
pub fn verify_one(path: &Path, expected: &str, mut on_bytes: impl FnMut(u64)) -> Outcome {
    check_file(path, expected, &mut on_bytes).0
}

/// `verify_one`, also giving the status (fstat) of the file it opened, when it could open it:
/// the seal is judged from the very file that was hashed, at no extra system call.
fn check_file(
    path: &Path,
    expected: &str,
    on_bytes: &mut dyn FnMut(u64),
) -> (Outcome, Option<fs::Metadata>) {
    let fail = |verdict, e: io::Error| Outcome {
        verdict,
        sha256: None,
        size: None,
        detail: Some(e.to_string()),
    };
    let (file, meta) = match open_regular_file(path, false) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (fail(Verdict::Missing, e), None),
        Err(e) => return (fail(Verdict::Unreadable, e), None),
    };
    let mut reader = Blocking(&file);
    let hashed = if meta.len() >= PIPELINE_FROM {
        hash_reader_pipelined(&mut reader, |n| on_bytes(n as u64))
    } else {
        SCRATCH.with_borrow_mut(|buf| {
            if buf.is_empty() {
                buf.resize(CHUNK, 0);
            }
            hash_regular_into(&mut reader, buf, meta.len(), |n| on_bytes(n as u64))
        })
    };
    let digest = match hashed {
        Ok(digest) => digest,
        Err(e) => return (fail(Verdict::Unreadable, e), Some(meta)),
    };
    let verdict = if digest.sha256.eq_ignore_ascii_case(expected) {
        Verdict::Ok
    } else {
        Verdict::Mismatch
    };
    let outcome = Outcome {
        verdict,
        sha256: Some(digest.sha256),
        size: Some(digest.size),
        detail: None,
    };
    (outcome, Some(meta))
}

thread_local! {
    /// Each worker's read buffer for files below `PIPELINE_FROM`, allocated once per thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads from a file opened `O_NONBLOCK`; a `WouldBlock` clears the flag and reads again.
struct Blocking<'a>(&'a File);

impl Read for Blocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.0.as_raw_fd();
                    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
                    let cleared = unsafe {
                        let fl = libc::fcntl(fd, libc::F_GETFL);
                        fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) == 0
                    };
                    if !cleared {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

/// The whole verdict of one stored adapter: both files against their hashes (the weights
/// against their size too), then, if the weights are intact, the seal; and the row's path
/// against where the adapter is kept (a path in a row is never followed). Each file is opened
/// once: its hash, size, mode and inode come from that one descriptor.
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
    let config_path = expected.dir.join(CONFIG_FILE);
    let (weights, weights_meta) =
        check_file(&kept, &expected.file_hash, &mut |n| tick(Tick::Bytes(n)));
    tick(Tick::FileDone);
    let (config, config_meta) = check_file(&config_path, &expected.config_hash, &mut |n| {
        tick(Tick::Bytes(n))
    });
    tick(Tick::FileDone);
    let files = [
        (
            WEIGHTS_FILE,
            &weights,
            &expected.file_hash,
            Some(expected.file_size),
        ),
        (CONFIG_FILE, &config, &expected.config_hash, None),
    ];
    let mut weights_ok = false;
    for (name, outcome, hash, size) in files {
        let mut verdict = outcome.verdict;
        if verdict == Verdict::Ok && size.is_some() && outcome.size != size {
            verdict = Verdict::Mismatch;
        }
        if name == WEIGHTS_FILE {
            weights_ok = verdict == Verdict::Ok;
        }
        if let Some(problem) = file_problem(name, verdict, outcome, hash, size) {
            report.verdict = report.verdict.worst(verdict);
            report.problems.push(problem);
        }
    }
    if let (true, Some(weights_meta)) = (weights_ok, weights_meta) {
        // Where the config could not be opened as a regular file (a symlink, a FIFO), its
        // lstat gives its mode, as `seal_problems` sees it.
        let config_meta = config_meta.or_else(|| match config.verdict {
            Verdict::Missing => None,
            _ => fs::symlink_metadata(&config_path).ok(),
        });
        let link = fs::symlink_metadata(expected.dir.join(PEFT_WEIGHTS_FILE))
            .map(|link| (link, weights_meta.clone()));
        for (verdict, problem) in judge_seal(Some(&weights_meta), config_meta.as_ref(), link) {
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
    let weights = fs::symlink_metadata(dir.join(WEIGHTS_FILE)).ok();
    let config = fs::symlink_metadata(dir.join(CONFIG_FILE)).ok();
    let linked = fs::symlink_metadata(dir.join(PEFT_WEIGHTS_FILE))
        .and_then(|link| Ok((link, fs::symlink_metadata(dir.join(WEIGHTS_FILE))?)));
    judge_seal(weights.as_ref(), config.as_ref(), linked)
}

/// The seal's one rule, from the status of the weights and the config (`None`: gone, which the
/// hash check reports) and of the PEFT name beside the weights' own.
fn judge_seal(
    weights: Option<&fs::Metadata>,
    config: Option<&fs::Metadata>,
    linked: io::Result<(fs::Metadata, fs::Metadata)>,
) -> Vec<(Verdict, String)> {
    let mut found = Vec::new();
    for (name, meta) in [(WEIGHTS_FILE, weights), (CONFIG_FILE, config)] {
        let Some(meta) = meta else {
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
    if weights.is_none() {
        return found; // the weights themselves are gone: that is theirs to name, not the link's
    }
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

/// How often the calling thread looks at the counters (and so may call back into Python)
/// while the workers run.
const OBSERVE_EVERY: Duration = Duration::from_millis(10);

/// Run `work` over every item on `threads` workers, each item `files_each` files of progress.
/// `observe` runs on the calling thread every few milliseconds while the workers run and once
/// at the end; returning `Break` cancels the items not yet started and returns `None`. Results
/// come back in input order.
///
/// Items are handed out in `order` (largest first, say, so that no large file is left for last
/// on one worker; `None`: input order), in runs that shrink as the batch drains (a fraction of
/// what is left, so that small items do not pay a hand-off each and the last ones still spread
/// over every worker). Workers count progress in shared counters and keep their results until
/// they finish: nothing crosses threads per item, and the calling thread sleeps meanwhile.
pub fn run_batch<T: Sync, R: Send>(
    items: &[T],
    order: Option<&[usize]>,
    files_each: usize,
    threads: usize,
    work: impl Fn(&T, &mut dyn FnMut(Tick)) -> R + Sync,
    mut observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<R>> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let files_done = AtomicUsize::new(0);
    let bytes_done = AtomicU64::new(0);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<Vec<(usize, R)>>();
    let position = |k: usize| order.map_or(k, |o| o[k]);
    let progress = || Progress {
        files_done: files_done.load(Ordering::Relaxed),
        files_total: items.len() * files_each,
        bytes_done: bytes_done.load(Ordering::Relaxed),
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, cancelled, work) = (&next, &cancelled, &work);
            let (files_done, bytes_done) = (&files_done, &bytes_done);
            scope.spawn(move || {
                let mut done = Vec::new();
                let mut tick = |t: Tick| match t {
                    Tick::Bytes(n) => {
                        bytes_done.fetch_add(n, Ordering::Relaxed);
                    }
                    Tick::FileDone => {
                        files_done.fetch_add(1, Ordering::Relaxed);
                    }
                };
                'claim: while let Some(run) = claim_run(next, items.len(), threads) {
                    for k in run {
                        if cancelled.load(Ordering::Relaxed) {
                            break 'claim;
                        }
                        let i = position(k);
                        done.push((i, work(&items[i], &mut tick)));
                    }
                }
                let _ = tx.send(done);
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(OBSERVE_EVERY) {
                Ok(done) => {
                    for (i, result) in done {
                        results[i] = Some(result);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = progress();
            let running = now.files_done < now.files_total;
            if running && !cancelled.load(Ordering::Relaxed) && observe(now).is_break() {
                cancelled.store(true, Ordering::Relaxed); // the workers stop at their next item
            }
        }
    });
    // The last word, unless there was nothing to do (as before this batch ran).
    let last_word = |observe: &mut dyn FnMut(Progress) -> ControlFlow<()>| {
        items.is_empty() || observe(progress()).is_continue()
    };
    if cancelled.load(Ordering::Relaxed) || !last_word(&mut observe) {
        return None;
    }
    Some(
        results
            .into_iter()
            .map(|r| r.expect("every item ran"))
            .collect(),
    )
}

/// The next run of positions for a worker: an eighth of what is left per worker, at least one
/// and at most 64; `None` once every item is handed out.
fn claim_run(next: &AtomicUsize, len: usize, threads: usize) -> Option<std::ops::Range<usize>> {
    let mut start = next.load(Ordering::Relaxed);
    loop {
        if start >= len {
            return None;
        }
        let size = ((len - start) / (threads * 8)).clamp(1, 64);
        match next.compare_exchange_weak(start, start + size, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Some(start..start + size),
            Err(now) => start = now,
        }
    }
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
    run_batch(items, None, 1, threads, work, observe)
}

/// Verify whole adapters: one `AdapterReport` per adapter, in input order, the largest
/// started first.
pub fn verify_adapters(
    items: &[Expected],
    threads: usize,
    observe: impl FnMut(Progress) -> ControlFlow<()>,
) -> Option<Vec<AdapterReport>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].file_size));
    let work = |expected: &Expected, tick: &mut dyn FnMut(Tick)| verify_adapter(expected, tick);
    run_batch(items, Some(&order), 2, threads, work, observe)
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

    #[test]
    fn every_item_runs_once_in_any_order_of_hand_out() {
        let items: Vec<usize> = (0..1000).collect();
        let reversed: Vec<usize> = (0..1000).rev().collect();
        for (order, threads) in [(None, 1), (None, 3), (Some(&reversed[..]), 4)] {
            let mut last = None;
            let out = run_batch(
                &items,
                order,
                2,
                threads,
                |&i, tick| {
                    tick(Tick::Bytes(i as u64));
                    tick(Tick::FileDone);
                    tick(Tick::FileDone);
                    i * 2
                },
                |p| {
                    last = Some(p);
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            let last = last.unwrap();
            assert_eq!((last.files_done, last.files_total), (2000, 2000));
            assert_eq!(last.bytes_done, (0..1000).sum::<u64>());
        }
        let next = AtomicUsize::new(0);
        let mut runs = Vec::new();
        while let Some(run) = claim_run(&next, 1000, 2) {
            runs.push(run);
        }
        assert_eq!(runs.first(), Some(&(0..62)));
        assert_eq!(
            runs.last().map(|r| r.len()),
            Some(1),
            "the last ones one by one"
        );
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 1000);
    }

    #[test]
    fn a_large_file_is_judged_like_a_small_one() {
        let root = tempfile::tempdir().unwrap();
        let big = sealed_adapter(&root.path().join("big"));
        let weights = big.dir.join(WEIGHTS_FILE);
        fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
        let data: Vec<u8> = (0..PIPELINE_FROM as usize + 3).map(|i| i as u8).collect();
        fs::write(&weights, &data).unwrap();
        fs::set_permissions(&weights, fs::Permissions::from_mode(SEALED_MODE)).unwrap();
        let intact = Expected {
            file_hash: hash_file(&weights).unwrap().sha256,
            file_size: data.len() as u64,
            ..big
        };
        let mut bytes = 0;
        let report = verify_adapter(&intact, |t| {
            if let Tick::Bytes(n) = t {
                bytes += n
            }
        });
        assert_eq!(report.verdict, Verdict::Ok, "{report:?}");
        assert_eq!(bytes, data.len() as u64 + 2);
        let wrong = Expected {
            file_hash: "0".repeat(64),
            ..intact
        };
        assert_eq!(verify_adapter(&wrong, |_| {}).verdict, Verdict::Mismatch);
    }

    #[test]
    fn the_seal_reads_the_same_from_descriptors_as_from_paths() {
        let root = tempfile::tempdir().unwrap();
        let a = sealed_adapter(&root.path().join("a"));
        let config = a.dir.join(CONFIG_FILE);
        fs::remove_file(&config).unwrap();
        std::os::unix::fs::symlink("/nonexistent", &config).unwrap();
        let report = verify_adapter(&a, |_| {});
        let from_paths: Vec<String> = seal_problems(&a.dir).into_iter().map(|p| p.1).collect();
        assert!(from_paths[0].contains("adapter_config.json has mode 0777"));
        assert_eq!(report.problems[1..], from_paths[..], "{report:?}");
        assert_eq!(report.verdict, Verdict::Unreadable);
    }
}
