//! The fuzz seed corpus (`fuzz/seeds/gguf_read/`, no `.gguf` suffix so the repository's
//! `*.gguf` ignore rule does not drop them) is generated here from the same files
//! the other tests use: valid files of several shapes and every malformed case. The test
//! checks the committed seeds are current and behave as named (valid ones open, bad ones
//! fail); `TERN_UPDATE_FUZZ_SEEDS=1 cargo test -p tern-gguf --test fuzz_corpus` rewrites
//! them after a deliberate change.

mod common;

use std::path::PathBuf;

use tern_gguf::{Array, GgmlType, GgufFile, GgufWriter};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = vec![("valid-basic".to_string(), common::valid_file())];

    let mut every = GgufWriter::new();
    for (k, v) in common::every_value() {
        every.add_metadata(k, v).unwrap();
    }
    let mut bytes = Vec::new();
    every.write_to(&mut bytes).unwrap();
    seeds.push(("valid-every-value".to_string(), bytes));

    for (alignment, ty, dims) in [
        (1u64, GgmlType::Q4_K, vec![256u64]),
        (8, GgmlType::Q6_K, vec![256, 1, 1, 1]),
        (64, GgmlType::BF16, vec![3, 2]),
    ] {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", "gemma3").unwrap();
        w.alignment(alignment).unwrap();
        w.add_metadata("gemma3.attention.head_count_kv", Array::U32(vec![1, 2]))
            .unwrap();
        let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        w.add_tensor("x", &dims, ty, vec![0x5a; n]).unwrap();
        w.add_tensor("y", &[4], GgmlType::F32, vec![1; 16]).unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        seeds.push((format!("valid-align-{alignment}"), bytes));
    }

    for case in common::bad_cases() {
        seeds.push((format!("bad-{}", case.name), case.bytes));
    }
    seeds
}

fn seed_dir() -> PathBuf {
    tern_testkit::repo_root().join("fuzz/seeds/gguf_read")
}

#[test]
fn fuzz_seeds_are_current() {
    let dir = seed_dir();
    let seeds = seeds();
    if std::env::var_os("TERN_UPDATE_FUZZ_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let committed = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("seed {name}: {e}\nhelp: TERN_UPDATE_FUZZ_SEEDS=1 cargo test -p tern-gguf --test fuzz_corpus")
        });
        assert!(
            committed == *bytes,
            "seed {name} is stale\nhelp: TERN_UPDATE_FUZZ_SEEDS=1 cargo test -p tern-gguf --test fuzz_corpus"
        );
        let result = GgufFile::from_bytes(committed);
        assert_eq!(
            result.is_ok(),
            name.starts_with("valid-"),
            "{name}: {result:?}"
        );
    }
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        seeds.len(),
        "unexpected files in {}",
        dir.display()
    );
}
