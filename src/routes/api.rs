//! Publishing, health and statistics.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::AppError;
use crate::message::ChannelName;
use crate::protocol::ErrorCode;
use crate::transport::Context;

pub async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
    ctx: web::Data<Context>,
) -> Result<HttpResponse, AppError> {
    let channel: ChannelName = path.parse().map_err(AppError::bad_channel)?;
    let limit = ctx.config.max_body;
    let too_large = || AppError::new(ErrorCode::TooLarge, format!("body is over the {limit}-byte limit"));
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
    let data: Box<RawValue> = serde_json::from_slice(&body)
        .map_err(|e| AppError::new(ErrorCode::BadJson, format!("body is not valid JSON: {e}")))?;
    let message = ctx.hub.publish(channel, data).await?;
    Ok(HttpResponse::Created().json(json!({
        "channel": message.channel,
        "seq": message.seq,
        "ts": message.ts,
        "epoch": message.epoch,
    })))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(ctx: web::Data<Context>) -> Result<HttpResponse, AppError> {
    if ctx.hub.is_ready() {
        Ok(HttpResponse::Ok().json(json!({"status": "ready", "hub": ctx.hub.kind()})))
    } else {
        Err(AppError::new(ErrorCode::Unavailable, format!("the {} hub is unreachable", ctx.hub.kind())))
    }
}

pub async fn stats(ctx: web::Data<Context>) -> HttpResponse {
    let transports: serde_json::Map<String, serde_json::Value> = ctx
        .stats
        .snapshot()
        .into_iter()
        .map(|(transport, counters)| (transport.name().to_string(), json!(counters)))
        .collect();
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "hub": ctx.hub.kind(),
        "hub_ready": ctx.hub.is_ready(),
        "uptime_secs": ctx.stats.uptime_secs(),
        "transports": transports,
    }))
}

pub async fn metrics(ctx: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(ctx.stats.prometheus(ctx.hub.is_ready()))
}
