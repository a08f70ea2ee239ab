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
use crate::hash::{hash_reader_pipelined, hash_regular_into, FileDigest, CHUNK, PIPELINE_FROM};
use crate::sha256_pair::hash_two_into;
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
    /// The digest of what was read, where the file could be read to its end.
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

/// An outcome with its file's status (fstat), where the file could be opened: the seal is
/// judged from the very file that was hashed, at no extra system call.
type Checked = (Outcome, Option<fs::Metadata>);

/// Hash one file (never through a symlink, never blocking on a FIFO) against `expected`,
/// also giving the status of the file it opened.
fn check_file(path: &Path, expected: &str, on_bytes: &mut dyn FnMut(u64)) -> Checked {
    match open_checked(path) {
        Ok((file, meta)) => check_opened(&file, meta, expected, on_bytes),
        Err(failed) => (failed, None),
    }
}

/// `check_file` of a file already open: from `PIPELINE_FROM` on, a second thread reads ahead
/// while this one hashes; below it, the reads go through this worker's first lane buffer.
fn check_opened(
    file: &File,
    meta: fs::Metadata,
    expected: &str,
    on_bytes: &mut dyn FnMut(u64),
) -> Checked {
    let on_chunk = |n: usize| on_bytes(n as u64);
    let digest = if meta.len() >= PIPELINE_FROM {
        hash_reader_pipelined(&mut Blocking(file), on_chunk)
    } else {
        with_lanes(|[buf, _]| hash_regular_into(&mut Blocking(file), buf, meta.len(), on_chunk))
    };
    (judge(digest, expected), Some(meta))
}

/// Two files checked at once on this thread, their rounds interleaved (`hash_two_into`),
/// whatever their sizes: the outcomes are those `check_file` gives each. Where one cannot be
/// opened, the other is checked alone.
fn check_two(
    paths: [&Path; 2],
    expected: [&str; 2],
    on_bytes: &mut dyn FnMut(u64),
) -> [Checked; 2] {
    match paths.map(open_checked) {
        [Ok((file_a, meta_a)), Ok((file_b, meta_b))] => {
            let lens = [meta_a.len(), meta_b.len()];
            let [a, b] = with_lanes(|[buf_a, buf_b]| {
                let (mut a, mut b) = (Blocking(&file_a), Blocking(&file_b));
                hash_two_into([&mut a, &mut b], lens, [buf_a, buf_b], |n| {
                    on_bytes(n as u64)
                })
            });
            [
                (judge(a, expected[0]), Some(meta_a)),
                (judge(b, expected[1]), Some(meta_b)),
            ]
        }
        [a, b] => [(a, expected[0]), (b, expected[1])].map(|(opened, expected)| match opened {
            Ok((file, meta)) => check_opened(&file, meta, expected, on_bytes),
            Err(failed) => (failed, None),
        }),
    }
}

/// Bytes per read of a file hashed through a lane buffer (half of `CHUNK`: a worker's two
/// lanes together hold what one buffer held before files were read in pairs).
const LANE_BYTES: usize = CHUNK / 2;

