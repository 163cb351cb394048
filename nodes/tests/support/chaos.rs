//! A fault-injecting TCP proxy for the chaos tests, in the spirit of toxiproxy: it listens on
//! 127.0.0.1:0 and forwards each connection to an upstream address, applying the fault that
//! is set when the connection is accepted.
//!
//! Faults ([`Fault`]): added latency (once per connection, or before every chunk of the
//! response), new connections dropped (accepted, then closed at once), a blackhole (accepted,
//! read, never answered), the response cut after `n` bytes (a partial response), and a reset
//! (accepted, read, then closed with a TCP RST). [`Proxy::set_fault_for`] applies a fault to
//! the next `n` connections only, after which connections pass through again.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    None,
    /// Wait this long once, before the first byte of the response is forwarded.
    Latency(Duration),
    /// Wait this long before every chunk of the response that is forwarded.
    LatencyPerChunk(Duration),
    /// Accept the connection and close it at once, without reading.
    Drop,
    /// Accept the connection, read whatever comes, never answer (and never close).
    Blackhole,
    /// Forward the first `n` bytes of the response, then close both sides.
    CutAfter(usize),
    /// Read the request, then reset the connection (RST, by closing with a zero linger).
    Reset,
}

#[derive(Debug)]
struct Setting {
    fault: Fault,
    /// `Some(n)`: the fault applies to the next `n` connections, then `Fault::None`.
    left: Option<u64>,
}

/// The running proxy; stops accepting when dropped (connections already open run on).
pub struct Proxy {
    /// `127.0.0.1:{port}` of the proxy.
    pub addr: SocketAddr,
    setting: Arc<Mutex<Setting>>,
    accepted: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream`, with no fault.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let setting = Arc::new(Mutex::new(Setting {
            fault: Fault::None,
            left: None,
        }));
        let accepted = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let setting = setting.clone();
            let accepted = accepted.clone();
            let forwarded = forwarded.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let fault = {
                        let mut s = setting.lock().unwrap();
                        let fault = s.fault;
                        if let Some(left) = &mut s.left {
                            *left -= 1;
                            if *left == 0 {
                                s.fault = Fault::None;
                                s.left = None;
                            }
                        }
                        fault
                    };
                    tokio::spawn(handle(client, upstream, fault, forwarded.clone()));
                }
            }
        });
        Proxy {
            addr,
            setting,
            accepted,
            forwarded,
            task,
        }
    }

    /// `http://127.0.0.1:{port}/v1`, a base URL for an OpenAI-compatible client.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Applies `fault` to every connection accepted from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.setting.lock().unwrap() = Setting { fault, left: None };
    }

    /// Applies `fault` to the next `n` connections accepted (none if `n` is 0), then none.
    pub fn set_fault_for(&self, fault: Fault, n: u64) {
        *self.setting.lock().unwrap() = if n == 0 {
            Setting {
                fault: Fault::None,
                left: None,
            }
        } else {
            Setting {
                fault,
                left: Some(n),
            }
        };
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many bytes of responses the proxy has forwarded to its clients so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// Upstream address of a base URL `http://host:port/...`.
pub fn upstream_of(base_url: &str) -> SocketAddr {
    let rest = base_url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    forwarded: Arc<AtomicU64>,
) {
    match fault {
        Fault::Drop => drop(client),
        Fault::Blackhole => {
            let mut buf = [0u8; 4096];
            // Read until the client gives up; never write.
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        Fault::Reset => {
            let mut buf = [0u8; 4096];
            let _ = client.read(&mut buf).await;
            // A zero linger makes the close send RST instead of FIN.
            let _ = client.set_zero_linger();
            drop(client);
        }
        Fault::None | Fault::Latency(_) | Fault::LatencyPerChunk(_) | Fault::CutAfter(_) => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            // Requests go up untouched; the fault is on the response.
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                let _ = server_write.shutdown().await;
            });
            let mut buf = vec![0u8; 16 * 1024];
            let mut sent = 0usize;
            let mut first = true;
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                match fault {
                    Fault::Latency(d) if first => tokio::time::sleep(d).await,
                    Fault::LatencyPerChunk(d) => tokio::time::sleep(d).await,
                    _ => {}
                }
                first = false;
                let n = match fault {
                    Fault::CutAfter(limit) => n.min(limit - sent),
                    _ => n,
                };
                if client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                sent += n;
                forwarded.fetch_add(n as u64, Ordering::SeqCst);
                if matches!(fault, Fault::CutAfter(limit) if sent >= limit) {
                    break;
                }
            }
            // Closing both halves ends the connection (for a cut, before the response did).
            let _ = client_write.shutdown().await;
            up.abort();
        }
    }
}
