//! The local HTTP JSON API served by the daemon on 127.0.0.1, and its OpenAPI
//! document (generated from the handlers below, so it cannot drift from the routes).
//!
//! Every `/api/v1` route needs the profile's token: `Authorization: Bearer <token>`
//! (the token lives in `api.token`, readable by its owner only), or the web UI's
//! session cookie, which the token opens at `/login`. Every request must carry a
//! `Host` header naming the loopback address it was sent to (the configured one;
//! against DNS rebinding), and cookie-authenticated changes must come from our own
//! origin. Errors are JSON, whatever their status and whoever made them (a handler,
//! a rejection, the router's 404 and 405): `{"error": {"code": "...", "message":
//! "..."}}`; only the web UI's pages are HTML.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use starling_node::trace::{Stage, Stamp};
use starling_node::{
    Cursor, FollowView, Node, NodeError, NodeEvent, PostError, PostView, Status, TimelinePage,
    WhoAmI,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::{self, Sessions};

/// Largest request body accepted (a post is at most 1,120 bytes of text).
const MAX_BODY: usize = 16 * 1024;
/// Where the OpenAPI document is served (no token needed: it holds no data).
pub const OPENAPI_PATH: &str = "/api/openapi.json";

#[derive(Clone)]
pub struct ApiState {
    pub node: Node,
    pub token: Arc<str>,
    /// The address we listen on, for the Host check.
    pub addr: SocketAddr,
    /// The web UI's sessions.
    pub sessions: Arc<Sessions>,
    /// Cancelled when the daemon stops: ends the long-lived event streams.
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Starling local API",
        description = "The API of one Starling node, on 127.0.0.1. Authenticate with \
            `Authorization: Bearer <token>` (the token is in the profile's api.token)."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "posts", description = "Posting, the timeline and the archive"),
        (name = "people", description = "Following, followers and handles"),
        (name = "node", description = "Identity and status"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The feeds only: a key derived from the token, for feed readers.
        components.add_security_scheme(
            "feed_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "key",
                "the feed key `starling ui` prints; opens the feeds and nothing else",
            ))),
        );
    }
}

/// The API routes and their OpenAPI document, built from the same list.
pub fn api_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(status))
        .routes(routes!(timeline))
        .routes(routes!(create_post))
        .routes(routes!(archive))
        .routes(routes!(repost))
        .routes(routes!(follow))
        .routes(routes!(follow_many))
        .routes(routes!(unfollow))
        .routes(routes!(followers))
        .routes(routes!(following))
        .routes(routes!(register))
        .routes(routes!(crate::users::user))
        .routes(routes!(crate::users::user_posts))
        .routes(routes!(events))
        .routes(routes!(trace))
        .routes(routes!(metrics))
        .routes(routes!(crate::feeds::timeline_feed))
        .routes(routes!(crate::feeds::posts_feed));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    document_common_answers(&mut doc);
    (router, doc)
}

/// Documents, on every operation, the answers that come from what stands before the
/// handlers rather than from the handlers: the Host check and the token (every
/// route), and the JSON body reader (every route that takes a body).
fn document_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            let mut common = vec![
                (
                    "401",
                    "the API token is missing or wrong (`unauthorized`), or the web session has ended",
                ),
                (
                    "403",
                    "the Host header does not name this server (`forbidden_host`), or a change made with the web session's cookie came from another origin (`forbidden_origin`)",
                ),
            ];
            if op.request_body.is_some() {
                common.extend([
                    ("400", "the body is not JSON (`bad_request`)"),
                    ("413", "the body is larger than 16 KiB (`too_large`)"),
                    (
                        "415",
                        "the body is not declared `Content-Type: application/json` (`unsupported_media_type`)",
                    ),
                ]);
            }
            for (status, description) in common {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
            }
        }
    }
}

pub fn router(state: ApiState) -> Router {
    let (api, doc) = api_routes();
    let doc = Arc::new(doc);
    let api = api.layer(from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .route(
            OPENAPI_PATH,
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .merge(web::router())
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), check_host))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(map_response(json_errors))
        .with_state(state)
}

// ---- errors -------------------------------------------------------------------------

/// An API error: HTTP status, a stable machine-readable code, a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `body_too_long`, `unauthorized`, `handle_taken`, ...
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

