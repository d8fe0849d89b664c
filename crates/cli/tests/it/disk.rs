//! Issue 14: a full disk. alice's data directory is a small tmpfs (mounted by the
//! test); bob's is an ordinary one. With her disk full, her posts fail with a clear
//! error (HTTP 507 `disk_full`; the command line says the disk is full), her node
//! keeps serving, and bob's posts cannot be stored on her side. When space returns,
//! she posts again and catches up on everything she missed; the history checker
//! passes and her database passes `PRAGMA integrity_check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use starling_cli::kit::ClientError;

use crate::harness::{Daemon, Profile, addr, status, stderr, wait_for};
use crate::history::History;
use crate::netns::run;

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of `size` mounted on a fresh temporary directory; unmounted when
/// dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::create_dir(&path).unwrap();
        let opt = format!("size={size}");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &opt, "tmpfs", path.to_str().unwrap()],
        );
        Self { path, _dir: dir }
    }

    /// Fills what is left with a file; returns it.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

async fn post(h: &mut History, name: &str, d: &Daemon, body: &str) {
    let view = d.post("/posts", &json!({ "body": body })).await.unwrap();
    h.post(name, &view);
}

fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_a_clear_error_corrupts_nothing_and_recovers() {
    let small = Tmpfs::mount("4m");
    let alice = Profile::at(&small.path.join("alice"));
    let out = alice.cli(&["init", "--name", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = Profile::init("bob");
    let extra = ["--maintenance-interval", "2s"];
    let b = bob.up(&extra).await;
    let boot = addr(&b).await;
    let a = alice
        .up(&["--maintenance-interval", "2s", "--bootstrap", &boot])
        .await;
    let mut h = History::default();
    for (who, d, other) in [("alice", &a, &b), ("bob", &b, &a)] {
        d.post("/follow", &json!({ "target": other.author().to_string() }))
            .await
            .unwrap();
        h.follow(who, if who == "alice" { "bob" } else { "alice" });
    }
    wait_for(WAIT, "both follows to be acknowledged", || async {
        status(&a).await["outbox_pending"] == 0 && status(&b).await["outbox_pending"] == 0
    })
    .await
    .unwrap();
    post(&mut h, "alice", &a, "alice before").await;
    post(&mut h, "bob", &b, "bob before").await;

    let filler = small.fill();
    // Posting onto a full disk: a clear error, nothing half-saved.
    let mut refused = 0;
    for i in 0..5 {
        match a
            .post("/posts", &json!({ "body": format!("full {i}") }))
            .await
        {
            Err(ClientError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (507, "disk_full"));
                refused += 1;
            }
            // Room for one more page may remain after the filler: that post counts.
            Ok(view) => h.post("alice", &view),
            Err(e) => panic!("not a clear error: {e}"),
        }
    }
    assert!(refused >= 3, "the disk is full: posts are refused");
    let out = alice.cli(&["post", "from the command line"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("disk is full"), "{}", stderr(&out));
    // Receiving onto a full disk: bob posts on; alice's node takes them in (and
    // cannot store them) and keeps serving.
    let received = |st: serde_json::Value| st["counters"]["gossip.received"].as_u64().unwrap_or(0);
    let before = received(status(&a).await);
    for i in 0..20 {
        post(&mut h, "bob", &b, &format!("bob while alice is full {i}")).await;
    }
    let reached = wait_for(WAIT, "bob's posts to reach alice's full node", || async {
        received(status(&a).await) >= before + 20
    })
    .await;
    if let Err(e) = reached {
        panic!(
            "{e}: {}\n{}",
            status(&a).await,
            crate::netns::log_tail(&a.dir().log_path())
        );
    }
    h.fault("alice's disk full while posting and receiving".into());

    std::fs::remove_file(filler).unwrap();
    h.fault("space returned".into());
    post(&mut h, "alice", &a, "alice after").await;
    let nodes = [("alice", &a), ("bob", &b)];
    h.assert_holds(&nodes, WAIT, "once space returned").await;
    let db = a.dir().db_path();
    assert!(a.stop().await.unwrap().success());
    assert_eq!(integrity(&db), "ok");
    b.stop().await.unwrap();
}
