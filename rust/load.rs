//! Reading a stored adapter for loading. The whole file goes into the caller's buffer, and each
//! chunk is hashed right after it lands there (still in cache): the bytes the tensors will view
//! are exactly the bytes that were hashed, read once, with no window between a check and a
//! later read. The header is then parsed from that same buffer.

use std::io::{self, Read};
use std::path::Path;

use crate::error::{CoreError, CoreResult};
use crate::files::open_regular;
use crate::hash::{FileDigest, StreamHasher};
use crate::header::{validate_bytes, Header};

/// Bytes read (and then hashed) per step: a size that stays in L2 between the copy and the hash.
const STEP: usize = 1 << 20;

/// Fill `buf` with the file at `path`, which must be exactly `buf.len()` bytes, hashing as it
/// goes; returns the digest and the validated header.
pub fn read_verified_into(path: &Path, buf: &mut [u8]) -> CoreResult<(FileDigest, Header)> {
    let (mut file, size) = open_regular(path, false).map_err(|e| CoreError::source_io(path, e))?;
    if size != buf.len() as u64 {
        return Err(CoreError::invalid(
            path,
            format!("the file is {size} bytes but {} were expected", buf.len()),
        ));
    }
    let mut hasher = StreamHasher::default();
    let mut filled = 0usize;
    while filled < buf.len() {
        let end = (filled + STEP).min(buf.len());
        let n = match file.read(&mut buf[filled..end]) {
            Ok(0) => {
                return Err(CoreError::invalid(
                    path,
                    format!("the file ended after {filled} of {size} bytes"),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CoreError::source_io(path, e)),
        };
        hasher.update(&buf[filled..filled + n]);
        filled += n;
    }
    let mut probe = [0u8; 1];
    if matches!(file.read(&mut probe), Ok(n) if n > 0) {
        return Err(CoreError::invalid(path, "the file grew while it was read"));
    }
    let header = validate_bytes(buf).map_err(|reason| CoreError::invalid(path, reason))?;
    Ok((hasher.finish(), header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_file;
    use std::fs;

    fn sample() -> Vec<u8> {
        let mut h = br#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#.to_vec();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend((0u8..12).collect::<Vec<_>>());
        out
    }

    #[test]
    fn fills_the_buffer_with_the_hashed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        fs::write(&path, sample()).unwrap();
        let mut buf = vec![0u8; sample().len()];
        let (digest, header) = read_verified_into(&path, &mut buf).unwrap();
        assert_eq!(buf, sample());
        assert_eq!(digest, hash_file(&path).unwrap());
        assert_eq!(header.tensors[0].data_offsets, (0, 12));
    }

    #[test]
    fn a_size_other_than_expected_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        fs::write(&path, sample()).unwrap();
        let mut buf = vec![0u8; sample().len() + 1];
        let err = read_verified_into(&path, &mut buf).unwrap_err();
        assert!(err.to_string().contains("were expected"), "{err}");
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, sample()).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut buf = vec![0u8; sample().len()];
        assert!(read_verified_into(&link, &mut buf).is_err());
    }
}
