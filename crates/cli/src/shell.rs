//! `starling shell`: the interactive numbered menu, for terminal users. It talks to
//! the profile's running node through the same API client, validation and messages
//! as the other commands.

use std::io::{BufRead, Write};

use starling_node::{FollowView, PostView, ProfileDir, TimelinePage, WhoAmI};

use crate::api::{NewPost, Target};
use crate::client::Client;
use crate::output;

const MENU: &str = "\
 [1] Create post
 [2] Show timeline
 [3] Show followers
 [4] Show following
 [5] Follow a user
 [6] Unfollow a user
 [7] Repost from storage
 [8] Logout";

fn now_ms() -> u64 {
    starling_node::clock::system_ms()
}

/// Prints `prompt` and reads one line; `None` at end of input.
fn ask(prompt: &str) -> anyhow::Result<Option<String>> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
}

pub async fn run(dir: &ProfileDir) -> anyhow::Result<()> {
    let client = Client::for_profile(dir)?;
    let me: WhoAmI = client.get("/whoami").await?;
    println!(
        "Starling shell: logged in as @{} ({})",
        me.handle, me.fingerprint
    );
    loop {
        println!("\n{MENU}");
        let Some(choice) = ask("Choose 1-8: ")? else {
            println!();
            break;
        };
        let result = match choice.trim() {
            "1" => create_post(&client).await,
            "2" => show_timeline(&client).await,
            "3" => list(&client, "/followers", "Nobody follows you yet.").await,
            "4" => list(&client, "/following", "You follow nobody yet.").await,
            "5" => follow(&client).await,
            "6" => unfollow(&client).await,
            "7" => repost(&client).await,
            "8" => break,
            "" => continue,
            other => {
                println!("{other:?} is not on the menu: choose a number from 1 to 8.");
                continue;
            }
        };
        if let Err(e) = result {
            println!("error: {e}");
        }
    }
    println!(
        "Logged out of @{}. Your node keeps running and serving your followers.",
        me.handle
    );
    Ok(())
}

async fn create_post(client: &Client) -> anyhow::Result<()> {
    let Some(body) = ask("Your post (1-280 characters): ")? else {
        return Ok(());
    };
    let p: PostView = client.post("/posts", &NewPost { body }).await?;
    println!(
        "Posted #{} (expires {})",
        p.seq,
        output::relative(p.expires_at, now_ms())
    );
    Ok(())
}

async fn show_timeline(client: &Client) -> anyhow::Result<()> {
    let mut path = "/timeline?limit=10".to_string();
    loop {
        let page: TimelinePage = client.get(&path).await?;
        println!(
            "{}",
            output::timeline(&page, now_ms(), "Your timeline is empty.", "older posts")
                .lines()
                .filter(|l| !l.starts_with("more:"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let Some(cursor) = page.next_cursor else {
            return Ok(());
        };
        match ask("Show older posts? [y/N] ")? {
            Some(a) if a.trim().eq_ignore_ascii_case("y") => {
                path = format!("/timeline?limit=10&before={cursor}");
            }
            _ => return Ok(()),
        }
    }
}

async fn list(client: &Client, path: &str, empty: &str) -> anyhow::Result<()> {
    let people: Vec<FollowView> = client.get(path).await?;
    println!("{}", output::follow_list(&people, now_ms(), empty));
    Ok(())
}

async fn follow(client: &Client) -> anyhow::Result<()> {
    let Some(target) = ask("Follow whom? (handle or key): ")? else {
        return Ok(());
    };
    let target = target.trim().to_string();
    if target.is_empty() {
        return Ok(());
    }
    let f: FollowView = client.post("/follow", &Target { target }).await?;
    println!(
        "Following {}; they will be told as soon as they are reachable.",
        output::who_follow(&f)
    );
    Ok(())
}

async fn unfollow(client: &Client) -> anyhow::Result<()> {
    let following: Vec<FollowView> = client.get("/following").await?;
    if following.is_empty() {
        println!("You follow nobody yet.");
        return Ok(());
    }
    for (i, f) in following.iter().enumerate() {
        println!(" ({}) {}", i + 1, output::who_follow(f));
    }
    let Some(answer) = ask("Unfollow whom? (number, handle or key): ")? else {
        return Ok(());
    };
    let answer = answer.trim();
    let target = match answer.parse::<usize>() {
        Ok(n) if (1..=following.len()).contains(&n) => following[n - 1].peer_id.to_string(),
        Ok(_) => {
            println!("No such number in the list.");
            return Ok(());
        }
        Err(_) => answer.to_string(),
    };
    let f: FollowView = client.post("/unfollow", &Target { target }).await?;
    println!("No longer following {}.", output::who_follow(&f));
    Ok(())
}

async fn repost(client: &Client) -> anyhow::Result<()> {
    let archive: TimelinePage = client.get("/archive?limit=50").await?;
    println!("{}", output::archive(&archive, now_ms()));
    if archive.posts.is_empty() {
        return Ok(());
    }
    let Some(answer) = ask("Repost which post? (its #number): ")? else {
        return Ok(());
    };
    let Ok(seq) = answer.trim().trim_start_matches('#').parse::<u64>() else {
        println!("{:?} is not a post number.", answer.trim());
        return Ok(());
    };
    let p: PostView = client
        .post(&format!("/archive/{seq}/repost"), &serde_json::json!({}))
        .await?;
    println!("Reposted #{seq} as #{}", p.seq);
    Ok(())
}
