//! HTTP wiring: which path goes to which handler. Handlers extract and
//! validate, then hand over to `transport::<name>` or the hub.

mod access;
mod api;
mod assets;
mod dashboard;
mod negotiate;
mod pages;
mod span;
mod streams;

pub use streams::{Held, Holdable};

pub use access::origins;
pub use span::RequestSpan;

use std::path::Path;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

use crate::auth::Access;
use crate::base_path::BasePath;
use crate::error::{AppError, ErrorCode};
use crate::lab::inspect::Tag;
use crate::state::AppState;
use crate::stats::{Counters, Traffic};
use crate::transport_kind::Transport;
use crate::wire::ConnMeter;

/// The publish route.
const PUBLISH: &str = "/channels/{channel}/messages";
/// The counters, readable cross-origin (CORS).
pub(crate) const STATS: &str = "/api/stats";
/// WebTransport discovery, readable cross-origin (CORS).
pub(crate) const WEBTRANSPORT: &str = "/api/webtransport";

/// Mounts every route of API.md and the static files under `base` (see
/// [`BasePath`]); any other path is a JSON 404. Routes are registered with
/// their own paths inside one scope, so the prefix is added in one place and
/// removed in one place ([`route_of`]).
pub fn configure(cfg: &mut web::ServiceConfig, base: &BasePath, static_dir: Option<&Path>) {
    let mut scope = web::scope(base.prefix()).service(assets::service(static_dir)).configure(routes);
    if !base.is_root() {
        // `{base}` alone: the dashboard's relative links need `{base}/`.
        scope = scope.service(get_or_head("", pages::to_root));
    }
    cfg.service(scope).default_service(web::to(not_found));
}

/// Every route, relative to the base path.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(only(Method::GET, Transport::WebSocket.path(), streams::websocket))
        .service(only(Method::GET, Transport::Sse.path(), streams::sse))
        .service(only(Method::GET, Transport::LongPoll.path(), streams::long_poll))
        .service(only(Method::GET, Transport::Poll.path(), streams::poll))
        .service(only(Method::GET, Transport::WebTransport.path(), streams::webtransport))
        .service(only(Method::POST, PUBLISH, api::publish))
        .service(get_or_head("/healthz", api::healthz))
        .service(get_or_head("/readyz", api::readyz))
        .service(get_or_head(STATS, api::stats))
        .service(get_or_head(WEBTRANSPORT, api::webtransport))
        .service(get_or_head("/metrics", api::metrics))
        .service(only(Method::GET, "/api/time", dashboard::time))
        .service(only(Method::GET, "/api/inspect/{client}", dashboard::inspect))
        .service(only(Method::POST, "/api/inspect/{client}/drop", dashboard::drop_connections))
        .service(
            web::resource("/api/inspect/{client}/impair")
                .route(web::get().to(dashboard::impairment))
                .route(web::post().to(dashboard::impair))
                .default_service(web::to(|| async { AppError::method_not_allowed("GET, POST").error_response() })),
        )
        .service(
            web::resource("/api/demo")
                .route(web::get().to(dashboard::demo))
                .route(web::post().to(dashboard::set_demo))
                .default_service(web::to(|| async { AppError::method_not_allowed("GET, POST").error_response() })),
        )
        .service(get_or_head("/", pages::index))
        .default_service(web::to(not_found));
}

/// The route the router matched for `req`, as [`routes`] registers it (the
/// base path taken off the matched pattern): what the byte meter and the
/// CORS policy go by.
pub(crate) fn route_of(req: &ServiceRequest) -> Option<String> {
    let pattern = matched_pattern(req)?;
    let state = req.app_data::<web::Data<AppState>>()?;
    state.ctx.config.base_path.route(&pattern).map(str::to_owned)
}

/// The router pattern `req` matches, looked up once per request: the request
/// span, the byte meter and the CORS policy all go by it.
pub(crate) fn matched_pattern(req: &ServiceRequest) -> Option<String> {
    #[derive(Clone)]
    struct Matched(Option<String>);
    if let Some(Matched(pattern)) = req.extensions().get::<Matched>() {
        return pattern.clone();
    }
    let pattern = req.match_pattern();
    req.extensions_mut().insert(Matched(pattern.clone()));
    pattern
}

/// What a request is counted as, from its [`route_of`].
pub(crate) fn traffic_of(route: Option<&str>) -> Traffic {
    let Some(route) = route else { return Traffic::Other };
    if route == PUBLISH {
        return Traffic::Publish;
    }
    Transport::ALL.into_iter().find(|t| t.path() == route).map_or(Traffic::Other, Traffic::Stream)
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
    AppError::new(ErrorCode::NotFound, format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// The inspected page a request is tagged with (`?client=ID`), looked up once
/// by [`meter`] and kept in the request's extensions.
pub fn inspected(req: &HttpRequest) -> Option<Tag> {
    req.extensions().get::<Tag>().cloned()
}

/// The byte meter of the request's connection: the dispatcher's requests
/// carry it as connection data, those of the server's own HTTP/1 path
/// (`server::front`) in their extensions.
pub(crate) fn conn_meter(req: &HttpRequest) -> Option<Arc<ConnMeter>> {
    match req.conn_data::<Arc<ConnMeter>>() {
        Some(meter) => Some(meter.clone()),
        None => req.extensions().get::<Arc<ConnMeter>>().cloned(),
    }
}

/// Whether the request's token is valid, or access control is off.
fn authenticated(state: &AppState, req: &HttpRequest) -> bool {
    state.verifier.is_none() || Access::from_request(req, &mut Payload::None).into_inner().is_ok()
}

/// Attributes each request, and the bytes its connection carries meanwhile,
/// to its traffic. A WebSocket keeps its connection's bytes for life.
pub async fn meter(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let traffic = traffic_of(route_of(&req).as_deref());
    let meter = conn_meter(req.request());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // Only a request that passes access control may register a page id: a
    // flood of refused ones must not push out the pages admins prepared.
    let tag = match (&state, traffic) {
        (Some(state), Traffic::Stream(_)) if authenticated(state, req.request()) => {
            state.inspector.tag(req.query_string())
        }
        _ => None,
    };
    if let Some(state) = &state {
        Counters::add(&state.ctx.stats.get(traffic).requests, 1);
    }
    let counted = tag.as_ref().map(|tag| tag.counted.clone());
    if let Some(tag) = tag {
        req.extensions_mut().insert(tag);
    }
    if let Some(meter) = &meter {
        meter.begin(traffic, counted);
    }
    let response = next.call(req).await;
    // A refusal answered with an `AppError` (from the handler, an extractor or
    // the origin check) is counted by the limit or rule that refused it.
    let error = match &response {
        Ok(response) => response.response().error(),
        Err(error) => Some(error),
    };
    let rejection = error.and_then(|e| e.as_error::<AppError>()?.rejection);
    if let (Some(state), Some(rejection)) = (&state, rejection) {
        state.ctx.stats.rejected(rejection);
    }
    let upgraded = matches!(&response, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
    if let Some(meter) = meter.filter(|_| !upgraded) {
        meter.end();
    }
    response
}
