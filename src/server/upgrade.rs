//! The WebSocket upgrade path. The server's own HTTP/1 path (`front`) and,
//! for an upgrade later on a connection it handed over, actix-http hand a
//! request that asks for a WebSocket (`Upgrade: websocket`) here, with its
//! socket, instead of to the app. It is still answered by the same app (routing, middleware, access
//! control, byte metering): when the app accepts, its `101` is written and the
//! session gets the bare socket, so the HTTP dispatcher and its buffers are
//! gone for the rest of the connection; any other answer is written as it is,
//! and the connection closes.

use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::rc::Rc;

use actix_codec::{AsyncRead, AsyncWrite, Framed, FramedParts};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use futures_util::SinkExt;
use futures_util::future::LocalBoxFuture;

use crate::transport::websocket::{self, Accepted, Upgradable};

/// The upgrade service of one worker, answering with an instance of `app`.
pub fn factory<T, A, B>(
    app: A,
) -> impl ServiceFactory<(Request, Framed<T, h1::Codec>), Config = (), Response = (), Error = actix_web::Error, InitError = ()>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    A: ServiceFactory<Request, Config = (), InitError = ()> + 'static,
    A::Future: 'static,
    A::Service: 'static,
    A::Response: Into<Response<B>>,
    A::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    fn_factory(move || {
        let app = app.new_service(());
        async move {
            let app = Rc::new(app.await?);
            Ok(fn_service(move |(req, framed)| {
                let serving = serve(app.clone(), req, framed);
                async move { Ok(serving.await?) }
            }))
        }
    })
}

/// Answers an upgrade request with `app`, and serves the WebSocket session
/// when it is accepted; `framed` is the socket with what was read past the
/// request head.
pub fn serve<T, S, B>(app: Rc<S>, req: Request, framed: Framed<T, h1::Codec>) -> impl Future<Output = io::Result<()>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    // Boxed, both: answering the handshake takes a large future (the app's)
    // that is done with once the session starts, and the session's own
    // future is sized to what it keeps.
    let handshake = Box::pin(handshake(app, req, framed));
    async move {
        if let Some(session) = handshake.await? {
            session.await;
        }
        Ok(())
    }
}

/// Answers the request with the app; hands back what an accepted WebSocket
/// needs to start.
async fn handshake<T, S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<T, h1::Codec>,
) -> io::Result<Option<LocalBoxFuture<'static, ()>>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(Upgradable);
    let mut response: Response<BoxBody> = match app.call(req).await {
        Ok(response) => response.into().map_into_boxed_body(),
        Err(error) => error.into(),
    };
    let accepted = match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => response.extensions_mut().remove::<Accepted>(),
        _ => None,
    };
    let (mut head, body) = response.into_parts();
    let Some(accepted) = accepted else {
        head.head_mut().set_connection_type(ConnectionType::Close);
        write_whole(&mut framed, head, body).await?;
        return Ok(None);
    };
    framed.send(Message::Item((head, BodySize::None))).await?;
    let FramedParts { io, read_buf, .. } = framed.into_parts();
    Ok(Some(Box::pin(websocket::run(accepted, io, read_buf))))
}

/// Writes an answer that is not an upgrade, body and all, in one write when
/// the body is whole (clients read an error's body with its head).
async fn write_whole<T>(framed: &mut Framed<T, h1::Codec>, head: Response<()>, body: BoxBody) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let size = body.size();
    framed.feed(Message::Item((head, size))).await?;
    let mut body = pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = Message::Chunk(Some(chunk.map_err(|e| io::Error::other(e.to_string()))?));
        match size {
            BodySize::Stream => framed.send(chunk).await?,
            _ => framed.feed(chunk).await?,
        }
    }
    framed.send(Message::Chunk(None)).await
}
