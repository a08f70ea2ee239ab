//! Tests of `header.rs` (its `mod tests`, kept in this file so that the module reads alone).

use super::*;

#[test]
fn common_formats_that_are_not_safetensors_are_named() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"PK\x03\x04\x14\x00\x00\x00rest of a zip",
            "PyTorch zip archive",
        ),
        (b"\x80\x02}q\x00(X\x07\x00\x00\x00layer.0", "Python pickle"),
        (b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00", "GGUF file"),
        (
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}",
            "NumPy .npy array",
        ),
    ];
    for (bytes, named) in cases {
        let err = validate_bytes(bytes).unwrap_err();
        assert!(
            err.contains(named) && err.contains("not safetensors"),
            "{err}"
        );
    }
    // A safetensors file whose length prefix begins like a zip is still read as one.
    let json = format!("{{{}}}", " ".repeat(0x0403_4B50 - 2));
    let mut file = 0x0403_4B50u64.to_le_bytes().to_vec();
    assert_eq!(&file[..4], b"PK\x03\x04");
    file.extend(json.as_bytes());
    assert!(validate_bytes(&file).is_ok());
}
use crate::test_alloc::peak_heap;
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
        "unknown dtype",
    );
    reject(
        &one(r#"{"shape":[1],"data_offsets":[0,4]}"#, 4),
        "missing field",
    );
    reject(
        &one(r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#, 4),
        "negative number",
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

/// Each of these parses with serde_json (or its derive) and is refused here: JSON that no
/// safetensors writer produces and that non-serde readers refuse.
#[test]
fn refuses_what_serde_would_let_through() {
    let one = |entry: &str| file(&format!(r#"{{"t":{entry}}}"#), 4);
    for (entry, needle) in [
        (
            r#"{"dtype":{"F32":null},"shape":[1],"data_offsets":[0,4]}"#,
            "dtype is not a string",
        ),
        (
            r#"{"dtype":["F32"],"shape":[1],"data_offsets":[0,4]}"#,
            "dtype is not a string",
        ),
        (
            r#"{"dtype":null,"shape":[1],"data_offsets":[0,4]}"#,
            "dtype is not a string",
        ),
        (
            r#"{"dtype":"f32","shape":[1],"data_offsets":[0,4]}"#,
            "unknown dtype",
        ),
        (
            r#"{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}"#,
            "not an integer",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}"#,
            "not an integer",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}"#,
            "negative number",
        ),
        (
            r#"{"dtype":"F32","shape":[01],"data_offsets":[0,4]}"#,
            "leading zero",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}"#,
            "beyond",
        ),
        (
            r#"{"dtype":"F32","shape":null,"data_offsets":[0,4]}"#,
            "not an array",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":null}"#,
            "not an array",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}"#,
            "more than 2",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[4]}"#,
            "not a pair",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":{"0":0,"1":4}}"#,
            "not an array",
        ),
        (
            r#"{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}"#,
            "not an integer",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4],}"#,
            "a key is not a string",
        ),
        (
            r#"{"dtype":"F32","dtyp\u0065":"F32","shape":[1],"data_offsets":[0,4]}"#,
            "duplicate field",
        ),
    ] {
        reject(&one(entry), needle);
    }
    let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    for (header, needle) in [
        (
            format!(r#"{{"a":{entry},"\u0061":{entry}}}"#),
            "duplicate key \"a\"",
        ),
        (
            r#"{"__metadata__":{},"__metadata\u005f_":{}}"#.into(),
            "duplicate key",
        ),
        (r#"{"__metadata__":[]}"#.into(), "not a JSON object"),
        (r#"{"__metadata__":"pt"}"#.into(), "not a JSON object"),
        (r#"{"__metadata__":{"k":null}}"#.into(), "not a string"),
        (r#"{"__metadata__":{"k":{"v":"w"}}}"#.into(), "not a string"),
        (
            r#"{"__metadata__":{"k":"\ud800"}}"#.into(),
            "lone surrogate",
        ),
        (format!(r#"{{"\udfff":{entry}}}"#), "lone surrogate"),
        (format!(r#"{{"a\x":{entry}}}"#), "unknown escape"),
        (format!(r#"{{"a":{entry},}}"#), "a key is not a string"),
    ] {
        reject(&file(&header, 4), needle);
    }
    reject(
        &raw_file("\u{feff}{}".as_bytes(), 0),
        "does not start with '{'",
    );
    reject(
        &raw_file(b"{}\t      ", 0),
        "trailing bytes other than space",
    );
}

#[test]
fn accepts_what_json_allows_in_any_writer_s_style() {
    let h = validate_bytes(&file(
        "{\n\t\"a\\u00e9\" : {\"data_offsets\" :[ 0 ,4 ],\r\n\"sh\\u0061pe\":[1],\"dtype\":\"F32\"} }",
        4,
    ))
    .unwrap();
    assert_eq!(h.tensors[0].name, "a\u{e9}");
    assert_eq!(h.tensors[0].shape, vec![1]);
}

/// `n` tensors of one byte each, named `t0`, `t1`, ...
fn tensors(n: usize, shape: &str) -> Vec<u8> {
    let mut json = String::from("{");
    for i in 0..n {
        let sep = if i == 0 { "" } else { "," };
        json.push_str(&format!(
            r#"{sep}"t{i}":{{"dtype":"U8","shape":{shape},"data_offsets":[{i},{}]}}"#,
            i + 1
        ));
    }
    json.push('}');
    file(&json, n)
}

#[test]
fn holds_at_most_max_tensors() {
    let at_limit = validate_bytes(&tensors(MAX_TENSORS, "[1]")).unwrap();
    assert_eq!(at_limit.tensors.len(), MAX_TENSORS);
    reject(
        &tensors(MAX_TENSORS + 1, "[1]"),
        "more than 100000 tensors (the limit is 100000)",
    );
}

#[test]
fn shapes_have_at_most_max_dims() {
    let ones = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    let h = validate_bytes(&tensors(1, &ones(MAX_DIMS))).unwrap();
    assert_eq!(h.tensors[0].shape.len(), MAX_DIMS);
    reject(&tensors(1, &ones(MAX_DIMS + 1)), "more than 64 elements");
}

/// The documented bound, `2 * header_len + MAX_COST_PER_TENSOR * tensors`, on the headers
/// that cost the most for their size: every tensor at the dimension limit, long names,
/// escaped names, big metadata. Measured on the streaming read, which holds the header's
/// bytes too.
#[test]
fn a_header_costs_at_most_twice_its_length_plus_a_kib_per_tensor() {
    let ones = format!("[{}]", vec!["1"; MAX_DIMS].join(","));
    let long_names = {
        let name = "n".repeat(10_000);
        let entries: Vec<String> = (0..1_000)
            .map(|i| {
                format!(
                    r#""{name}{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
                    i + 1
                )
            })
            .collect();
        file(&format!("{{{}}}", entries.join(",")), 1_000)
    };
    let metadata = file(
        &format!(
            r#"{{"__metadata__":{{"k":"{}","\u00e9":"{}"}}}}"#,
            "\\u00e9".repeat(1 << 20),
            "v".repeat(4 << 20)
        ),
        0,
    );
    for (what, bytes, count) in [
        (
            "100,000 tensors of 64 dimensions",
            tensors(MAX_TENSORS, &ones),
            MAX_TENSORS,
        ),
        (
            "100,000 tensors of 1 dimension",
            tensors(MAX_TENSORS, "[1]"),
            MAX_TENSORS,
        ),
        ("1,000 names of 10 kB", long_names, 1_000),
        ("10 MB of metadata", metadata, 0),
    ] {
        let size = bytes.len() as u64;
        let (read, cost) = peak_heap(|| read_header_from(&mut std::io::Cursor::new(&bytes), size));
        let (header, head) = read.unwrap();
        assert_eq!(header.tensors.len(), count);
        let bound = 2 * head.len() as u64 + MAX_COST_PER_TENSOR * count as u64;
        eprintln!(
            "{what}: header {} bytes, cost {cost} bytes, bound {bound}",
            head.len()
        );
        assert!(cost <= bound, "{what}: {cost} > {bound}");
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
