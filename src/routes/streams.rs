//! The four transport endpoints: validate the request, then hand over.

use std::time::Duration;

use actix_http::ws::{HandshakeError, handshake};
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::negotiate::{self, Asked};
use super::{conn_meter, inspected};
use crate::auth::Access;
use crate::config::{LONG_POLL_DEFAULT_SECS, LONG_POLL_MAX_SECS};
use crate::encoding::{Format, gzip};
use crate::error::{AppError, ErrorCode};
use crate::lab::impairment::{WebSocketPath, WebTransportPath};
use crate::message::{ChannelName, Cursor};
use crate::state::AppState;
use crate::transport::long_poll::{self, Opened};
use crate::transport::poll::Answer;
use crate::transport::websocket::{Accepted, Upgradable};
use crate::transport::webtransport::{ConnectHead, OverQuic, Unanswered};
use crate::transport::{self, Impairment, Negotiated, Savings, StreamRequest, Transport};
use crate::wire::Mark;

/// Marks a request that arrived on the server's own HTTP/1 path
/// (`server/front.rs`), which holds open answers itself: the route may put the
/// body on its response as a [`Held`] instead.
#[derive(Debug, Clone, Copy)]
pub struct Holdable;

/// The body of a held answer, carried on its response to the path that holds
/// it, so that what an open connection keeps is its subscription, not the
/// request's future or the middleware's wrappers around a body.
pub enum Held {
    /// A long poll's answer, once something arrives or it times out.
    Answer(futures_util::future::LocalBoxFuture<'static, Body>),
    /// An event stream's chunks.
    Stream(futures_util::stream::LocalBoxStream<'static, bytes::Bytes>),
}

/// A poll's answer as it goes out: its bytes, and whether they are gzipped
/// (the path that writes it adds `Content-Encoding`).
pub struct Body {
    pub bytes: Bytes,
    pub gzipped: bool,
}

#[derive(Deserialize)]
struct StreamQuery {
    channels: Option<String>,
    cursor: Option<String>,
    timeout: Option<String>,
    format: Option<String>,
    compression: Option<String>,
}

impl StreamQuery {
    fn asked(&self) -> Result<Asked, AppError> {
        Asked::parse(self.format.as_deref(), self.compression.as_deref())
    }
}

fn query(req: &HttpRequest) -> Result<StreamQuery, AppError> {
    web::Query::<StreamQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| AppError::bad_request(format!("bad query string: {e}")))
}

/// Channels and cursor of a stream request; `channels` is required on HTTP
/// transports, and every one of them must be allowed by the token.
fn stream_request(
    state: &AppState,
    req: &HttpRequest,
    access: Access,
    q: &StreamQuery,
    channels_required: bool,
) -> Result<StreamRequest, AppError> {
    let channels = match q.channels.as_deref() {
        None | Some("") if channels_required => {
            return Err(AppError::bad_request("`channels` is required, e.g. ?channels=demo"));
        }
        None | Some("") => Vec::new(),
        Some(list) => ChannelName::parse_list(list, state.ctx.config.max_channels)?,
    };
    if let Some(channel) = access.first_unsubscribable(&channels) {
        return Err(AppError::forbidden(format!("your token may not subscribe to {channel}")));
    }
    let cursor = q.cursor.as_deref().unwrap_or("").parse::<Cursor>()?;
    let tag = inspected(req);
    let dropped = tag.as_ref().map(|tag| Box::pin(tag.dropped()) as _);
    let cut = transport::cut(dropped, access.expires());
    let wire = conn_meter(req).map(Mark::now);
    let impairment = impairment(req);
    let peer = req.peer_addr().map(|a| a.ip());
    let encoding = Negotiated::default();
    Ok(StreamRequest { channels, cursor, peer, access, cut, wire, impairment, encoding })
}

/// The network lab settings of the request's page (none when untagged).
fn impairment(req: &HttpRequest) -> Impairment {
    inspected(req).map(|tag| tag.page.impairment()).unwrap_or_default()
}

/// Validates a WebSocket handshake and answers `101` with the session's
/// [`Accepted`]: the server's upgrade path writes the answer and starts the
/// session on the socket.
pub async fn websocket(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    // The lab's "refuse": a proxy stripped `Upgrade`, so this is a plain GET.
    let websocket_path = impairment(&req).websocket;
    if !is_upgrade || websocket_path == WebSocketPath::Refuse {
        return Err(AppError::new(
            ErrorCode::UpgradeRequired,
            "this endpoint speaks WebSocket: send an Upgrade request",
        ));
    }
    let q = query(&req)?;
    let asked = q.asked()?;
    let mut request = stream_request(&state, &req, access, &q, false)?;
    let refused = |e: HandshakeError| AppError::bad_request(format!("websocket handshake refused: {e}"));
    let mut response = handshake(req.head()).map_err(refused)?;
    let terms = negotiate::websocket(&req, asked, state.ctx.config.ws_compression.is_on());
    request.encoding = terms.negotiated;
    if let Some(protocol) = terms.protocol {
        response.insert_header((header::SEC_WEBSOCKET_PROTOCOL, protocol));
    }
    if let Some(extensions) = terms.extensions {
        response.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, extensions));
    }
    if !req.extensions().contains::<Upgradable>() {
        // Over HTTP/2: no socket of its own to upgrade.
        return Err(refused(HandshakeError::NoConnectionUpgrade));
    }
    let accepted = Accepted { ctx: state.ctx.clone(), request, span: tracing::Span::current() };
    let mut response = HttpResponse::from(response.finish().map_into_boxed_body());
    response.extensions_mut().insert(accepted);
    Ok(response)
}

