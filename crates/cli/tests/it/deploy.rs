//! The files operators deploy with (`deploy/`): the systemd unit passes
//! `systemd-analyze verify` with the real binary in its `ExecStart`.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies() {
    let unit = include_str!("../../../../deploy/starling.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/starling up"));
    // verify checks that ExecStart's program exists: point it at the binary built here.
    let unit = unit.replace("/usr/local/bin/starling", env!("CARGO_BIN_EXE_starling"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("starling.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian package systemd; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    // A setting it cannot parse is only a warning, naming the unit's file.
    assert!(
        !stderr.contains("starling.service"),
        "verify warned about the unit: {stderr}"
    );
}
