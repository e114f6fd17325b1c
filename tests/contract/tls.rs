//! HTTPS, WSS and HTTP/2 on the bound port, with a certificate made by the
//! test (rcgen): a `wss://` client gets its stream, SSE negotiates HTTP/2,
//! several streams and polls share one HTTP/2 connection, plain HTTP to the
//! TLS port is told to use HTTPS, and a bad key stops the start.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::*;

/// A self-signed certificate for 127.0.0.1 and localhost, written to a private directory.
pub(crate) struct Cert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    pub(crate) fn new() -> Cert {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("pushwire-tls-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        Cert { dir, der: certified.cert.der().clone() }
    }

    pub(crate) async fn app(&self) -> TestApp {
        self.app_with(|_| {}).await
    }

    pub(crate) async fn app_with(&self, configure: impl FnOnce(&mut pushwire::config::Config)) -> TestApp {
        let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        spawn_app_with(HubKind::Memory, move |c| {
            c.tls_cert = Some(cert);
            c.tls_key = Some(key);
            configure(c);
        })
        .await
    }

    /// A TLS connection to the app offering these ALPN protocols.
    pub(crate) async fn connect(&self, app: &TestApp, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(app.addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        timeout(PATIENCE, TlsConnector::from(Arc::new(config)).connect(name, tcp)).await.unwrap().unwrap()
    }
}

impl Cert {
    /// Publishes over HTTPS (HTTP/1.1).
    async fn publish(&self, app: &TestApp, channel: &str, body: &str) {
        let request = format!(
            "POST /channels/{channel}/messages HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            app.addr,
            body.len()
        );
        let mut tls = self.connect(app, &[b"http/1.1"]).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await; // the peer may close without close_notify
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
}

impl Cert {
    /// The body of a GET over HTTPS (HTTP/1.1), for what a test reads beside
    /// the connections under test (`/api/stats`, `/metrics`).
    pub(crate) async fn get(&self, app: &TestApp, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", app.addr);
        let mut tls = self.connect(app, &[b"http/1.1"]).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = timeout(PATIENCE, tls.read_to_string(&mut answer)).await.expect("an answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
        assert!(head.starts_with("HTTP/1.1 200") && !head.contains("chunked"), "{head}");
        body.to_owned()
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP/2 GET on an open connection: status and the body stream.
pub(crate) async fn h2_get(
    sender: &mut h2::client::SendRequest<Bytes>,
    app: &TestApp,
    path: &str,
) -> (u16, h2::RecvStream) {
    let request = http::Request::get(format!("https://{}{}", app.addr, path)).body(()).unwrap();
    let (response, _) = sender.clone().ready().await.unwrap().send_request(request, true).unwrap();
    let response = timeout(PATIENCE, response).await.expect("an answer").unwrap();
    (response.status().as_u16(), response.into_body())
}

/// Reads an HTTP/2 body until `want` appears in it (flow control released as it goes).
pub(crate) async fn read_until(body: &mut h2::RecvStream, want: &str) -> String {
    let mut text = String::new();
    while !text.contains(want) {
        let chunk = timeout(PATIENCE, body.data()).await.unwrap_or_else(|_| panic!("no {want:?} in {text:?}"));
        let chunk = chunk.unwrap_or_else(|| panic!("body ended before {want:?}: {text:?}")).unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_gets_its_stream() {
    let cert = Cert::new();
    let app = cert.app().await;
    let tls = cert.connect(&app, &[b"http/1.1"]).await;
    let url = format!("wss://{}/ws?channels=secure", app.addr);
    let (mut ws, response) = timeout(PATIENCE, tokio_tungstenite::client_async(url, tls)).await.unwrap().unwrap();
    assert_eq!(response.status(), 101);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        if let Some(Ok(WsMessage::Text(text))) = timeout(PATIENCE, ws.next()).await.unwrap() {
            frames.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    assert_eq!((frames[0]["type"].as_str(), frames[1]["type"].as_str()), (Some("welcome"), Some("subscribed")));
    // Published over HTTPS, received over WSS.
    cert.publish(&app, "secure", r#"{"over":"tls"}"#).await;
    let message = loop {
        if let Some(Ok(WsMessage::Text(text))) = timeout(PATIENCE, ws.next()).await.unwrap() {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!((message["type"].as_str(), message["data"].clone()), (Some("message"), json!({"over": "tls"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_polls_share_one_http2_connection() {
    let cert = Cert::new();
    let app = cert.app().await;
    let tls = cert.connect(&app, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 negotiated by ALPN");
    let (mut sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let (status, mut first) = h2_get(&mut sender, &app, "/sse?channels=h2a").await;
    assert_eq!(status, 200);
    read_until(&mut first, "event: subscribed").await;
    let (_, mut second) = h2_get(&mut sender, &app, "/sse?channels=h2b").await;
    read_until(&mut second, "event: subscribed").await;
    cert.publish(&app, "h2a", r#""one""#).await;
    cert.publish(&app, "h2b", r#""two""#).await;
    assert!(read_until(&mut first, "event: message").await.contains(r#""data":"one""#));
    assert!(read_until(&mut second, "event: message").await.contains(r#""data":"two""#));
    // Polls on the same connection while both streams stay open.
    for _ in 0..3 {
        let (status, mut poll) = h2_get(&mut sender, &app, "/poll?channels=h2a&cursor=h2a:0").await;
        assert_eq!(status, 200);
        assert!(read_until(&mut poll, "cursor").await.contains(r#""data":"one""#));
    }
    cert.publish(&app, "h2a", r#""three""#).await;
    assert!(read_until(&mut first, "three").await.contains("event: message"), "the stream is still live");
    let (_, mut body) = h2_get(&mut sender, &app, "/api/stats").await;
    let mut text = String::new();
    while let Some(chunk) = timeout(PATIENCE, body.data()).await.expect("the stats") {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["transports"]["sse"]["requests"], 2);
    assert_eq!(stats["transports"]["poll"]["requests"], 3);
    assert!(stats["transports"]["http2"]["bytes_sent"].as_u64() > Some(0), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_told_to_use_https() {
    let cert = Cert::new();
    let app = cert.app().await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes()).await.unwrap();
    let mut answer = String::new();
    timeout(PATIENCE, tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("HTTPS"), "{answer}");
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_start() {
    let cert = Cert::new();
    for (c, k, says) in [
        (cert.dir.join("missing.pem"), cert.dir.join("key.pem"), "--tls-cert"),
        (cert.dir.join("key.pem"), cert.dir.join("key.pem"), "no certificate"),
        (cert.dir.join("cert.pem"), cert.dir.join("cert.pem"), "--tls-key"),
    ] {
        let mut config = test_config();
        config.tls_cert = Some(c);
        config.tls_key = Some(k);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hub = pushwire::hub::MemoryHub::new(config.history_limits());
        let error = pushwire::server::start(config, hub, listener).err().expect("the start fails");
        assert!(error.to_string().contains(says), "{error}");
    }
}
