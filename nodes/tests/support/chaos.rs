//! A fault-injecting TCP proxy for the chaos tests, in the spirit of toxiproxy: it listens on
//! 127.0.0.1:0 and forwards each connection to an upstream address, applying the fault that
//! is set when the connection is accepted.
//!
//! Faults ([`Fault`]): added latency (once per connection, or before every chunk of the
//! response), new connections dropped (accepted, then closed at once), a blackhole (accepted,
//! read, never answered), the response cut after `n` bytes (a partial response), the response
//! to one chosen request cut in its body (for clients that send several requests, some over
//! one keep-alive connection, before the one under test), and a reset (accepted, read, then
//! closed with a TCP RST). [`Proxy::set_fault_for`] applies a fault to the next `n` connections
//! only, after which connections pass through again.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Pass the connection through until a request whose bytes contain `request` goes up;
    /// forward the response that follows through its headers (up to the first `\r\n\r\n`)
    /// and on in its body up to the end of the first `after` there, then close both sides: a
    /// response cut in its body, at a point named by its content rather than by a byte count
    /// (which would depend on the header values and the body's framing). Bytes are matched as
    /// sent: the size lines of a chunked body are there too. Earlier requests and responses on
    /// the connection (a keep-alive connection carries several) pass untouched, and so does a
    /// connection that never carries such a request, or a response without `after`: with
    /// HTTP/1.1 without pipelining, a client sends a request on a connection only once it has
    /// read the previous response whole, so every response byte read after the marked request
    /// went up belongs to its response.
    CutBody {
        /// Bytes that mark the request whose response is cut, e.g. `"tools/call"`.
        request: &'static str,
        /// Bytes of the response's body after which it is cut, e.g. `"\"result\""`.
        after: &'static str,
    },
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
    cuts: Arc<AtomicU64>,
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
        let cuts = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let setting = setting.clone();
            let accepted = accepted.clone();
            let forwarded = forwarded.clone();
            let cuts = cuts.clone();
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
                    tokio::spawn(handle(
                        client,
                        upstream,
                        fault,
                        forwarded.clone(),
                        cuts.clone(),
                    ));
                }
            }
        });
        Proxy {
            addr,
            setting,
            accepted,
            forwarded,
            cuts,
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

    /// How many responses the proxy has cut short so far (`Fault::CutAfter` once its `n` bytes
    /// are forwarded, `Fault::CutBody` at its cut).
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
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
    cuts: Arc<AtomicU64>,
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
        Fault::None
        | Fault::Latency(_)
        | Fault::LatencyPerChunk(_)
        | Fault::CutAfter(_)
        | Fault::CutBody { .. } => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            // Set (before the marked request is forwarded) once a request carries the marker
            // of `Fault::CutBody`.
            let marked = Arc::new(AtomicBool::new(false));
            // Requests go up untouched; the fault is on the response.
            let up = tokio::spawn({
                let marked = marked.clone();
                async move {
                    match fault {
                        Fault::CutBody { request, .. } => {
                            let _ = watch_up(&mut client_read, &mut server_write, request, &marked)
                                .await;
                        }
                        _ => {
                            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        }
                    }
                    let _ = server_write.shutdown().await;
                }
            });
            let mut buf = vec![0u8; 16 * 1024];
            let mut sent = 0usize;
            let mut first = true;
            let mut body_cut = match fault {
                Fault::CutBody { after, .. } => Some(BodyCut::new(after)),
                _ => None,
            };
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
                let (n, cut) = match fault {
                    Fault::CutAfter(limit) => {
                        let n = n.min(limit - sent);
                        (n, sent + n >= limit)
                    }
                    Fault::CutBody { .. } if marked.load(Ordering::SeqCst) => {
                        match body_cut.as_mut().and_then(|c| c.keep(&buf[..n])) {
                            Some(k) => (k, true),
                            None => (n, false),
                        }
                    }
                    _ => (n, false),
                };
                // Counted before the write: the client may read the bytes, finish its run
                // and ask for the counts before this task runs again.
                forwarded.fetch_add(n as u64, Ordering::SeqCst);
                if cut {
                    cuts.fetch_add(1, Ordering::SeqCst);
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    // The client went away: these bytes never reached it.
                    forwarded.fetch_sub(n as u64, Ordering::SeqCst);
                    break;
                }
                sent += n;
                if cut {
                    break;
                }
            }
            // Closing both halves ends the connection (for a cut, before the response did).
            let _ = client_write.shutdown().await;
            up.abort();
        }
    }
}

