//! The web page at `/`: one HTML file, its script and its stylesheet, embedded in the
//! binary so the service needs no files, CDN or build step to serve a UI.
//!
//! The page only calls the JSON API of the same origin. Its responses carry a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline
//! script, no `eval`, no framing), so a string from a dataset or a model that slipped
//! into the document as markup still could not run.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const APP_CSS: &str = include_str!("../assets/app.css");

/// What the page may load and do: everything from this origin, nothing inline but
/// `data:` images (the empty favicon), never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /`: the page.
pub async fn index() -> Response {
    embedded(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /assets/{name}`: `app.js` or `app.css`; anything else is a JSON 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => embedded(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => embedded(APP_CSS, "text/css; charset=utf-8"),
        _ => {
            let body = json!({ "error": { "type": "NOT_FOUND", "message": format!("no asset named {name:?}: the page has app.js and app.css") } });
            let mut response = (StatusCode::NOT_FOUND, Json(body)).into_response();
            security_headers(&mut response);
            response
        }
    }
}

/// The headers every page response carries (the router may add them to others).
pub fn security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// An embedded file, revalidated on every load so a new binary's page is never stale.
fn embedded(body: &'static str, content_type: &'static str) -> Response {
    let mut response =
        ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response();
    security_headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body is readable");
        String::from_utf8(bytes.to_vec()).expect("the body is UTF-8")
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_the_security_headers() {
        let cases = [
            (index().await, "text/html; charset=utf-8", INDEX_HTML),
            (asset(Path("app.js".to_string())).await, "text/javascript; charset=utf-8", APP_JS),
            (asset(Path("app.css".to_string())).await, "text/css; charset=utf-8", APP_CSS),
        ];
        for (response, content_type, body) in cases {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(header(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header(&response, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&response, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(body_text(response).await, body);
        }
    }

    #[tokio::test]
    async fn an_unknown_asset_is_a_json_404() {
        for name in ["index.html", "../Cargo.toml", "app.js.map", ""] {
            let response = asset(Path(name.to_string())).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
            assert_eq!(header(&response, header::CONTENT_TYPE), "application/json");
            let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
            assert_eq!(body["error"]["type"], "NOT_FOUND", "{name}");
            assert!(body["error"]["message"].as_str().unwrap().contains("app.js and app.css"), "{body}");
        }
    }

    #[test]
    fn the_policy_allows_only_this_origin_and_no_inline_or_eval() {
        let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split(';').map(str::trim).collect();
        for wanted in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(directives.contains(&wanted), "{wanted} is missing from {CONTENT_SECURITY_POLICY}");
        }
        for forbidden in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*"] {
            assert!(!CONTENT_SECURITY_POLICY.contains(forbidden), "{forbidden} in {CONTENT_SECURITY_POLICY}");
        }
    }

    #[test]
    fn the_html_has_no_inline_script_style_or_external_resource() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert_eq!(html.matches("<script").count(), 1, "one script element");
        assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
        assert!(!html.contains("<style"), "styles live in app.css");
        assert!(!html.contains(" style="), "no style attributes");
        let handlers: Vec<&str> = html
            .split(|c: char| c.is_whitespace() || c == '<')
            .filter(|word| {
                word.split_once('=').is_some_and(|(name, _)| {
                    name.len() > 2 && name.starts_with("on") && name.chars().all(|c| c.is_ascii_alphabetic())
                })
            })
            .collect();
        assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
    }

    #[test]
    fn the_script_never_parses_markup_or_evaluates_strings() {
        // Data reaches the document as text only; the CSP forbids eval, and the code
        // does not rely on it.
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
            ".style.",
        ] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
        // The only absolute URL is the SVG namespace, which is a name, not a request.
        let urls: Vec<&str> =
            APP_JS.match_indices("http").map(|(i, _)| &APP_JS[i..(i + 30).min(APP_JS.len())]).collect();
        assert!(urls.iter().all(|u| u.starts_with("http://www.w3.org/2000/svg")), "{urls:?}");
        assert!(!APP_CSS.contains("url(") && !APP_CSS.contains("@import"), "the stylesheet loads nothing");
    }
}
