//! Debian's headless Chromium, driven over the DevTools protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use futures_util::StreamExt;
use serde_json::Value;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A running Chromium with a fresh profile; [`Chromium::close`] ends it.
pub struct Chromium {
    pub browser: Browser,
    events: tokio::task::JoinHandle<()>,
    profile: PathBuf,
}

impl Chromium {
    /// Launches headless Chromium; fails loudly if it is missing.
    pub async fn launch(width: u32, height: u32) -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: install Debian's browser with `apt-get install -y chromium` to run the browser tests"
        );
        let profile =
            std::env::temp_dir().join(format!("pushwire-chromium-{}-{}", std::process::id(), fastrand::u64(..)));
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .user_data_dir(&profile)
            .no_sandbox()
            .window_size(width, height)
            .viewport(None)
            // Without these, Chromium reaches for the network at start. QUIC stays
            // on: WebTransport runs over it (the server sends no Alt-Svc, so pages
            // and fetches stay on TCP).
            .args([
                "disable-gpu",
                "no-first-run",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
                // The HTTPS tests serve a self-signed certificate made at test time.
                "ignore-certificate-errors",
            ])
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
        let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Chromium { browser, events, profile }
    }

    pub async fn close(mut self) {
        self.browser.close().await.unwrap();
        self.browser.wait().await.unwrap();
        self.events.abort();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Evaluates `expression` (which yields a JSON string or null) in the page.
pub async fn eval_json(page: &Page, expression: &str) -> Value {
    let json: Option<String> = page.evaluate(expression).await.unwrap().into_value().unwrap();
    json.map_or(Value::Null, |j| serde_json::from_str(&j).unwrap())
}

/// Waits until `check` holds on what `expression` yields.
pub async fn wait_json(page: &Page, expression: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_json_within(page, expression, Duration::from_secs(30), what, check).await
}

/// Waits at most `limit` for `check` to hold on what `expression` yields.
pub async fn wait_json_within(
    page: &Page,
    expression: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = eval_json(page, expression).await;
        if !value.is_null() && check(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {limit:?}: {what}: {value:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