/// Copies requests from `from` to `to`, setting `marked` before it forwards the bytes that
/// complete `marker`.
async fn watch_up(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    marker: &'static str,
    marked: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut finder = Finder::new(marker);
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if !marked.load(Ordering::SeqCst) && finder.find(&buf[..n]).is_some() {
            marked.store(true, Ordering::SeqCst);
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Finds a marker in a stream read in chunks, where it may span two or more of them.
#[derive(Debug)]
struct Finder {
    marker: &'static [u8],
    /// The last bytes seen (fewer than the marker's), the start of a marker split by a read.
    tail: Vec<u8>,
}

impl Finder {
    fn new(marker: &'static str) -> Self {
        Finder {
            marker: marker.as_bytes(),
            tail: Vec::new(),
        }
    }

    /// The offset in `chunk` just past the end of the marker's first occurrence, when it ends
    /// in `chunk` (an empty marker ends at 0).
    fn find(&mut self, chunk: &[u8]) -> Option<usize> {
        let len = self.marker.len();
        if len == 0 {
            return Some(0);
        }
        let seen = self.tail.len();
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(chunk);
        if let Some(at) = joined.windows(len).position(|w| w == self.marker) {
            // `seen < len`, so the marker ends in `chunk`.
            return Some(at + len - seen);
        }
        let keep = (len - 1).min(joined.len());
        self.tail = joined.split_off(joined.len() - keep);
        None
    }
}

/// Where [`Fault::CutBody`] cuts the response that follows the marked request.
#[derive(Debug)]
struct BodyCut {
    headers_end: Finder,
    after: Finder,
    in_body: bool,
}

impl BodyCut {
    fn new(after: &'static str) -> Self {
        BodyCut {
            headers_end: Finder::new("\r\n\r\n"),
            after: Finder::new(after),
            in_body: false,
        }
    }

    /// For the next `chunk` of the response: `Some(k)` to forward its first `k` bytes and cut
    /// there, `None` to forward it whole.
    fn keep(&mut self, chunk: &[u8]) -> Option<usize> {
        let start = if self.in_body {
            0
        } else {
            let start = self.headers_end.find(chunk)?;
            self.in_body = true;
            start
        };
        self.after.find(&chunk[start..]).map(|k| start + k)
    }
}

#[cfg(test)]
mod cut_tests {
    use super::{BodyCut, Finder};

    /// The marker is found wherever the reads split it.
    #[test]
    fn a_marker_is_found_across_reads() {
        let stream = b"POST /mcp HTTP/1.1\r\n\r\n{\"method\":\"tools/call\"}";
        let end = stream.windows(10).position(|w| w == b"tools/call").unwrap() + 10;
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let mut f = Finder::new("tools/call");
                let mut at = None;
                let mut offset = 0;
                for chunk in [&stream[..i], &stream[i..j], &stream[j..]] {
                    if at.is_none() {
                        at = f.find(chunk).map(|k| offset + k);
                    }
                    offset += chunk.len();
                }
                assert_eq!(at, Some(end), "split at {i} and {j}");
            }
        }
        assert_eq!(Finder::new("tools/call").find(b"tools/list"), None);
    }

    /// The cut falls after the headers and the body's marker, not on the same bytes in the
    /// headers, wherever the reads split the response.
    #[test]
    fn a_body_is_cut_after_its_marker_wherever_the_reads_split_it() {
        let response = b"HTTP/1.1 200 OK\r\nx-data: no\r\n\r\n1C\r\ndata: {\"a\":1}\n\n\r\n";
        let end = response.windows(5).rposition(|w| w == b"data:").unwrap() + 5;
        for i in 0..=response.len() {
            let mut cut = BodyCut::new("data:");
            let at = match cut.keep(&response[..i]) {
                Some(k) => Some(k),
                None => cut.keep(&response[i..]).map(|k| i + k),
            };
            assert_eq!(at, Some(end), "split at {i}");
        }
        let mut cut = BodyCut::new("absent");
        assert_eq!(cut.keep(response), None);
    }
}
