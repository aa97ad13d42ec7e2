//! A loopback TCP proxy put between Sluice and a component, to break the network on command:
//! cut every open connection, stall them (bytes held, connections open), or add latency.
//!
//! It runs on a runtime of its own thread, so a test that blocks its own threads (waiting for
//! a log line, a process) never stalls the traffic it forwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy from a free loopback port to `127.0.0.1:<backend>`; stops with the test process.
pub struct FaultProxy {
    /// The port clients connect to.
    pub port: u16,
    faults: Arc<Faults>,
}

/// The faults in force, read by every connection's pumps.
struct Faults {
    /// Bumped to close every open connection.
    cuts: watch::Sender<u64>,
    stalled: AtomicBool,
    delay_ms: AtomicU64,
}

impl FaultProxy {
    /// Starts forwarding a free port to `backend`. A connection whose backend does not
    /// answer is closed, as the backend itself would refuse it.
    pub fn start(backend: u16) -> FaultProxy {
        let faults = Arc::new(Faults {
            cuts: watch::channel(0).0,
            stalled: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let shared = faults.clone();
        let port = listen(move |client| forward(client, backend, shared.clone()));
        FaultProxy { port, faults }
    }

    /// Closes every connection open now (new ones are accepted).
    pub fn cut(&self) {
        self.faults.cuts.send_modify(|n| *n += 1);
    }

    /// Holds every byte in both directions while `on`; connections stay open.
    pub fn stall(&self, on: bool) {
        self.faults.stalled.store(on, Ordering::Relaxed);
    }

    /// Delays every chunk forwarded by `ms` milliseconds (0: none).
    pub fn delay(&self, ms: u64) {
        self.faults.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Ends stalls and delays.
    pub fn heal(&self) {
        self.stall(false);
        self.delay(0);
    }
}

/// Listens on a free loopback port, returned, and runs `serve` on every connection, on a
/// runtime of its own thread.
pub fn listen<F, S>(serve: S) -> u16
where
    S: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(serve(client));
                    }
                    // Out of descriptors, say: try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    });
    port
}

async fn forward(client: TcpStream, backend: u16, faults: Arc<Faults>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, faults.clone());
    let down = pump(server_read, client_write, faults);
    // Either side closing or failing ends the connection; both halves drop here.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
) {
    let mut cuts = faults.cuts.subscribe();
    cuts.borrow_and_update();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cuts.changed() => return,
        };
        loop {
            let delay = faults.delay_ms.load(Ordering::Relaxed);
            let stalled = faults.stalled.load(Ordering::Relaxed);
            if !stalled && delay == 0 {
                break;
            }
            let wait = if stalled { 10 } else { delay };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = cuts.changed() => return,
            }
            if !stalled {
                break;
            }
        }
        // A cut also ends a write blocked on a peer that does not read (a stopped server).
        tokio::select! {
            written = to.write_all(&buf[..n]) => if written.is_err() { return },
            _ = cuts.changed() => return,
        }
    }
}
