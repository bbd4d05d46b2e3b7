//! `tern bench` on the real SmolLM2-135M file, one thread, tiny tests: the llama-bench-like
//! table, the `--json` contract (typed structs that reject unknown fields, so a field
//! added or removed without updating docs/PERFORMANCE.md fails here), the test matrix
//! (`-p 0` / `-n 0` skip, comma lists) and the argument errors. No speed is asserted.

mod support;

use serde::Deserialize;
use support::{run, tern};
use tern_testkit::{TestModel, model_path};

/// The `--json` document, as docs/PERFORMANCE.md documents it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // every field is read by serde's check; not all by the asserts
struct Report {
    tern_version: String,
    cpu_info: Option<String>,
    kernel_path: String,
    model_filename: String,
    model_type: String,
    model_size: u64,
    model_n_params: u64,
    load_ms: f64,
    first_token_ms: f64,
    first_token_test: String,
    peak_rss_bytes: Option<u64>,
    rss_file_bytes: Option<u64>,
    rss_anon_bytes: Option<u64>,
    tests: Vec<TestReport>,
    prompt_cache: Vec<PromptCacheReport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PromptCacheReport {
    prefix_tokens: usize,
    suffix_tokens: usize,
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    warm_tokens_computed: usize,
    avg_cold_ms: f64,
    avg_warm_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestReport {
    test: String,
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    threads_used: usize,
    n_ctx: usize,
    n_ubatch: usize,
    type_k: String,
    type_v: String,
    kv_bytes: u64,
    warmup: bool,
    samples_ns: Vec<u64>,
    samples_ts: Vec<f64>,
    avg_ns: f64,
    stddev_ns: f64,
    avg_ts: f64,
    stddev_ts: f64,
}

/// Runs `tern bench SMOLLM2 ARGS…` on one thread; returns (exit code, stdout, stderr).
fn bench(args: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let model = model_path(TestModel::SmolLm2_135m);
    let mut command = tern(home.path());
    command
        .arg("bench")
        .arg(&model)
        .args(["-t", "1"])
        .args(args);
    run(&mut command)
}

fn bench_json(args: &[&str]) -> Report {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = bench(&all);
    assert_eq!(code, 0, "stderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn names(report: &Report) -> Vec<&str> {
    report.tests.iter().map(|t| t.test.as_str()).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn json_reports_both_tests_by_llama_bench_rules() {
    let report = bench_json(&["-p", "8", "-n", "4", "-r", "2"]);
    assert_eq!(names(&report), ["pp8", "tg4"]);

    // The file's facts, as llama-bench reports them (tensor bytes and element counts).
    let file = tern_gguf::GgufFile::open(model_path(TestModel::SmolLm2_135m)).unwrap();
    let size: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    let params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    assert_eq!(report.model_size, size);
    assert_eq!(report.model_n_params, params);
    assert_eq!(report.model_type, "llama 135M Q4_1");
    assert!(
        report
            .model_filename
            .ends_with("smollm2-135m-instruct-q4_1.gguf")
    );
    assert!(!report.kernel_path.is_empty());

    for (test, (p, n)) in report.tests.iter().zip([(8, 0), (0, 4)]) {
        assert_eq!((test.n_prompt, test.n_gen), (p, n), "{test:?}");
        // Context = prompt + generated, F16 cache, warm-up on, one thread asked and used.
        assert_eq!(test.n_ctx, p + n);
        assert_eq!((test.type_k.as_str(), test.type_v.as_str()), ("f16", "f16"));
        // 30 layers × 192 values × 2 bytes × keys and values, per position.
        assert_eq!(test.kv_bytes, (p + n) as u64 * 30 * 192 * 2 * 2);
        assert!(test.warmup);
        assert_eq!(test.n_ubatch, 512);
        assert_eq!((test.n_threads, test.threads_used), (1, 1));
        // Two repetitions; tokens/s of each is tokens ÷ its time; mean and sample sd.
        assert_eq!(test.samples_ns.len(), 2);
        assert_eq!(test.samples_ts.len(), 2);
        for (&ns, &ts) in test.samples_ns.iter().zip(&test.samples_ts) {
            assert!(ns > 0);
            assert!(close(ts, 1e9 * (p + n) as f64 / ns as f64), "{test:?}");
        }
        let mean_ts = (test.samples_ts[0] + test.samples_ts[1]) / 2.0;
        assert!(close(test.avg_ts, mean_ts), "{test:?}");
        let sd = (test.samples_ts[0] - test.samples_ts[1]).abs() / 2f64.sqrt();
        assert!(close(test.stddev_ts, sd), "{test:?}");
        let mean_ns = (test.samples_ns[0] + test.samples_ns[1]) as f64 / 2.0;
        assert!(close(test.avg_ns, mean_ns), "{test:?}");
        assert!(test.stddev_ns >= 0.0);
    }

    // The first forward pass of the process is the warm-up of pp8.
    assert_eq!(report.first_token_test, "pp8");
    assert!(
        report.load_ms > 0.0 && report.first_token_ms > 0.0,
        "{report:?}"
    );
    // Memory: the peak covers what is resident at the end; the mapped weights that the
    // passes read are resident and file-backed.
    let peak = report.peak_rss_bytes.expect("VmHWM on Linux");
    let file_backed = report.rss_file_bytes.expect("RssFile on Linux");
    let anon = report.rss_anon_bytes.expect("RssAnon on Linux");
    assert!(peak >= file_backed + anon, "{report:?}");
    assert!(
        file_backed > size / 2,
        "weights should be resident and mapped: {report:?}"
    );
}

#[test]
fn table_looks_like_llama_bench() {
    let (code, stdout, stderr) = bench(&["-p", "8", "-n", "4", "-r", "1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "model", "size", "params", "backend", "threads", "test", "t/s"
        ],
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("|-") && lines[1].ends_with(":|"),
        "{stdout}"
    );
    for (line, test) in lines[2..4].iter().zip(["pp8", "tg4"]) {
        let row = cells(line);
        assert_eq!(row[0], "llama 135M Q4_1", "{stdout}");
        assert!(row[1].ends_with(" MiB"), "{stdout}");
        assert_eq!(row[2], "134.52 M", "{stdout}");
        assert!(row[3].starts_with("CPU ("), "{stdout}");
        assert_eq!(row[4], "1", "{stdout}");
        assert_eq!(row[5], test, "{stdout}");
        let (mean, sd) = row[6].split_once(" ± ").expect("mean ± sd");
        assert!(mean.parse::<f64>().unwrap() > 0.0, "{stdout}");
        assert_eq!(sd, "0.00", "one repetition has no spread: {stdout}");
    }
    assert!(stdout.contains("\nload: "), "{stdout}");
    assert!(
        stdout.contains("first token: ") && stdout.contains("(pp8, cold)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("peak RSS: ") && stdout.contains("file-backed"),
        "{stdout}"
    );
}

#[test]
fn zero_skips_a_test_and_lists_make_several() {
    let report = bench_json(&["-p", "0", "-n", "3", "-r", "1"]);
    assert_eq!(names(&report), ["tg3"]);
    assert_eq!(report.first_token_test, "tg3");
    assert_eq!(report.tests[0].n_ctx, 3);

    let report = bench_json(&["-p", "4,6", "-n", "0", "-r", "1", "--no-warmup", "-c", "32"]);
    assert_eq!(names(&report), ["pp4", "pp6"]);
    assert!(report.tests.iter().all(|t| !t.warmup && t.n_ctx == 32));
}

#[test]
fn bad_arguments_are_named() {
    let cases: [(&[&str], &str); 4] = [
        (&["-p", "0", "-n", "0"], "nothing to measure"),
        (
            &["-p", "8", "-n", "4", "-c", "6"],
            "--ctx-size 6 is too small for test pp8",
        ),
        (&["-p", "8", "--kv-type", "q5_1"], "invalid value 'q5_1'"),
        (&["-p", "8", "-r", "0"], "-r 0"),
    ];
    for (args, message) in cases {
        let (code, _, stderr) = bench(args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn quantized_kv_types_shrink_the_cache() {
    let report = bench_json(&["-p", "64", "-n", "0", "-r", "1", "--kv-type", "q8_0"]);
    let test = &report.tests[0];
    assert_eq!(
        (test.type_k.as_str(), test.type_v.as_str()),
        ("q8_0", "q8_0")
    );
    // 192 values = 6 blocks of 34 bytes.
    assert_eq!(test.kv_bytes, 64 * 30 * 6 * 34 * 2);
    let report = bench_json(&["-p", "64", "-n", "0", "-r", "1", "--kv-type", "q4_0"]);
    assert_eq!(report.tests[0].kv_bytes, 64 * 30 * 6 * 18 * 2);
}

#[test]
fn the_prompt_cache_computes_only_the_new_tokens() {
    let report = bench_json(&["-p", "8", "-n", "0", "-r", "2", "--prompt-cache", "192"]);
    let cache = &report.prompt_cache;
    assert_eq!(cache.len(), 1, "{report:?}");
    let c = &cache[0];
    assert_eq!((c.prefix_tokens, c.suffix_tokens), (192, 8));
    assert_eq!(c.warm_tokens_computed, 8);
    assert_eq!((c.cold_ms.len(), c.warm_ms.len()), (2, 2));
    // 8 tokens instead of 200: a wide margin even on a busy machine.
    assert!(
        c.avg_warm_ms * 2.0 < c.avg_cold_ms,
        "warm {} ms, cold {} ms",
        c.avg_warm_ms,
        c.avg_cold_ms
    );
    let (code, stdout, stderr) = bench(&["-p", "8", "-n", "0", "-r", "1", "--prompt-cache", "64"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("prompt cache: 64 + 8 tokens: first token after"),
        "{stdout}"
    );
    assert!(stdout.contains("KV cache: "), "{stdout}");
}