thread_local! {
    /// Each worker's two lane buffers, allocated once per thread.
    static LANES: RefCell<[Vec<u8>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Run `work` with this thread's two lane buffers.
fn with_lanes<T>(work: impl FnOnce([&mut [u8]; 2]) -> T) -> T {
    LANES.with_borrow_mut(|[a, b]| {
        for buf in [&mut *a, &mut *b] {
            if buf.is_empty() {
                buf.resize(LANE_BYTES, 0);
            }
        }
        work([a, b])
    })
}

/// Open a file to check it, or the outcome that says why it could not be (missing, or
/// unreadable: a symlink, a FIFO, a directory, no permission).
fn open_checked(path: &Path) -> Result<(File, fs::Metadata), Outcome> {
    open_regular_file(path, false).map_err(|e| {
        let verdict = if e.kind() == io::ErrorKind::NotFound {
            Verdict::Missing
        } else {
            Verdict::Unreadable
        };
        failed(verdict, e)
    })
}

fn failed(verdict: Verdict, e: io::Error) -> Outcome {
    Outcome {
        verdict,
        sha256: None,
        size: None,
        detail: Some(e.to_string()),
    }
}

/// A digest (or the error that stopped the read) against the hash the record expects.
fn judge(digest: io::Result<FileDigest>, expected: &str) -> Outcome {
    match digest {
        Err(e) => failed(Verdict::Unreadable, e),
        Ok(digest) => Outcome {
            verdict: if digest.sha256.eq_ignore_ascii_case(expected) {
                Verdict::Ok
            } else {
                Verdict::Mismatch
            },
            sha256: Some(digest.sha256),
            size: Some(digest.size),
            detail: None,
        },
    }
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
    let weights = check_file(
        &expected.dir.join(WEIGHTS_FILE),
        &expected.file_hash,
        &mut |n| tick(Tick::Bytes(n)),
    );
    tick(Tick::FileDone);
    let config = check_file(
        &expected.dir.join(CONFIG_FILE),
        &expected.config_hash,
        &mut |n| tick(Tick::Bytes(n)),
    );
    tick(Tick::FileDone);
    report(expected, weights, config)
}

/// `verify_adapter` for two adapters at once: their weights are hashed as a pair, then their
/// configs (`check_two`). The reports are those `verify_adapter` gives each.
pub fn verify_two_adapters(
    a: &Expected,
    b: &Expected,
    mut tick: impl FnMut(Tick),
) -> [AdapterReport; 2] {
    let weights = [a.dir.join(WEIGHTS_FILE), b.dir.join(WEIGHTS_FILE)];
    let [weights_a, weights_b] = check_two(
        [&weights[0], &weights[1]],
        [&a.file_hash, &b.file_hash],
        &mut |n| tick(Tick::Bytes(n)),
    );
    tick(Tick::FileDone);
    tick(Tick::FileDone);
    let configs = [a.dir.join(CONFIG_FILE), b.dir.join(CONFIG_FILE)];
    let [config_a, config_b] = check_two(
        [&configs[0], &configs[1]],
        [&a.config_hash, &b.config_hash],
        &mut |n| tick(Tick::Bytes(n)),
    );
    tick(Tick::FileDone);
    tick(Tick::FileDone);
    [
        report(a, weights_a, config_a),
        report(b, weights_b, config_b),
    ]
}

/// An adapter's report from its two files' outcomes: their verdicts (the weights' size
/// against the record too), the row's path, and, if the weights are intact, the seal.
fn report(expected: &Expected, weights: Checked, config: Checked) -> AdapterReport {
    let (weights, weights_meta) = weights;
    let (config, config_meta) = config;
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
        let config_path = expected.dir.join(CONFIG_FILE);
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
/// over every worker). Within a run, `work` takes the items two at a time (the second is
/// `None` at a run's odd end), so that it may hash two files at once; it gives a result for
/// each. Workers count progress in shared counters and keep their results until they finish:
/// nothing crosses threads per item, and the calling thread sleeps meanwhile.
pub fn run_batch<T: Sync, R: Send>(
    items: &[T],
    order: Option<&[usize]>,
    files_each: usize,
    threads: usize,
    work: impl Fn(&T, Option<&T>, &mut dyn FnMut(Tick)) -> (R, Option<R>) + Sync,
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
                    let mut run = run.map(position);
                    while let Some(i) = run.next() {
                        if cancelled.load(Ordering::Relaxed) {
                            break 'claim;
                        }
                        let j = run.next();
                        let (first, second) = work(&items[i], j.map(|j| &items[j]), &mut tick);
                        done.push((i, first));
                        if let Some(j) = j {
                            let second = second.expect("a result for each item given");
                            done.push((j, second));
                        }
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

/// The next run of positions for a worker: an eighth of what is left per worker, rounded up
/// to an even count (items go to `work` two at a time), at least two and at most 64; once no
/// more items are left than workers, one each (a pair on one worker would leave another idle:
/// two large files are then hashed on two cores). `None` once every item is handed out.
fn claim_run(next: &AtomicUsize, len: usize, threads: usize) -> Option<std::ops::Range<usize>> {
    let mut start = next.load(Ordering::Relaxed);
    loop {
        if start >= len {
            return None;
        }
        let left = len - start;
        let size = if left > threads {
            (left / (threads * 8))
                .clamp(2, 64)
                .next_multiple_of(2)
                .min(left)
        } else {
            1
        };
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
    type Item = (PathBuf, String);
    let work = |a: &Item, b: Option<&Item>, tick: &mut dyn FnMut(Tick)| {
        let mut bytes = |n| tick(Tick::Bytes(n));
        let (first, second) = match b {
            Some(b) => {
                let [first, second] = check_two([&a.0, &b.0], [&a.1, &b.1], &mut bytes);
                (first.0, Some(second.0))
            }
            None => (check_file(&a.0, &a.1, &mut bytes).0, None),
        };
        tick(Tick::FileDone);
        if second.is_some() {
            tick(Tick::FileDone);
        }
        (first, second)
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
    let work = |a: &Expected, b: Option<&Expected>, tick: &mut dyn FnMut(Tick)| match b {
        Some(b) => {
            let [first, second] = verify_two_adapters(a, b, tick);
            (first, Some(second))
        }
        None => (verify_adapter(a, tick), None),
    };
    run_batch(items, Some(&order), 2, threads, work, observe)
}

#[cfg(test)]
#[path = "tests/verify.rs"]
mod tests;