/// Validates a WebTransport session request (made into a `GET /wt` by the
/// QUIC listener) as a WebSocket handshake is validated, and answers `200`
/// with the session's [`Accepted`]: the listener then opens the session.
pub async fn webtransport(
    req: HttpRequest,
    access: Access,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !req.extensions().contains::<OverQuic>() {
        let port = state
            .webtransport
            .as_ref()
            .map_or(String::from("its UDP port"), |wt| format!("UDP port {}", wt.addr.port()));
        return Err(AppError::new(
            ErrorCode::UpgradeRequired,
            format!("this endpoint speaks WebTransport: HTTP/3 on {port} (see /api/webtransport)"),
        ));
    }
    if impairment(&req).webtransport == WebTransportPath::Blocked {
        let mut response = HttpResponse::Ok().finish();
        response.extensions_mut().insert(Unanswered);
        return Ok(response);
    }
    let q = query(&req)?;
    let asked = q.asked()?;
    let mut request = stream_request(&state, &req, access, &q, false)?;
    request.encoding = Negotiated { format: asked.format.unwrap_or_default(), compressed: false };
    let accepted = Accepted { ctx: state.ctx.clone(), request, span: tracing::Span::current() };
    let mut response = HttpResponse::Ok().finish();
    response.extensions_mut().insert(accepted);
    // A tagged page's lane: what its teaching panel shows, and where its bytes count.
    if let Some(tag) = inspected(&req) {
        let lane = tag.counted.lane(Transport::WebTransport);
        let head = req.extensions().get::<ConnectHead>().map(|h| h.0.clone()).unwrap_or_default();
        lane.begin(head.into_bytes());
        response.extensions_mut().insert(tag.counted);
    }
    Ok(response)
}

pub async fn sse(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let q = query(&req)?;
    let asked = q.asked()?;
    if asked.format == Some(Format::MsgPack) {
        return Err(AppError::bad_request("SSE is a text protocol: format=msgpack is for /ws and the polls"));
    }
    let mut request = stream_request(&state, &req, access, &q, true)?;
    request.encoding.compressed = negotiate::gzip(req.headers(), asked, state.ctx.config.http_compression.is_on());
    // Last-Event-ID is the newer position: the browser sends it on reconnect.
    if let Some(last) = req.headers().get("last-event-id") {
        let last = last.to_str().map_err(|_| AppError::new(ErrorCode::BadCursor, "Last-Event-ID is not ASCII"))?;
        if !last.is_empty() {
            request.cursor = last.parse()?;
        }
    }
    let impairment = request.impairment;
    let gzipped = request.encoding.compressed;
    let stream = impairment.sse(Box::pin(transport::sse::open(state.ctx.clone(), request).await?));
    let mut response = HttpResponse::Ok();
    for header in transport::sse::HEADERS {
        response.insert_header(header);
    }
    response.insert_header((header::VARY, "Accept-Encoding"));
    if gzipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    if !req.extensions().contains::<Holdable>() {
        return Ok(response.streaming(stream));
    }
    // The server's own HTTP/1 path writes the stream as it comes, without
    // the wrappers the middleware would put around a body on every poll.
    let stream = stream.map(|chunk| match chunk {
        Ok(chunk) => chunk,
        Err(never) => match never {},
    });
    let mut response = response.finish();
    response.extensions_mut().insert(Held::Stream(Box::pin(stream)));
    Ok(response)
}

