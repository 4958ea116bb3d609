//! `/api/v1/admin/users` (list: `users:read`; create: `users:write`),
//! `/api/v1/admin/users/{id}` (read: `users:read`; change, delete: `users:write`),
//! `POST …/{id}/unlock` and `POST …/{id}/reset-link` (`users:write`).

use std::sync::Arc;

use serde_json::{Map, Value};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{Fields, admin, authorize, query_value};
use crate::domain::{Email, Password, Scope, UserRef, Username};
use crate::http::api::reply::{json, respond};
use crate::http::docs::responses::{
    BadRequest, Conflict, Forbidden, LengthRequired, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{ApiKey, json_object, method_not_allowed, query_pairs};
use crate::http::state::AppState;
use crate::service::admin::{AdminUser, NewAdminUser, UserListQuery, UserPage, UserPatch};
use crate::service::{AuthService, RequestContext};

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let users = warp::path!("api" / "v1" / "admin" / "users");
    let collection = users
        .and(warp::get())
        .and(admin(state))
        .and(query_pairs())
        .then(list)
        .or(users
            .and(warp::post())
            .and(admin(state))
            .and(json_object())
            .then(create))
        .unify()
        .or(users.and(method_not_allowed(&["GET", "POST"])))
        .unify();
    let one = warp::path!("api" / "v1" / "admin" / "users" / String);
    let single = one
        .and(warp::get())
        .and(admin(state))
        .then(read)
        .or(one
            .and(warp::patch())
            .and(admin(state))
            .and(json_object())
            .then(update))
        .unify()
        .or(one.and(warp::delete()).and(admin(state)).then(delete))
        .unify()
        .or(one
            .and(method_not_allowed(&["GET", "PATCH", "DELETE"]))
            .map(|_: String, refused: Response| refused))
        .unify();
    let unlock_path = warp::path!("api" / "v1" / "admin" / "users" / String / "unlock");
    let unlock_route = unlock_path
        .and(warp::post())
        .and(admin(state))
        .then(unlock)
        .or(unlock_path
            .and(method_not_allowed(&["POST"]))
            .map(|_: String, refused: Response| refused))
        .unify();
    let reset_path = warp::path!("api" / "v1" / "admin" / "users" / String / "reset-link");
    let reset_route = reset_path
        .and(warp::post())
        .and(admin(state))
        .then(reset_link)
        .or(reset_path
            .and(method_not_allowed(&["POST"]))
            .map(|_: String, refused: Response| refused))
        .unify();
    collection
        .or(single)
        .unify()
        .or(unlock_route)
        .unify()
        .or(reset_route)
        .unify()
        .boxed()
}

/// A page of users.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "admin_list_users",
    summary = "List users (keyset pages)",
    description = "Users in id order, `limit` (1-200, default 50) per page; pass \
        `next_cursor` as `cursor` for the next page. Pages are stable while users sign up \
        (keyset on id). Scope `users:read`.",
    params(
        ("q" = Option<String>, Query, description = "A username or email prefix, any case."),
        ("role" = Option<String>, Query, description = "Only users holding this role."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One page.", body = UserPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
    query: Vec<(String, String)>,
) -> Response {
    let result = async {
        authorize(&service, key.as_ref(), Scope::UsersRead, ctx).await?;
        let query = UserListQuery {
            q: query_value(&query, "q"),
            role: query_value(&query, "role"),
            limit: query_value(&query, "limit"),
            cursor: query_value(&query, "cursor"),
        };
        let page = service.admin_users(&query).await?;
        Ok(json(StatusCode::OK, &page))
    };
    respond(result.await)
}

fn parse_email(s: &str) -> Result<Email, String> {
    Email::parse(s)
}
fn parse_username(s: &str) -> Result<Username, String> {
    Username::parse(s)
}
fn parse_password(s: &str) -> Result<Password, String> {
    Password::parse(s)
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "admin_create_user",
    summary = "Create a user",
    description = "Body `{email, username, password?, roles?, is_active?, email_verified?}`; \
        defaults: active, unverified, no roles. Without `password` the account can only be \
        entered after a reset (`reset-link`). Scope `users:write`.",
    request_body(content = Object, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new user.", body = AdminUser),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create(
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
    body: Map<String, Value>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::UsersWrite, ctx).await?;
        let mut f = Fields::new(&body);
        let email = f.required("email", parse_email);
        let username = f.required("username", parse_username);
        let password = f.parsed("password", parse_password);
        let roles = f.roles("roles");
        let is_active = f.boolean("is_active");
        let email_verified = f.boolean("email_verified");
        f.finish()?;
        let (Some(email), Some(username)) = (email, username) else {
            return Err(crate::error::Error::validation(
                "body",
                "email and username are required",
            ));
        };
        let user = service
            .admin_create_user(
                &ctx,
                NewAdminUser {
                    email,
                    username,
                    password,
                    roles: roles.unwrap_or_default(),
                    is_active: is_active.unwrap_or(true),
                    email_verified: email_verified.unwrap_or(false),
                },
            )
            .await?;
        Ok(json(StatusCode::CREATED, &user))
    };
    respond(result.await)
}

