//! The Python tools some tests check Starling against (none written here: the API
//! fuzzer, the OpenAPI validator, feed and metrics parsers), from the virtual
//! environment `scripts/test` makes (`STARLING_PYTHON`, else `target/pytools`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The virtual environment's Python.
pub fn python() -> PathBuf {
    let path = std::env::var_os("STARLING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pytools/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: run the tests with `scripts/test`, which installs the Python \
         tools they use (or set STARLING_PYTHON to a Python that has scripts/requirements.txt)",
        path.display()
    );
    path
}

/// Runs `script` with `input` on its standard input; returns its output (the caller
/// checks the status).
pub fn run(script: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to python");
    child.wait_with_output().expect("python output")
}

/// Runs `script` and parses what it prints as JSON; panics with its stderr when it
/// fails.
pub fn json(script: &str, args: &[&str], input: &[u8]) -> serde_json::Value {
    let out = run(script, args, input);
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
