//! Publishing, health and statistics.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;
use serde_json::value::RawValue;

use super::negotiate::{self, Asked};
use crate::auth::Access;
use crate::encoding::{Format, msgpack};
use crate::error::{AppError, ErrorCode};
use crate::message::{ChannelName, check_data};
use crate::state::AppState;

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
    let format = body_format(&req)?;
    let ctx = &state.ctx;
    if let Err(wait) = ctx.publish_rate.check(req.peer_addr().map(|a| a.ip())) {
        return Err(AppError::rate_limited("too many publishes from your address", wait));
    }
    let body = read_body(&req, payload, ctx.config.max_body, ctx.config.request_timeout).await?;
    let data: Box<RawValue> = match format {
        Format::Json => json_of(&body)?,
        Format::MsgPack => {
            let json = msgpack::to_json(&body).map_err(|e| AppError::new(ErrorCode::BadJson, e.to_string()))?;
            json_of(json.as_bytes())?
        }
    };
    check_data(&data)?;
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            Some(value.to_str().map_err(|_| AppError::bad_request("Idempotency-Key is not ASCII"))?.parse()?)
        }
    };
    let message = state.ctx.hub.publish(channel, data, key).await?;
    let answer = json!({
        "channel": message.channel,
        "seq": message.seq,
        "ts": message.ts,
        "epoch": message.epoch,
    });
    Ok(match negotiate::poll_format(req.headers(), Asked::default()) {
        Format::Json => HttpResponse::Created().json(answer),
        // unwrap: an object of strings and integers.
        Format::MsgPack => HttpResponse::Created()
            .content_type("application/msgpack")
            .body(msgpack::from_json(&answer.to_string()).unwrap()),
    })
}

/// A request body parsed as JSON, or `bad_json`.
pub(super) fn json_of<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::new(ErrorCode::BadJson, format!("body is not valid JSON: {e}")))
}

/// Publish takes `application/json` (parameters allowed) or, in v1.2,
/// `application/msgpack`: a cross-site form or a `text/plain` fetch then
/// needs a CORS preflight first (API.md v1.1).
fn body_format(req: &HttpRequest) -> Result<Format, AppError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(Format::Json)
    } else if essence.eq_ignore_ascii_case("application/msgpack") {
        Ok(Format::MsgPack)
    } else {
        Err(AppError::unsupported_media_type(format!(
            "publish needs Content-Type: application/json or application/msgpack, got {:?}",
            content_type.chars().take(80).collect::<String>()
        )))
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`, refusing a
/// larger one as soon as it is announced or seen, and a slower one with 408
/// (which closes the connection).
pub(super) async fn read_body(
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
        "compression": {
            "websocket": ctx.config.ws_compression,
            "http": ctx.config.http_compression,
            "min_size": ctx.config.compression_min_size,
        },
        "transports": transports,
    }))
}

/// `GET /api/webtransport`: where to open a session, and the certificate
/// hashes a browser needs for a self-signed certificate (API.md v1.2).
pub async fn webtransport(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let Some(wt) = &state.webtransport else {
        return Err(AppError::new(ErrorCode::NotFound, "WebTransport is off (--webtransport off)"));
    };
    let host = req.connection_info().host().to_string();
    // The request's host without its port; an IPv6 literal keeps its brackets.
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name.to_string(),
        _ => host,
    };
    // A browser tries `localhost` over IPv6 first, and a loopback endpoint
    // listens on one address: name that address.
    let host = match (host.eq_ignore_ascii_case("localhost"), wt.addr.ip()) {
        (true, ip) if ip.is_loopback() && ip.is_ipv4() => ip.to_string(),
        (true, ip) if ip.is_loopback() => format!("[{ip}]"),
        _ => host,
    };
    let url = format!("https://{host}:{}{}/wt", wt.addr.port(), state.ctx.config.base_path.prefix());
    let hashes: Vec<_> = wt
        .certificate_hashes
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|value| json!({"algorithm": "sha-256", "value": value}))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"url": url, "certificate_hashes": hashes})))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let ctx = &state.ctx;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(ctx.stats.prometheus(ctx.hub.as_ref()))
}
