//! safetensors header validation: the 8-byte little-endian length, then the JSON header,
//! checked against the size of the whole file without reading the tensor data.
//!
//! Dtypes and their sizes are the `safetensors` crate's own, so the registry and the reference
//! reader never disagree about what a tensor occupies. Where the reference reader is lax the
//! registry is strict, because it is the gate: duplicate tensor names or `__metadata__` keys,
//! unknown fields, a tensor entry that is not an object, a null `__metadata__`, empty or
//! NUL-holding names, and any padding other than trailing spaces are all rejected. The JSON is
//! read by `header_json`, written for this schema, not by serde, whose data model accepts what
//! the format does not (a dtype written as `{"F32": null}`, a tensor entry written as an array).
//!
//! Limits, each refused with a message that names it:
//! - the header is at most [`MAX_HEADER_LEN`] bytes (100 MB, the reference reader's own limit);
//! - it holds at most [`MAX_TENSORS`] tensors (100,000; a rank-64 LoRA of every linear layer of
//!   a 70B Llama has 80 layers x 7 modules x 2 = 1,120);
//! - a shape has at most [`MAX_DIMS`] dimensions (64, numpy's limit; LoRA matrices have 2).
//!
//! What a header costs in memory follows from them: its bytes, once, plus the parsed names and
//! metadata (never more than the bytes they were written in) and at most
//! [`MAX_COST_PER_TENSOR`] bytes for each tensor's fixed part and shape: at most
//! `2 * header_len + 1 KiB * tensors`, about 300 MB at the limits (measured by
//! `a_header_costs_at_most_twice_its_length_plus_a_kib_per_tensor`). Before these limits an 84 MB
//! header of 1.5 million tensors cost 780 MB.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::Deserialize;

use crate::error::{CoreError, CoreResult};
use crate::files::open_regular;
use crate::header_json::Parser;

/// The reference implementation refuses headers above 100 MB; so do we.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// Size of the length prefix.
pub const PREFIX_LEN: u64 = 8;
/// The most tensors a header may hold.
pub const MAX_TENSORS: usize = 100_000;
/// The most dimensions a tensor's shape may have.
pub const MAX_DIMS: usize = 64;
/// The most memory one tensor may cost beyond its name: its `TensorInfo`, its dtype string and
/// a shape of [`MAX_DIMS`] dimensions, with the allocator's rounding (checked by a test).
pub const MAX_COST_PER_TENSOR: u64 = 1024;

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

/// What a file is, by its first bytes, where it is a common format that is not safetensors;
/// `None` otherwise. Asked only when the prefix cannot be a safetensors header length, so a
/// real safetensors file is never misnamed.
fn other_format(prefix: &[u8; 8]) -> Option<&'static str> {
    match prefix {
        [b'P', b'K', 3, 4, ..] => Some(
            "it is a PyTorch zip archive (torch.save: a .bin or .pt), not safetensors; save the \
             adapter with safetensors (PEFT: save_pretrained(..., safe_serialization=True))",
        ),
        [0x80, 2..=5, ..] => Some(
            "it is a Python pickle (an old PyTorch .bin), not safetensors; save the adapter with \
             safetensors (PEFT: save_pretrained(..., safe_serialization=True))",
        ),
        [b'G', b'G', b'U', b'F', ..] => Some(
            "it is a GGUF file (llama.cpp), not safetensors; store the PEFT adapter it was \
             converted from",
        ),
        [0x93, b'N', b'U', b'M', b'P', b'Y', ..] => Some(
            "it is a NumPy .npy array, not safetensors; write the tensors with \
             safetensors.numpy.save_file",
        ),
        _ => None,
    }
}

/// Read and check the length prefix against the file's size; returns the header length.
pub fn header_len(prefix: [u8; 8], file_size: u64) -> Result<u64, String> {
    header_len_of_safetensors(prefix, file_size)
        .map_err(|problem| other_format(&prefix).map_or(problem, str::to_string))
}

fn header_len_of_safetensors(prefix: [u8; 8], file_size: u64) -> Result<u64, String> {
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
    let mut parser = Parser::new(body);
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut metadata: Option<Vec<(String, String)>> = None;
    parser.object("the header", |p, key| {
        if key == "__metadata__" {
            if metadata.is_some() {
                return Err(p.error("duplicate key \"__metadata__\""));
            }
            metadata = Some(read_metadata(p)?);
            return Ok(());
        }
        if tensors.len() == MAX_TENSORS {
            return Err(format!(
                "header holds more than {MAX_TENSORS} tensors (the limit is {MAX_TENSORS})"
            ));
        }
        let tensor = read_tensor(p, key)?;
        tensors.push(tensor);
        Ok(())
    })?;
    if !parser.at_end() {
        return Err(format!(
            "header has trailing content after the JSON object, at byte {}",
            parser.pos()
        ));
    }
    let metadata = metadata.unwrap_or_default();
    refuse_duplicates(tensors.iter().map(|t| t.name.as_str()), "key")?;
    refuse_duplicates(metadata.iter().map(|(k, _)| k.as_str()), "__metadata__ key")?;
    check_coverage(&mut tensors, data_len)?;
    Ok(Header {
        tensors,
        metadata,
        header_len: json.len() as u64,
    })
}

