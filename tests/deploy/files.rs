//! docker-compose.yml, the Dockerfile and deploy/nginx.conf agree with one
//! another and with pushwire's flags: what can be checked without building
//! the image.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use pushwire::config::{Config, LONG_POLL_MAX_SECS};

use crate::deployment::{self, NGINX_PORT, NGINX_SITE_MOUNT, PUSHWIRE_PORT, Service};

const INSTANCES: [&str; 2] = ["pushwire-a", "pushwire-b"];

fn instances(compose: &deployment::Compose) -> Vec<(&str, &Service)> {
    INSTANCES.iter().map(|name| (*name, &compose.services[*name])).collect()
}

#[test]
fn compose_runs_redis_two_pushwire_instances_on_it_and_nginx() {
    let compose = deployment::compose();
    let names: BTreeSet<&str> = compose.services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["redis", "pushwire-a", "pushwire-b", "nginx"]));
    assert!(compose.services["redis"].image.as_deref().is_some_and(|i| i.starts_with("redis:7")), "Redis 7");
    let image = deployment::image();
    let mut configs = Vec::new();
    for (name, service) in instances(&compose) {
        assert_eq!(service.build.as_deref(), Some("."), "{name} runs the Dockerfile's image");
        assert_eq!(service.image.as_deref(), Some("pushwire:local"), "{name}: both run one image");
        let config = deployment::pushwire_config(&image, service);
        let redis = config.redis_url.clone().unwrap_or_else(|| panic!("{name} runs the embedded hub"));
        assert_eq!(redis, "redis://redis:6379/", "{name} uses the `redis` service");
        configs.push(config);
    }
    let [a, b] = &configs[..] else { unreachable!() };
    assert_eq!(a.redis_prefix, b.redis_prefix, "one stream: the same keys");
    assert!(a.demo_rate > 0.0, "pushwire-a runs the demo publisher");
    assert_eq!(b.demo_rate, 0.0, "one publisher only: pushwire-b runs `--demo-rate 0`");
}

#[test]
fn nginx_alone_is_published_and_mounts_the_tested_file() {
    let compose = deployment::compose();
    for (name, service) in &compose.services {
        match name.as_str() {
            "nginx" => {}
            // WebTransport is UDP, which nginx does not proxy: one instance serves it.
            "pushwire-a" => {
                assert_eq!(service.ports, [format!("8080:{PUSHWIRE_PORT}/udp")], "{name}: WebTransport only")
            }
            _ => assert!(service.ports.is_empty(), "{name} publishes no port: clients go through nginx"),
        }
    }
    let image = deployment::image();
    let b = deployment::pushwire_config(&image, &compose.services["pushwire-b"]);
    assert!(!b.webtransport.is_on(), "pushwire-b runs no WebTransport: its UDP port is not published");
    let site = deployment::read("deploy/nginx.conf");
    assert!(
        site.contains("location = /api/webtransport {\n        proxy_pass http://pushwire_demo;"),
        "discovery comes from the instance whose UDP port is published"
    );
    let nginx = &compose.services["nginx"];
    assert_eq!(nginx.ports, [format!("8080:{NGINX_PORT}")], "the dashboard is on the host's port 8080");
    assert_eq!(nginx.volumes, [NGINX_SITE_MOUNT], "nginx runs deploy/nginx.conf, the file tests/deploy runs");
    // The test replaces exactly these lines: they must name the services as deployed.
    let site = deployment::read("deploy/nginx.conf");
    assert!(site.contains(&format!("listen {NGINX_PORT};")), "nginx listens on the published container port");
    for name in INSTANCES {
        assert!(site.contains(&format!("server {name}:{PUSHWIRE_PORT};")), "an upstream line for {name}");
    }
    let bind: SocketAddr = deployment::image().env["PUSHWIRE_BIND"].parse().unwrap();
    assert!(bind.ip().is_unspecified(), "pushwire listens on every interface of its container: {bind}");
    assert_eq!(bind.port(), PUSHWIRE_PORT, "where the upstreams look for it");
}

#[test]
fn every_service_is_health_checked_and_starts_after_what_it_needs() {
    let compose = deployment::compose();
    let health = |name: &str| compose.services[name].healthcheck.as_ref().unwrap().test.join(" ");
    assert!(health("redis").contains("redis-cli ping"), "{}", health("redis"));
    for name in INSTANCES {
        let check = health(name);
        assert!(check.contains(&format!("http://127.0.0.1:{PUSHWIRE_PORT}/readyz")), "{name}: {check}");
        assert!(check.contains("curl -fsS"), "fails on an HTTP error: {check}");
    }
    let check = health("nginx");
    assert!(check.contains("http://127.0.0.1/readyz"), "nginx is ready when an instance behind it is: {check}");
    let waits = |name: &str| -> Vec<(String, String)> {
        let deps = &compose.services[name].depends_on;
        deps.iter().map(|(service, dep)| (service.clone(), dep.condition.clone())).collect()
    };
    let healthy = |services: &[&str]| -> Vec<(String, String)> {
        services.iter().map(|s| (s.to_string(), "service_healthy".to_string())).collect()
    };
    for name in INSTANCES {
        assert_eq!(waits(name), healthy(&["redis"]), "{name}");
    }
    assert_eq!(waits("nginx"), healthy(&INSTANCES), "nginx resolves the instances' names as it starts");
}

#[test]
fn the_image_runs_unprivileged_and_serves_its_static_files() {
    let image = deployment::image();
    let user = image.user.as_deref().expect("a USER in the last stage");
    assert!(!["root", "0", "0:0"].contains(&user), "USER {user}");
    let static_dir = &image.env["PUSHWIRE_STATIC_DIR"];
    assert!(
        image.copies.contains(&("static".to_string(), static_dir.clone())),
        "static/ is copied to PUSHWIRE_STATIC_DIR ({static_dir}): {:?}",
        image.copies
    );
    let check = image.healthcheck.expect("a HEALTHCHECK");
    assert!(check.contains(&format!("http://127.0.0.1:{PUSHWIRE_PORT}/readyz")), "{check}");
    let ignored = deployment::read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim() == "target"), "target/ stays out of the build context");
}

#[test]
fn timeouts_outlast_every_silence_of_pushwire() {
    let site = deployment::read("deploy/nginx.conf");
    let read_timeout = site
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy_read_timeout ")?.strip_suffix("s;")?.parse::<u64>().ok())
        .map(Duration::from_secs)
        .expect("proxy_read_timeout in seconds");
    let defaults = Config::defaults();
    for (what, silence) in [
        ("a long poll's longest hold", Duration::from_secs(LONG_POLL_MAX_SECS)),
        ("the WebSocket ping interval", defaults.ws_ping_interval),
        ("the SSE heartbeat", defaults.sse_heartbeat),
    ] {
        assert!(read_timeout >= silence + Duration::from_secs(10), "proxy_read_timeout {read_timeout:?} vs {what}");
    }
    // Compose kills a container this long after SIGTERM: after pushwire's own deadline.
    let compose = deployment::compose();
    for (name, service) in instances(&compose) {
        let grace = service.stop_grace_period.as_deref().expect("stop_grace_period");
        let grace = humantime::parse_duration(grace).unwrap();
        assert!(grace > defaults.shutdown_timeout, "{name}: {grace:?}");
        assert!(service.ulimits.contains_key("nofile"), "{name}: the connection cap follows the open-file limit");
    }
}
