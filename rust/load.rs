//! Reading a stored adapter for loading. The file is read once into fresh anonymous memory (never
//! a mapping of the file, so a later write to the file cannot change what was verified), and each
//! chunk is hashed right after it lands, on a second thread, while the next one is read: the
//! bytes the tensors will view are exactly the bytes that were hashed, at about the cost of the
//! hash alone. The header is then parsed from that same memory.

use std::io::{self, Read};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::mpsc;

use crate::error::{CoreError, CoreResult};
use crate::files::open_regular;
use crate::hash::{FileDigest, StreamHasher};
use crate::header::{validate_bytes, Header};

/// Bytes read per step: the hasher takes each while it is still in cache.
const STEP: usize = 1 << 20;
/// How far the reader may run ahead of the hasher, in steps.
const AHEAD: usize = 8;

/// Page-aligned anonymous memory, on huge pages where the kernel gives them (far fewer faults
/// for a 200 MB adapter), freed on drop.
pub struct AnonBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its memory exclusively; access goes through &self / &mut self.
unsafe impl Send for AnonBuffer {}
// SAFETY: as above; shared access is read-only unless the owner hands out a raw pointer.
unsafe impl Sync for AnonBuffer {}

impl AnonBuffer {
    pub fn new(len: usize) -> io::Result<Self> {
        let map_len = len.max(1);
        // SAFETY: a fresh private anonymous mapping; the result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping just made; failure only costs speed.
        unsafe { libc::madvise(addr, map_len, libc::MADV_HUGEPAGE) };
        Ok(AnonBuffer {
            ptr: NonNull::new(addr.cast()).expect("mmap never returns null on success"),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped and initialised (zero-filled by the kernel).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AnonBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

/// Read the file at `path`, which must be `expected_size` bytes, into new memory, hashing as it
/// goes; returns the memory, its digest and the validated header.
pub fn read_verified(
    path: &Path,
    expected_size: u64,
) -> CoreResult<(AnonBuffer, FileDigest, Header)> {
    let (mut file, size) = open_regular(path, false).map_err(|e| CoreError::source_io(path, e))?;
    if size != expected_size {
        return Err(CoreError::invalid(
            path,
            format!("the file is {size} bytes but {expected_size} were expected"),
        ));
    }
    let len =
        usize::try_from(size).map_err(|_| CoreError::invalid(path, "too large for memory"))?;
    let mut buf =
        AnonBuffer::new(len).map_err(|e| CoreError::storage(path, "allocating memory for", e))?;
    let digest = read_and_hash(&mut file, buf.as_mut_slice(), path)?;
    let mut probe = [0u8; 1];
    if matches!(file.read(&mut probe), Ok(n) if n > 0) {
        return Err(CoreError::invalid(path, "the file grew while it was read"));
    }
    let header =
        validate_bytes(buf.as_slice()).map_err(|reason| CoreError::invalid(path, reason))?;
    Ok((buf, digest, header))
}

/// Fill `buf` from `file` on this thread while another hashes each filled chunk.
fn read_and_hash(file: &mut impl Read, buf: &mut [u8], path: &Path) -> CoreResult<FileDigest> {
    let total = buf.len();
    let (tx, rx) = mpsc::sync_channel::<&[u8]>(AHEAD);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut hasher = StreamHasher::default();
            for chunk in rx {
                hasher.update(chunk);
            }
            hasher
        });
        let mut rest: &mut [u8] = buf;
        let mut filled = 0usize;
        let read_result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            let step = rest.len().min(STEP);
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(step);
            if let Err(e) = fill(file, chunk) {
                break Err(e);
            }
            filled += step;
            if tx.send(&*chunk).is_err() {
                break Ok(()); // the hasher is gone: it panicked, reported below
            }
            rest = tail;
        };
        drop(tx);
        let hasher = hasher.join().map_err(|_| CoreError::Internal {
            what: "the hashing thread panicked".into(),
        })?;
        match read_result {
            Ok(()) => Ok(hasher.finish()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(CoreError::invalid(
                path,
                format!("the file ended before byte {} of {total}", filled + 1),
            )),
            Err(e) => Err(CoreError::source_io(path, e)),
        }
    })
}

fn fill(file: &mut impl Read, mut chunk: &mut [u8]) -> io::Result<()> {
    while !chunk.is_empty() {
        match file.read(chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => chunk = &mut chunk[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_file;
    use crate::test_files::one_tensor;
    use std::fs;

    /// A file of one U8 tensor of `data_len` bytes.
    fn sample(data_len: usize) -> Vec<u8> {
        one_tensor("U8", &[data_len], data_len)
    }

    #[test]
    fn reads_the_hashed_bytes_across_many_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let bytes = sample(3 * STEP + 5);
        fs::write(&path, &bytes).unwrap();
        let (buf, digest, header) = read_verified(&path, bytes.len() as u64).unwrap();
        assert_eq!(buf.as_slice(), &bytes[..]);
        assert_eq!(digest, hash_file(&path).unwrap());
        assert_eq!(header.tensors[0].data_offsets, (0, 3 * STEP as u64 + 5));
    }

    #[test]
    fn a_size_other_than_expected_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        fs::write(&path, sample(12)).unwrap();
        let err = read_verified(&path, sample(12).len() as u64 + 1)
            .err()
            .unwrap();
        assert!(err.to_string().contains("were expected"), "{err}");
    }

    #[test]
    fn a_short_stream_is_an_error_not_a_hang() {
        let mut buf = vec![0u8; 3 * STEP];
        let data = vec![1u8; 2 * STEP + 3];
        let err = read_and_hash(&mut io::Cursor::new(data), &mut buf, Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("the file ended"), "{err}");
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, sample(12)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_verified(&link, sample(12).len() as u64).is_err());
    }
}
