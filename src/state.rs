//! What the routes share: the transports' [`Context`], and the two things
//! only the dashboard's endpoints use. Clones are shallow (`Arc`s and watch
//! handles), so every worker holds the same state.

use std::sync::Arc;

use crate::auth::Verifier;
use crate::lab::demo::DemoControl;
use crate::lab::inspect::Inspector;
use crate::origins::Origins;
use crate::transport::Context;

#[derive(Clone)]
pub struct AppState {
    /// Hub, config, counters and the shutdown signal: all a transport needs.
    pub ctx: Context,
    /// Per-page captures and "drop connections" for the teaching panel.
    pub inspector: Arc<Inspector>,
    /// The built-in demo publisher's settings.
    pub demo: DemoControl,
    /// Verifies access tokens; `None` when access control is off.
    pub verifier: Option<Arc<Verifier>>,
    /// Which other origins may use the server.
    pub origins: Arc<Origins>,
    /// Where WebTransport listens, for `/api/webtransport`; `None` when off.
    pub webtransport: Option<Arc<WebTransportInfo>>,
}

/// What a page needs to open a WebTransport session (API.md v1.2 discovery).
#[derive(Debug)]
pub struct WebTransportInfo {
    /// The UDP address of the QUIC endpoint.
    pub addr: std::net::SocketAddr,
    /// SHA-256 of the self-signed certificates in use (and of the next one,
    /// from a day before a renewal), as lowercase hex; empty with `--tls-cert`.
    pub certificate_hashes: std::sync::RwLock<Vec<String>>,
}
