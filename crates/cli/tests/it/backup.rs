//! Moving a user to another machine, as a user does it: `starling export` on the
//! old machine's profile (its node running or not), `starling import` into a new
//! data directory, and the network keeps seeing the same user; a damaged or hostile
//! file is refused with nothing written; the key as 24 words and back.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use starling_core::Identity;

use crate::harness::{Daemon, Profile, addr, post_raw, stderr, stdout, timeline, wait_for};

const WAIT: Duration = Duration::from_secs(60);
const PASSPHRASE: &str = "a long passphrase for the tests";

/// A directory for "another machine", with the passphrase files beside it.
struct Machine {
    tmp: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let m = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::write(m.path("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
        std::fs::write(m.path("wrong"), "not the passphrase\n").unwrap();
        m
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Everything in the machine's directory but the passphrase files and exports.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !["passphrase", "wrong"].contains(&n.as_str()) && !n.ends_with(".jsonl"))
            .collect()
    }
}

/// `starling --data-dir <dir> ARGS`, with `input` on standard input.
fn run_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Profile::at(dir)
        .command()
        .args(args)
        .env_remove("STARLING_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn export(p: &Profile, file: &Path, passphrase: &Path) -> Output {
    p.command()
        .arg("export")
        .arg(file)
        .arg("--passphrase-file")
        .arg(passphrase)
        .env_remove("STARLING_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn import(dir: &Path, file: &Path, passphrase: &Path) -> Output {
    Profile::at(dir)
        .command()
        .args(["--json", "import"])
        .arg(file)
        .arg("--passphrase-file")
        .arg(passphrase)
        .env_remove("STARLING_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

async fn post(d: &Daemon, body: &str) -> Value {
    let (s, v) = post_raw(d, "/posts", &json!({ "body": body })).await;
    assert_eq!(s, 201, "{v}");
    v
}

/// The export's lines, parsed.
fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `post` records of an export, as their bytes.
fn posts_in(file: &Path) -> Vec<Vec<u8>> {
    lines(file)
        .iter()
        .filter_map(|l| l["post"].as_str())
        .map(|b| STANDARD.decode(b).unwrap())
        .collect()
}

fn following_of(p: &Profile) -> Vec<(String, bool)> {
    p.cli_json(&["following"])
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["peer_id"].as_str().unwrap().to_string(),
                f["pending"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// alice (followed by bob, following carol, having followed and unfollowed bob,
/// two posts expired) exports while her node runs, and once more after it
/// stopped; the wrong passphrase leaves nothing behind; imported on "another
/// machine", her node has the same key, archive, timeline, follows and followers,
/// delivers her statement to carol again, and bob, who followed her before,
/// receives her next post, numbered next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_profile_is_the_same_user_to_the_network() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let c = carol.up(&[]).await;
    let boot = addr(&c).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    let a = alice.up(&["--bootstrap", &boot, "--post-ttl", "2s"]).await;
    let keys = [&a, &b, &c].map(|d| d.author().to_string());
    let [alice_id, bob_id, carol_id] = &keys;

    for (p, args) in [
        (&bob, ["follow", alice_id.as_str()]),
        (&alice, ["follow", carol_id.as_str()]),
        (&alice, ["follow", bob_id.as_str()]),
        (&alice, ["unfollow", bob_id.as_str()]),
    ] {
        let out = p.cli(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    post(&a, "short-lived one").await;
    post(&a, "short-lived two").await;
    wait_for(WAIT, "alice's first two posts to expire", || async {
        alice.cli_json(&["archive"])["posts"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await
    .unwrap();
    assert!(a.stop().await.unwrap().success());
    let a = alice.up(&["--bootstrap", &boot]).await;
    post(&a, "kept three").await;
    post(&a, "kept four").await;
    wait_for(WAIT, "both follows to be acknowledged", || async {
        let by_bob = following_of(&bob) == [(alice_id.clone(), false)];
        let by_alice = following_of(&alice) == [(carol_id.clone(), false)];
        by_bob && by_alice
    })
    .await
    .unwrap();
    wait_for(WAIT, "bob to hold alice's fourth post", || async {
        timeline(&b)
            .await
            .contains(&(alice_id.clone(), 4, "kept four".to_string()))
    })
    .await
    .unwrap();
    wait_for(WAIT, "alice to list bob as a follower", || async {
        alice.cli_json(&["followers"])[0]["peer_id"] == bob_id.as_str()
    })
    .await
    .unwrap();

    // Exported while the node runs: a file only its owner reads, the key sealed.
    let m = Machine::new();
    let file = m.path("alice.jsonl");
    let out = export(&alice, &file, &m.path("passphrase"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("4 posts (2 in the archive)"),
        "{}",
        stdout(&out)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let header = &lines(&file)[0];
    assert_eq!(header["format"], "starling-export");
    assert_eq!(header["version"], 1);
    assert_eq!(header["peer_id"], alice_id.as_str());
    assert_eq!(header["handle"], "alice");
    assert_eq!(header["key"]["kdf"], "argon2id");
    let seed = Identity::from_keyfile(&std::fs::read(alice.dir.join("identity.key")).unwrap())
        .unwrap()
        .secret_bytes();
    let text = std::fs::read_to_string(&file).unwrap();
    for spelled in [hex::encode(seed), STANDARD.encode(seed)] {
        assert!(
            !text.contains(&spelled),
            "the key is in the export unsealed"
        );
    }
    let posts = posts_in(&file);
    assert_eq!(posts.len(), 4);

    // The old machine goes away; exported again with its node stopped: the same
    // records (the archive included).
    assert!(a.stop().await.unwrap().success());
    let again = m.path("again.jsonl");
    let out = export(&alice, &again, &m.path("passphrase"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(posts_in(&again), posts);
    assert_eq!(
        lines(&again)[5..8],
        lines(&file)[5..8],
        "follows, followers"
    );

    // The wrong passphrase: a clear error, nothing written.
    let target = m.path("profiles").join("alice");
    let out = import(&target, &file, &m.path("wrong"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    assert!(m.leftovers().is_empty(), "{:?}", m.leftovers());

    let out = import(&target, &file, &m.path("passphrase"));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["peer_id"], alice_id.as_str());
    assert_eq!(
        (
            &report["posts"],
            &report["archived"],
            &report["following"],
            &report["followers"]
        ),
        (&json!(4), &json!(2), &json!(2), &json!(1)),
        "{report}"
    );
    assert_eq!(report["next_seq"], 5);
    assert_eq!(m.leftovers(), ["profiles"], "only the profile");
    // A second import does not replace the identity.
    let out = import(&target, &file, &m.path("passphrase"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds the profile @alice"),
        "{}",
        stderr(&out)
    );

    // The new machine's node: the same user.
    let moved = Profile::at(&target);
    let bob_addr = addr(&b).await;
    let a2 = moved
        .up(&["--bootstrap", &bob_addr, "--bootstrap", &boot])
        .await;
    assert_eq!(a2.author().to_string(), *alice_id);
    let who = moved.cli_json(&["whoami"]);
    assert_eq!(
        (&who["peer_id"], &who["handle"]),
        (&json!(alice_id), &json!("alice"))
    );
    let archive: Vec<String> = moved.cli_json(&["archive"])["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(archive, ["short-lived two", "short-lived one"]);
    let own: Vec<(u64, String)> = timeline(&a2)
        .await
        .into_iter()
        .filter(|(author, _, _)| author == alice_id)
        .map(|(_, seq, body)| (seq, body))
        .collect();
    assert_eq!(own, [(4, "kept four".into()), (3, "kept three".into())]);
    assert_eq!(
        moved.cli_json(&["followers"])[0]["peer_id"],
        bob_id.as_str()
    );
    // Its statement about carol is delivered again, and acknowledged.
    assert_eq!(following_of(&moved)[0].0, *carol_id);
    wait_for(
        WAIT,
        "carol to acknowledge the moved alice's follow",
        || async { following_of(&moved) == [(carol_id.clone(), false)] },
    )
    .await
    .unwrap();

    // Her next post is #5, and bob, who followed her on the old machine, takes it.
    let p = post(&a2, "from the new machine").await;
    assert_eq!(p["seq"], 5);
    wait_for(WAIT, "bob to receive the moved alice's post", || async {
        timeline(&b)
            .await
            .contains(&(alice_id.clone(), 5, "from the new machine".to_string()))
    })
    .await
    .unwrap();
    let st = b.get("/status").await.unwrap();
    assert_eq!(st["flagged"], json!([]), "no equivocation: {st}");
}

/// Replaces line `i` (0-based) of an export and writes it as `name`.
fn altered(m: &Machine, file: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let mut ls: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    edit(&mut ls);
    let out = m.path(name);
    std::fs::write(&out, ls.join("\n") + "\n").unwrap();
    out
}

/// Every damaged or hostile export is refused with a clear error and leaves
/// nothing behind; the intact one imports, and its node posts the next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_hostile_export_is_refused_and_nothing_is_written() {
    let alice = Profile::init("alice");
    let a = alice.up(&["--offline"]).await;
    for body in ["one", "two", "three"] {
        post(&a, body).await;
    }
    assert!(a.stop().await.unwrap().success());
    let m = Machine::new();
    let file = m.path("alice.jsonl");
    let out = export(&alice, &file, &m.path("passphrase"));
    assert!(out.status.success(), "{}", stderr(&out));
    // An existing file is not replaced.
    let out = export(&alice, &file, &m.path("passphrase"));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));

    let flip_body = |ls: &mut Vec<String>| {
        let v: Value = serde_json::from_str(&ls[2]).unwrap();
        let mut raw = STANDARD.decode(v["post"].as_str().unwrap()).unwrap();
        let at = raw.len() - 64 - 1; // the body's last byte, before the signature
        raw[at] ^= 0x01;
        ls[2] = json!({ "post": STANDARD.encode(raw) }).to_string();
    };
    let header_edit = |f: fn(&mut Value)| {
        move |ls: &mut Vec<String>| {
            let mut h: Value = serde_json::from_str(&ls[0]).unwrap();
            f(&mut h);
            ls[0] = h.to_string();
        }
    };
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (file.clone(), "wrong", "wrong passphrase"),
        (
            altered(&m, &file, "flipped.jsonl", flip_body),
            "passphrase",
            "line 3: post #2: ",
        ),
        (
            altered(&m, &file, "dropped.jsonl", |ls| {
                ls.remove(2);
            }),
            "passphrase",
            "the file was altered",
        ),
        (
            altered(&m, &file, "cut.jsonl", |ls| {
                ls.pop();
            }),
            "passphrase",
            "cut short",
        ),
        (
            altered(
                &m,
                &file,
                "renamed.jsonl",
                header_edit(|h| h["handle"] = json!("mallory")),
            ),
            "passphrase",
            "the file was altered",
        ),
        (
            altered(
                &m,
                &file,
                "newer.jsonl",
                header_edit(|h| h["version"] = json!(2)),
            ),
            "passphrase",
            "format version 2",
        ),
        (
            altered(
                &m,
                &file,
                "costly.jsonl",
                header_edit(|h| h["key"]["m_cost_kib"] = json!(u32::MAX)),
            ),
            "passphrase",
            "parameters are refused",
        ),
        (
            altered(&m, &file, "long.jsonl", |ls| {
                ls.insert(1, "x".repeat(100_000))
            }),
            "passphrase",
            "line 2 is longer than",
        ),
        (
            altered(&m, &file, "text.jsonl", |ls| *ls = vec!["hello".into()]),
            "passphrase",
            "not a Starling export",
        ),
        (
            altered(&m, &file, "extra.jsonl", |ls| ls.push("{}".into())),
            "passphrase",
            "data after the end line",
        ),
    ];
    std::fs::write(m.path("empty"), "\n").unwrap();
    let target = m.path("restored");
    for (f, passphrase, expected) in &cases {
        let out = import(&target, f, &m.path(passphrase));
        assert!(!out.status.success(), "{} was imported", f.display());
        assert!(
            stderr(&out).contains(expected),
            "{}: expected {expected:?}, got {}",
            f.display(),
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        let left: Vec<String> = m.leftovers().into_iter().filter(|n| n != "empty").collect();
        assert!(left.is_empty(), "{}: left {left:?}", f.display());
    }
    let out = import(&target, &file, &m.path("empty"));
    assert!(
        stderr(&out).contains("passphrase is empty"),
        "{}",
        stderr(&out)
    );

    // The intact file: the numbering goes on.
    let out = import(&target, &file, &m.path("passphrase"));
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = Profile::at(&target);
    let a2 = moved.up(&["--offline"]).await;
    assert_eq!(post(&a2, "four").await["seq"], 4);
    let own: Vec<u64> = timeline(&a2).await.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(own, [4, 3, 2, 1]);
}

/// A key restored from its words alone continues its numbering: its node learns
/// the number of its newest post from the profile records the network keeps before
/// it posts (offline it refuses to post), so a follower takes the next post and
/// nobody is flagged for a number used twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_restored_from_its_words_continues_its_numbering() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let b = bob.up(&[]).await;
    let boot = addr(&b).await;
    let a = alice
        .up(&["--bootstrap", &boot, "--maintenance-interval", "1s"])
        .await;
    bob.cli_json(&["follow", &a.author().to_string()]);
    crate::harness::wait_acknowledged(&bob, "bob's follow").await;
    for n in 1..=3 {
        alice.cli_json(&["post", &format!("before the loss #{n}")]);
    }
    // Her profile record, with the newest number, is out in the network: bob (the
    // only other node) stores it.
    let alice_key = a.author();
    wait_for(
        WAIT,
        "bob to store alice's profile record naming her post #3",
        || async { (bob.stored_profile_head(&alice_key) >= Some(3)).then_some(()) },
    )
    .await
    .unwrap();
    wait_for(WAIT, "bob to hold alice's three posts", || async {
        (timeline(&b)
            .await
            .iter()
            .filter(|(_, _, body)| body.starts_with("before"))
            .count()
            == 3)
            .then_some(())
    })
    .await
    .unwrap();
    let words = alice.cli_json(&["key", "backup"])["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    a.stop().await.unwrap();

    // A new machine: only the words.
    let m = Machine::new();
    let dir = m.path("alice");
    let out = run_with_input(&dir, &["key", "restore", "--name", "alice"], &words);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = Profile::at(&dir);
    // Offline it cannot learn the number: it refuses to post, and says why.
    {
        let offline = restored.up(&["--offline"]).await;
        let (status, v) = post_raw(&offline, "/posts", &json!({"body": "too early"})).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("head_unknown")),
            "{v}"
        );
        offline.stop().await.unwrap();
    }
    let a2 = restored.up(&["--bootstrap", &boot]).await;
    let post = restored.cli_json(&["post", "after the restore"]);
    assert_eq!(post["seq"], 4, "{post}");
    wait_for(WAIT, "bob to take alice's next post", || async {
        timeline(&b)
            .await
            .iter()
            .any(|(_, _, body)| body == "after the restore")
            .then_some(())
    })
    .await
    .unwrap();
    let st = crate::harness::status(&b).await;
    assert_eq!(st["flagged"], json!([]), "{st}");
    assert!(!dir.join("head.unknown").exists());
    drop(a2);
}

/// The key as 24 words: printed with a warning, restored in a new directory to
/// the same key; a word outside the list or a wrong word is named, and nothing is
/// created.
#[test]
fn the_key_as_24_words_restores_the_same_identity() {
    let alice = Profile::init("alice");
    let out = alice.cli(&["key", "backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("anyone who has them can post as you"),
        "{}",
        stderr(&out)
    );
    // As written down: numbered, four to a line (then the key's id).
    let printed = stdout(&out);
    assert!(printed.starts_with(" 1. "), "{printed}");
    let written: String = printed
        .lines()
        .filter(|l| !l.starts_with("key:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let words: Vec<String> = alice.cli_json(&["key", "backup"])["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(words.len(), 24);
    let peer_id = Profile::at(&alice.dir).cli_json(&["key", "backup"])["peer_id"].clone();

    let m = Machine::new();
    // A word not in the list, then a valid word in the wrong place.
    let mut unknown = words.clone();
    unknown[6] = "starling".into();
    let mut swapped = words.clone();
    swapped[0] = if words[0] == "zoo" { "abandon" } else { "zoo" }.into();
    for (phrase, expected) in [
        (
            unknown.join(" "),
            "word 7 (\"starling\") is not in the BIP39 English word list",
        ),
        (swapped.join(" "), "do not check out"),
        (words[..23].join(" "), "has 24 words; this has 23"),
    ] {
        let dir = m.path("restored");
        let out = run_with_input(&dir, &["key", "restore", "--name", "alice"], &phrase);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
        assert!(!dir.exists(), "nothing is created");
    }

    // Restored from the list as written down (numbers and all).
    let dir = m.path("restored");
    let out = run_with_input(
        &dir,
        &["--json", "key", "restore", "--name", "alice"],
        &written,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let restored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["peer_id"], peer_id);
    assert_eq!(
        Profile::at(&dir).cli_json(&["key", "backup"])["words"],
        json!(words)
    );
    // Not over an existing profile.
    let out = run_with_input(
        &dir,
        &["key", "restore", "--name", "alice"],
        &words.join(" "),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds the profile"),
        "{}",
        stderr(&out)
    );
}
