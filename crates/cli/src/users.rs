//! The API's user pages: who a handle or key is (and how they and this node's user
//! stand), and their posts. The web UI's page per user (`#/u/<handle or key>`) is
//! built from these two.
//!
//! A target is a key (`12D3KooW...`), a handle or `@handle`. A handle pinned before
//! (or our own) needs no lookup; another is resolved through the network and pinned,
//! as a follow would. What is not a handle nor a key is `422 bad_target`.

use axum::Json;
use axum::extract::{Path, State};
use starling_node::{TimelinePage, UserView};

use crate::api::{ApiError, ApiQuery, ApiState, ErrorBody, PageQuery};

type ApiResult<T> = Result<T, ApiError>;

/// Who a user is, by handle or key: key, handle (when known), fingerprint, whether
/// it is you, whether you follow them (and whether they acknowledged it), whether
/// they follow you.
#[utoipa::path(get, path = "/users/{target}", tag = "people",
    params(("target" = String, Path, description = "A handle (`alice`, `@alice`) or a key (`12D3KooW...`)")),
    responses(
        (status = 200, description = "Who the target is", body = UserView),
        (status = 400, description = "`bad_request`: the path could not be read (not UTF-8)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no token or session, or a wrong one", body = ErrorBody),
        (status = 404, description = "`unknown_handle`: nobody in the network holds this handle", body = ErrorBody),
        (status = 409, description = "`key_changed`: the handle now names another key than the one first seen", body = ErrorBody),
        (status = 422, description = "`bad_target`: neither a handle (2-40 of a-z, 0-9, _) nor a key", body = ErrorBody),
        (status = 500, description = "`internal`: the node's storage failed", body = ErrorBody),
        (status = 503, description = "`handle_unconfirmed` or `network`: a handle seen for the first time cannot be looked up now (the network is off, or its answers disagree); keys always work", body = ErrorBody),
        (status = 507, description = "`disk_full`: a handle seen for the first time could not be pinned", body = ErrorBody),
    ))]
pub(crate) async fn user(
    State(st): State<ApiState>,
    Path(target): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(st.node.user(&target).await?))
}

/// A user's unexpired posts that this node holds, newest first, cursor-paged: yours,
/// or those of someone you follow (nobody else's posts are kept here).
#[utoipa::path(get, path = "/users/{target}/posts", tag = "people",
    params(("target" = String, Path, description = "A handle (`alice`, `@alice`) or a key (`12D3KooW...`)"), PageQuery),
    responses(
        (status = 200, description = "One page of their posts", body = TimelinePage),
        (status = 400, description = "`bad_request`: a limit outside 1-500, a malformed cursor, or a path that is not UTF-8", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no token or session, or a wrong one", body = ErrorBody),
        (status = 404, description = "`unknown_handle`: nobody in the network holds this handle", body = ErrorBody),
        (status = 409, description = "`key_changed`: the handle now names another key than the one first seen", body = ErrorBody),
        (status = 422, description = "`bad_target`: neither a handle (2-40 of a-z, 0-9, _) nor a key", body = ErrorBody),
        (status = 500, description = "`internal`: the node's storage failed", body = ErrorBody),
        (status = 503, description = "`handle_unconfirmed` or `network`: a handle seen for the first time cannot be looked up now (the network is off, or its answers disagree); keys always work", body = ErrorBody),
        (status = 507, description = "`disk_full`: a handle seen for the first time could not be pinned", body = ErrorBody),
    ))]
pub(crate) async fn user_posts(
    State(st): State<ApiState>,
    Path(target): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TimelinePage>> {
    // The page first: a bad limit is refused before any lookup.
    let (limit, before) = q.parse()?;
    let (key, _) = st.node.find_user(&target).await?;
    Ok(Json(st.node.posts_of(key, limit, before).await?))
}
