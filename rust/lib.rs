//! `adapter_registry._core`: the byte work of the registry, bound to Python.
//!
//! The modules below know nothing of Python; this file is the whole binding. Each function
//! takes owned arguments, releases the GIL (`py.detach`) for the file work, and converts the
//! result back. Errors cross into Python in one place, `From<CoreError> for PyErr`, as the
//! classes of `adapter_registry.errors`.

pub mod error;
pub mod fault;
pub mod files;
pub mod hash;
pub mod header;
#[cfg(test)]
mod header_fuzz;
mod header_json;
pub mod load;
pub mod owner;
pub mod publish;
pub mod sha256_pair;
pub mod staging;
#[cfg(test)]
mod test_alloc;
#[cfg(test)]
mod test_files;
pub mod verify;

use std::io::{Cursor, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use error::{CoreError, CoreResult};
use header::{Header, OpenWeights, TensorInfo};
use publish::PublishMode;
use staging::Staging;

mod py_errors {
    pyo3::import_exception!(adapter_registry.errors, AdapterRegistryError);
    pyo3::import_exception!(adapter_registry.errors, InvalidAdapterError);
    pyo3::import_exception!(adapter_registry.errors, AdapterAlreadyExistsError);
    pyo3::import_exception!(adapter_registry.errors, AdapterStorageError);
}

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match &err {
            CoreError::Source { .. }
            | CoreError::InvalidSafetensors { .. }
            | CoreError::BadName { .. } => py_errors::InvalidAdapterError::new_err(message),
            CoreError::AlreadyExists { .. } => {
                py_errors::AdapterAlreadyExistsError::new_err(message)
            }
            CoreError::Storage { .. } => match err.errno() {
                Some(errno) => py_errors::AdapterStorageError::new_err((errno, message)),
                None => py_errors::AdapterStorageError::new_err(message),
            },
            CoreError::Interrupted { .. } => PyKeyboardInterrupt::new_err(message),
            CoreError::Internal { .. } => py_errors::AdapterRegistryError::new_err(message),
        }
    }
}

/// Run file work with the GIL released. A panic is caught here and becomes an error: a
/// `PanicException` would slip past `except Exception` in the caller.
fn off_gil<T: Send>(py: Python<'_>, work: impl FnOnce() -> CoreResult<T> + Send) -> CoreResult<T> {
    py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(CoreError::Internal { what })
        })
    })
}

/// (name, dtype, shape) of each tensor, in file order.
type TensorTuple = (String, String, Vec<u64>);
/// (tensors, `__metadata__` as (key, value) pairs) of a safetensors header.
type HeaderTuple = (Vec<TensorTuple>, Vec<(String, String)>);

fn tensor_tuples(tensors: &[TensorInfo]) -> Vec<TensorTuple> {
    tensors
        .iter()
        .map(|t| (t.name.clone(), t.dtype.clone(), t.shape.clone()))
        .collect()
}

/// Where the weights of a store come from.
#[derive(FromPyObject)]
enum WeightsSource {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// SHA-256 (hex) and size of a file, streamed in constant memory with the GIL released.
#[pyfunction]
fn hash_file(py: Python<'_>, path: PathBuf) -> PyResult<(String, u64)> {
    let digest = off_gil(py, || hash::hash_file(&path))?;
    Ok((digest.sha256, digest.size))
}

/// Validate a safetensors file (a path: only its header is read) or bytes; returns
/// (tensors as (name, dtype, shape), metadata as (key, value) pairs).
#[pyfunction]
fn read_safetensors_header(py: Python<'_>, source: WeightsSource) -> PyResult<HeaderTuple> {
    let header: Header = off_gil(py, || match &source {
        WeightsSource::Path(path) => header::read_header(path),
        WeightsSource::Bytes(bytes) => {
            header::validate_bytes(bytes).map_err(|r| CoreError::invalid(Path::new("<bytes>"), r))
        }
    })?;
    Ok((tensor_tuples(&header.tensors), header.metadata))
}

/// (name, dtype, shape, begin, end) of each tensor, offsets counted from the start of the file.
type PlacedTensor = (String, String, Vec<u64>, u64, u64);

/// The bytes of a verified file, in memory of their own, exposed through the buffer protocol
/// (writable, so `torch.frombuffer` views them without a copy). Freed when the last view goes.
#[pyclass(module = "adapter_registry._core", frozen)]
struct VerifiedBytes {
    buffer: load::AnonBuffer,
}

#[pymethods]
impl VerifiedBytes {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let buffer = &slf.get().buffer;
        // SAFETY: the memory lives as long as `slf`, which the view holds a reference to
        // (PyBuffer_FillInfo sets view.obj); `view` is the interpreter's to fill.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                buffer.as_ptr().cast(),
                buffer.len() as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.buffer.len()
    }
}

