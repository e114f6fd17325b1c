//! The real binary, as `cargo run` starts it: the demo stream flows, and
//! SIGTERM closes sessions with 1012 and exits cleanly.

use std::process::{Command, Stdio};

use crate::common::*;

#[tokio::test]
async fn binary_serves_the_demo_stream_and_shuts_down_gracefully() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushwire"))
        .args(["--bind", "127.0.0.1:0", "--demo-rate", "50", "--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the pushwire binary");
    // The one log line that says where to point a browser.
    let base = announced_url(&mut child).await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let ws_url = base.replace("http://", "ws://") + "/ws?channels=demo";
    let mut ws = Ws::connect(&ws_url).await;
    ws.handshake(1).await;
    let demo = ws.expect("message").await;
    assert_eq!(demo["channel"], "demo");
    assert!(demo["data"].is_object(), "the demo publishes small JSON objects: {demo}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    loop {
        match ws.next().await {
            Ok(frame) => assert_eq!(frame["type"], "message", "only messages before the close"),
            Err(WsEnd::Closed(code, _)) => {
                assert_eq!(code, Some(1012));
                break;
            }
            Err(e) => panic!("expected close 1012, got {e:?}"),
        }
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit after SIGTERM");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
}
