//! HTML pages, rendered with askama from `templates/`.

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;

use crate::transport::Context;

/// `GET /`: what this server offers and how to try each transport.
#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub demo_channel: String,
    pub demo_rate: f64,
    pub hub: &'static str,
    pub version: &'static str,
}

pub async fn index(ctx: web::Data<Context>) -> IndexPage {
    IndexPage::new(&ctx)
}

impl IndexPage {
    pub fn new(ctx: &Context) -> IndexPage {
        IndexPage {
            demo_channel: ctx.config.demo_channel.clone(),
            demo_rate: ctx.config.demo_rate,
            hub: ctx.hub.kind(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}
