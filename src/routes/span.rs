//! The span every request is served in (`tracing-actix-web`), and so the
//! context of every log line made while serving it. Its default records the
//! whole query string, which may carry `access_token=<jwt>`: this one records
//! the same fields with that token replaced by `[redacted]`.

use std::borrow::Cow;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::redact::redact;

pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = super::matched_pattern(request).unwrap_or_else(|| "default".into());
        let request_id = request.extensions().get::<RequestId>().map(ToString::to_string).unwrap_or_default();
        let user_agent = request.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %target(request.uri()),
            http.client_ip = %request.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
            http.user_agent = %user_agent,
            http.status_code = Empty,
            otel.status_code = Empty,
            request_id = %request_id,
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Path and query, the query's `access_token` redacted.
fn target(uri: &actix_web::http::Uri) -> Cow<'_, str> {
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if target.contains("access_token=") {
        Cow::Owned(String::from_utf8_lossy(&redact(target.as_bytes())).into_owned())
    } else {
        Cow::Borrowed(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_in_a_query_is_redacted() {
        let uri = "/sse?channels=a&access_token=eyJ.x.y&client=p".parse().unwrap();
        assert_eq!(target(&uri), "/sse?channels=a&access_token=[redacted]&client=p");
        let uri = "/ws?access_token=eyJ.x.y".parse().unwrap();
        assert_eq!(target(&uri), "/ws?access_token=[redacted]");
        let uri = "/poll?channels=a".parse().unwrap();
        assert_eq!(target(&uri), "/poll?channels=a");
    }
}
