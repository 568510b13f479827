//! A TCP proxy that injects faults between a client and Redis: it cuts
//! connections and delays replies at random, to prove that every call ends
//! in a correct answer or a typed error.
//!
//! Faults hit both directions: a cut before a request reaches Redis loses
//! the request; a cut or a long delay after Redis ran it loses the reply,
//! which is the case re-entrant claims exist for.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to traffic. Probabilities are per forwarded chunk
/// (one `read` worth of bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Chance that a chunk is dropped and the connection cut.
    pub cut: f64,
    /// Chance that a chunk is held back for `delay` before forwarding.
    pub delay_chance: f64,
    /// How long a delayed chunk waits (longer than the client timeout to
    /// make the client give up on the reply).
    pub delay: Duration,
}

impl Faults {
    /// No faults: a transparent proxy.
    pub const NONE: Faults = Faults {
        cut: 0.0,
        delay_chance: 0.0,
        delay: Duration::ZERO,
    };
}

struct Shared {
    faults: Mutex<Faults>,
    stop: AtomicBool,
    cuts: AtomicU64,
    delays: AtomicU64,
    connections: AtomicU64,
    seed: AtomicU64,
}

impl Shared {
    /// A xorshift draw in [0, 1); shared state, so every pump gets its own
    /// sequence position.
    fn draw(&self) -> f64 {
        let mut x = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A running fault-injecting proxy on a free loopback port. Stops on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Proxies `127.0.0.1:<free port>` to `upstream` (`host:port`) with
    /// `faults`, seeded by `seed` so runs can be replayed.
    pub fn start(upstream: &str, faults: Faults, seed: u64) -> FaultProxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            stop: AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            delays: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            seed: AtomicU64::new(seed | 1),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        s.connections.fetch_add(1, Ordering::Relaxed);
                        let Ok(server) =
                            TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
                        else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pump(s.clone(), &client, &server);
                        pump(s.clone(), &server, &client);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Changes the faults for chunks forwarded from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }

    /// Chunks delayed so far.
    pub fn delays(&self) -> u64 {
        self.shared.delays.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Forwards `from` → `to` on its own thread, injecting faults.
fn pump(shared: Arc<Shared>, from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => break,
            };
            let faults = *shared.faults.lock().unwrap();
            if faults.cut > 0.0 && shared.draw() < faults.cut {
                shared.cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if faults.delay_chance > 0.0 && shared.draw() < faults.delay_chance {
                shared.delays.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(faults.delay);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