/// Read a stored safetensors file of `expected_size` bytes into memory of its own, hashing each
/// chunk as it lands. Returns (the bytes, their sha256, tensors with file offsets); the caller
/// compares the digest with the record before using any byte.
#[pyfunction]
fn read_verified(
    py: Python<'_>,
    path: PathBuf,
    expected_size: u64,
) -> PyResult<(VerifiedBytes, String, Vec<PlacedTensor>)> {
    let (buffer, digest, header) = off_gil(py, || load::read_verified(&path, expected_size))?;
    let start = header.data_start();
    let tensors = header
        .tensors
        .into_iter()
        .map(|t| {
            let (begin, end) = t.data_offsets;
            (t.name, t.dtype, t.shape, start + begin, start + end)
        })
        .collect();
    Ok((VerifiedBytes { buffer }, digest.sha256, tensors))
}

/// A staged adapter: its files are written, hashed, validated, sealed and fsynced in a
/// locked staging directory; `publish` or `discard` ends it (dropping it discards).
#[pyclass(module = "adapter_registry._core")]
struct StagedAdapter {
    inner: Mutex<Option<Staging>>,
    #[pyo3(get)]
    file_hash: String,
    #[pyo3(get)]
    file_size: u64,
    #[pyo3(get)]
    config_hash: String,
    #[pyo3(get)]
    tensors: Vec<TensorTuple>,
    #[pyo3(get)]
    path: PathBuf,
}

impl StagedAdapter {
    fn take(&self) -> PyResult<Staging> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("staged adapter lock poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("staged adapter already published or discarded"))
    }
}

#[pymethods]
impl StagedAdapter {
    /// Write the record file and rename the directory to `{root}/{name}`, exclusively.
    #[pyo3(signature = (name, record, *, exclusive_claim = false))]
    fn publish(
        &self,
        py: Python<'_>,
        name: String,
        record: Vec<u8>,
        exclusive_claim: bool,
    ) -> PyResult<PathBuf> {
        let staging = self.take()?;
        let mode = if exclusive_claim {
            PublishMode::ExclusiveClaim
        } else {
            PublishMode::Auto
        };
        Ok(off_gil(py, || staging.publish(&name, &record, mode))?)
    }

    /// Remove the staging directory and everything in it.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        match self.inner.lock().ok().and_then(|mut s| s.take()) {
            Some(staging) => Ok(off_gil(py, || staging.discard())?),
            None => Ok(()),
        }
    }
}

/// A weights source of a store: a file's descriptor, or bytes given in memory.
type AnyReader = Box<dyn Read + Send>;

/// Open `weights` and read and validate its header only.
fn open_source(weights: WeightsSource) -> CoreResult<OpenWeights<AnyReader>> {
    match weights {
        WeightsSource::Path(path) => {
            let (file, size) =
                files::open_regular(&path, true).map_err(|e| CoreError::source_io(&path, e))?;
            OpenWeights::read(Box::new(file) as AnyReader, size, &path)
        }
        WeightsSource::Bytes(bytes) => {
            let size = bytes.len() as u64;
            OpenWeights::read(
                Box::new(Cursor::new(bytes)) as AnyReader,
                size,
                Path::new("<bytes>"),
            )
        }
    }
}