/// The stable code of an error status nothing more specific named.
fn status_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        s if s.is_server_error() => "internal",
        _ => "http_error",
    }
}

/// Gives every error answer the JSON shape: those not already JSON (axum's
/// rejections and its 405, in text or empty) get it, with their text as the message
/// and their other headers (`Allow`) kept. The web UI's HTML pages stay pages.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/json") || ctype.starts_with("text/html") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let (json, body) = ApiError::new(status, status_code(status), message)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = json.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    Response::from_parts(parts, body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        let unprocessable = |code| Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg.clone());
        match e {
            NodeError::Post(p) => unprocessable(match p {
                // What a user can get wrong in a post has its own code.
                PostError::EmptyBody
                | PostError::BodyTooLong { .. }
                | PostError::ControlCharacter { .. } => p.code(),
                _ => "invalid_post",
            }),
            NodeError::NotInArchive(_) => Self::new(StatusCode::NOT_FOUND, "not_in_archive", msg),
            NodeError::NotExpired(_) => Self::new(StatusCode::CONFLICT, "not_expired", msg),
            NodeError::Handle(_) => unprocessable("bad_handle"),
            NodeError::BadTarget(_) => unprocessable("bad_target"),
            NodeError::UnknownHandle(_) => Self::new(StatusCode::NOT_FOUND, "unknown_handle", msg),
            NodeError::HandleTaken { .. } => Self::new(StatusCode::CONFLICT, "handle_taken", msg),
            NodeError::KeyChanged { .. } => Self::new(StatusCode::CONFLICT, "key_changed", msg),
            NodeError::SelfFollow => unprocessable("self_follow"),
            NodeError::TooManyTargets { .. } => unprocessable("too_many_targets"),
            NodeError::NotFollowing(_) => Self::new(StatusCode::NOT_FOUND, "not_following", msg),
            NodeError::HandleUnconfirmed { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "handle_unconfirmed", msg)
            }
            NodeError::Network(_) | NodeError::Offline | NodeError::ClaimPending { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "network", msg)
            }
            NodeError::HeadUnknown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "head_unknown", msg)
            }
            NodeError::Store(s) if s.is_disk_full() => {
                tracing::error!(error = %msg, "request failed: the disk is full");
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", msg)
            }
            NodeError::Config(_) | NodeError::Store(_) | NodeError::Profile(_) => {
                tracing::error!(error = %msg, "request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejections (malformed JSON, wrong content type, too large) are
/// API errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => {
                let code = match rej.status() {
                    s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => {
                        status_code(s)
                    }
                    _ => "bad_request",
                };
                Err(ApiError::new(rej.status(), code, rej.body_text()))
            }
        }
    }
}

/// `Query<T>` whose rejections are API errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(rej) => Err(ApiError::bad_request(rej.body_text())),
        }
    }
}

// ---- protection ---------------------------------------------------------------------

impl ApiState {
    /// The `Host` headers that name us: the address we listen on (as configured:
    /// `127.0.0.2:PORT`, `[::1]:PORT`), and `localhost:PORT` when that is where
    /// `localhost` leads (127.0.0.1, ::1). The port may be left out only when it is 80.
    pub fn allowed_hosts(&self) -> Vec<String> {
        let port = self.addr.port();
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let mut names = vec![ip];
        if matches!(
            self.addr.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST) | IpAddr::V6(Ipv6Addr::LOCALHOST)
        ) {
            names.push("localhost".into());
        }
        let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
        if port == 80 {
            hosts.extend(names);
        }
        hosts
    }

    /// Whether a browser's request comes from our own pages: its `Origin` (sent by
    /// browsers with every change) is one of ours. Programs send none.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""))
            .is_none_or(|o| {
                self.allowed_hosts()
                    .iter()
                    .any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")))
            })
    }
}

