//! Atom feeds (RFC 4287) of the timeline and of one's own posts, on the local
//! server, for feed readers: `/api/v1/feeds/timeline.atom` and `/feeds/posts.atom`.
//!
//! A feed reader cannot always send the API token, so the feeds also open with a
//! feed key (`?key=...`): derived from the token, it reads the feeds and nothing
//! else, and changes when the token does.

use atom_syndication::{Content, Entry, Feed, FixedDateTime, Generator, Link, Person, Text};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use starling_node::{PostView, WhoAmI};
use utoipa::IntoParams;

use crate::api::{ApiError, ApiQuery, ApiState, page_limit};

/// Where the feeds are served.
pub const FEEDS_PREFIX: &str = "/api/v1/feeds/";
/// The content type of a feed.
pub const CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";

/// The feed key that goes with an API token: the first 32 hex digits of
/// SHA-256("starling feed key" || token).
pub fn feed_key(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"starling feed key\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Entries in the feed, 1-500 (default 50), newest first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The feed key (`starling ui` prints the feeds' links with it), for readers
    /// that cannot send the API token.
    #[expect(dead_code, reason = "read by the token check, before the handler")]
    pub key: Option<String>,
}

/// Your timeline (your posts and those of everyone you follow, unexpired) as an Atom
/// feed.
#[utoipa::path(get, path = "/feeds/timeline.atom", tag = "posts", params(FeedQuery),
    security(("bearer" = []), ("feed_key" = [])),
    responses((status = 200, description = "the feed (Atom 1.0)", content_type = "application/atom+xml", body = String),
        (status = 400, description = "`limit` outside 1-500", body = crate::api::ErrorBody)))]
pub async fn timeline_feed(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, 50)?;
    let me = st.node.whoami();
    let page = st.node.timeline(limit, None).await?;
    Ok(respond(
        &st,
        &me,
        "timeline",
        "Your posts and those of everyone you follow, newest first",
        &page.posts,
    ))
}

/// Your own unexpired posts as an Atom feed.
#[utoipa::path(get, path = "/feeds/posts.atom", tag = "posts", params(FeedQuery),
    security(("bearer" = []), ("feed_key" = [])),
    responses((status = 200, description = "the feed (Atom 1.0)", content_type = "application/atom+xml", body = String),
        (status = 400, description = "`limit` outside 1-500", body = crate::api::ErrorBody)))]
pub async fn posts_feed(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, 50)?;
    let me = st.node.whoami();
    let page = st.node.posts_of(me.peer_id, limit, None).await?;
    Ok(respond(
        &st,
        &me,
        "posts",
        "Posts by this user, newest first",
        &page.posts,
    ))
}

/// The feed `kind` ("@alice's timeline") of `posts`, as the answer.
fn respond(st: &ApiState, me: &WhoAmI, kind: &str, subtitle: &str, posts: &[PostView]) -> Response {
    let title = format!("@{}'s {kind}", me.handle);
    let feed = atom(
        me,
        kind,
        &title,
        subtitle,
        posts,
        &format!("http://{}", st.addr),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], feed).into_response()
}

fn time(ms: u64) -> FixedDateTime {
    chrono::DateTime::from_timestamp_millis(ms.min(i64::MAX as u64) as i64)
        .unwrap_or_default()
        .fixed_offset()
}

fn person(handle: Option<&str>, fingerprint: &str, key: &str) -> Person {
    Person {
        name: match handle {
            Some(h) => format!("@{h}"),
            None => format!("key {fingerprint}"),
        },
        uri: Some(format!("urn:starling:{key}")),
        ..Default::default()
    }
}

/// A post's title: its first line, at most 80 characters.
fn title_of(post: &PostView) -> String {
    let line = post
        .body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut title: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        title.push('…');
    }
    if post.repost_of.is_some() {
        title = format!("Repost: {title}");
    }
    title
}

/// The Atom document of `posts` (newest first).
fn atom(
    me: &WhoAmI,
    kind: &str,
    title: &str,
    subtitle: &str,
    posts: &[PostView],
    base: &str,
) -> String {
    let entries: Vec<Entry> = posts
        .iter()
        .map(|p| {
            let key = p.author.to_string();
            let mut e = Entry::default();
            e.set_id(format!("urn:starling:{key}:{}", p.seq));
            e.set_title(Text::plain(title_of(p)));
            e.set_published(Some(time(p.ts_ms)));
            e.set_updated(time(p.ts_ms));
            e.set_authors(vec![person(p.handle.as_deref(), &p.fingerprint, &key)]);
            e.set_content(Some(Content {
                value: Some(p.body.clone()),
                content_type: Some("text".into()),
                ..Default::default()
            }));
            e
        })
        .collect();
    let mut feed = Feed::default();
    feed.set_id(format!("urn:starling:{}:{kind}", me.peer_id));
    feed.set_title(Text::plain(title));
    feed.set_subtitle(Some(Text::plain(subtitle)));
    feed.set_updated(
        posts
            .iter()
            .map(|p| p.ts_ms)
            .max()
            .map(time)
            .unwrap_or_else(|| time(0)),
    );
    feed.set_authors(vec![person(
        Some(&me.handle),
        &me.fingerprint,
        &me.peer_id.to_string(),
    )]);
    feed.set_links(vec![
        Link {
            href: format!("{base}{FEEDS_PREFIX}{kind}.atom"),
            rel: "self".into(),
            mime_type: Some("application/atom+xml".into()),
            ..Default::default()
        },
        Link {
            href: format!("{base}/"),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Default::default()
        },
    ]);
    feed.set_generator(Some(Generator {
        value: "Starling".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        uri: None,
    }));
    feed.set_entries(entries);
    feed.to_string()
}
