//! The local HTTP JSON API served by the daemon on 127.0.0.1.
//!
//! Every `/api/` route needs `Authorization: Bearer <token>` (the token lives in the
//! profile's `api.token`, readable by its owner only), and every request must carry a
//! `Host` header naming the loopback address it was sent to, which stops web pages
//! from reaching the API through DNS rebinding. Errors are JSON:
//! `{"error": {"code": "...", "message": "..."}}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use starling_core::PostError;
use starling_node::{
    FollowView, Node, NodeError, NodeEvent, PostView, Status, TimelinePage, WhoAmI,
};
use starling_store::Cursor;

/// Largest request body accepted (a post is at most 1,120 bytes of text).
const MAX_BODY: usize = 16 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub node: Node,
    pub token: Arc<str>,
    /// The port we listen on, for the Host check.
    pub port: u16,
    /// Cancelled when the daemon stops: ends the long-lived event streams.
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/whoami", get(whoami))
        .route("/status", get(status))
        .route("/timeline", get(timeline))
        .route("/posts", post(create_post))
        .route("/archive", get(archive))
        .route("/archive/{seq}/repost", post(repost))
        .route("/events", get(events))
        .route("/follow", post(follow))
        .route("/unfollow", post(unfollow))
        .route("/followers", get(followers))
        .route("/following", get(following))
        .route("/register", post(register))
        .fallback(api_not_found)
        .layer(from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), check_host))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
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
        match e {
            NodeError::Post(p) => {
                let code = match p {
                    PostError::EmptyBody => "empty_body",
                    PostError::BodyTooLong { .. } => "body_too_long",
                    PostError::ControlCharacter { .. } => "control_character",
                    _ => "invalid_post",
                };
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
            }
            NodeError::NotInArchive(_) => Self::new(StatusCode::NOT_FOUND, "not_in_archive", msg),
            NodeError::NotExpired(_) => Self::new(StatusCode::CONFLICT, "not_expired", msg),
            NodeError::Handle(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_handle", msg),
            NodeError::BadTarget(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_target", msg)
            }
            NodeError::UnknownHandle(_) => Self::new(StatusCode::NOT_FOUND, "unknown_handle", msg),
            NodeError::HandleTaken { .. } => Self::new(StatusCode::CONFLICT, "handle_taken", msg),
            NodeError::KeyChanged { .. } => Self::new(StatusCode::CONFLICT, "key_changed", msg),
            NodeError::SelfFollow => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "self_follow", msg)
            }
            NodeError::NotFollowing(_) => Self::new(StatusCode::NOT_FOUND, "not_following", msg),
            NodeError::Network(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "network", msg),
            NodeError::Config(_) | NodeError::Store(_) | NodeError::Profile(_) => {
                tracing::error!(error = %msg, "request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejections (malformed JSON, wrong content type) are API errors.
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
                let code = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "bad_request"
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

/// Refuses requests whose Host header is not our own loopback address.
async fn check_host(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let allowed = [
        format!("127.0.0.1:{}", st.port),
        format!("localhost:{}", st.port),
        format!("[::1]:{}", st.port),
    ];
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "requests must be addressed to 127.0.0.1:{} (Host was {host:?})",
                st.port
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Requires the bearer token.
async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API token")
            .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API token: send `Authorization: Bearer <token>` (the token is in the profile's api.token)",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page")
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

// ---- handlers -----------------------------------------------------------------------

async fn whoami(State(st): State<ApiState>) -> Json<WhoAmI> {
    Json(st.node.whoami())
}

async fn status(State(st): State<ApiState>) -> ApiResult<Json<Status>> {
    Ok(Json(st.node.status().await?))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub before: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> ApiResult<(usize, Option<Cursor>)> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 500"));
        }
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

async fn timeline(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TimelinePage>> {
    let (limit, before) = q.parse()?;
    Ok(Json(st.node.timeline(limit, before).await?))
}

async fn archive(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TimelinePage>> {
    let (limit, before) = q.parse()?;
    Ok(Json(st.node.archive(limit, before).await?))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NewPost {
    pub body: String,
}

async fn create_post(
    State(st): State<ApiState>,
    ApiJson(req): ApiJson<NewPost>,
) -> ApiResult<(StatusCode, Json<PostView>)> {
    Ok((StatusCode::CREATED, Json(st.node.post(&req.body).await?)))
}

async fn repost(
    State(st): State<ApiState>,
    Path(seq): Path<String>,
) -> ApiResult<(StatusCode, Json<PostView>)> {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a post number")))?;
    Ok((StatusCode::CREATED, Json(st.node.repost(seq).await?)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Target {
    /// A handle (`alice`, `@alice`) or a key (`12D3KooW...`).
    pub target: String,
}

async fn follow(
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<Target>,
) -> ApiResult<Json<FollowView>> {
    Ok(Json(st.node.follow(&t.target).await?))
}

async fn unfollow(
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<Target>,
) -> ApiResult<Json<FollowView>> {
    Ok(Json(st.node.unfollow(&t.target).await?))
}

async fn followers(State(st): State<ApiState>) -> ApiResult<Json<Vec<FollowView>>> {
    Ok(Json(st.node.followers_list().await?))
}

async fn following(State(st): State<ApiState>) -> ApiResult<Json<Vec<FollowView>>> {
    Ok(Json(st.node.following_list().await?))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// A new handle; absent: claim the current one.
    pub handle: Option<String>,
}

async fn register(
    State(st): State<ApiState>,
    ApiJson(r): ApiJson<RegisterRequest>,
) -> ApiResult<Json<WhoAmI>> {
    st.node.register(r.handle.as_deref()).await?;
    Ok(Json(st.node.whoami()))
}

/// Server-sent events: every post entering the timeline, as JSON.
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