/// Refuses requests whose Host header is not the address we listen on.
async fn check_host(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !st
        .allowed_hosts()
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "requests must be addressed to {} (Host was {host:?})",
                st.addr
            ),
        )
        .into_response();
    }
    next.run(req).await
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header; the scheme's name is
/// case-insensitive (RFC 9110, 11.1), so `bearer` and `BEARER` work too.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Requires the bearer token or the web session cookie.
async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer_token);
    // A feed reader may open the feeds (and nothing else) with the feed key.
    let feed_key = (bearer.is_none() && req.uri().path().starts_with(crate::feeds::FEEDS_PREFIX))
        .then(|| {
            req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("key="))
                    .map(str::to_string)
            })
        })
        .flatten();
    if let Some(key) = feed_key {
        let ours = crate::feeds::feed_key(&st.token);
        return if constant_time_eq(key.as_bytes(), ours.as_bytes()) {
            next.run(req).await
        } else {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong feed key")
                .into_response()
        };
    }
    match bearer {
        Some(t) if constant_time_eq(t.as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API token")
            .into_response(),
        None if st.sessions.valid(req.headers()) => {
            // A cookie rides along with any request the browser makes: changes must
            // come from our own pages (SameSite=Strict already stops other sites).
            let safe = matches!(*req.method(), Method::GET | Method::HEAD);
            if safe || st.same_origin(req.headers()) {
                next.run(req).await
            } else {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", "cross-origin request refused")
                    .into_response()
            }
        }
        None if st.sessions.present(req.headers()) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this session has ended: sign in again with the link `starling ui` prints",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API token: send `Authorization: Bearer <token>` (the token is in the profile's api.token)",
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page")
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

// ---- handlers -----------------------------------------------------------------------

/// This profile's identity, and whether its handle is registered.
#[utoipa::path(get, path = "/whoami", tag = "node",
    responses((status = 200, description = "who this profile is", body = WhoAmI)))]
async fn whoami(State(st): State<ApiState>) -> Json<WhoAmI> {
    Json(st.node.whoami())
}

/// Counts, clock, network, outbox and rejected inputs.
#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, description = "the node's state", body = Status)))]
async fn status(State(st): State<ApiState>) -> ApiResult<Json<Status>> {
    Ok(Json(st.node.status().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Posts per page, 1-500 (default 20).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page (absent or empty: the newest).
    #[param(max_length = 200)]
    pub before: Option<String>,
}

/// A page's `limit`, 1-500, `default` when absent.
pub(crate) fn page_limit(limit: Option<usize>, default: usize) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    Ok(limit)
}

impl PageQuery {
    pub(crate) fn parse(&self) -> ApiResult<(usize, Option<Cursor>)> {
        let limit = page_limit(self.limit, 20)?;
        let before = match self.before.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<Cursor>()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
        };
        Ok((limit, before))
    }
}

/// Your posts and those of everyone you follow, unexpired, newest first.
#[utoipa::path(get, path = "/timeline", tag = "posts", params(PageQuery),
    responses((status = 200, description = "a page of the timeline", body = TimelinePage),
        (status = 400, description = "`limit` outside 1-500, or a malformed `before` cursor", body = ErrorBody)))]
async fn timeline(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TimelinePage>> {
    let (limit, before) = q.parse()?;
    Ok(Json(st.node.timeline(limit, before).await?))
}

/// Your expired posts, newest first.
#[utoipa::path(get, path = "/archive", tag = "posts", params(PageQuery),
    responses((status = 200, description = "a page of the archive", body = TimelinePage),
        (status = 400, description = "`limit` outside 1-500, or a malformed `before` cursor", body = ErrorBody)))]
