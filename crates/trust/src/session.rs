//! Browser sign-in: `/login` exchanges an access token the user already holds (from
//! `polity token`, or the link `polity up` prints) for an HttpOnly, SameSite=Strict
//! session cookie, so the pages work in a browser. `/logout` clears it.
//!
//! The cookie authenticates only `GET` and `HEAD` requests (see [`crate::gate`]): a
//! page can read with it, but no cross-site form can change anything with it.

use axum::{
    Form,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use crate::{Access, Action, Routes, Scope, gate::SESSION_COOKIE};

/// The routes `/login` (GET: the page; POST: the form) and `/logout` (POST). With
/// `secure` (the node serves HTTPS) the cookie carries `Secure`, so a browser never
/// sends it over plain HTTP.
pub fn routes(secure: bool) -> Routes {
    let attrs = Attrs(if secure {
        "HttpOnly; Secure; SameSite=Strict; Path=/"
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    });
    Routes::new()
        .get("/login", Action::SessionLogin, Scope::Node, page)
        .post(
            "/login",
            Action::SessionLogin,
            Scope::Node,
            move |gate: Access, form| login(gate, form, attrs),
        )
        .post("/logout", Action::SessionLogin, Scope::Node, move || {
            logout(attrs)
        })
}

/// The cookie's attributes.
#[derive(Clone, Copy)]
struct Attrs(&'static str);

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Polity</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1b2733}
h1{font-size:1.4rem}textarea{width:100%;height:8rem;font-family:monospace;font-size:.8rem}
button{margin-top:.8rem;padding:.5rem 1.2rem;font-size:1rem}.err{color:#a4161a}
code{background:#eef2f5;padding:.1rem .3rem}
</style></head><body>
<h1>Sign in to Polity</h1>
{{ERROR}}
<p>Paste an access token. On the demo node, <code>polity up</code> prints a sign-in link,
or run <code>polity token --data-dir DIR --as operator</code>.</p>
<form method="post" action="/login" id="f">
<textarea name="token" id="token" required aria-label="access token"></textarea>
<button type="submit">Sign in</button></form>
<script>
// A token passed in the link's fragment never reaches the server's logs; submit it.
function fromLink() {
  if (location.hash.length > 1) {
    document.getElementById('token').value = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, '', '/login');
    document.getElementById('f').submit();
  }
}
fromLink();
// Following the link while already on this page changes only the fragment.
window.addEventListener('hashchange', fromLink);
</script></body></html>"#;

fn render(error: Option<&str>) -> Html<String> {
    let e = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    Html(PAGE.replace("{{ERROR}}", &e))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page() -> Html<String> {
    render(None)
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    gate: Access,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
    attrs: Attrs,
) -> Response {
    let Ok(Form(f)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            render(Some("send the token as the form field `token`")),
        )
            .into_response();
    };
    let token = f.token.trim();
    match gate.verify_session(token) {
        Ok(max_age) => {
            let cookie = format!("{SESSION_COOKIE}={token}; {}; Max-Age={max_age}", attrs.0);
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        // A failed sign-in is a 401 like any other: the gate audits it on the way out.
        Err(e) => {
            let mut r = (StatusCode::UNAUTHORIZED, render(Some(&e))).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="polity", error="invalid_token""#),
            );
            r
        }
    }
}

async fn logout(attrs: Attrs) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}=; {}; Max-Age=0", attrs.0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
