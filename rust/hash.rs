//! Streaming SHA-256 in constant memory. `sha2` picks the CPU's SHA extensions (SHA-NI) at
//! run time, so one core hashes at the hardware's speed.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::error::{CoreError, CoreResult};

/// Bytes read per call: large enough that syscall overhead vanishes, small enough to stay in L2.
pub const CHUNK: usize = 1 << 20;

/// A running SHA-256 that also counts the bytes it has seen.
#[derive(Default, Clone)]
pub struct StreamHasher {
    inner: Sha256,
    len: u64,
}

impl StreamHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower-case hex digest, as `hashlib` and `sha256sum` print it.
    pub fn finish(self) -> FileDigest {
        FileDigest {
            sha256: to_hex(&self.inner.finalize()),
            size: self.len,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub sha256: String,
    pub size: u64,
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Hash everything `reader` yields, calling `on_chunk` with each chunk's length (for progress).
/// Reads to the end (a read that returns 0): no length is known.
pub fn hash_reader(reader: &mut impl Read, on_chunk: impl FnMut(usize)) -> io::Result<FileDigest> {
    hash_regular_into(reader, &mut vec![0u8; CHUNK], u64::MAX, on_chunk)
}

/// `hash_reader` through a buffer the caller keeps (a verification worker's lane: one buffer
/// per worker, not one per file), for a regular file whose size `len` is known (from its
/// fstat): a read that fills less than the buffer once `len` bytes are in is the end of the
/// file, so the one more read that would return 0 is not made (a system call per file, for
/// thousands of small files). A short read before `len` bytes (NFS may give one) or a file
/// that grew since its fstat is read on to its end as before.
pub fn hash_regular_into(
    reader: &mut impl Read,
    buf: &mut [u8],
    len: u64,
    mut on_chunk: impl FnMut(usize),
) -> io::Result<FileDigest> {
    let mut hasher = StreamHasher::default();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        on_chunk(n);
        if n < buf.len() && hasher.len() >= len {
            break;
        }
    }
    Ok(hasher.finish())
}

/// Hash everything `reader` yields, reading on a second thread while this one hashes: the copy
/// out of the page cache then costs no hashing time. For one large stream; a batch of files is
/// better served by one thread per file, but its largest files by this. `on_chunk` is called on
/// the hashing thread with each chunk's length once it is hashed.
pub fn hash_reader_pipelined(
    reader: &mut (impl Read + Send),
    mut on_chunk: impl FnMut(usize),
) -> io::Result<FileDigest> {
    const BUFFERS: usize = 8;
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let read = scope.spawn(move || -> io::Result<()> {
            // The buffers are made here, as the reading needs them: zeroing them (calloc
            // memsets memory it reuses) costs the hashing thread nothing.
            let mut made = 0;
            let next_buffer = || {
                if made < BUFFERS {
                    made += 1;
                    Some(vec![0u8; CHUNK])
                } else {
                    empty_rx.recv().ok()
                }
            };
            for mut buf in std::iter::from_fn(next_buffer) {
                let n = loop {
                    match reader.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut hasher = StreamHasher::default();
        for (buf, n) in full_rx {
            hasher.update(&buf[..n]);
            let _ = empty_tx.send(buf);
            on_chunk(n);
        }
        drop(empty_tx);
        read.join()
            .map_err(|_| io::Error::other("the reading thread panicked"))??;
        Ok(hasher.finish())
    })
}

/// SHA-256 of a file, or of anything that can be opened and read (a FIFO included).
pub fn hash_file(path: &Path) -> CoreResult<FileDigest> {
    let mut file = File::open(path).map_err(|e| CoreError::source_io(path, e))?;
    let large = file
        .metadata()
        .map(|m| m.len() >= PIPELINE_FROM)
        .unwrap_or(false);
    let result = if large {
        hash_reader_pipelined(&mut file, |_| {})
    } else {
        hash_reader(&mut file, |_| {})
    };
    result.map_err(|e| CoreError::source_io(path, e))
}

/// Below this size a second thread costs more than it saves.
pub const PIPELINE_FROM: u64 = 8 * CHUNK as u64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn digest(bytes: &[u8]) -> String {
        hash_reader(&mut Cursor::new(bytes), |_| {}).unwrap().sha256
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn chunk_boundaries_do_not_change_the_digest() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 7)).map(|i| (i * 31 % 251) as u8).collect();
        let whole = {
            let mut h = StreamHasher::default();
            h.update(&data);
            h.finish()
        };
        let mut seen = 0usize;
        let streamed = hash_reader(&mut Cursor::new(&data), |n| seen += n).unwrap();
        assert_eq!(whole, streamed);
        assert_eq!(seen, data.len());
        assert_eq!(streamed.size, data.len() as u64);
    }

    #[test]
    fn the_pipelined_hash_equals_the_plain_one() {
        for len in [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 3] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
            let plain = hash_reader(&mut Cursor::new(&data), |_| {}).unwrap();
            let mut seen = 0;
            let piped = hash_reader_pipelined(&mut Cursor::new(&data), |n| seen += n).unwrap();
            assert_eq!(seen, len);
            assert_eq!(plain, piped, "{len}");
        }
    }

    /// A reader that gives at most `most` bytes per read and counts its reads.
    struct Trickle<'a> {
        data: &'a [u8],
        most: usize,
        reads: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.most).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_known_length_saves_the_read_at_the_end_but_never_stops_early() {
        let data: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
        let whole = digest(&data);
        let hash = |len: u64, most: usize| {
            let mut r = Trickle {
                data: &data,
                most,
                reads: 0,
            };
            let d = hash_regular_into(&mut r, &mut [0u8; 4096], len, |_| {}).unwrap();
            (d.sha256, r.reads)
        };
        // 4096 then 904 (short, all in): done in two reads, not three.
        assert_eq!(hash(5000, usize::MAX), (whole.clone(), 2));
        // Short reads before the end (NFS) are read on from.
        assert_eq!(hash(5000, 1000), (whole.clone(), 5));
        // The file grew after its fstat said 10: read to its real end all the same.
        assert_eq!(hash(10, usize::MAX).0, whole);
        // It shrank: the read that returns 0 ends it.
        assert_eq!(hash(9000, usize::MAX), (whole, 3));
    }

    #[test]
    fn missing_file_is_a_source_error_naming_the_path() {
        let err = hash_file(Path::new("/nonexistent/x.safetensors")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.safetensors"));
        assert!(err.to_string().contains("does not exist"));
    }
}
