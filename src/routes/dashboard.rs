//! The dashboard's routes: its clock, the teaching panel's captures, the
//! network lab and the demo publisher (`crate::lab`), the controls needing an
//! admin token when access control is on.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::access::admin;
use super::api::{json_of, read_body};
use crate::auth::Access;
use crate::error::{AppError, ErrorCode};
use crate::lab::demo::DemoSettings;
use crate::lab::impairment::{Change, MAX_LATENCY_MS};
use crate::lab::inspect::{Inspected, MAX_CLIENTS, valid_id};
use crate::message::now_micros;
use crate::state::AppState;

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
