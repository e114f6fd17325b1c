//! The dashboard's static files under `/static`: embedded in the binary at
//! build time, so that a copied or `cargo install`ed binary serves its own
//! page; `--static-dir` serves them from disk instead (for working on the
//! page without rebuilding).

use std::path::Path;

use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

use crate::error::{AppError, ErrorCode};

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Assets;

/// The `/static` service: the embedded files, or those of `dir`.
pub fn service(dir: Option<&Path>) -> actix_web::Scope {
    let scope = web::scope("/static");
    match dir {
        Some(dir) => scope.service(actix_files::Files::new("", dir)),
        None => scope.route("/{path:.*}", web::get().to(embedded)).route("/{path:.*}", web::head().to(embedded)),
    }
}

/// One embedded file, revalidated by its content hash (`ETag`): a page
/// served by another build of the binary is never taken from cache.
async fn embedded(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some(file) = Assets::get(&path) else {
        return AppError::new(ErrorCode::NotFound, format!("no static file {:?}", path.as_str())).error_response();
    };
    let hash = file.metadata.sha256_hash();
    let tag = EntityTag::new_strong(hash[..16].iter().map(|b| format!("{b:02x}")).collect());
    if let Some(IfNoneMatch::Items(seen)) = req.get_header::<IfNoneMatch>()
        && seen.iter().any(|t| t.strong_eq(&tag))
    {
        return HttpResponse::NotModified().insert_header(header::ETag(tag)).finish();
    }
    let mut content_type = file.metadata.mimetype().to_string();
    if content_type.starts_with("text/") || content_type.ends_with("javascript") {
        content_type.push_str("; charset=utf-8");
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(header::ETag(tag))
        .body(file.data.into_owned())
}
