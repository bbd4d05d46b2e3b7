//! The `tern` binary end to end: exit codes and messages, `--json` contracts, pulls from a
//! loopback server (including SIGKILL mid-download and resume), pip and hf:// through the
//! environment, broken pipes.

mod support;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::fixtures::{build_wheel, sha256_hex, tiny_gguf};
use support::server::{Route, TestServer};
use support::{assert_keys, json, run, tern};
use tern_gguf::{GgmlType, GgufWriter, Value};

#[test]
fn help_lists_every_command() {
    let home = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(tern(home.path()).arg("--help"));
    assert_eq!(code, 0);
    for command in [
        "chat",
        "run",
        "pull",
        "models",
        "rm",
        "inspect",
        "doctor",
        "tokenize",
        "perplexity",
    ] {
        assert!(
            stdout.contains(&format!("  {command} ")),
            "{command} missing:\n{stdout}"
        );
    }
    let (code, _, stderr) = run(tern(home.path()).arg("--no-such-flag"));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn errors_have_a_what_a_why_a_help_line_and_an_exit_code() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.route("/gone.gguf", Route::status(404));
    server.route("/page.gguf", Route::file(b"<html>hello</html>".to_vec()));

    let (code, _, stderr) = run(tern(home.path()).args(["inspect", "no-such-model"]));
    assert_eq!(code, 3);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "tern: model `no-such-model`: unknown model `no-such-model`: not in the store and not in the catalog",
            "help: `tern models --catalog` lists the catalog; a local file needs a path (./model.gguf), a download a URL, hf:// or pip: reference",
        ]
    );
    let (code, _, stderr) = run(tern(home.path()).args(["pull", "ftp://host/x.gguf"]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.starts_with("tern: invalid model reference `ftp://host/x.gguf`: unsupported scheme"),
        "{stderr}"
    );

    let (code, _, stderr) = run(tern(home.path()).args(["pull", &server.url("/gone.gguf")]));
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "not found (HTTP 404) at {}",
            server.url("/gone.gguf")
        )),
        "{stderr}"
    );

    let (code, _, stderr) = run(tern(home.path()).args(["-q", "pull", &server.url("/page.gguf")]));
    assert_eq!(code, 5, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "tern: pulling `{0}`: {0} is not a GGUF file (it starts with `<html>hello</htm`)",
            server.url("/page.gguf")
        )
    );

    let (code, _, stderr) = run(tern(home.path())
        .args(["pull", "pip:x==1"])
        .env("TERN_PYTHON", "/nonexistent/python"));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("help: install Python 3 with pip, or set TERN_PYTHON"),
        "{stderr}"
    );

    let (code, _, stderr) = run(tern(home.path()).args(["rm", "nothing-here"]));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.starts_with(
        "tern: removing `nothing-here`: model `nothing-here:latest` is not in the store"
    ));
}

#[test]
fn chat_and_run_name_what_a_file_lacks_to_be_a_model() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let model = files.path().join("m.gguf");
    fs::write(&model, tiny_gguf(16, 1)).unwrap();
    for args in [
        vec!["chat", model.to_str().unwrap()],
        vec!["run", "-m", model.to_str().unwrap(), "hi"],
        vec![
            "perplexity",
            model.to_str().unwrap(),
            "-f",
            model.to_str().unwrap(),
        ],
    ] {
        let (code, _, stderr) = run(tern(home.path()).args(&args));
        assert_eq!(code, 5, "{stderr}");
        assert!(
            stderr.contains("lacks required keys: llama.context_length"),
            "{stderr}"
        );
        assert!(stderr.contains(model.to_str().unwrap()), "{stderr}");
    }
}

