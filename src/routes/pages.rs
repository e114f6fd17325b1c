//! HTML pages, rendered with askama from `templates/`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Serialize;
use serde_json::json;

use super::dashboard::client_id;
use crate::error::AppError;
use crate::lab::demo;
use crate::lab::inspect::client_given;
use crate::state::AppState;
use crate::transport_kind::Transport;

/// One transport's lane on the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct LaneView {
    /// [`Transport::id`]: the lane's element id and pushwire.js's name.
    pub id: &'static str,
    pub title: &'static str,
    /// Its key in `/api/stats` and `/api/inspect`.
    pub name: &'static str,
    pub path: &'static str,
    pub color: &'static str,
}

impl LaneView {
    fn of(transport: Transport) -> LaneView {
        // A colour-blind-safe palette (Okabe-Ito), one colour per transport.
        let color = match transport {
            Transport::WebSocket => "#0072b2",
            Transport::Sse => "#d55e00",
            Transport::LongPoll => "#009e73",
            Transport::Poll => "#cc79a7",
            Transport::WebTransport => "#e69f00",
        };
        LaneView { id: transport.id(), title: transport.title(), name: transport.name(), path: transport.path(), color }
    }
}

/// `GET /`: the live dashboard comparing the five transports.
#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    demo_channel: String,
    demo_rate: f64,
    demo_payload: usize,
    max_rate: f64,
    max_payload: usize,
    hub: &'static str,
    version: &'static str,
    lanes: Vec<LaneView>,
    /// Settings the page's script reads, as JSON (only numbers, null and
    /// `[A-Za-z0-9_.-]` strings, so it is safe inside a script element).
    config_json: String,
}

/// `GET /[?client=ID]`: the dashboard, tagging its connections with `ID`
/// (a random one without it), so that a lab can be prepared for it.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> Result<DashboardPage, AppError> {
    let client = match client_given(req.query_string()) {
        None | Some("") => None,
        Some(id) => client_id(id).map(|()| Some(id.to_owned()))?,
    };
    Ok(DashboardPage::new(&state, client))
}

/// `GET {base}` without the trailing slash: redirected to `{base}/`, where
/// the dashboard's relative links resolve under the prefix. The location is
/// relative too, so it holds behind a gateway that adds a prefix of its own.
pub async fn to_root(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let segment = state.ctx.config.base_path.last_segment();
    let location = match req.query_string() {
        "" => format!("{segment}/"),
        query => format!("{segment}/?{query}"),
    };
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, location)).finish()
}

impl DashboardPage {
    fn new(state: &AppState, client: Option<String>) -> DashboardPage {
        let settings = state.demo.settings();
        let lanes: Vec<LaneView> = Transport::LANES.into_iter().map(LaneView::of).collect();
        let config_json = json!({
            "channel": state.demo.channel,
            "heartbeatMs": state.ctx.config.ws_ping_interval.as_millis() as u64,
            "clientId": client,
            "lanes": lanes,
        })
        .to_string();
        DashboardPage {
            demo_channel: state.demo.channel.to_string(),
            demo_rate: settings.rate,
            demo_payload: settings.payload,
            max_rate: demo::MAX_RATE,
            max_payload: demo::MAX_PAYLOAD,
            hub: state.ctx.hub.kind(),
            version: env!("CARGO_PKG_VERSION"),
            lanes,
            config_json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> DashboardPage {
        DashboardPage {
            demo_channel: "demo".into(),
            demo_rate: 4.0,
            demo_payload: 0,
            max_rate: demo::MAX_RATE,
            max_payload: demo::MAX_PAYLOAD,
            hub: "memory",
            version: "0.1.0",
            lanes: Transport::LANES.into_iter().map(LaneView::of).collect(),
            config_json: r#"{"channel":"demo"}"#.into(),
        }
    }

    #[test]
    fn renders_five_lanes_controls_and_config() {
        let html = page().render().unwrap();
        for transport in Transport::LANES {
            assert!(html.contains(&format!(r#"id="lane-{}""#, transport.id())), "lane {}", transport.id());
            assert!(html.contains(transport.title()));
        }
        assert!(html.contains(r#"max="1000""#) && html.contains(r#"max="16384""#), "the demo limits");
        for id in [
            "demo-rate",
            "demo-payload",
            "poll-interval",
            "long-poll-timeout",
            "publish-text",
            "drop",
            "latency-chart",
            "bytes-chart",
            "lab-websocket",
            "lab-sse",
            "lab-webtransport",
            "lab-latency",
            "probe-interval",
            "timeline-chart",
        ] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "control {id}");
        }
        assert!(html.contains(r#"<script type="application/json" id="pushwire-config">{"channel":"demo"}</script>"#));
        assert!(html.contains("memory hub"));
        for preset in ["corporate proxy: no WebSocket", "antivirus buffering streams", "satellite link: +600 ms"] {
            assert!(html.contains(preset), "the lab's preset {preset}");
        }
        assert!(html.contains(r#"value="demo""#));
        // WebTransport's teaching panel: the extended CONNECT, the certificate by its hash.
        for raw in ["webtransport-request", "webtransport-response", "webtransport-certificate"] {
            assert!(html.contains(&format!(r#"data-raw="{raw}""#)), "panel {raw}");
        }
        assert!(html.contains("serverCertificateHashes") && html.contains("head-of-line"));
    }

    #[test]
    fn escapes_what_it_does_not_trust() {
        let mut p = page();
        p.demo_channel = "<script>".into();
        let html = p.render().unwrap();
        assert!(!html.contains("value=\"<script>\""));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
    }
}