/// A long copy's way to hear Ctrl-C: every 25 ms it takes the GIL back for a moment and lets
/// Python run its signal handlers. An exception from them (KeyboardInterrupt, or what the
/// caller's handler raises) stops the copy, and is the one raised.
#[derive(Default)]
struct SignalCheck {
    last: Option<Instant>,
    raised: Option<PyErr>,
}

impl SignalCheck {
    const EVERY: Duration = Duration::from_millis(25);

    fn keep_going(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < Self::EVERY) {
            return true;
        }
        self.last = Some(now);
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => true,
            Err(err) => {
                self.raised = Some(err);
                false
            }
        }
    }

    fn raise_or<T>(self, result: CoreResult<T>) -> PyResult<T> {
        match (result, self.raised) {
            (Err(CoreError::Interrupted { .. }), Some(err)) => Err(err),
            (result, _) => Ok(result?),
        }
    }
}

/// The weights of a store, opened: the header is read and validated and the source is held
/// open at its first byte of tensor data, so the caller can check the tensors against the
/// config before anything is written. `stage` copies the rest; `close` (or dropping it) lets
/// the source go having written nothing.
#[pyclass(module = "adapter_registry._core")]
struct OpenedWeights {
    inner: Mutex<Option<OpenWeights<AnyReader>>>,
    #[pyo3(get)]
    tensors: Vec<TensorTuple>,
    #[pyo3(get)]
    size: u64,
}

#[pymethods]
impl OpenedWeights {
    /// Stage the adapter under `{root}/.staging/`: copy the weights (the header bytes already
    /// read first, then the rest of the source) while hashing them, and write `config` as
    /// given. The source is used up, staged or not.
    fn stage(
        &self,
        py: Python<'_>,
        root: PathBuf,
        label: String,
        config: Vec<u8>,
    ) -> PyResult<StagedAdapter> {
        let weights = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("opened weights lock poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the weights were already staged or closed"))?;
        let mut signals = SignalCheck::default();
        let staged = off_gil(py, || -> CoreResult<_> {
            let staging = Staging::create(&root, &label)?;
            let (digest, header) = staging.write_weights(weights, || signals.keep_going())?;
            let config_digest = staging.write_config(&config)?;
            Ok((staging, digest, header, config_digest))
        });
        let (staging, digest, header, config_digest) = signals.raise_or(staged)?;
        Ok(StagedAdapter {
            path: staging.path().to_path_buf(),
            inner: Mutex::new(Some(staging)),
            file_hash: digest.sha256,
            file_size: digest.size,
            config_hash: config_digest.sha256,
            tensors: tensor_tuples(&header.tensors),
        })
    }

    /// Close the source without staging anything (a no-op once staged or closed).
    fn close(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.take();
        }
    }
}

/// Open `weights` (a path or bytes) for a store, reading and validating only its header.
#[pyfunction]
fn open_weights(py: Python<'_>, weights: WeightsSource) -> PyResult<OpenedWeights> {
    let opened = off_gil(py, || open_source(weights))?;
    Ok(OpenedWeights {
        tensors: tensor_tuples(&opened.header.tensors),
        size: opened.size,
        inner: Mutex::new(Some(opened)),
    })
}

/// `open_weights(weights).stage(root, label, config)` in one call.
#[pyfunction]
fn stage(
    py: Python<'_>,
    root: PathBuf,
    label: String,
    weights: WeightsSource,
    config: Vec<u8>,
) -> PyResult<StagedAdapter> {
    open_weights(py, weights)?.stage(py, root, label, config)
}

