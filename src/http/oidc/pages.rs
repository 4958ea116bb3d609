//! The provider's HTML pages (SPEC §18): the login form, the TOTP step, the logout
//! confirmation, and the error and signed-out pages. Rendered by maud, which escapes
//! every interpolated value; no script at all (the CSP allows none), forms that work
//! without JavaScript, one stylesheet from `/oauth/assets/page.css`.

use maud::{DOCTYPE, Markup, html};

/// The stylesheet the pages link to (the CSP allows `style-src 'self'` only).
pub const STYLESHEET: &str = "\
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;color:#1d1f23}\
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.12)}\
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem}\
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;cursor:pointer}\
.error{color:#a40000;background:#fde8e8;padding:.5rem;border-radius:4px}\
.muted{color:#5b6068;font-size:.9rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · authctl" }
                link rel="stylesheet" href="/oauth/assets/page.css";
            }
            body { main { (body) } }
        }
    }
}

fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p class="error" role="alert" { (error) }
        }
    }
}

/// The login form. `request` is the authorization request's query string, carried
/// back and checked again.
pub fn login(app: &str, request: &str, csrf: &str, username: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p class="muted" { "to continue to " strong { (app) } }
            (error_line(error))
            form method="post" action="/oauth/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="request" value=(request);
                label for="username" { "Username or email" }
                input id="username" name="username" type="text" value=(username)
                    autocomplete="username" autocapitalize="none" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password"
                    autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The second step for an account with TOTP (SPEC §14).
pub fn code(app: &str, request: &str, csrf: &str, mfa_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Two-factor code",
        html! {
            h1 { "Two-factor code" }
            p class="muted" { "Enter the code from your authenticator app, or a recovery code, to continue to " strong { (app) } "." }
            (error_line(error))
            form method="post" action="/oauth/login/mfa" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="request" value=(request);
                input type="hidden" name="mfa_token" value=(mfa_token);
                label for="code" { "Code" }
                input id="code" name="code" type="text" inputmode="numeric"
                    autocomplete="one-time-code" required autofocus;
                button type="submit" { "Verify" }
            }
        },
    )
}

/// A request that cannot be sent back to the application.
pub fn error(message: &str) -> Markup {
    layout(
        "Cannot continue",
        html! {
            h1 { "Cannot continue" }
            p class="error" role="alert" { (message) }
            p class="muted" { "Go back to the application and try again. If this keeps happening, tell its operator." }
        },
    )
}

/// Logout without a valid `id_token_hint`: the person confirms.
pub fn logout_confirm(csrf: &str) -> Markup {
    layout(
        "Sign out",
        html! {
            h1 { "Sign out?" }
            p { "You will be signed out of authctl on this browser." }
            form method="post" action="/oauth/logout" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Sign out" }
            }
        },
    )
}

pub fn signed_out() -> Markup {
    layout(
        "Signed out",
        html! {
            h1 { "Signed out" }
            p { "You are signed out. You can close this page." }
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_escaped() {
        let page = super::login("<b>app</b>", "a=\"1\"&b=2", "c", "x'><script>", Some("<i>"))
            .into_string();
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>app"));
        assert!(page.contains("&lt;b&gt;app"));
        assert!(page.contains("a=&quot;1&quot;&amp;b=2"));
        assert!(!page.contains("<i>"));
    }
}
