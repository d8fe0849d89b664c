//! The command line around the node: shell completions, the manual page, `--help`
//! examples for every command, and `starling ui --open`.

use std::process::Command;

use crate::harness::{BIN, Profile, stderr, stdout};

fn starling(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("STARLING_DATA_DIR")
        .env_remove("STARLING_PROFILE")
        .output()
        .unwrap()
}

/// bash completes `starling fol` as a user would see it: the script is sourced and
/// its completion function called as bash calls it on Tab (command, word, previous
/// word; `COMP_WORDS` and `COMP_CWORD` set).
#[test]
fn bash_completes_commands_and_options() {
    let out = starling(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("starling.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _starling starling \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let words = complete("starling fol", 1);
    let mut got: Vec<&str> = words.lines().collect();
    got.sort();
    assert_eq!(got, ["follow", "followers", "following"], "{words}");
    let opts = complete("starling timeline --", 2);
    assert!(opts.lines().any(|l| l == "--limit"), "{opts}");
    assert!(opts.lines().any(|l| l == "--before"), "{opts}");
    for shell in ["zsh", "fish"] {
        let out = starling(&["completions", shell]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("follow"), "{shell}");
    }
    let bad = starling(&["completions", "cmd.exe"]);
    assert!(!bad.status.success());
}

#[test]
fn the_manual_page_names_every_command() {
    let out = starling(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH starling 1"), "{page}");
    let tmp = tempfile::tempdir().unwrap();
    let out = starling(&["man", "--dir", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "starling",
        "starling-up",
        "starling-follow",
        "starling-relay",
        "starling-ui",
    ] {
        let file = tmp.path().join(format!("{name}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(".TH"), "{name}");
    }
    let follow = std::fs::read_to_string(tmp.path().join("starling-follow.1")).unwrap();
    assert!(
        follow.contains("starling follow bob"),
        "examples in the page: {follow}"
    );
}

#[test]
fn every_command_shows_examples_in_its_help() {
    let out = starling(&["--help"]);
    let top = stdout(&out);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 18, "{commands:?}");
    for c in &commands {
        let out = starling(&[c, "--help"]);
        assert!(out.status.success(), "{c}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(
            help.contains("Examples:\n  starling "),
            "`starling {c} --help`:\n{help}"
        );
    }
}

/// `starling ui --open` hands the sign-in link to the browser (`$BROWSER`, here a
/// script that writes down what it was given), and the link signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_open_hands_the_sign_in_link_to_the_browser() {
    use std::os::unix::fs::PermissionsExt;
    let alice = Profile::init("alice");
    let d = alice.up(&["--offline"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let opened = tmp.path().join("opened");
    let browser = tmp.path().join("browser");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = alice
        .command()
        .args(["ui", "--open"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let url = crate::harness::wait_for(
        std::time::Duration::from_secs(30),
        "the browser to be started",
        || async {
            std::fs::read_to_string(&opened)
                .ok()
                .filter(|u| !u.is_empty())
        },
    )
    .await
    .unwrap();
    assert_eq!(url, format!("{}/login?token={}", d.url(), d.token()));
    assert!(stdout(&out).contains(&url));
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http.get(&url).send().await.unwrap();
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    assert!(signed_in.headers().contains_key("set-cookie"));
}
