//! Fuzzes the GGUF reader: any byte string must give `Ok` or a typed error, never a panic,
//! an out-of-bounds read or a huge allocation (libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb` catch the latter). An accepted file is then exercised the way the
//! engine uses it: every tensor's bytes, every typed getter, and a write-back that must
//! read again to the same metadata.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_gguf::{GgufFile, GgufWriter, Key};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let mut total = 0u64;
    for t in file.tensors() {
        let bytes = file.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes);
        assert_eq!(t.offset % file.alignment(), 0);
        assert!(std::ptr::eq(file.tensor(&t.name).unwrap(), t));
        total += t.n_bytes;
        let _ = (t.n_elements(), t.row_len(), t.n_rows(), t.row_n_bytes());
    }
    assert!(total <= file.file_size());

    let m = file.metadata();
    let _ = m.architecture();
    for &key in Key::ALL {
        let _ = m.get(key);
        let _ = m.get_u32(key);
        let _ = m.get_i64(key);
        let _ = m.get_f32(key);
        let _ = m.get_bool(key);
        let _ = m.get_str(key);
        let _ = m.get_str_array(key);
        let _ = m.get_u32_per_layer(key, 4);
    }
    for (_, value) in m.iter() {
        let _ = value.to_string();
    }

    // The write-back pads to the alignment, so a legal but huge `general.alignment`
    // (up to 2^31) in a tiny file would make gigabytes of zeros: skip those.
    if file.alignment() > 1 << 16 {
        return;
    }
    let mut out = Vec::new();
    GgufWriter::from_file(&file)
        .expect("an accepted file can be handed to the writer")
        .write_to(&mut out)
        .expect("writing to memory cannot fail");
    let again = GgufFile::from_bytes(out).expect("a written file reads back");
    assert_eq!(again.metadata().len(), m.len());
    assert_eq!(again.tensors().len(), file.tensors().len());
});
