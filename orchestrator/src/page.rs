//! The web page at `/`: one HTML file, its script (ES modules: `app.js`, the entry
//! module, imports the others) and its stylesheet, embedded in the binary so the
//! service needs no files, CDN or build step to serve a UI.
//!
//! The page only calls the JSON API of the same origin. Its responses carry a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline
//! script, no `eval`, no framing), so a string from a dataset or a model that slipped
//! into the document as markup still could not run.
//!
//! A leaf of the edge layer: uses nothing of this crate; the router serves it.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The entry module, the one script the HTML loads; it imports the other modules.
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const APP_CSS: &str = include_str!("../assets/app.css");

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A file the page loads from `/assets/{name}`.
pub struct Asset {
    /// The file's name, the last segment of its path.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The file, embedded.
    pub body: &'static str,
}

/// An ES module of the page.
const fn script(name: &'static str, body: &'static str) -> Asset {
    Asset { name, content_type: JAVASCRIPT, body }
}

/// Every asset the page loads: its stylesheet and its ES modules (each imports the
/// others by their names here, as `./name.js`).
pub const ASSETS: &[Asset] = &[
    Asset { name: "app.css", content_type: CSS, body: APP_CSS },
    script("app.js", APP_JS),
    script("api.js", include_str!("../assets/api.js")),
    script("auth.js", include_str!("../assets/auth.js")),
    script("chart.js", include_str!("../assets/chart.js")),
    script("chat.js", include_str!("../assets/chat.js")),
    script("datasets.js", include_str!("../assets/datasets.js")),
    script("dom.js", include_str!("../assets/dom.js")),
    script("event-stream.js", include_str!("../assets/event-stream.js")),
    script("format.js", include_str!("../assets/format.js")),
    script("history.js", include_str!("../assets/history.js")),
    script("readiness.js", include_str!("../assets/readiness.js")),
    script("result.js", include_str!("../assets/result.js")),
    script("runs.js", include_str!("../assets/runs.js")),
    script("state.js", include_str!("../assets/state.js")),
    script("table.js", include_str!("../assets/table.js")),
    script("tabs.js", include_str!("../assets/tabs.js")),
    script("words.js", include_str!("../assets/words.js")),
];

/// What the page may load and do: everything from this origin, nothing inline but
/// `data:` images (the empty favicon), never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /`: the page.
pub async fn index() -> Response {
    embedded(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /assets/{name}`: one of [`ASSETS`]; anything else is a JSON 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|each| each.name == name) {
        Some(found) => embedded(found.body, found.content_type),
        None => {
            let names: Vec<&str> = ASSETS.iter().map(|each| each.name).collect();
            let message = format!("no asset named {name:?}: the page has {}", names.join(", "));
            let body = json!({ "error": { "type": "NOT_FOUND", "message": message } });
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

    /// The page's ES modules.
    fn scripts() -> impl Iterator<Item = &'static Asset> {
        ASSETS.iter().filter(|each| each.content_type == JAVASCRIPT)
    }

    /// The modules a script imports: the names in its `from './name.js'` clauses.
    fn imports(script: &str) -> Vec<&str> {
        script
            .match_indices("from './")
            .filter_map(|(at, from)| script[at + from.len()..].split_once('\'').map(|(name, _)| name))
            .collect()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_the_security_headers() {
        let mut cases = vec![
            (index().await, "text/html; charset=utf-8", INDEX_HTML),
            (asset(Path("app.js".to_string())).await, "text/javascript; charset=utf-8", APP_JS),
            (asset(Path("app.css".to_string())).await, "text/css; charset=utf-8", APP_CSS),
        ];
        for each in ASSETS {
            cases.push((asset(Path(each.name.to_string())).await, each.content_type, each.body));
        }
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
        for name in ["index.html", "../Cargo.toml", "app.js.map", "", "api", "API.js", "./api.js", "app.mjs"] {
            let response = asset(Path(name.to_string())).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
            assert_eq!(header(&response, header::CONTENT_TYPE), "application/json");
            let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
            assert_eq!(body["error"]["type"], "NOT_FOUND", "{name}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("app.js") && message.contains("app.css"), "{body}");
        }
    }

    #[test]
    fn every_file_in_the_assets_folder_but_the_html_is_an_asset_with_its_type() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
        for entry in std::fs::read_dir(folder).expect("the assets folder") {
            let name = entry.expect("a folder entry").file_name().into_string().expect("a UTF-8 name");
            if name == "index.html" {
                continue;
            }
            let found = ASSETS.iter().find(|each| each.name == name);
            let found = found.unwrap_or_else(|| panic!("{folder}/{name} is not in ASSETS: the page could not load it"));
            let wanted = if name.ends_with(".js") { JAVASCRIPT } else { CSS };
            assert_eq!(found.content_type, wanted, "{name}");
        }
        let mut names: Vec<&str> = ASSETS.iter().map(|each| each.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len(), "an asset is listed twice");
    }

    #[test]
    fn the_modules_import_only_served_modules_never_in_a_cycle_and_all_are_reached_from_app_js() {
        /// Walks the imports depth first; `path` is the chain of imports from app.js.
        fn walk(name: &'static str, path: &mut Vec<&'static str>, reached: &mut Vec<&'static str>) {
            assert!(!path.contains(&name), "an import cycle: {} -> {name}", path.join(" -> "));
            let from = path.last().copied().unwrap_or("index.html");
            let script = scripts().find(|script| script.name == name);
            let script = script.unwrap_or_else(|| panic!("{from} imports ./{name}, which is not a served module"));
            if !reached.contains(&name) {
                reached.push(name);
            }
            path.push(name);
            for next in imports(script.body) {
                walk(next, path, reached);
            }
            path.pop();
        }
        let mut reached = Vec::new();
        walk("app.js", &mut Vec::new(), &mut reached);
        for script in scripts() {
            assert!(reached.contains(&script.name), "{} is served but app.js never imports it", script.name);
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
        assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#), "the entry module");
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
        for script in scripts() {
            let (name, body) = (script.name, script.body);
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('style'",
                ".style.",
                "import(",
            ] {
                assert!(!body.contains(forbidden), "{name} uses {forbidden}");
            }
            // The only absolute URL is the SVG namespace, which is a name, not a request.
            let urls: Vec<&str> = body.match_indices("http").map(|(i, _)| &body[i..(i + 30).min(body.len())]).collect();
            assert!(urls.iter().all(|u| u.starts_with("http://www.w3.org/2000/svg")), "{name}: {urls:?}");
        }
        assert!(!APP_CSS.contains("url(") && !APP_CSS.contains("@import"), "the stylesheet loads nothing");
    }
}