/// `__metadata__`: an object (not null) of string to string.
fn read_metadata(p: &mut Parser<'_>) -> Result<Vec<(String, String)>, String> {
    let mut entries = Vec::new();
    p.object("__metadata__", |p, key| {
        let value = p.string("a __metadata__ value")?;
        entries.push((key.into_owned(), value.into_owned()));
        Ok(())
    })?;
    Ok(entries)
}

/// One tensor entry: an object of exactly `dtype`, `shape` and `data_offsets`, each once.
/// (Errors are named after the tensor only when they happen: nothing is formatted per tensor.)
fn read_tensor(p: &mut Parser<'_>, name: Cow<'_, str>) -> Result<TensorInfo, String> {
    if name.is_empty() {
        return Err("a tensor has an empty name".into());
    }
    if name.contains('\0') {
        return Err(format!("tensor name {name:?} holds a NUL byte"));
    }
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    p.object("the entry", |p, field| {
        let duplicate = match &*field {
            "dtype" => dtype.replace(read_dtype(p)?).is_some(),
            "shape" => shape.replace(p.integers("shape", MAX_DIMS)?).is_some(),
            "data_offsets" => {
                let pair = p.integers("data_offsets", 2)?;
                let [begin, end] = pair[..] else {
                    return Err(p.error("data_offsets is not a pair of integers"));
                };
                offsets.replace((begin, end)).is_some()
            }
            other => return Err(p.error(format!("unknown field {other:?}"))),
        };
        if duplicate {
            return Err(p.error(format!("duplicate field {field:?}")));
        }
        Ok(())
    })
    .map_err(|e| format!("tensor {name:?}: {e}"))?;
    let missing = |field: &str| format!("tensor {name:?}: missing field {field:?}");
    let dtype = dtype.ok_or_else(|| missing("dtype"))?;
    let tensor = TensorInfo {
        dtype: dtype.to_string(),
        shape: shape.ok_or_else(|| missing("shape"))?,
        data_offsets: offsets.ok_or_else(|| missing("data_offsets"))?,
        name: name.into_owned(),
    };
    check_size(&tensor, dtype)?;
    Ok(tensor)
}

/// A dtype: a string naming one of the safetensors crate's dtypes, exactly.
fn read_dtype(p: &mut Parser<'_>) -> Result<Dtype, String> {
    let text = p.string("dtype")?;
    // A bare string deserializer knows unit variants by their exact names, and nothing else.
    Dtype::deserialize(StrDeserializer::<ValueError>::new(&text))
        .map_err(|_| p.error(format!("unknown dtype {text:?}")))
}

fn refuse_duplicates<'a>(keys: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    match keys.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!("duplicate {what} {:?}", w[0])),
        None => Ok(()),
    }
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
    OpenWeights::open(path).map(|weights| weights.header)
}

/// A safetensors source whose header has been read and validated, its reader positioned at the
/// first byte of tensor data: what a store knows before it writes anything, so that weights the
/// config cannot describe are refused before a byte is copied. `head` holds the bytes read (the
/// prefix and the JSON), which the copy hashes and writes first: the source is read only once.
pub struct OpenWeights<R> {
    pub reader: R,
    /// The size of the whole source.
    pub size: u64,
    /// The origin, named in errors.
    pub source: PathBuf,
    pub header: Header,
    pub head: Vec<u8>,
}

impl OpenWeights<File> {
    /// Open a regular file (never a FIFO or a device) and read its header.
    pub fn open(path: &Path) -> CoreResult<Self> {
        let (file, size) = open_regular(path, true).map_err(|e| CoreError::source_io(path, e))?;
        OpenWeights::read(file, size, path)
    }
}

impl<R: Read> OpenWeights<R> {
    /// Read the header from the start of `reader`, a stream of `size` bytes from `source`.
    pub fn read(mut reader: R, size: u64, source: &Path) -> CoreResult<Self> {
        let (header, head) = read_header_from(&mut reader, size).map_err(|e| match e {
            HeaderReadError::Io(e) => CoreError::source_io(source, e),
            HeaderReadError::Invalid(reason) => CoreError::invalid(source, reason),
        })?;
        Ok(OpenWeights {
            reader,
            size,
            source: source.to_path_buf(),
            header,
            head,
        })
    }
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

#[cfg(test)]
#[path = "tests/header.rs"]
mod tests;