#[test]
fn pull_models_rm_round_trip_with_json() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(1000, 2);
    server.route("/dir/Tiny.gguf", Route::file(body.clone()));
    let url = server.url("/dir/Tiny.gguf");

    let pulled = json(tern(home.path()).args(["pull", &url, "--json"]));
    assert_keys(
        &pulled,
        &[
            "reference",
            "name",
            "tag",
            "digest",
            "size",
            "path",
            "source",
            "pulled_at",
            "fetched",
        ],
    );
    assert_eq!(pulled["reference"], "tiny:latest");
    assert_eq!(pulled["digest"], format!("sha256:{}", sha256_hex(&body)));
    assert_eq!(pulled["size"], body.len());
    assert_eq!(pulled["fetched"], true);
    assert_eq!(fs::read(pulled["path"].as_str().unwrap()).unwrap(), body);
    let again = json(tern(home.path()).args(["pull", &url, "--json"]));
    assert_eq!(again["fetched"], false);

    json(tern(home.path()).args(["pull", &url, "--json", "--name", "copy:v1"]));
    let models = json(tern(home.path()).args(["models", "--json"]));
    let models = models.as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_keys(
        &models[0],
        &[
            "reference",
            "name",
            "tag",
            "digest",
            "size",
            "path",
            "source",
            "pulled_at",
        ],
    );
    assert_eq!(models[0]["reference"], "copy:v1");
    assert_eq!(models[1]["reference"], "tiny:latest");

    let (code, _, stderr) = run(tern(home.path()).args(["models"]));
    assert_eq!(code, 0);
    assert!(
        stderr.contains("tiny:latest") && stderr.contains("2 model(s)"),
        "{stderr}"
    );

    let removed = json(tern(home.path()).args(["rm", "tiny", "copy:v1", "--json"]));
    assert_keys(&removed[0], &["reference", "digest", "blob_removed"]);
    assert_eq!(removed[0]["blob_removed"], false);
    assert_eq!(removed[1]["blob_removed"], true);
    assert_eq!(
        json(tern(home.path()).args(["models", "--json"])),
        serde_json::json!([])
    );
    assert_eq!(fs::read_dir(home.path().join("blobs")).unwrap().count(), 0);
}

