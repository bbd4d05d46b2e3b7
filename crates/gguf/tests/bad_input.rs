//! One test per kind of malformed file: each must fail with its own error variant and a
//! message naming the problem, never a panic. The files are built in `common::bad_cases`.

mod common;

use tern_gguf::{Error, GgufFile};

fn check(name: &str) {
    let cases = common::bad_cases();
    let case = cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let err = match GgufFile::from_bytes(case.bytes.clone()) {
        Ok(_) => panic!("{name}: malformed file was accepted"),
        Err(e) => e,
    };
    assert!((case.matches)(&err), "{name}: wrong error: {err:?}");
    let message = err.to_string();
    for part in case.message {
        assert!(
            message.contains(part),
            "{name}: message {message:?} lacks {part:?}"
        );
    }
    assert_eq!(
        message
            .chars()
            .next()
            .map(|c| c.is_lowercase() || !c.is_alphabetic()),
        Some(true),
        "{name}: message should start lowercase: {message:?}"
    );
}

macro_rules! cases {
    ($($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_case_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for case in common::bad_cases() {
                assert!(tested.contains(&case.name), "case {} has no test", case.name);
            }
        }
    };
}

cases! {
    empty_file bad_magic version_1 version_4 big_endian
    truncated_header truncated_value truncated_tensor_info
    absurd_tensor_count absurd_kv_count
    key_length_too_large string_value_too_long array_length_too_large string_array_too_large
    unknown_value_type unknown_array_element_type nesting_too_deep duplicate_key
    invalid_utf8_key invalid_utf8_value invalid_utf8_tensor_name
    alignment_zero alignment_not_power_of_two alignment_wrong_type alignment_not_u32
    too_many_dims zero_dim overflowing_dims overflowing_bytes unknown_tensor_type
    row_not_block_multiple data_past_end offset_past_end missing_data_padding
    misaligned_offset overlapping_tensors duplicate_tensor_name
}

/// Cutting a valid file anywhere gives `Truncated` (in the header, metadata or tensor
/// table; `AbsurdCount`/`LengthTooLarge` when the cut leaves fewer bytes than a count or
/// length announces) or `TensorOutOfBounds` (in the data), and the message says where.
#[test]
fn every_truncation_is_a_clear_error() {
    let valid = common::valid_file();
    let file = GgufFile::from_bytes(valid.clone()).unwrap();
    let data_offset = file.data_offset() as usize;
    for len in 0..valid.len() {
        match GgufFile::from_bytes(valid[..len].to_vec()) {
            Err(Error::Truncated { offset, .. }) => {
                assert!(
                    len < data_offset,
                    "cut at {len}: truncated error inside the data"
                );
                assert!(
                    offset <= len as u64,
                    "cut at {len}: offset {offset} past the end"
                );
            }
            Err(e @ (Error::AbsurdCount { .. } | Error::LengthTooLarge { .. })) => {
                assert!(len < data_offset, "cut at {len}: {e}");
                assert!(e.to_string().contains("bytes left"), "cut at {len}: {e}");
            }
            Err(Error::TensorOutOfBounds { file_size, .. }) => {
                assert!(len >= data_offset - 32, "cut at {len}");
                assert_eq!(file_size, len as u64);
            }
            // The last tensor is padded: cutting only padding leaves a valid file.
            Ok(f) => assert!(
                f.tensors()
                    .iter()
                    .all(|t| f.data_offset() + t.offset + t.n_bytes <= len as u64)
                    && len > data_offset,
                "cut at {len} accepted"
            ),
            Err(other) => panic!("cut at {len}: unexpected {other}"),
        }
    }
}

/// A valid file is accepted, so the cases above fail for their defect alone.
#[test]
fn the_base_file_is_valid() {
    let file = GgufFile::from_bytes(common::valid_file()).unwrap();
    assert_eq!(file.tensors().len(), 3);
    assert_eq!(file.metadata().len(), 7);
}