/// Remove the staging directories of dead stores (`staging::sweep_stale`); returns their
/// names.
#[pyfunction]
fn sweep_staging(py: Python<'_>, root: PathBuf) -> PyResult<Vec<String>> {
    Ok(off_gil(py, || staging::sweep_stale(&root))?.removed)
}

/// (names removed, (name, reason) of each entry left alone) of a sweep.
type SweepTuple = (Vec<String>, Vec<(String, String)>);

/// `sweep_staging`, also naming what it may not touch (another user's dead store, say).
#[pyfunction]
fn sweep_staging_report(py: Python<'_>, root: PathBuf) -> PyResult<SweepTuple> {
    let sweep = off_gil(py, || staging::sweep_stale(&root))?;
    Ok((sweep.removed, sweep.skipped))
}

/// The observer of a batch on the calling thread: it checks for signals and calls
/// `progress(files_done, files_total, bytes_done)` at most every 50 ms and once at the end. An
/// exception from either (Ctrl-C included) stops the batch and is raised by `finish`.
struct PyObserver {
    progress: Option<Py<PyAny>>,
    last_report: Instant,
    failure: Option<PyErr>,
}

impl PyObserver {
    fn new(progress: Option<Py<PyAny>>) -> Self {
        PyObserver {
            progress,
            last_report: Instant::now(),
            failure: None,
        }
    }

    fn observe(&mut self, p: verify::Progress) -> ControlFlow<()> {
        let finished = p.files_done == p.files_total;
        if !finished && self.last_report.elapsed() < Duration::from_millis(50) {
            return ControlFlow::Continue(());
        }
        self.last_report = Instant::now();
        let result = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.progress {
                cb.call1(py, (p.files_done, p.files_total, p.bytes_done))?;
            }
            Ok(())
        });
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.failure = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn finish<T>(self, outcome: Option<T>) -> PyResult<T> {
        if let Some(e) = self.failure {
            return Err(e);
        }
        outcome.ok_or_else(|| PyRuntimeError::new_err("verification cancelled"))
    }
}

