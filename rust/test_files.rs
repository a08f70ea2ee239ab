//! Sample safetensors files for the unit tests: the one place that writes the length prefix,
//! the header padding and the data, so that every test builds its files the same way.

/// A file from a header and a data length: the header padded with spaces to a multiple of 8
/// bytes, as writers pad it, so that the data starts aligned.
pub(crate) fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    raw_file(&h, data_len)
}

/// A file from a header taken exactly as given (no padding) and a data length: the u64
/// little-endian header length, the header, then `data_len` bytes of [`data`].
pub(crate) fn raw_file(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend(data(data_len));
    out
}

/// A well-formed file of one tensor `w` of `dtype` and `shape`, holding `data_len` bytes.
pub(crate) fn one_tensor(dtype: &str, shape: &[usize], data_len: usize) -> Vec<u8> {
    let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
    let entry = format!(
        r#"{{"dtype":"{dtype}","shape":[{}],"data_offsets":[0,{data_len}]}}"#,
        shape.join(",")
    );
    file(&format!(r#"{{"w":{entry}}}"#), data_len)
}

/// `len` bytes of tensor data: a pattern that does not repeat at any power of two, so that a
/// chunk read from the wrong place shows.
pub(crate) fn data(len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(|i| (i * 7 % 251) as u8)
}
