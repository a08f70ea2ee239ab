//! Property-based fuzzing of the safetensors header validator (proptest: a nightly toolchain
//! for cargo-fuzz is not to be had here). Whatever the bytes, the validator returns a verdict
//! and never panics; whatever it accepts, the reference reader accepts too, and the tensors
//! tile the data exactly. `HEADER_FUZZ_CASES` sets the number of cases per property (CI runs
//! the default; by hand, e.g. `HEADER_FUZZ_CASES=1000000 cargo test --release header_fuzz`).

use std::io::Cursor;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::header::{read_header_from, validate_bytes, Header, PREFIX_LEN};
use crate::test_files::raw_file;

const DTYPES: &[(&str, u64)] = &[("F32", 4), ("F16", 2), ("BF16", 2), ("I64", 8), ("U8", 1)];

fn config() -> Config {
    let cases = std::env::var("HEADER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A well-formed file: tensors laid out back to back, some metadata, space padding.
fn well_formed() -> impl Strategy<Value = Vec<u8>> {
    let tensor = (0..DTYPES.len(), prop::collection::vec(0u64..5, 0..3));
    (
        prop::collection::btree_map("[a-z._0-9]{1,12}", tensor, 0..5),
        prop::collection::btree_map("[a-z]{1,6}", "[ -~]{0,8}", 0..3),
        0usize..8,
    )
        .prop_map(|(tensors, metadata, padding)| {
            let mut entries = Vec::new();
            let mut offset = 0u64;
            for (name, (dtype, shape)) in tensors {
                let (dtype, width) = DTYPES[dtype];
                let len = shape.iter().product::<u64>() * width;
                let entry = serde_json::json!({
                    "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len],
                });
                entries.push((name, entry));
                offset += len;
            }
            let mut header = serde_json::Map::new();
            if !metadata.is_empty() {
                header.insert("__metadata__".into(), serde_json::json!(metadata));
            }
            for (name, entry) in entries {
                header.insert(name, entry);
            }
            let mut json = serde_json::to_vec(&header).expect("serializable");
            json.extend(std::iter::repeat_n(b' ', padding));
            raw_file(&json, offset as usize)
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    Length(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        prop_oneof![Just(1u64 << 63), Just(u64::MAX), any::<u64>(), 0u64..4096]
            .prop_map(Mutation::Length),
    ]
}

fn mutate(mut file: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *m {
            Mutation::Flip(i, x) if !file.is_empty() => {
                let i = at(i, file.len());
                file[i] ^= x;
            }
            Mutation::Insert(i, b) => {
                let i = at(i, file.len() + 1);
                file.insert(i, b);
            }
            Mutation::Remove(i) if !file.is_empty() => {
                let i = at(i, file.len());
                file.remove(i);
            }
            Mutation::Truncate(i) => file.truncate(at(i, file.len() + 1)),
            Mutation::Length(n) if file.len() >= 8 => file[..8].copy_from_slice(&n.to_le_bytes()),
            _ => {}
        }
    }
    file
}

/// What must hold of anything the validator accepts.
fn check_accepted(file: &[u8], header: &Header) -> Result<(), TestCaseError> {
    let reference = safetensors::SafeTensors::deserialize(file);
    prop_assert!(
        reference.is_ok(),
        "accepted, but the reference reader refuses: {reference:?}"
    );
    let data_len = file.len() as u64 - header.data_start();
    let mut end = 0;
    for t in &header.tensors {
        prop_assert_eq!(
            t.data_offsets.0,
            end,
            "a gap or an overlap before {}",
            t.name
        );
        end = t.data_offsets.1;
    }
    prop_assert_eq!(end, data_len, "the tensors do not cover the data exactly");
    prop_assert!(header.data_start() >= PREFIX_LEN);
    Ok(())
}

/// Both entry points, the in-memory one and the streaming one, give the same verdict.
fn validate_both(file: &[u8]) -> Result<Option<Header>, TestCaseError> {
    let in_memory = validate_bytes(file);
    let streamed = read_header_from(&mut Cursor::new(file), file.len() as u64);
    prop_assert_eq!(
        in_memory.is_ok(),
        streamed.is_ok(),
        "{:?}",
        in_memory.as_ref().err()
    );
    Ok(in_memory.ok())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_get_a_verdict_never_a_panic(file in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Some(header) = validate_both(&file)? {
            check_accepted(&file, &header)?;
        }
    }

    #[test]
    fn well_formed_files_are_accepted(file in well_formed()) {
        let header = validate_both(&file)?;
        prop_assert!(header.is_some(), "refused a well-formed file");
        check_accepted(&file, &header.expect("checked"))?;
    }

    #[test]
    fn mutated_files_get_a_verdict_never_a_panic(
        file in well_formed(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let file = mutate(file, &mutations);
        if let Some(header) = validate_both(&file)? {
            check_accepted(&file, &header)?;
        }
    }
}