fn default_threads(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// (verdict, sha256 or None, size or None, detail or None) for one verified file.
type OutcomeTuple = (String, Option<String>, Option<u64>, Option<String>);

/// Verify (path, expected sha256) pairs on `threads` threads (default: all cores); see
/// `PyObserver` for `progress`.
#[pyfunction]
#[pyo3(signature = (items, threads = None, progress = None))]
fn verify_files(
    py: Python<'_>,
    items: Vec<(PathBuf, String)>,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<OutcomeTuple>> {
    let threads = default_threads(threads);
    let mut observer = PyObserver::new(progress);
    let outcomes = off_gil(py, || {
        Ok(verify::verify_batch(&items, threads, |p| {
            observer.observe(p)
        }))
    })?;
    Ok(observer
        .finish(outcomes)?
        .into_iter()
        .map(|o| (o.verdict.as_str().to_string(), o.sha256, o.size, o.detail))
        .collect())
}

/// (id, weights sha256, weights size, config sha256, the row's file_path) of one adapter: the
/// first columns of a verification row, as the query gives them.
type ExpectedTuple = (String, String, u64, String, PathBuf);

/// Give stored adapters under `root` their whole verdict (hash, size, modes, PEFT link) on
/// `threads` threads; returns (verdict, problems) per adapter, in input order. Each adapter's
/// files are found at `{root}/{id}` (as `records.adapter_directory` has it), never from the
/// row's file_path. See `PyObserver` for `progress`, which counts two files per adapter.
#[pyfunction]
#[pyo3(signature = (root, items, threads = None, progress = None))]
fn verify_adapters(
    py: Python<'_>,
    root: PathBuf,
    items: Vec<ExpectedTuple>,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<(String, Vec<String>)>> {
    let threads = default_threads(threads);
    let expected: Vec<verify::Expected> = items
        .into_iter()
        .map(
            |(id, file_hash, file_size, config_hash, recorded_path)| verify::Expected {
                dir: root.join(id),
                file_hash,
                file_size,
                config_hash,
                recorded_path,
            },
        )
        .collect();
    let mut observer = PyObserver::new(progress);
    let reports = off_gil(py, || {
        Ok(verify::verify_adapters(&expected, threads, |p| {
            observer.observe(p)
        }))
    })?;
    Ok(observer
        .finish(reports)?
        .into_iter()
        .map(|r| (r.verdict.as_str().to_string(), r.problems))
        .collect())
}

/// What is wrong with the seal of a published adapter directory: (verdict, problem) pairs.
#[pyfunction]
fn seal_problems(py: Python<'_>, directory: PathBuf) -> PyResult<Vec<(String, String)>> {
    let found = off_gil(py, || Ok(verify::seal_problems(&directory)))?;
    Ok(found
        .into_iter()
        .map(|(v, p)| (v.as_str().to_string(), p))
        .collect())
}

/// Kill this process with SIGKILL if `ADAPTER_REGISTRY_CRASH_AT` names `step` (crash tests).
#[pyfunction]
fn crash_point(step: &str) -> PyResult<()> {
    if !fault::STEPS.contains(&step) {
        return Err(PyRuntimeError::new_err(format!(
            "unknown crash point {step:?}"
        )));
    }
    fault::crash_point(step);
    Ok(())
}

/// For tests: panic inside the core, to prove it reaches Python as AdapterRegistryError.
#[pyfunction]
fn _panic(py: Python<'_>, message: String) -> PyResult<()> {
    Ok(off_gil(py, || -> CoreResult<()> { panic!("{message}") })?)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("WEIGHTS_FILE", staging::WEIGHTS_FILE)?;
    m.add("PEFT_WEIGHTS_FILE", staging::PEFT_WEIGHTS_FILE)?;
    m.add("CONFIG_FILE", staging::CONFIG_FILE)?;
    m.add("RECORD_FILE", staging::RECORD_FILE)?;
    m.add("STAGING_DIR", staging::STAGING_DIR)?;
    m.add("SEALED_MODE", files::SEALED_MODE)?;
    m.add("DIR_MODE", files::DIR_MODE)?;
    m.add("STAGING_DIR_MODE", staging::STAGING_DIR_MODE)?;
    m.add("STAGING_LOCK_FILE", owner::LOCK_FILE)?;
    m.add("STAGING_OWNER_FILE", owner::OWNER_FILE)?;
    m.add("STAGING_STALE_AFTER_S", owner::STALE_AFTER.as_secs())?;
    m.add("VERDICTS", PyTuple::new(m.py(), verify::VERDICTS)?)?;
    m.add("CRASH_AT_ENV", fault::CRASH_AT_ENV)?;
    m.add("CRASH_SIGNAL_ENV", fault::CRASH_SIGNAL_ENV)?;
    m.add("CRASH_STEPS", PyTuple::new(m.py(), fault::STEPS)?)?;
    m.add_class::<StagedAdapter>()?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(read_safetensors_header, m)?)?;
    m.add_function(wrap_pyfunction!(read_verified, m)?)?;
    m.add_class::<VerifiedBytes>()?;
    m.add_class::<OpenedWeights>()?;
    m.add_function(wrap_pyfunction!(open_weights, m)?)?;
    m.add_function(wrap_pyfunction!(stage, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_staging, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_staging_report, m)?)?;
    m.add_function(wrap_pyfunction!(verify_files, m)?)?;
    m.add_function(wrap_pyfunction!(verify_adapters, m)?)?;
    m.add_function(wrap_pyfunction!(seal_problems, m)?)?;
    m.add_function(wrap_pyfunction!(crash_point, m)?)?;
    m.add_function(wrap_pyfunction!(_panic, m)?)?;
    Ok(())
}
