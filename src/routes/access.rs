//! Who may do what: the request's [`Access`] from its token, and the origin
//! policy's enforcement (API.md v1.1 "Access control" and "Origins"; the
//! policy itself is `crate::origins`).

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};

use super::{STATS, WEBTRANSPORT, route_of, traffic_of};
use crate::auth::{self, Access};
use crate::error::AppError;
use crate::state::AppState;
use crate::stats::{Rejection, Traffic};
use crate::transport::webtransport::OverQuic;
use crate::transport_kind::Transport;

impl FromRequest for Access {
    type Error = AppError;
    type Future = Ready<Result<Access, AppError>>;

    /// Everything when access control is off; otherwise what a valid token
    /// grants, or `401 unauthorized`.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<AppState>>().and_then(|state| state.verifier.clone());
        let Some(verifier) = verifier else { return ready(Ok(Access::Open)) };
        let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        ready(match auth::token(authorization, req.query_string()) {
            None => Err(AppError::unauthorized(
                "an access token is required: Authorization: Bearer <jwt>, or ?access_token=<jwt>",
            )),
            Some(token) => verifier
                .verify(&token)
                .map(|grant| Access::Granted(Arc::new(grant)))
                .map_err(|e| AppError::unauthorized(e.0)),
        })
    }
}

/// The dashboard's controls need the `admin` claim.
pub fn admin(access: &Access) -> Result<(), AppError> {
    if access.is_admin() { Ok(()) } else { Err(AppError::forbidden("this needs a token with \"admin\": true")) }
}

/// Headers a cross-origin page may send (`Idempotency-Key` too, so retries work from a browser).
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key";

/// Enforces the origin policy where a browser would not protect the server
/// by itself (WebSocket upgrades and every POST), answers CORS preflights,
/// and marks allowed cross-origin answers of the HTTP transports, publish and
/// `/api/stats`. Requests without `Origin` (servers, curl) pass untouched.
pub async fn origins(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let allowed = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| origin.to_str().is_ok_and(|o| state.origins.allows(o, req.headers())));
    // Answered with the error itself, so that `meter` counts the refusal.
    let refuse = |req: ServiceRequest| {
        let error = AppError::forbidden("this origin is not allowed").rejected_by(Rejection::Origin);
        Ok(req.error_response(error).map_into_right_body())
    };
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return refuse(req);
        }
        let response = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let upgrade = req.headers().get(header::UPGRADE).is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
        || req.extensions().contains::<OverQuic>();
    if !allowed && (upgrade || req.method() == Method::POST) {
        return refuse(req);
    }
    let cors = allowed && cors_route(route_of(&req).as_deref());
    let mut response = next.call(req).await?;
    if cors {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response.map_into_left_body())
}

/// The routes (without the base path) a cross-origin page may read: HTTP
/// transports, publish, stats.
fn cors_route(route: Option<&str>) -> bool {
    match traffic_of(route) {
        Traffic::Stream(transport) => !matches!(transport, Transport::WebSocket | Transport::WebTransport),
        Traffic::Publish => true,
        Traffic::Other => route == Some(STATS) || route == Some(WEBTRANSPORT),
        Traffic::Http2 => false,
    }
}