pub async fn long_poll(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let q = query(&req)?;
    let mut request = stream_request(&state, &req, access, &q, true)?;
    let encoder = Encoder::new(&state, &req, &mut request, Transport::LongPoll, q.asked()?);
    let impairment = request.impairment;
    let timeout = match q.timeout.as_deref() {
        None => LONG_POLL_DEFAULT_SECS,
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse::<u64>().unwrap_or(u64::MAX).min(LONG_POLL_MAX_SECS)
        }
        Some(t) => {
            return Err(AppError::bad_request(format!(
                "timeout must be a whole number of seconds (0 to {LONG_POLL_MAX_SECS}), got {t:?}"
            )));
        }
    };
    let waiting = match long_poll::open(state.ctx.clone(), request, Duration::from_secs(timeout)).await? {
        Opened::Ready(answer) => {
            impairment.delay_answer().await;
            return Ok(encoder.response(encoder.body(&answer)));
        }
        Opened::Waiting(waiting) => waiting,
    };
    let held = encoder.clone();
    let answer = async move {
        let answer = waiting.wait().await;
        impairment.delay_answer().await;
        held.body(&answer)
    };
    if !req.extensions().contains::<Holdable>() {
        return Ok(encoder.response(answer.await));
    }
    // The server's own HTTP/1 path holds the wait, without this request's
    // future; the answer's head is this one's.
    let mut response = encoder.response(Body { bytes: Bytes::new(), gzipped: false });
    response.extensions_mut().insert(Held::Answer(Box::pin(answer)));
    Ok(response)
}

pub async fn poll(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let q = query(&req)?;
    let mut request = stream_request(&state, &req, access, &q, true)?;
    let encoder = Encoder::new(&state, &req, &mut request, Transport::Poll, q.asked()?);
    let impairment = request.impairment;
    let answer = transport::short_poll::run(state.ctx.clone(), request).await?;
    impairment.delay_answer().await;
    Ok(encoder.response(encoder.body(&answer)))
}

/// How a poll's answer is encoded and compressed, as its request asked.
#[derive(Clone)]
struct Encoder {
    format: Format,
    gzip: bool,
    min_size: usize,
    savings: Savings,
}

impl Encoder {
    fn new(
        state: &AppState,
        req: &HttpRequest,
        request: &mut StreamRequest,
        transport: Transport,
        asked: Asked,
    ) -> Encoder {
        let config = &state.ctx.config;
        let format = negotiate::poll_format(req.headers(), asked);
        let gzip = negotiate::gzip(req.headers(), asked, config.http_compression.is_on());
        request.encoding = Negotiated { format, compressed: gzip };
        let savings = Savings::new(&state.ctx.stats, transport, request.wire.as_ref());
        Encoder { format, gzip, min_size: config.compression_min_size, savings }
    }

    fn body(&self, answer: &Answer) -> Body {
        let plain = answer.encode(self.format);
        if !self.gzip || plain.len() < self.min_size {
            return Body { bytes: Bytes::from(plain), gzipped: false };
        }
        let gzipped = gzip::gzip(&plain);
        self.savings.count(plain.len(), gzipped.len());
        Body { bytes: Bytes::from(gzipped), gzipped: true }
    }

    fn response(&self, body: Body) -> HttpResponse {
        let content_type = match self.format {
            Format::Json => "application/json",
            Format::MsgPack => "application/msgpack",
        };
        let mut response = HttpResponse::Ok();
        response
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::VARY, "Accept-Encoding"));
        if body.gzipped {
            response.insert_header((header::CONTENT_ENCODING, "gzip"));
        }
        response.body(body.bytes)
    }
}