/// One user.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "admin_get_user",
    summary = "Read a user",
    description = "Scope `users:read`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user.", body = AdminUser),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn read(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        authorize(&service, key.as_ref(), Scope::UsersRead, ctx).await?;
        let id = super::user_id(&id)?;
        let user = service.admin_get_user(id).await?;
        Ok(json(StatusCode::OK, &user))
    };
    respond(result.await)
}

/// Changes a user.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "admin_update_user",
    summary = "Change a user",
    description = "Any of `email, username, password, is_active, roles, email_verified`. \
        A password change or `is_active: false` revokes every session (race-free); a new \
        email is unverified unless `email_verified` is given; an email change voids reset \
        tokens. Scope `users:write`.",
    params(("id" = i64, Path, description = "The user id.")),
    request_body(content = Object, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user as changed.", body = AdminUser),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn update(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
    body: Map<String, Value>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::UsersWrite, ctx).await?;
        let id = super::user_id(&id)?;
        let mut f = Fields::new(&body);
        let patch = UserPatch {
            email: f.parsed("email", parse_email),
            username: f.parsed("username", parse_username),
            password: f.parsed("password", parse_password),
            is_active: f.boolean("is_active"),
            roles: f.roles("roles"),
            email_verified: f.boolean("email_verified"),
        };
        f.finish()?;
        let user = service.admin_update_user(&ctx, id, patch).await?;
        Ok(json(StatusCode::OK, &user))
    };
    respond(result.await)
}

/// Deletes a user.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "admin_delete_user",
    summary = "Delete a user",
    description = "With all sessions and tokens. Scope `users:write`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::UsersWrite, ctx).await?;
        let id = super::user_id(&id)?;
        service.delete_user(&ctx, &UserRef::Id(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}

/// Ends a user's lockout.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/unlock",
    tag = "admin",
    operation_id = "admin_unlock_user",
    summary = "Unlock a user",
    description = "Clears failed logins and any lock. Scope `users:write`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Unlocked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn unlock(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::UsersWrite, ctx).await?;
        let id = super::user_id(&id)?;
        service.unlock(&ctx, &UserRef::Id(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}

/// Issues a password reset token.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/reset-link",
    tag = "admin",
    operation_id = "admin_reset_link",
    summary = "Issue a password reset token",
    description = "For a backend that sends its own mail: `{\"token\", \"link\"}` (`link` null \
        without `email.reset_url`); the token is the one `POST /api/v1/auth/reset` takes. \
        Scope `users:write`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The token and link.", body = Object),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn reset_link(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::UsersWrite, ctx).await?;
        let id = super::user_id(&id)?;
        let reset = service.reset_link(&ctx, &UserRef::Id(id)).await?;
        Ok(json(StatusCode::OK, &reset))
    };
    respond(result.await)
}
