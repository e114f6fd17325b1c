//! A TCP relay between pushwire and Redis that can silently stop forwarding
//! the pub/sub connections, as a half-open connection or a proxy that lost
//! its upstream does: nothing is closed, bytes just stop arriving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// While set, every pub/sub connection goes dead, for good.
    blackhole: AtomicBool,
    /// Pub/sub connections that went dead.
    dead: AtomicUsize,
}

impl Relay {
    /// Listens on a free port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, state).await;
                    }
                });
            }
        });
        Relay { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Pub/sub connections (those that sent a SUBSCRIBE) stop forwarding,
    /// both ways, and stay open; so do new ones until [`Relay::heal`].
    pub fn blackhole(&self) {
        self.state.blackhole.store(true, Ordering::SeqCst);
    }

    /// New pub/sub connections forward again; dead ones stay dead.
    pub fn heal(&self) {
        self.state.blackhole.store(false, Ordering::SeqCst);
    }

    pub fn dead_links(&self) -> usize {
        self.state.dead.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes. Once the connection is a
/// pub/sub one and the relay blackholes, it reads and drops everything.
async fn forward(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let pubsub = Arc::new(AtomicBool::new(false));
    let dead = Arc::new(AtomicBool::new(false));
    let is_dead = {
        let (state, pubsub, dead) = (state.clone(), pubsub.clone(), dead.clone());
        move || {
            if !dead.load(Ordering::SeqCst) && pubsub.load(Ordering::SeqCst) && state.blackhole.load(Ordering::SeqCst) {
                dead.store(true, Ordering::SeqCst);
                state.dead.fetch_add(1, Ordering::SeqCst);
            }
            dead.load(Ordering::SeqCst)
        }
    };
    let upstream = {
        let (is_dead, pubsub) = (is_dead.clone(), pubsub.clone());
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // The command as a RESP bulk string, ending its line: not
                // the word inside a script's text.
                if buf[..n].windows(11).any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE\r\n")) {
                    pubsub.store(true, Ordering::SeqCst);
                }
                if !is_dead() && server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !is_dead() && client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
