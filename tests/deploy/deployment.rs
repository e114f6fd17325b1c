//! The deployment's files, read as Docker and Compose read them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;

use clap::{CommandFactory, FromArgMatches};
use serde::Deserialize;

use pushwire::config::Config;

/// The port nginx listens on in its container (`listen 80;` in deploy/nginx.conf).
pub const NGINX_PORT: u16 = 80;
/// The port pushwire listens on in its container, as nginx's upstreams name it.
pub const PUSHWIRE_PORT: u16 = 8080;
/// Where Compose mounts deploy/nginx.conf in the nginx container.
pub const NGINX_SITE_MOUNT: &str = "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro";

pub fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// docker-compose.yml, the parts the tests check.
#[derive(Debug, Deserialize)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<String>,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_grace_period: Option<String>,
    pub ulimits: BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Dependency {
    pub condition: String,
}

#[derive(Debug, Deserialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
}

pub fn compose() -> Compose {
    let mut value: serde_norway::Value = serde_norway::from_str(&read("docker-compose.yml")).unwrap();
    // The services share their settings through a `<<: *pushwire` merge key.
    value.apply_merge().unwrap();
    serde_norway::from_value(value).unwrap()
}

/// The Dockerfile's last stage, the image that runs.
#[derive(Debug, Default)]
pub struct Image {
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    /// `COPY` from the build context: (source, destination).
    pub copies: Vec<(String, String)>,
    pub healthcheck: Option<String>,
}

pub fn image() -> Image {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let instructions = lines.join("\n").replace("\\\n", " ");
    let mut image = Image::default();
    for instruction in instructions.lines() {
        let (keyword, rest) = instruction.trim().split_once(char::is_whitespace).unwrap_or((instruction, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => image = Image::default(),
            "ENV" => {
                for pair in &words {
                    let (var, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: write VAR=value"));
                    image.env.insert(var.to_string(), value.to_string());
                }
            }
            "USER" => image.user = Some(rest.trim().to_string()),
            "COPY" if !words.iter().any(|w| w.starts_with("--from")) => {
                if let [source, destination] = words[..] {
                    image.copies.push((source.to_string(), destination.to_string()));
                }
            }
            "HEALTHCHECK" => image.healthcheck = Some(rest.to_string()),
            _ => {}
        }
    }
    image
}

/// The configuration pushwire starts with in `service`'s container: the
/// image's environment, the service's, then its command. The variables are
/// given as their flags, so that this process's own `PUSHWIRE_*` stay out.
pub fn pushwire_config(image: &Image, service: &Service) -> Config {
    let mut env = image.env.clone();
    env.extend(service.environment.clone());
    let mut args = vec!["pushwire".to_string()];
    for (var, value) in env {
        let flag = flag_of(&var);
        if !service.command.iter().any(|a| a == &flag || a.starts_with(&format!("{flag}="))) {
            args.extend([flag, value]);
        }
    }
    args.extend(service.command.iter().cloned());
    let command = Config::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command.try_get_matches_from(&args).unwrap_or_else(|e| panic!("pushwire {args:?}:\n{e}"));
    // unwrap: the matches come from Config's own command.
    Config::from_arg_matches(&matches).unwrap()
}

/// The flag that `var` stands for (`PUSHWIRE_BIND` → `--bind`).
fn flag_of(var: &str) -> String {
    let command = Config::command();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_env() == Some(OsStr::new(var)))
        .unwrap_or_else(|| panic!("{var} is not a variable pushwire reads"));
    format!("--{}", arg.get_long().unwrap())
}

/// deploy/nginx.conf with only its addresses replaced: nginx listens on
/// `port` of this machine, and each upstream service name stands for `addr`.
pub fn nginx_site(port: u16, upstreams: &[(&str, SocketAddr)]) -> String {
    let mut site = read("deploy/nginx.conf");
    site = replace(&site, &format!("listen {NGINX_PORT};"), &format!("listen 127.0.0.1:{port};"));
    for (service, addr) in upstreams {
        site = replace(&site, &format!("server {service}:{PUSHWIRE_PORT};"), &format!("server {addr};"));
    }
    site
}

fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "deploy/nginx.conf has no `{from}`: the test can no longer run it as deployed");
    text.replace(from, to)
}