#[test]
fn catalog_listing_has_the_families_and_their_facts() {
    let home = tempfile::tempdir().unwrap();
    let catalog = json(tern(home.path()).args(["models", "--catalog", "--json"]));
    let names: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for name in [
        "smollm2-135m-instruct",
        "gemma-3-270m",
        "qwen3-4b",
        "phi-4-mini-instruct",
        "qwen2.5-coder-1.5b-instruct",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let first = &catalog[0];
    assert_keys(
        first,
        &[
            "name",
            "family",
            "description",
            "architecture",
            "parameters",
            "context",
            "license",
            "default_tag",
            "variants",
            "installed",
        ],
    );
    assert_keys(
        &first["variants"][0],
        &["tag", "quant", "size", "ram_mb", "sha256", "sources"],
    );
}

/// A small llama-shaped file with the metadata `inspect` reports.
fn inspect_fixture(path: &Path) {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.name", "tiny llama").unwrap();
    w.add_metadata("general.file_type", 7u32).unwrap();
    w.add_metadata("llama.context_length", 256u32).unwrap();
    w.add_metadata("llama.embedding_length", 8u32).unwrap();
    w.add_metadata("llama.block_count", 1u32).unwrap();
    w.add_metadata("llama.feed_forward_length", 16u32).unwrap();
    w.add_metadata("llama.attention.head_count", 2u32).unwrap();
    w.add_metadata("llama.attention.head_count_kv", 1u32)
        .unwrap();
    w.add_metadata("llama.rope.freq_base", 10000.0f32).unwrap();
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    w.add_metadata("tokenizer.ggml.pre", "smollm").unwrap();
    let tokens: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
    w.add_metadata("tokenizer.ggml.tokens", Value::from(tokens))
        .unwrap();
    w.add_metadata("tokenizer.chat_template", "{{ messages }}")
        .unwrap();
    w.add_tensor(
        "token_embd.weight",
        &[8, 16],
        GgmlType::F32,
        vec![0u8; 8 * 16 * 4],
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        &[8, 8],
        GgmlType::F16,
        vec![0u8; 64 * 2],
    )
    .unwrap();
    w.add_tensor(
        "blk.0.ffn_up.weight",
        &[32, 2],
        GgmlType::Q8_0,
        vec![0u8; 2 * 34],
    )
    .unwrap();
    w.write_to_path(path).unwrap();
}

#[test]
fn inspect_json_is_a_locked_contract() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("tiny.gguf");
    inspect_fixture(&path);
    let report = json(tern(home.path()).args(["inspect", path.to_str().unwrap(), "--json"]));
    assert_keys(
        &report,
        &[
            "path",
            "reference",
            "gguf_version",
            "architecture",
            "name",
            "parameters",
            "file_type",
            "quant_mix",
            "tensor_count",
            "metadata_count",
            "context_length",
            "block_count",
            "embedding_length",
            "feed_forward_length",
            "head_count",
            "head_count_kv",
            "head_dim",
            "sliding_window",
            "rope_freq_base",
            "tokenizer",
            "chat_template",
            "file_size",
            "tensor_data_size",
        ],
    );
    assert_keys(&report["tokenizer"], &["model", "pre", "vocab_size"]);
    assert_keys(
        &report["quant_mix"][0],
        &["type", "tensors", "bytes", "parameters"],
    );
    let expected = serde_json::json!({
        "path": path.to_str().unwrap(),
        "reference": null,
        "gguf_version": 3,
        "architecture": "llama",
        "name": "tiny llama",
        "parameters": 128 + 64 + 64,
        "file_type": "Q8_0",
        "quant_mix": [
            {"type": "f32", "tensors": 1, "bytes": 512, "parameters": 128},
            {"type": "f16", "tensors": 1, "bytes": 128, "parameters": 64},
            {"type": "q8_0", "tensors": 1, "bytes": 68, "parameters": 64},
        ],
        "tensor_count": 3,
        "metadata_count": 14,
        "context_length": 256,
        "block_count": 1,
        "embedding_length": 8,
        "feed_forward_length": 16,
        "head_count": 2,
        "head_count_kv": 1,
        "head_dim": 4,
        "sliding_window": null,
        "rope_freq_base": 10000.0,
        "tokenizer": {"model": "gpt2", "pre": "smollm", "vocab_size": 16},
        "chat_template": true,
        "file_size": fs::metadata(&path).unwrap().len(),
        "tensor_data_size": 512 + 128 + 68,
    });
    assert_eq!(report, expected);

    // A file that is not GGUF.
    let bad = home.path().join("bad.gguf");
    fs::write(&bad, "not a model").unwrap();
    let (code, _, stderr) = run(tern(home.path()).args(["inspect", bad.to_str().unwrap()]));
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "tern: reading `{}`: not a gguf file",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn doctor_json_is_a_locked_contract() {
    let home = tempfile::tempdir().unwrap();
    let report = json(tern(home.path()).args(["doctor", "--json"]));
    assert_keys(
        &report,
        &[
            "tern_version",
            "os",
            "arch",
            "cpu",
            "kernel_path",
            "memory",
            "store",
            "python",
        ],
    );
    assert_keys(
        &report["cpu"],
        &[
            "model",
            "physical_cores",
            "logical_cores",
            "available_parallelism",
            "features",
        ],
    );
    assert_keys(
        &report["cpu"]["features"],
        &[
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "neon",
            "dotprod",
            "i8mm",
        ],
    );
    assert_keys(
        &report["memory"],
        &[
            "total_bytes",
            "available_bytes",
            "cgroup_limit_bytes",
            "cgroup_version",
        ],
    );
    assert_keys(
        &report["store"],
        &["path", "blobs_bytes", "partial_bytes", "models"],
    );
    assert_keys(&report["python"], &["command", "pip"]);
    assert_eq!(report["store"]["path"], home.path().to_str().unwrap());
    assert_eq!(report["kernel_path"], tern_kernels::kernel_path().name());
    assert_eq!(
        report["cpu"]["logical_cores"],
        tern_kernels::cpu_info().logical_cores
    );
    assert_eq!(
        report["cpu"]["features"]["avx2"],
        tern_kernels::cpu_features().avx2
    );
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(report["memory"]["total_bytes"], total_kib * 1024);
    assert!(
        report["python"]["pip"]
            .as_str()
            .unwrap()
            .starts_with("pip "),
        "{}",
        report["python"]
    );
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let home = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to stdout now fails with EPIPE
    let output = tern(home.path())
        .args(["models", "--catalog", "--json"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// The `.partial` file of the one download in `tmp/`, if any.
fn partial_size(home: &Path) -> Option<u64> {
    fs::read_dir(home.join("tmp"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".partial")
                .then(|| e.metadata().map(|m| m.len()).unwrap_or(0))
        })
}

#[test]
fn a_pull_killed_mid_download_leaves_nothing_visible_and_resumes() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(500_000, 3); // 2 MB, trickled: ~16 KiB every 20 ms
    server.route(
        "/slow.gguf",
        Route {
            delay_per_chunk: Some(Duration::from_millis(20)),
            ..Route::file(body.clone())
        },
    );
    let url = server.url("/slow.gguf");

    let mut child = tern(home.path())
        .args(["pull", &url])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while partial_size(home.path()).unwrap_or(0) < 300_000 {
        assert!(Instant::now() < deadline, "the download never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = partial_size(home.path()).unwrap();
    assert!(kept >= 300_000 && kept < body.len() as u64, "{kept}");

    // Nothing half-downloaded is visible as a model.
    assert_eq!(
        json(tern(home.path()).args(["models", "--json"])),
        serde_json::json!([])
    );
    assert_eq!(fs::read_dir(home.path().join("blobs")).unwrap().count(), 0);

    // The next pull resumes where the file ends.
    server.route("/slow.gguf", Route::file(body.clone()));
    let pulled = json(tern(home.path()).args(["pull", &url, "--json"]));
    assert_eq!(pulled["digest"], format!("sha256:{}", sha256_hex(&body)));
    let requests = server.requests_to("/slow.gguf");
    let resumed = requests.last().unwrap().range.clone().unwrap();
    let offset: u64 = resumed
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        offset >= kept,
        "resumed at {offset}, partial file had {kept}"
    );
    assert!(partial_size(home.path()).is_none());
}

#[test]
fn two_processes_pulling_the_same_model_share_one_download() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(250_000, 4);
    server.route(
        "/m.gguf",
        Route {
            delay_per_chunk: Some(Duration::from_millis(10)),
            ..Route::file(body.clone())
        },
    );
    let url = server.url("/m.gguf");
    let children: Vec<_> = (0..2)
        .map(|_| {
            tern(home.path())
                .args(["pull", &url, "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    assert_eq!(outputs[0]["digest"], outputs[1]["digest"]);
    assert_eq!(outputs.iter().filter(|o| o["fetched"] == true).count(), 1);
    assert_eq!(server.requests_to("/m.gguf").len(), 1);
    assert_eq!(
        fs::read(outputs[0]["path"].as_str().unwrap()).unwrap(),
        body
    );
}

#[test]
fn hf_endpoint_and_token_come_from_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let body = tiny_gguf(100, 5);
    server.route(
        "/org/repo/resolve/main/m.gguf",
        Route {
            bearer: Some("hf_abc".into()),
            ..Route::file(body)
        },
    );
    let reference = "hf://org/repo/m.gguf";

    let (code, _, stderr) = run(tern(home.path())
        .args(["pull", reference])
        .env("HF_ENDPOINT", server.base()));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("access denied (HTTP 401)"), "{stderr}");
    assert!(
        stderr.contains("help: the repository is gated or private"),
        "{stderr}"
    );

    let pulled = json(
        tern(home.path())
            .args(["pull", reference, "--json"])
            .env("HF_ENDPOINT", server.base())
            .env("HF_TOKEN", "hf_abc"),
    );
    assert_eq!(pulled["reference"], "m:latest");
    let last = server.log().pop().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer hf_abc"));
}

#[test]
fn pip_references_use_pips_own_configuration() {
    let home = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let body = tiny_gguf(300, 6);
    build_wheel(
        wheels.path(),
        "tern-cli-test-model",
        "2.0.1",
        &[("tern_cli_test_model/data/model.gguf", &body)],
    );
    let pulled = json(
        tern(home.path())
            .args(["pull", "pip:tern-cli-test-model==2.0.1", "--json"])
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", wheels.path()),
    );
    assert_eq!(pulled["reference"], "tern-cli-test-model:2.0.1");
    assert_eq!(pulled["digest"], format!("sha256:{}", sha256_hex(&body)));
}
