//! `tern chat` and `tern run` at the edges of the context, on the real SmolLM2 file: the
//! prefix cache reported per turn, a conversation that outgrows the context refused by
//! default and shifted with `--context-shift`, and a KV cache larger than the machine's
//! free memory refused before allocation, with the numbers.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::{run, tern};
use tern_testkit::{TestModel, model_path};

const TURN: &str = "Please describe in detail the water cycle, including evaporation, \
                    condensation, precipitation and collection, for a school report.";

/// `tern chat SMOLLM2 --ctx-size 160 ARGS` fed four long user messages (about 41 tokens a turn); (code, stderr).
fn chat(args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let mut command = tern(home.path());
    command
        .args(["chat", "--ctx-size", "160", "-n", "8", "--temperature", "0"])
        .arg(model_path(TestModel::SmolLm2_135m))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn tern");
    let mut stdin = child.stdin.take().expect("stdin");
    for _ in 0..4 {
        writeln!(stdin, "{TURN}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().expect("tern chat");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The `[N prompt tokens: C from the cache, …]` counts of each answered turn.
fn turns(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (total, rest) = rest.split_once(" prompt tokens: ")?;
            let (cached, _) = rest.split_once(" from the cache")?;
            Some((total.parse().ok()?, cached.parse().ok()?))
        })
        .collect()
}

#[test]
fn chat_reuses_the_cache_and_refuses_or_shifts_an_overflowing_conversation() {
    let (code, stderr) = chat(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("KV cache: "), "{stderr}");
    let answered = turns(&stderr);
    assert_eq!(answered.len(), 3, "the fourth turn does not fit: {stderr}");
    // The second turn reuses the whole first prompt (and the answer the session kept).
    let (first, second) = (answered[0], answered[1]);
    assert!(second.1 >= first.0, "{answered:?}");
    assert!(
        stderr.contains("no longer fits the context of 160 tokens")
            && stderr.contains("--context-shift"),
        "{stderr}"
    );

    let (code, stderr) = chat(&["--context-shift"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(turns(&stderr).len(), 4, "{stderr}");
    assert!(
        stderr.contains("(context shift: dropped the 2 oldest messages"),
        "{stderr}"
    );
    assert!(!stderr.contains("no longer fits"), "{stderr}");
}

#[test]
fn a_kv_cache_larger_than_free_memory_is_refused_with_the_numbers() {
    let home = tempfile::tempdir().unwrap();
    let mut command = tern(home.path());
    command
        .args(["run", "--ctx-size", "2000000000", "-n", "1"])
        .arg(model_path(TestModel::SmolLm2_135m))
        .arg("hi");
    let (code, _, stderr) = run(&mut command);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the KV cache needs") && stderr.contains("f16, 2000000000 positions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--kv-type q8_0 needs") && stderr.contains("--kv-type q4_0 needs"),
        "{stderr}"
    );
    assert!(stderr.contains("beyond the 8192 positions"), "{stderr}");
}
