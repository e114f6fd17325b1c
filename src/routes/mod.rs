//! HTTP wiring: which path goes to which handler. Handlers extract and
//! validate, then hand over to `transport::<name>` or the hub.

mod api;
mod pages;
mod streams;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use std::sync::Arc;

use crate::error::AppError;
use crate::inspect::client_param;
use crate::stats::{Counters, Transport};
use crate::transport::Context;
use crate::wire::ConnMeter;

pub use pages::DashboardPage;

/// Registers every route of API.md (static files: [`static_files`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(only(Method::GET, "/ws", streams::websocket))
        .service(only(Method::GET, "/sse", streams::sse))
        .service(only(Method::GET, "/long-poll", streams::long_poll))
        .service(only(Method::GET, "/poll", streams::poll))
        .service(only(Method::POST, "/channels/{channel}/messages", api::publish))
        .service(get_or_head("/healthz", api::healthz))
        .service(get_or_head("/readyz", api::readyz))
        .service(get_or_head("/api/stats", api::stats))
        .service(get_or_head("/metrics", api::metrics))
        .service(only(Method::GET, "/api/time", api::time))
        .service(only(Method::GET, "/api/inspect/{client}", api::inspect))
        .service(only(Method::POST, "/api/inspect/{client}/drop", api::drop_connections))
        .service(
            web::resource("/api/demo")
                .route(web::get().to(api::demo))
                .route(web::post().to(api::set_demo))
                .default_service(web::to(|| async { AppError::method_not_allowed("GET, POST").error_response() })),
        )
        .service(get_or_head("/", pages::index))
        .default_service(web::to(not_found));
}

/// Serves the dashboard's static files from `dir` under `/static`.
pub fn static_files(dir: &std::path::Path) -> actix_files::Files {
    actix_files::Files::new("/static", dir)
}

/// A resource answering `method` only; other methods get a JSON 405 with `Allow`.
fn only<F, Args>(method: Method, path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = if method == Method::POST { "POST" } else { "GET" };
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || async move { AppError::method_not_allowed(allow).error_response() }))
}

/// GET, and HEAD answered by the same handler (its body is not sent): for the
/// cheap status endpoints that monitors probe with HEAD.
fn get_or_head<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| async { AppError::method_not_allowed("GET, HEAD").error_response() }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    AppError::new(crate::protocol::ErrorCode::NotFound, format!("no route for {} {}", req.method(), req.path()))
        .error_response()
}

/// Attributes each request, and the bytes its connection carries meanwhile,
/// to its transport. A WebSocket keeps its connection's bytes for life.
pub async fn meter(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let transport = Transport::of_path(req.path());
    let meter = req.conn_data::<Arc<ConnMeter>>().cloned();
    let ctx = req.app_data::<web::Data<Context>>().cloned();
    if let Some(ctx) = &ctx {
        Counters::add(&ctx.stats.get(transport).requests, 1);
    }
    if let Some(meter) = &meter {
        let client = ctx.and_then(|ctx| client_param(req.query_string()).and_then(|id| ctx.inspector.client(id)));
        meter.begin(transport, client);
    }
    let response = next.call(req).await;
    let upgraded = matches!(&response, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
    if let Some(meter) = meter.filter(|_| !upgraded) {
        meter.end();
    }
    response
}
