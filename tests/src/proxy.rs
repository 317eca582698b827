//! A fault-injecting TCP proxy for network-partition tests: one loopback listener per
//! directed link between two brokers, forwarding to the target broker until the link is cut.
//!
//! A cut link goes silent, as a partitioned network does, rather than refusing: connections
//! already open stop carrying bytes but stay open, and new ones are accepted and then
//! ignored. Healing the link closes those connections, so both sides see them end and
//! reconnect. The links outlive broker restarts (they are the test's, not the brokers').

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One directed link: `from` reaches `to` through `addr`.
struct Link {
    addr: String,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Links between every ordered pair of brokers.
pub struct Proxies {
    links: BTreeMap<(i32, i32), Link>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for link in self.links.values() {
            link.task.abort();
        }
    }
}

/// Waits until `cut` says the link is whole again (or the proxy is gone).
async fn healed(cut: &mut watch::Receiver<bool>) {
    let _ = cut.wait_for(|cut| !cut).await;
}

/// Carries one connection both ways until the link is cut; then holds both ends, silent,
/// until it heals, and closes them.
async fn forward(mut client: TcpStream, target: String, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        healed(&mut cut).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut up, mut down) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        tokio::select! {
            read = client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&up[..n]).await.is_err() { return },
            },
            read = server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&down[..n]).await.is_err() { return },
            },
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
                if *cut.borrow_and_update() {
                    healed(&mut cut).await;
                    return;
                }
            }
        }
    }
}

impl Proxies {
    /// A link for every ordered pair of `targets` (node id, address), each on a free port of
    /// 127.0.0.1. Must run inside a Tokio runtime.
    pub fn start(targets: &BTreeMap<i32, String>) -> Proxies {
        let mut links = BTreeMap::new();
        for &from in targets.keys() {
            for (&to, target) in targets {
                if from == to {
                    continue;
                }
                let listener = StdListener::bind("127.0.0.1:0").expect("a loopback port");
                listener
                    .set_nonblocking(true)
                    .expect("non-blocking listener");
                let addr = listener.local_addr().expect("bound").to_string();
                let listener = TcpListener::from_std(listener).expect("a Tokio runtime");
                let (cut, watch) = watch::channel(false);
                let target = target.clone();
                let task = tokio::spawn(async move {
                    while let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(forward(client, target.clone(), watch.clone()));
                    }
                });
                links.insert((from, to), Link { addr, cut, task });
            }
        }
        Proxies { links }
    }

    /// The address `from` reaches `to` at.
    pub fn addr(&self, from: i32, to: i32) -> &str {
        &self.links[&(from, to)].addr
    }

    /// Cuts every link to and from `node`: it can reach no other broker, and none can reach it.
    pub fn isolate(&self, node: i32) {
        for ((from, to), link) in &self.links {
            if *from == node || *to == node {
                link.cut.send_replace(true);
            }
        }
    }

    /// Makes every link whole again.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.cut.send_replace(false);
        }
    }
}
