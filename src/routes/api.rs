//! Publishing, health and statistics.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;
use serde_json::value::RawValue;

use super::access::admin;
use crate::auth::Access;
use crate::demo::DemoSettings;
use crate::error::{AppError, ErrorCode};
use crate::inspect::{Inspected, MAX_CLIENTS, valid_id};
use crate::message::{ChannelName, now_micros};
use crate::state::AppState;
use crate::transport::impair::{Change, MAX_LATENCY_MS};

pub async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let channel: ChannelName = path.parse()?;
    if !access.may_publish(&channel) {
        return Err(AppError::forbidden(format!("your token may not publish on {channel}")));
    }
    json_body(&req)?;
    let ctx = &state.ctx;
    if let Err(wait) = ctx.publish_rate.check(req.peer_addr().map(|a| a.ip())) {
        return Err(AppError::rate_limited("too many publishes from your address", wait));
    }
    let body = read_body(&req, payload, ctx.config.max_body, ctx.config.request_timeout).await?;
    let data: Box<RawValue> = json_of(&body)?;
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            Some(value.to_str().map_err(|_| AppError::bad_request("Idempotency-Key is not ASCII"))?.parse()?)
        }
    };
    let message = state.ctx.hub.publish(channel, data, key).await?;
    Ok(HttpResponse::Created().json(json!({
        "channel": message.channel,
        "seq": message.seq,
        "ts": message.ts,
        "epoch": message.epoch,
    })))
}

/// A request body parsed as JSON, or `bad_json`.
fn json_of<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::new(ErrorCode::BadJson, format!("body is not valid JSON: {e}")))
}

/// Publish takes `application/json` (parameters allowed): a cross-site form
/// or a `text/plain` fetch then needs a CORS preflight first (API.md v1.1).
fn json_body(req: &HttpRequest) -> Result<(), AppError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(AppError::unsupported_media_type(format!(
            "publish needs Content-Type: application/json, got {:?}",
            content_type.chars().take(80).collect::<String>()
        )))
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`, refusing a
/// larger one as soon as it is announced or seen, and a slower one with 408
/// (which closes the connection).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, AppError> {
    tokio::time::timeout(timeout, read_body_whole(req, payload, limit))
        .await
        .unwrap_or_else(|_| Err(AppError::new(ErrorCode::RequestTimeout, "the request body did not arrive in time")))
}

async fn read_body_whole(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, AppError> {
    let too_large = || AppError::too_large(format!("body is over the {limit}-byte limit"));
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::bad_request(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let ctx = &state.ctx;
    if ctx.hub.is_ready() {
        Ok(HttpResponse::Ok().json(json!({"status": "ready", "hub": ctx.hub.kind()})))
    } else {
        Err(AppError::new(ErrorCode::Unavailable, format!("the {} hub is unreachable", ctx.hub.kind())))
    }
}

pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let ctx = &state.ctx;
    let transports: serde_json::Map<String, serde_json::Value> = ctx
        .stats
        .snapshot()
        .into_iter()
        .map(|(traffic, counters)| (traffic.name().to_string(), json!(counters)))
        .collect();
    let gauges = ctx.hub.gauges();
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "hub": ctx.hub.kind(),
        "hub_ready": ctx.hub.is_ready(),
        "uptime_secs": ctx.stats.uptime_secs(),
        // Bytes are HTTP's (headers, chunking, WebSocket frame headers), counted
        // before TLS encrypts them: the same figures with TLS on or off.
        "tls": ctx.config.tls_cert.is_some(),
        "bytes_counted": "before_tls",
        "hub_channels": gauges.channels,
        "hub_retained_bytes": gauges.retained_bytes,
        "transports": transports,
    }))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let ctx = &state.ctx;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(ctx.stats.prometheus(ctx.hub.as_ref()))
}

/// `GET /api/time`: the server's clock, for estimating a client's clock offset.
pub async fn time() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"now": now_micros()}))
}

/// `GET /api/inspect/{client}`: what this page's own connections carried.
pub async fn inspect(
    path: web::Path<String>,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    admin(&access)?;
    let client = known_client(&path, &state)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(client.report()))
}

/// `POST /api/inspect/{client}/drop`: cuts every connection of that page.
pub async fn drop_connections(
    path: web::Path<String>,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    admin(&access)?;
    known_client(&path, &state)?.drop_connections();
    Ok(HttpResponse::Accepted().json(json!({"dropped": path.as_str()})))
}

/// A lab's settings are three small fields.
const IMPAIR_BODY_LIMIT: usize = 1024;

/// `GET /api/inspect/{client}/impair`: the page's network lab (nothing
/// impaired for a page not seen).
pub async fn impairment(
    path: web::Path<String>,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    admin(&access)?;
    client_id(&path)?;
    let impairment = state.inspector.get(&path).map(|client| client.impairment()).unwrap_or_default();
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(impairment))
}

/// `POST /api/inspect/{client}/impair` with any of `{"websocket", "sse",
/// "latency_ms"}`: changes the page's network (a page not seen yet is
/// registered, so that a lab can be prepared before the page opens).
pub async fn impair(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    admin(&access)?;
    client_id(&path)?;
    let body = read_body(&req, payload, IMPAIR_BODY_LIMIT, state.ctx.config.request_timeout).await?;
    // Not JSON is `bad_json`; JSON that is no change is `bad_request`.
    let change: Change = serde_json::from_value(json_of(&body)?).map_err(|e| {
        AppError::bad_request(format!(
            "expected {{\"websocket\": \"ok\"|\"refuse\"|\"swallow\", \"sse\": \"ok\"|\"buffer\", \"latency_ms\": 0..{MAX_LATENCY_MS}}}: {e}"
        ))
    })?;
    let client = state.inspector.client(&path).ok_or_else(|| {
        AppError::new(ErrorCode::Overloaded, format!("{MAX_CLIENTS} pages are inspected already; retry later"))
    })?;
    let impairment = client.impair(&change).map_err(AppError::bad_request)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(impairment))
}

pub fn client_id(id: &str) -> Result<(), AppError> {
    if valid_id(id) { Ok(()) } else { Err(AppError::bad_request("a client id is 1 to 32 of A-Z a-z 0-9")) }
}

fn known_client(id: &str, state: &AppState) -> Result<Arc<Inspected>, AppError> {
    client_id(id)?;
    state.inspector.get(id).ok_or_else(|| AppError::new(ErrorCode::NotFound, format!("no client {id:?} seen recently")))
}

/// `GET /api/demo`: the demo publisher's channel and settings.
pub async fn demo(state: web::Data<AppState>) -> HttpResponse {
    demo_answer(&state)
}

/// Settings are two numbers: anything much larger is not a settings object.
const DEMO_BODY_LIMIT: usize = 1024;

/// `POST /api/demo` with `{"rate": .., "payload": ..}`: changes the demo publisher.
pub async fn set_demo(
    req: HttpRequest,
    payload: web::Payload,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    admin(&access)?;
    let body = read_body(&req, payload, DEMO_BODY_LIMIT, state.ctx.config.request_timeout).await?;
    let settings: DemoSettings = serde_json::from_slice(&body)
        .map_err(|e| AppError::new(ErrorCode::BadJson, format!("expected {{\"rate\":..,\"payload\":..}}: {e}")))?;
    settings.validate().map_err(AppError::bad_request)?;
    state.demo.set(settings);
    Ok(demo_answer(&state))
}

fn demo_answer(state: &AppState) -> HttpResponse {
    let settings = state.demo.settings();
    HttpResponse::Ok().json(json!({"channel": state.demo.channel, "rate": settings.rate, "payload": settings.payload}))
}
