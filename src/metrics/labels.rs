//! The label values of the metric families: closed enums, so a family's series are
//! bounded by construction (route templates, never raw paths).

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use std::fmt;

use warp::http::Method;

/// Declares a label enum: its variants, their label values, the list of all of them
/// (so a family can be resolved for each at start) and how it encodes as a value.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every variant, in declaration order (the order of their indices).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value, as it appears in the exposition.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value,)+ }
            }

            /// The position in [`Self::ALL`], for a table of pre-resolved handles.
            #[allow(dead_code)] // `method` is looked up per request, never tabled
            pub(super) const fn index(self) -> usize {
                self as usize
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_enum! {
    /// The route template of a request: the `route` label. Never a raw path.
    pub enum Route {
        Register => "/api/v1/auth/register",
        Token => "/api/v1/auth/token",
        Me => "/api/v1/auth/me",
        Refresh => "/api/v1/auth/refresh",
        Revoke => "/api/v1/auth/revoke",
        Sessions => "/api/v1/auth/sessions",
        Session => "/api/v1/auth/sessions/{id}",
        Logout => "/api/v1/auth/logout",
        Password => "/api/v1/auth/password",
        VerifyRequest => "/api/v1/auth/verify/request",
        Verify => "/api/v1/auth/verify",
        Recover => "/api/v1/auth/recover",
        Reset => "/api/v1/auth/reset",
        MfaTotp => "/api/v1/auth/mfa/totp",
        MfaTotpConfirm => "/api/v1/auth/mfa/totp/confirm",
        MfaRecoveryCodes => "/api/v1/auth/mfa/recovery-codes",
        Introspect => "/api/v1/auth/introspect",
        AdminUsers => "/api/v1/admin/users",
        AdminUser => "/api/v1/admin/users/{id}",
        AdminUserSessions => "/api/v1/admin/users/{id}/sessions",
        AdminUserUnlock => "/api/v1/admin/users/{id}/unlock",
        AdminUserResetLink => "/api/v1/admin/users/{id}/reset-link",
        AdminAudit => "/api/v1/admin/audit",
        Jwks => "/.well-known/jwks.json",
        AuthorizationServer => "/.well-known/oauth-authorization-server",
        OpenApi => "/openapi.json",
        OpenIdConfiguration => "/.well-known/openid-configuration",
        OidcAuthorize => "/oauth/authorize",
        OidcLogin => "/oauth/login",
        OidcLoginMfa => "/oauth/login/mfa",
        OidcToken => "/oauth/token",
        OidcUserinfo => "/oauth/userinfo",
        OidcLogout => "/oauth/logout",
        OidcAssets => "/oauth/assets/page.css",
        /// Swagger UI: `/docs` and every asset below it.
        Docs => "/docs",
        /// ReDoc: `/redoc` and every asset below it.
        Redoc => "/redoc",
        Liveness => "/health/liveness",
        Readiness => "/health/readiness",
        Startup => "/health/startup",
        /// Any path the API does not serve (its 404s), as one series.
        Unmatched => "unmatched",
    }
}

label_enum! {
    /// The `method` label: the methods HTTP defines, anything else as `OTHER`.
    pub enum HttpMethod {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Put => "PUT",
        Delete => "DELETE",
        Patch => "PATCH",
        Options => "OPTIONS",
        Connect => "CONNECT",
        Trace => "TRACE",
        /// An extension method: its name is client-chosen, so it is not a label.
        Other => "OTHER",
    }
}

label_enum! {
    /// The outcome of a password login: `authctl_logins_total{result}`.
    pub enum LoginResult {
        Success => "success",
        /// Unknown user, wrong password or inactive user (the generic 401).
        Failure => "failure",
        /// Refused because the account is locked (SPEC §10), the right password too.
        Locked => "locked",
        /// The right password of an account with TOTP on, without a second factor:
        /// the 403 `mfa_required` (SPEC §14).
        MfaRequired => "mfa_required",
    }
}

label_enum! {
    /// The outcome of a refresh (either endpoint): `authctl_refresh_total{result}`.
    pub enum RefreshResult {
        /// The presented token was spent and a successor issued.
        Rotated => "rotated",
        /// A replay inside the grace window got the same successor again.
        Grace => "grace",
        /// A spent token was presented again: its family is now revoked (theft).
        ReuseDetected => "reuse_detected",
        /// Unknown, expired or revoked token, or a family past its lifetime.
        Invalid => "invalid",
    }
}

label_enum! {
    /// A rate-limited endpoint: `authctl_rate_limited_total{endpoint}`.
    pub enum LimitedEndpoint {
        Register => "register",
        Token => "token",
        Refresh => "refresh",
        Password => "password",
        /// `/verify/request` and `/recover`, one bucket (SPEC §13).
        Email => "email",
    }
}

label_enum! {
    /// What a message is for: the `kind` label of `authctl_emails_total`.
    pub enum EmailKind {
        Verify => "verify",
        Reset => "reset",
        /// `authctl email test` (sent at once, never through the outbox).
        Test => "test",
    }
}

label_enum! {
    /// How a delivery try ended: the `result` label of `authctl_emails_total`.
    pub enum EmailResult {
        Sent => "sent",
        /// Refused or failed; tried again later.
        Retry => "retry",
        /// Given up after retrying for a day.
        Failed => "failed",
    }
}

impl Route {
    /// The template of `path` (the request URI's path, without the query).
    ///
    /// It matches the way warp's `path!` filters do, so the label names the route
    /// that answered: one optional trailing slash, no empty segment inside, and the
    /// docs viewers own everything below their prefix. Anything else is
    /// [`Route::Unmatched`]. The method plays no part: a wrong method on a known path
    /// is that route's 405, and it is told apart by the `method` and `status` labels.
    pub fn of(path: &str) -> Route {
        let path = path.strip_prefix('/').unwrap_or(path);
        let first = path.split('/').next().unwrap_or_default();
        match first {
            "docs" => return Route::Docs,
            "redoc" => return Route::Redoc,
            _ => {}
        }
        let path = path.strip_suffix('/').unwrap_or(path);

        // The longest known route has six segments; a longer path is no route.
        let mut segments = [""; 6];
        let mut len = 0;
        for segment in path.split('/') {
            if segment.is_empty() || len == segments.len() {
                return Route::Unmatched;
            }
            segments[len] = segment;
            len += 1;
        }

        match segments[..len] {
            ["api", "v1", "auth", endpoint] => match endpoint {
                "register" => Route::Register,
                "token" => Route::Token,
                "me" => Route::Me,
                "refresh" => Route::Refresh,
                "revoke" => Route::Revoke,
                "sessions" => Route::Sessions,
                "logout" => Route::Logout,
                "password" => Route::Password,
                "verify" => Route::Verify,
                "recover" => Route::Recover,
                "reset" => Route::Reset,
                "introspect" => Route::Introspect,
                _ => Route::Unmatched,
            },
            ["api", "v1", "admin", "users"] => Route::AdminUsers,
            ["api", "v1", "admin", "audit"] => Route::AdminAudit,
            ["api", "v1", "admin", "users", _id] => Route::AdminUser,
            ["api", "v1", "admin", "users", _id, "sessions"] => Route::AdminUserSessions,
            ["api", "v1", "admin", "users", _id, "unlock"] => Route::AdminUserUnlock,
            ["api", "v1", "admin", "users", _id, "reset-link"] => Route::AdminUserResetLink,
            ["api", "v1", "auth", "verify", "request"] => Route::VerifyRequest,
            ["api", "v1", "auth", "sessions", _id] => Route::Session,
            ["api", "v1", "auth", "mfa", "totp"] => Route::MfaTotp,
            ["api", "v1", "auth", "mfa", "totp", "confirm"] => Route::MfaTotpConfirm,
            ["api", "v1", "auth", "mfa", "recovery-codes"] => Route::MfaRecoveryCodes,
            [".well-known", "jwks.json"] => Route::Jwks,
            [".well-known", "oauth-authorization-server"] => Route::AuthorizationServer,
            ["openapi.json"] => Route::OpenApi,
            [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
            ["oauth", "authorize"] => Route::OidcAuthorize,
            ["oauth", "login"] => Route::OidcLogin,
            ["oauth", "login", "mfa"] => Route::OidcLoginMfa,
            ["oauth", "token"] => Route::OidcToken,
            ["oauth", "userinfo"] => Route::OidcUserinfo,
            ["oauth", "logout"] => Route::OidcLogout,
            ["oauth", "assets", "page.css"] => Route::OidcAssets,
            ["health", "liveness"] => Route::Liveness,
            ["health", "readiness"] => Route::Readiness,
            ["health", "startup"] => Route::Startup,
            _ => Route::Unmatched,
        }
    }
}

impl LimitedEndpoint {
    /// The rate-limited endpoint `route` is, if it is one: a 429 there counts in
    /// `authctl_rate_limited_total` (see [`Metrics::observe_request`]).
    pub const fn of_route(route: Route) -> Option<LimitedEndpoint> {
        match route {
            Route::Register => Some(LimitedEndpoint::Register),
            // The login page takes the login's quota (SPEC §18).
            Route::Token | Route::OidcLogin | Route::OidcLoginMfa => Some(LimitedEndpoint::Token),
            // Only its refresh grant is limited there.
            Route::OidcToken => Some(LimitedEndpoint::Refresh),
            Route::Refresh => Some(LimitedEndpoint::Refresh),
            Route::VerifyRequest | Route::Recover => Some(LimitedEndpoint::Email),
            // The MFA endpoints take the password API's quota.
            Route::Password | Route::MfaTotp | Route::MfaTotpConfirm | Route::MfaRecoveryCodes => {
                Some(LimitedEndpoint::Password)
            }
            _ => None,
        }
    }
}

impl HttpMethod {
    /// The label of `method`.
    pub fn of(method: &Method) -> HttpMethod {
        match *method {
            Method::GET => HttpMethod::Get,
            Method::HEAD => HttpMethod::Head,
            Method::POST => HttpMethod::Post,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            Method::PATCH => HttpMethod::Patch,
            Method::OPTIONS => HttpMethod::Options,
            Method::CONNECT => HttpMethod::Connect,
            Method::TRACE => HttpMethod::Trace,
            _ => HttpMethod::Other,
        }
    }
}
