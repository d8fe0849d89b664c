//! The web UI: static assets compiled into the binary, and the login that turns the
//! token (in the URL `starling up` prints) into a session cookie.
//!
//! `/login?token=…` checks the token, sets an HttpOnly, SameSite=Strict cookie and
//! redirects to `/` (so the token leaves the address bar). Without the cookie, `/`
//! shows how to get in, never the app.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::{ApiState, constant_time_eq};

pub const COOKIE: &str = "starling_session";

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
        .route("/logout", get(logout))
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

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn logged_in(st: &ApiState, headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some_and(|c| constant_time_eq(c.as_bytes(), st.token.as_bytes()))
}

async fn index(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if logged_in(&st, &headers) {
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
            let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("hex token is a valid header"),
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

async fn logout() -> Response {
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("starling_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
