//! HTML pages, rendered with askama from `templates/`.

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use serde_json::json;

use crate::transport::Context;

/// One transport's lane on the dashboard.
pub struct LaneView {
    pub id: &'static str,
    pub title: &'static str,
    pub color: &'static str,
}

/// The four lanes, in the order the page shows them (colour-blind-safe palette).
pub const LANES: [LaneView; 4] = [
    LaneView { id: "ws", title: "WebSocket", color: "#0072b2" },
    LaneView { id: "sse", title: "Server-Sent Events", color: "#d55e00" },
    LaneView { id: "long", title: "Long polling", color: "#009e73" },
    LaneView { id: "poll", title: "Short polling", color: "#cc79a7" },
];

/// `GET /`: the live dashboard comparing the four transports.
#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub demo_channel: String,
    pub demo_rate: f64,
    pub demo_payload: usize,
    pub hub: &'static str,
    pub version: &'static str,
    pub lanes: &'static [LaneView],
    /// Settings the page's script reads, as JSON (only numbers and
    /// `[A-Za-z0-9_.-]` strings, so it is safe inside a script element).
    pub config_json: String,
}

pub async fn index(ctx: web::Data<Context>) -> DashboardPage {
    DashboardPage::new(&ctx)
}

impl DashboardPage {
    pub fn new(ctx: &Context) -> DashboardPage {
        let settings = ctx.demo.settings();
        let config_json = json!({
            "channel": ctx.demo.channel,
            "heartbeatMs": ctx.config.ws_ping_interval.as_millis() as u64,
            "colors": LANES.iter().map(|l| (l.id, l.color)).collect::<std::collections::HashMap<_, _>>(),
        })
        .to_string();
        DashboardPage {
            demo_channel: ctx.demo.channel.to_string(),
            demo_rate: settings.rate,
            demo_payload: settings.payload,
            hub: ctx.hub.kind(),
            version: env!("CARGO_PKG_VERSION"),
            lanes: &LANES,
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
            hub: "memory",
            version: "0.1.0",
            lanes: &LANES,
            config_json: r#"{"channel":"demo"}"#.into(),
        }
    }

    #[test]
    fn renders_four_lanes_controls_and_config() {
        let html = page().render().unwrap();
        for lane in &LANES {
            assert!(html.contains(&format!(r#"id="lane-{}""#, lane.id)), "lane {}", lane.id);
            assert!(html.contains(lane.title));
        }
        for id in [
            "demo-rate",
            "demo-payload",
            "poll-interval",
            "long-poll-timeout",
            "publish-text",
            "drop",
            "latency-chart",
            "bytes-chart",
        ] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "control {id}");
        }
        assert!(html.contains(r#"<script type="application/json" id="pushwire-config">{"channel":"demo"}</script>"#));
        assert!(html.contains("memory hub"));
        assert!(html.contains(r#"value="demo""#));
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
