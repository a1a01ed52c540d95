//! Listings: `GET /v2/<name>/tags/list`, `GET /v2/_catalog`, `GET /v2/<name>/referrers/<digest>`.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use wharf_api::manifest::OCI_INDEX;
use wharf_api::{ErrorCode, RegistryError};
use wharf_registry::{DEFAULT_PAGE, MAX_PAGE};

use crate::blobs::parse_digest;
use crate::{App, json_response, query_get, query_pairs, set_headers, unsupported};

/// The page size asked for with `n`: absent gives `default`; garbage or over the cap is refused.
fn page_size(pairs: &[(String, String)], default: usize) -> Result<usize, RegistryError> {
    match query_get(pairs, "n") {
        None | Some("") => Ok(default),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n <= MAX_PAGE => Ok(n),
            _ => Err(RegistryError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n must be a number between 0 and {MAX_PAGE}"),
            )),
        },
    }
}

fn next_link(path: &str, n: usize, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

pub(crate) async fn tags(
    app: &App,
    method: &Method,
    name: &str,
    query: Option<&str>,
) -> Result<Response, RegistryError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(unsupported());
    }
    let pairs = query_pairs(query);
    let n = page_size(&pairs, usize::MAX)?;
    let page = crate::read_current(app, || async { app.registry.tags(name, query_get(&pairs, "last"), n) }).await?;
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: &'a [String],
    }
    let body = serde_json::to_vec(&TagList { name, tags: &page.items }).map_err(|_| RegistryError::internal())?;
    let mut response = json_response(StatusCode::OK, body);
    if page.more
        && n > 0
        && let Some(last) = page.items.last()
    {
        set_headers(response.headers_mut(), &[("link", next_link(&format!("/v2/{name}/tags/list"), n, last))]);
    }
    Ok(response)
}

/// `GET /v2/_catalog`: every repository for an administrator; for anyone else, those they
/// may pull (pages are filled from the state until `n` such repositories are found).
pub(crate) fn catalog(
    app: &App,
    method: &Method,
    query: Option<&str>,
    readable: Option<&dyn Fn(&str) -> bool>,
) -> Result<Response, RegistryError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(unsupported());
    }
    let pairs = query_pairs(query);
    let n = page_size(&pairs, DEFAULT_PAGE)?;
    let page = match readable {
        None => app.registry.catalog(query_get(&pairs, "last"), n)?,
        Some(readable) => readable_page(app, query_get(&pairs, "last"), n, readable)?,
    };
    #[derive(serde::Serialize)]
    struct Catalog<'a> {
        repositories: &'a [String],
    }
    let body = serde_json::to_vec(&Catalog { repositories: &page.items }).map_err(|_| RegistryError::internal())?;
    let mut response = json_response(StatusCode::OK, body);
    if page.more
        && n > 0
        && let Some(last) = page.items.last()
    {
        set_headers(response.headers_mut(), &[("link", next_link("/v2/_catalog", n, last))]);
    }
    Ok(response)
}

/// The next `n` repositories after `last` that `readable` lets through.
fn readable_page(
    app: &App,
    last: Option<&str>,
    n: usize,
    readable: &dyn Fn(&str) -> bool,
) -> Result<wharf_store::Page, RegistryError> {
    const STEP: usize = 1000;
    let mut items = Vec::new();
    let mut after = last.map(str::to_owned);
    loop {
        let page = app.registry.catalog(after.as_deref(), STEP)?;
        let exhausted = !page.more;
        after = page.items.last().cloned();
        for repo in page.items {
            if readable(&repo) {
                if items.len() == n {
                    return Ok(wharf_store::Page { items, more: true });
                }
                items.push(repo);
            }
        }
        if exhausted || after.is_none() {
            return Ok(wharf_store::Page { items, more: false });
        }
    }
}

pub(crate) fn referrers(
    app: &App,
    method: &Method,
    name: &str,
    digest: &str,
    query: Option<&str>,
) -> Result<Response, RegistryError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(unsupported());
    }
    let digest = parse_digest(digest)?;
    let pairs = query_pairs(query);
    let artifact_type = query_get(&pairs, "artifactType");
    let body = app.registry.referrers(name, &digest, artifact_type)?;
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if artifact_type.is_some() {
        set_headers(response.headers_mut(), &[("oci-filters-applied", "artifactType".to_owned())]);
    }
    Ok(response)
}
