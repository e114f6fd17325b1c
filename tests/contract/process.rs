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

/// The first log line of a binary started with `env`, once it listens (or
/// the error it exits with).
async fn started_with(env: &[(&str, &str)]) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushwire"))
        .args(["--bind", "127.0.0.1:0", "--demo-rate", "0", "--workers", "1"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the pushwire binary");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for output in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut rx = rx;
    let line = loop {
        let line =
            tokio::time::timeout(PATIENCE, rx.recv()).await.expect("no log line").expect("the binary said nothing");
        if line.contains("listening") || line.contains("error") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// Every documented spelling of a boolean flag's environment variable
/// (README: `PUSHWIRE_REDIS_CLUSTER=1`) is taken, each meaning what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_environment_variables_take_every_documented_spelling() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let single = RedisServer::start().await;
    for on in ["1", "true", "yes", "on", "TRUE", "On"] {
        let line = started_with(&[("PUSHWIRE_REDIS_CLUSTER", on), ("REDIS_URL", &cluster.urls())]).await;
        assert!(line.contains("listening") && line.contains("redis-cluster"), "PUSHWIRE_REDIS_CLUSTER={on}: {line}");
    }
    for off in ["0", "false", "no", "off", "FALSE", "Off"] {
        let line = started_with(&[("PUSHWIRE_REDIS_CLUSTER", off), ("REDIS_URL", &single.url())]).await;
        assert!(line.contains("listening") && !line.contains("cluster"), "PUSHWIRE_REDIS_CLUSTER={off}: {line}");
    }
    let line = started_with(&[("PUSHWIRE_REDIS_CLUSTER", "maybe"), ("REDIS_URL", &single.url())]).await;
    assert!(line.contains("error") && line.contains("maybe"), "a value that is no boolean is refused: {line}");
}

/// A copy of the binary, run from another directory, serves the dashboard
/// and its scripts from inside itself, byte for byte, with an ETag that a
/// browser revalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_serves_its_own_dashboard() {
    let dir = std::env::temp_dir().join(format!("pushwire-copy-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("pushwire");
    std::fs::copy(env!("CARGO_BIN_EXE_pushwire"), &copy).unwrap();
    let mut child = Command::new(&copy)
        .args(["--bind", "127.0.0.1:0", "--demo-rate", "0", "--workers", "1"])
        .current_dir(&dir)
        .env_remove("PUSHWIRE_STATIC_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the copied binary");
    let base = announced_url(&mut child).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("static/js/dashboard.js"));
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/static");
    for path in ["js/pushwire.js", "js/pushwire.mjs", "js/dashboard.js", "css/dashboard.css", "client.html"] {
        let response = http.get(format!("{base}/static/{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let etag = response.headers()["etag"].clone();
        let body = response.bytes().await.unwrap();
        assert_eq!(body, std::fs::read(format!("{source}/{path}")).unwrap(), "{path} byte for byte");
        let again = http.get(format!("{base}/static/{path}")).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path} revalidated");
    }
    let missing = http.get(format!("{base}/static/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
