//! safetensors header validation: the 8-byte little-endian length, then the JSON header,
//! checked against the size of the whole file without reading the tensor data.
//!
//! Dtypes and their sizes are the `safetensors` crate's own, so the registry and the reference
//! reader never disagree about what a tensor occupies. Where the reference reader is lax the
//! registry is strict, because it is the gate: duplicate tensor names or `__metadata__` keys,
//! unknown fields, a tensor entry that is not an object, a null `__metadata__`, empty or
//! NUL-holding names, and any padding other than trailing spaces are all rejected.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::Path;

use safetensors::Dtype;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{CoreError, CoreResult};
use crate::files::open_regular;

/// The reference implementation refuses headers above 100 MB; so do we.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// Size of the length prefix.
pub const PREFIX_LEN: u64 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data_offsets: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Tensors in file order (sorted by their data offsets).
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__`, in the order it was written.
    pub metadata: Vec<(String, String)>,
    /// Length of the JSON header in bytes (padding included).
    pub header_len: u64,
}

impl Header {
    /// Where the tensor data starts in the file.
    pub fn data_start(&self) -> u64 {
        PREFIX_LEN + self.header_len
    }
}

/// Read and check the length prefix against the file's size; returns the header length.
pub fn header_len(prefix: [u8; 8], file_size: u64) -> Result<u64, String> {
    if file_size < PREFIX_LEN {
        return Err(format!(
            "file is {file_size} bytes, shorter than the 8-byte header length"
        ));
    }
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_LEN {
        return Err(format!(
            "header length {n} exceeds the {MAX_HEADER_LEN}-byte limit"
        ));
    }
    if n > file_size - PREFIX_LEN {
        return Err(format!(
            "header length {n} runs past the end of the {file_size}-byte file"
        ));
    }
    Ok(n)
}

/// Parse and check the JSON header; `data_len` is the number of bytes after it in the file.
pub fn parse_header(json: &[u8], data_len: u64) -> Result<Header, String> {
    let text = std::str::from_utf8(json).map_err(|e| format!("header is not UTF-8: {e}"))?;
    if !text.starts_with('{') {
        return Err(
            "header does not start with '{' (leading whitespace or not a JSON object)".into(),
        );
    }
    // Writers pad the header with spaces to an 8-byte boundary; nothing else may follow the JSON.
    let body = text.trim_end_matches(' ');
    if !body.ends_with('}') {
        return Err(
            "header has trailing bytes other than space padding after the JSON object".into(),
        );
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let raw = RawHeader::deserialize(&mut de).map_err(|e| format!("header JSON: {e}"))?;
    de.end()
        .map_err(|e| format!("header has trailing content after the JSON object: {e}"))?;

    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, entry) in raw.tensors {
        if name.is_empty() {
            return Err("a tensor has an empty name".into());
        }
        if name.contains('\0') {
            return Err(format!("tensor name {name:?} holds a NUL byte"));
        }
        let entry = entry_object(&name, &entry)?;
        tensors.push(TensorInfo {
            dtype: entry.dtype.to_string(),
            shape: entry.shape.clone(),
            data_offsets: entry.data_offsets,
            name,
        });
        check_size(tensors.last().expect("just pushed"), entry.dtype)?;
    }
    check_coverage(&mut tensors, data_len)?;
    Ok(Header {
        tensors,
        metadata: raw.metadata,
        header_len: json.len() as u64,
    })
}

/// Validate a whole safetensors file held in memory.
pub fn validate_bytes(bytes: &[u8]) -> Result<Header, String> {
    let size = bytes.len() as u64;
    let prefix: [u8; 8] = bytes
        .get(..8)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("file is {size} bytes, shorter than the 8-byte header length"))?;
    let n = header_len(prefix, size)?;
    let json = &bytes[8..(8 + n) as usize];
    parse_header(json, size - PREFIX_LEN - n)
}

/// Validate a file on disk, reading only its header.
pub fn read_header(path: &Path) -> CoreResult<Header> {
    let (mut file, size) = open_regular(path, true).map_err(|e| CoreError::source_io(path, e))?;
    read_header_from(&mut file, size)
        .map(|(header, _)| header)
        .map_err(|reason| match reason {
            HeaderReadError::Io(e) => CoreError::source_io(path, e),
            HeaderReadError::Invalid(r) => CoreError::invalid(path, r),
        })
}

#[derive(Debug)]
pub enum HeaderReadError {
    Io(std::io::Error),
    Invalid(String),
}

/// Read the prefix and the header from the start of a stream whose total size is `size`.
/// Returns the header and the raw bytes read (prefix + JSON), so a copier can write them on.
pub fn read_header_from(
    reader: &mut impl Read,
    size: u64,
) -> Result<(Header, Vec<u8>), HeaderReadError> {
    let mut prefix = [0u8; 8];
    if size < PREFIX_LEN {
        return Err(HeaderReadError::Invalid(format!(
            "file is {size} bytes, shorter than the 8-byte header length"
        )));
    }
    read_exact(reader, &mut prefix)?;
    let n = header_len(prefix, size).map_err(HeaderReadError::Invalid)?;
    let mut bytes = vec![0u8; (PREFIX_LEN + n) as usize];
    bytes[..8].copy_from_slice(&prefix);
    read_exact(reader, &mut bytes[8..])?;
    let header =
        parse_header(&bytes[8..], size - PREFIX_LEN - n).map_err(HeaderReadError::Invalid)?;
    Ok((header, bytes))
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), HeaderReadError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HeaderReadError::Invalid("file ended inside its header".into())
        } else {
            HeaderReadError::Io(e)
        }
    })
}

/// One tensor entry: exactly these three fields, each once (serde rejects duplicates).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorEntry {
    dtype: Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn entry_object(name: &str, raw: &RawValue) -> Result<TensorEntry, String> {
    if !raw.get().starts_with('{') {
        return Err(format!("tensor {name:?}: entry is not a JSON object"));
    }
    serde_json::from_str(raw.get()).map_err(|e| format!("tensor {name:?}: {e}"))
}

fn check_size(tensor: &TensorInfo, dtype: Dtype) -> Result<(), String> {
    let name = &tensor.name;
    let (begin, end) = tensor.data_offsets;
    if end < begin {
        return Err(format!(
            "tensor {name:?}: data_offsets end {end} is before begin {begin}"
        ));
    }
    let elements = tensor
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor {name:?}: shape {:?} overflows", tensor.shape))?;
    let bits = elements
        .checked_mul(dtype.bitsize() as u64)
        .ok_or_else(|| format!("tensor {name:?}: shape {:?} overflows", tensor.shape))?;
    if bits % 8 != 0 {
        return Err(format!(
            "tensor {name:?}: {elements} elements of {dtype} do not fill whole bytes"
        ));
    }
    if end - begin != bits / 8 {
        return Err(format!(
            "tensor {name:?}: {dtype} {:?} needs {} bytes but data_offsets span {}",
            tensor.shape,
            bits / 8,
            end - begin
        ));
    }
    Ok(())
}

/// The tensors must tile the data region exactly: from 0, no gap, no overlap, no trailing bytes.
fn check_coverage(tensors: &mut [TensorInfo], data_len: u64) -> Result<(), String> {
    tensors.sort_by_key(|t| t.data_offsets);
    let mut cursor = 0u64;
    for t in tensors.iter() {
        let (begin, end) = t.data_offsets;
        if begin != cursor {
            let what = if begin > cursor { "gap" } else { "overlap" };
            return Err(format!(
                "tensor {:?}: data starts at {begin}, expected {cursor} ({what} in the data region)",
                t.name
            ));
        }
        cursor = end;
    }
    if cursor != data_len {
        return Err(format!(
            "tensors cover {cursor} bytes but the data region holds {data_len}"
        ));
    }
    Ok(())
}

/// The top-level object, read key by key so that duplicates are seen (a map would drop them).
struct RawHeader {
    tensors: Vec<(String, Box<RawValue>)>,
    metadata: Vec<(String, String)>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawHeaderVisitor)
    }
}

struct RawHeaderVisitor;

impl<'de> Visitor<'de> for RawHeaderVisitor {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut seen = HashSet::new();
        let mut tensors = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            if key == "__metadata__" {
                metadata = Some(map.next_value::<StrictStringMap>()?.0);
            } else {
                tensors.push((key, map.next_value::<Box<RawValue>>()?));
            }
        }
        Ok(RawHeader {
            tensors,
            metadata: metadata.unwrap_or_default(),
        })
    }
}

/// `__metadata__`: an object (not null) of string to string, every key once.
struct StrictStringMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for StrictStringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictStringMapVisitor)
    }
}

struct StrictStringMapVisitor;

impl<'de> Visitor<'de> for StrictStringMapVisitor {
    type Value = StrictStringMap;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("__metadata__ as an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictStringMap, A::Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "duplicate __metadata__ key {key:?}"
                )));
            }
            let value: String = map.next_value()?;
            entries.push((key, value));
        }
        Ok(StrictStringMap(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::{file, raw_file};

    fn reject(bytes: &[u8], needle: &str) {
        let err = validate_bytes(bytes).unwrap_err();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    }

    const TWO: &str = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#;

    #[test]
    fn accepts_a_well_formed_file_and_reports_tensors_in_offset_order() {
        let h = validate_bytes(&file(TWO, 22)).unwrap();
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(h.tensors[1].dtype, "BF16");
        assert_eq!(h.tensors[1].shape, vec![3]);
        assert_eq!(h.header_len % 8, 0);
    }

    #[test]
    fn accepts_metadata_zero_size_and_empty_files() {
        let h = validate_bytes(&file(
            r#"{"__metadata__":{"format":"pt"},"z":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]}}"#,
            0,
        ))
        .unwrap();
        assert_eq!(h.metadata, vec![("format".into(), "pt".into())]);
        assert!(validate_bytes(&file("{}", 0)).unwrap().tensors.is_empty());
    }

    #[test]
    fn accepts_sub_byte_dtypes_that_fill_whole_bytes() {
        validate_bytes(&file(
            r#"{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#,
            2,
        ))
        .unwrap();
        reject(
            &file(
                r#"{"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
                2,
            ),
            "whole bytes",
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        reject(&[1, 2, 3], "shorter than the 8-byte");
        reject(&u64::MAX.to_le_bytes(), "exceeds");
        reject(&(1u64 << 63).to_le_bytes(), "exceeds");
        let mut past_end = 64u64.to_le_bytes().to_vec();
        past_end.extend_from_slice(b"{}");
        reject(&past_end, "past the end");
        let mut truncated = file(TWO, 22);
        truncated.pop();
        reject(&truncated, "cover 22 bytes but the data region holds 21");
        let mut trailing = file(TWO, 22);
        trailing.push(0);
        reject(&trailing, "data region holds 23");
    }

    #[test]
    fn rejects_bad_json_shapes() {
        reject(&raw_file(b"\xff\xfe{}    ", 0), "not UTF-8");
        reject(&raw_file(b"[]      ", 0), "does not start with '{'");
        reject(&raw_file(b" {}     ", 0), "does not start with '{'");
        reject(
            &raw_file(b"{}\n     ", 0),
            "trailing bytes other than space",
        );
        reject(
            &raw_file(b"{}\0\0\0\0\0\0", 0),
            "trailing bytes other than space",
        );
        reject(&raw_file(b"{} {}    ", 0), "trailing content");
        reject(&file(r#"{"a":1"#, 0), "trailing bytes other than space");
        reject(&file(r#"{"a":1}"#, 0), "not a JSON object");
        reject(&file(r#"{"a" 1}"#, 0), "header JSON");
    }

    #[test]
    fn rejects_what_the_reference_reader_lets_through() {
        let dup = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        reject(&file(dup, 8), "duplicate key \"a\"");
        reject(
            &file(r#"{"__metadata__":{"k":"1","k":"2"}}"#, 0),
            "duplicate __metadata__ key",
        );
        reject(&file(r#"{"__metadata__":null}"#, 0), "header JSON");
        reject(&file(r#"{"__metadata__":{"k":1}}"#, 0), "header JSON");
        reject(
            &file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#,
                4,
            ),
            "unknown field",
        );
        reject(
            &file(
                r#"{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "duplicate field",
        );
        reject(&file(r#"{"a":["F32",[1],[0,4]]}"#, 4), "not a JSON object");
        reject(
            &file(
                r#"{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "empty name",
        );
        reject(
            &file(
                r#"{"a\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "NUL",
        );
    }

    #[test]
    fn rejects_bad_tensor_entries() {
        let one = |entry: &str, data: usize| file(&format!(r#"{{"t":{entry}}}"#), data);
        reject(
            &one(r#"{"dtype":"F33","shape":[1],"data_offsets":[0,4]}"#, 4),
            "unknown variant",
        );
        reject(
            &one(r#"{"shape":[1],"data_offsets":[0,4]}"#, 4),
            "missing field",
        );
        reject(
            &one(r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#, 4),
            "expected u64",
        );
        reject(
            &one(r#"{"dtype":"F32","shape":[1],"data_offsets":[4,0]}"#, 4),
            "before begin",
        );
        reject(
            &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#, 4),
            "needs 8 bytes",
        );
        reject(
            &one(
                r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}"#,
                4,
            ),
            "overflows",
        );
        reject(
            &one(
                r#"{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}"#,
                4,
            ),
            "overflows",
        );
    }

    #[test]
    fn rejects_gaps_and_overlaps() {
        let gap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        reject(&file(gap, 12), "gap");
        let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        reject(&file(overlap, 8), "overlap");
        let late = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        reject(&file(late, 8), "gap");
    }

    #[test]
    fn agrees_with_the_reference_reader_on_what_it_accepts() {
        let bytes = file(TWO, 22);
        let (n, reference) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let ours = validate_bytes(&bytes).unwrap();
        assert_eq!(n as u64, ours.header_len);
        for t in &ours.tensors {
            let info = reference.info(&t.name).unwrap();
            assert_eq!(info.dtype.to_string(), t.dtype);
            let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
            assert_eq!(shape, t.shape);
        }
    }

    #[test]
    fn reads_only_the_header_of_a_stream() {
        let bytes = file(TWO, 22);
        let mut cursor = std::io::Cursor::new(&bytes);
        let (header, raw) = read_header_from(&mut cursor, bytes.len() as u64).unwrap();
        assert_eq!(raw.len() as u64, header.data_start());
        assert_eq!(cursor.position(), header.data_start());
    }
}