async fn archive(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TimelinePage>> {
    let (limit, before) = q.parse()?;
    Ok(Json(st.node.archive(limit, before).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewPost {
    /// 1-280 characters (Unicode scalar values), not only white space; no control
    /// characters but newline and tab.
    #[schema(
        example = "hello, world",
        min_length = 1,
        max_length = 280,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub body: String,
}

/// Publishes a post: stored (durably) before the answer, then pushed to followers.
#[utoipa::path(post, path = "/posts", tag = "posts", request_body = NewPost,
    responses((status = 201, description = "stored durably and being pushed to followers", body = PostView),
        (status = 422, description = "a body that breaks the rules (`empty_body`, `body_too_long`, `control_character`), or a JSON body of the wrong shape", body = ErrorBody),
        (status = 503, description = "a key restored from its words has not learned the number of its newest post from the network yet (`head_unknown`): nothing was posted", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn create_post(
    State(st): State<ApiState>,
    ApiJson(req): ApiJson<NewPost>,
) -> ApiResult<(StatusCode, Json<PostView>)> {
    let took = starling_node::trace::mono_ns();
    let view = st.node.post(&req.body).await?;
    st.node.stamp(view.seq, Stage::Api, took);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Takes the stage stamps of posts kept since the last call: where each post's
/// time went (monotonic clock, ns). Empty unless the daemon runs with
/// `--trace-latency`.
#[utoipa::path(get, path = "/trace", tag = "node",
    responses((status = 200, description = "the stamps taken since the last call", body = Vec<Stamp>)))]
async fn trace(State(st): State<ApiState>) -> Json<Vec<Stamp>> {
    Json(st.node.take_trace())
}

/// The node's metrics for Prometheus, in the OpenMetrics text format: posts held and
/// refused by reason, followers, outbox, store size and quotas, garbage collection,
/// sync, clock offset, peers, and libp2p's own (`libp2p_*`, `gossipsub_*`). Scrape it
/// with the token: `authorization: {credentials_file: <profile>/api.token}`.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "the metrics (OpenMetrics 1.0 text)", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(st): State<ApiState>) -> ApiResult<Response> {
    let status = st.node.status().await?;
    let libp2p = match st.node.net() {
        Some(net) => net.metrics_text().await.unwrap_or_default(),
        None => String::new(),
    };
    let text = crate::metrics::render(&status, &libp2p);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Republishes an archived post as a new post (new seq, time and expiry).
#[utoipa::path(post, path = "/archive/{seq}/repost", tag = "posts",
    params(("seq" = u64, Path, description = "The archived post's number", minimum = 0)),
    responses((status = 201, description = "the new post", body = PostView),
        (status = 400, description = "`seq` is not a post number", body = ErrorBody),
        (status = 404, description = "no post of yours with this number (`not_in_archive`)", body = ErrorBody),
        (status = 409, description = "the post has not expired yet (`not_expired`)", body = ErrorBody),
        (status = 503, description = "a key restored from its words has not learned the number of its newest post yet (`head_unknown`)", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn repost(
    State(st): State<ApiState>,
    Path(seq): Path<String>,
) -> ApiResult<(StatusCode, Json<PostView>)> {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a post number")))?;
    Ok((StatusCode::CREATED, Json(st.node.repost(seq).await?)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// A handle (`alice`, `@alice`: 2-40 of a-z, 0-9 and `_`) or a key
    /// (`12D3KooW...`, 52 characters of base58).
    #[schema(
        example = "alice",
        pattern = r"^(@?[a-z0-9_]{2,40}|12D3KooW[1-9A-HJ-NP-Za-km-z]{44})$"
    )]
    pub target: String,
}

/// Follows a user by handle or key. Works while they are offline: `pending` until they
/// acknowledge.
#[utoipa::path(post, path = "/follow", tag = "people", request_body = Target,
    responses((status = 200, description = "followed (`pending` until they acknowledge)", body = FollowView),
        (status = 404, description = "no one holds this handle (`unknown_handle`)", body = ErrorBody),
        (status = 409, description = "the handle now names another key than the one followed before (`key_changed`)", body = ErrorBody),
        (status = 422, description = "not a handle or key (`bad_target`), yourself (`self_follow`), or a JSON body of the wrong shape", body = ErrorBody),
        (status = 503, description = "the network cannot answer now: offline, or the handle's lookup failed (`network`, `handle_unconfirmed`)", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn follow(
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<Target>,
) -> ApiResult<Json<FollowView>> {
    Ok(Json(st.node.follow(&t.target).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Targets {
    /// Handles (`alice`, `@alice`) or keys (`12D3KooW...`), at most 256. A target
    /// that is neither gets its own error outcome.
    #[schema(example = json!(["alice", "bob"]), max_items = 256)]
    pub targets: Vec<String>,
}

/// The outcome of following one target of a batch: `followed`, or `error`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowOutcome {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub followed: Option<FollowView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Follows several users at once (at most 256), as `/follow` does each: their
/// statements are stored in one transaction and delivered together. One outcome per
/// target, in order; one target failing does not stop the others.
#[utoipa::path(post, path = "/follow/many", tag = "people", request_body = Targets,
    responses((status = 200, description = "one outcome per target, in order", body = Vec<FollowOutcome>),
        (status = 422, description = "more than 256 targets (`too_many_targets`), or a JSON body of the wrong shape", body = ErrorBody),
        (status = 503, description = "the node is offline (`network`)", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn follow_many(
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<Targets>,
) -> ApiResult<Json<Vec<FollowOutcome>>> {
    let results = st.node.follow_many(&t.targets).await?;
    let outcomes = t
        .targets
        .into_iter()
        .zip(results)
        .map(|(target, r)| match r {
            Ok(view) => FollowOutcome {
                target,
                followed: Some(view),
                error: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                FollowOutcome {
                    target,
                    followed: None,
                    error: Some(ErrorDetail {
                        code: e.code.to_string(),
                        message: e.message,
                    }),
                }
            }
        })
        .collect();
    Ok(Json(outcomes))
}

/// Stops following a user.
#[utoipa::path(post, path = "/unfollow", tag = "people", request_body = Target,
    responses((status = 200, description = "no longer followed", body = FollowView),
        (status = 404, description = "you do not follow them (`not_following`), or no one holds this handle (`unknown_handle`)", body = ErrorBody),
        (status = 422, description = "not a handle or key (`bad_target`), or a JSON body of the wrong shape", body = ErrorBody),
        (status = 503, description = "the network cannot answer now (`network`)", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn unfollow(
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<Target>,
) -> ApiResult<Json<FollowView>> {
    Ok(Json(st.node.unfollow(&t.target).await?))
}

/// Who follows you.
#[utoipa::path(get, path = "/followers", tag = "people",
    responses((status = 200, description = "your followers", body = Vec<FollowView>)))]
async fn followers(State(st): State<ApiState>) -> ApiResult<Json<Vec<FollowView>>> {
    Ok(Json(st.node.followers_list().await?))
}

/// Whom you follow.
#[utoipa::path(get, path = "/following", tag = "people",
    responses((status = 200, description = "whom you follow", body = Vec<FollowView>)))]
async fn following(State(st): State<ApiState>) -> ApiResult<Json<Vec<FollowView>>> {
    Ok(Json(st.node.following_list().await?))
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// A new handle (2-40 of a-z, 0-9 and `_`; a leading `@` is allowed); absent:
    /// claim the current one.
    #[schema(example = "alice", pattern = r"^@?[a-z0-9_]{2,40}$")]
    pub handle: Option<String>,
}

/// Claims your handle (or a new one) in the network now.
#[utoipa::path(post, path = "/register", tag = "people", request_body = RegisterRequest,
    responses((status = 200, description = "claimed; who this profile is now", body = WhoAmI),
        (status = 409, description = "another key holds the handle (`handle_taken`)", body = ErrorBody),
        (status = 422, description = "not a valid handle (`bad_handle`), or a JSON body of the wrong shape", body = ErrorBody),
        (status = 503, description = "the network cannot confirm the claim now (`network`, `handle_unconfirmed`)", body = ErrorBody),
        (status = 507, description = "the disk is full: nothing was saved", body = ErrorBody)))]
async fn register(
    State(st): State<ApiState>,
    ApiJson(r): ApiJson<RegisterRequest>,
) -> ApiResult<Json<WhoAmI>> {
    st.node.register(r.handle.as_deref()).await?;
    Ok(Json(st.node.whoami()))
}

/// Server-sent events: `post` (a post entered the timeline; data is a `NodeEvent`),
/// `follower` (someone followed you), `resync` (events were missed: reload).
#[utoipa::path(get, path = "/events", tag = "posts",
    responses((status = 200, description = "an endless event stream", content_type = "text/event-stream", body = NodeEvent)))]
async fn events(State(st): State<ApiState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    use futures::StreamExt;
    let rx = st.node.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = match rx.recv().await {
            Ok(ev) => {
                let name = match &ev {
                    NodeEvent::Post(_) => "post",
                    NodeEvent::Follower(_) => "follower",
                };
                let data = serde_json::to_string(&ev).unwrap_or_default();
                Event::default().event(name).data(data)
            }
            // Too slow a reader: tell it to reload rather than silently skip.
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    })
    .take_until(st.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
