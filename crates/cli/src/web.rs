//! The web UI: static assets compiled into the binary, and the sign-in that turns the
//! token (in the URL `starling up` prints) into a session.
//!
//! `/login?token=…` checks the token, opens a session (a random id of its own, never
//! the token: browsers send a host's cookies to every port of it, so any program
//! listening on 127.0.0.1 the browser visits sees them), sets it as an HttpOnly,
//! SameSite=Strict cookie named after our port (two daemons do not overwrite each
//! other's) and redirects to `/` (so the token leaves the address bar). Without a
//! session, `/` shows how to get in, never the app. `POST /logout` ends the session
//! on the daemon too. Open sessions are kept in the profile (`web.sessions`, 0600,
//! beside the token): a daemon restarted on the same address keeps its browsers
//! signed in, and a signed-out session stays out.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use starling_node::{ProfileDir, ProfileError};

use crate::api::{ApiError, ApiState, constant_time_eq};

/// Sessions open at once; one more signs out the oldest (counted and logged).
pub const MAX_SESSIONS: usize = 16;

/// The web UI's sessions: in memory, and written through to the profile when it
/// has one, so that they outlive a restart.
#[derive(Debug)]
pub struct Sessions {
    cookie: String,
    open: Mutex<VecDeque<String>>,
    dropped: AtomicU64,
    /// Where the open sessions are kept (`web.sessions`), if anywhere.
    kept: Option<ProfileDir>,
}

impl Sessions {
    /// Sessions of the daemon listening on `port`, in memory only: the cookie is
    /// `starling_session_<port>`.
    pub fn new(port: u16) -> Self {
        Self {
            cookie: format!("starling_session_{port}"),
            open: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            kept: None,
        }
    }

    /// Sessions of the daemon of `dir` listening on `port`, starting with those the
    /// profile kept (the newest [`MAX_SESSIONS`]); every change is written back.
    pub fn kept_in(port: u16, dir: &ProfileDir) -> Result<Self, ProfileError> {
        let mut ids = dir.sessions()?;
        ids.drain(..ids.len().saturating_sub(MAX_SESSIONS));
        Ok(Self {
            open: Mutex::new(ids.into()),
            kept: Some(dir.clone()),
            ..Self::new(port)
        })
    }

    /// Writes the open sessions to the profile (called with the lock held, so
    /// writes happen in order). A failure leaves the sessions working until the
    /// daemon stops.
    fn keep(&self, open: &VecDeque<String>) {
        if let Some(dir) = &self.kept {
            let ids: Vec<String> = open.iter().cloned().collect();
            if let Err(e) = dir.write_sessions(&ids) {
                tracing::warn!(error = %e, "web sessions not saved: a restart will sign browsers out");
            }
        }
    }

    /// The cookie's name.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    fn start(&self) -> String {
        let id = starling_node::profile::new_secret();
        let mut open = self.open.lock().expect("sessions lock");
        if open.len() >= MAX_SESSIONS {
            open.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                max = MAX_SESSIONS,
                sessions_dropped = dropped,
                "too many web sessions: the oldest was signed out"
            );
        }
        open.push_back(id.clone());
        self.keep(&open);
        id
    }

    fn end(&self, id: &str) {
        let mut open = self.open.lock().expect("sessions lock");
        let before = open.len();
        open.retain(|s| !constant_time_eq(s.as_bytes(), id.as_bytes()));
        if open.len() != before {
            self.keep(&open);
        }
    }

    /// Whether the request carries the cookie of an open session.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        let Some(id) = self.from(headers) else {
            return false;
        };
        let open = self.open.lock().expect("sessions lock");
        // Every one compared, whatever matches.
        open.iter().fold(false, |hit, s| {
            hit | constant_time_eq(s.as_bytes(), id.as_bytes())
        })
    }

    /// Whether the request carries our cookie at all (valid or not).
    pub fn present(&self, headers: &HeaderMap) -> bool {
        self.from(headers).is_some()
    }

    /// The value of our cookie, if the request carries it.
    fn from<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie)
            .map(|(_, v)| v)
    }
}

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const LOGIN_NEEDED: &str = include_str!("../assets/login.html");

/// What browsers may load and run on our pages: our own files only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/login", get(login))
        .route("/logout", post(logout))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn page(status: StatusCode, html: &'static str) -> Response {
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn index(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if st.sessions.valid(&headers) {
        page(StatusCode::OK, INDEX)
    } else {
        page(StatusCode::UNAUTHORIZED, LOGIN_NEEDED)
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

async fn login(State(st): State<ApiState>, Query(q): Query<LoginQuery>) -> Response {
    match q.token {
        Some(t) if constant_time_eq(t.as_bytes(), st.token.as_bytes()) => {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                st.sessions.cookie(),
                st.sessions.start()
            );
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("hex id is a valid header"),
            );
            r.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            r
        }
        _ => page(StatusCode::UNAUTHORIZED, LOGIN_NEEDED),
    }
}

/// Ends the session (on the daemon, and its cookie); only from our own pages.
async fn logout(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if !st.same_origin(&headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "cross-origin request refused",
        )
        .into_response();
    }
    if let Some(id) = st.sessions.from(&headers) {
        st.sessions.end(id);
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        st.sessions.cookie()
    );
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a valid header"),
    );
    r
}
