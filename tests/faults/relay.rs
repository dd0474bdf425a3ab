//! Partitions for nodes on one machine: a UDP relay in front of each node's QUIC port. Every node
//! advertises its relay's address (`AETHER_ADVERTISE`), so its peers reach it only through the
//! relay; the relay forwards to the real port and drops the packets of blocked links.
//!
//! A packet's sender is known by its source port: a node's QUIC endpoint dials from the port it
//! listens on. For each sender the relay keeps an upstream socket (so the node's answers find the
//! way back), and checks the link (sender → node) one way and (node → sender) the other.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The relays of a cluster and the links they drop.
pub struct Net {
    shared: Arc<Shared>,
    /// Relay `i`'s address: where peers reach node `i`.
    pub addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    /// Node `i`'s real QUIC port, to tell senders apart.
    ports: Vec<u16>,
    /// Blocked links (from, to) by node index.
    blocked: Mutex<BTreeSet<(usize, usize)>>,
    stop: AtomicBool,
    /// Packets dropped, for the test's log.
    dropped: AtomicU64,
}

impl Shared {
    fn node_of(&self, a: SocketAddr) -> Option<usize> {
        self.ports.iter().position(|p| *p == a.port())
    }

    fn pass(&self, from: Option<usize>, to: usize) -> bool {
        let Some(from) = from else { return true };
        let ok = !self.blocked.lock().unwrap().contains(&(from, to));
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

const POLL: Duration = Duration::from_millis(100);

impl Net {
    /// One relay per port in `ports` (the nodes' real QUIC ports on 127.0.0.1).
    pub fn new(ports: &[u16]) -> Net {
        let shared = Arc::new(Shared {
            ports: ports.to_vec(),
            blocked: Mutex::default(),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
            listen.set_read_timeout(Some(POLL)).unwrap();
            addrs.push(listen.local_addr().unwrap());
            let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || relay(i, listen, target, shared)));
        }
        Net {
            shared,
            addrs,
            threads,
        }
    }

    /// Split the nodes into `side` and the rest: no packet crosses, both ways.
    pub fn split(&self, side: &[usize]) {
        let n = self.shared.ports.len();
        let mut b = self.shared.blocked.lock().unwrap();
        for i in side {
            for j in (0..n).filter(|j| !side.contains(j)) {
                b.insert((*i, j));
                b.insert((j, *i));
            }
        }
    }

    /// Every link open again.
    pub fn heal(&self) {
        self.shared.blocked.lock().unwrap().clear();
    }

    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Relay for node `me`: packets to `listen` go to `target` through one upstream socket per sender.
fn relay(me: usize, listen: UdpSocket, target: SocketAddr, shared: Arc<Shared>) {
    let listen = Arc::new(listen);
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let (len, src) = match listen.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            // E.g. ECONNREFUSED from an earlier send: keep relaying.
            Err(_) => continue,
        };
        let from = shared.node_of(src);
        if !shared.pass(from, me) {
            continue;
        }
        let up = upstream.entry(src).or_insert_with(|| {
            let up = UdpSocket::bind("127.0.0.1:0").unwrap();
            up.connect(target).unwrap();
            up.set_read_timeout(Some(POLL)).unwrap();
            let up = Arc::new(up);
            let (up2, listen2, shared2) = (up.clone(), listen.clone(), shared.clone());
            back.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared2.stop.load(Ordering::Relaxed) {
                    let Ok(len) = up2.recv(&mut buf) else {
                        continue;
                    };
                    if from.is_none_or(|f| shared2.pass(Some(me), f)) {
                        let _ = listen2.send_to(&buf[..len], src);
                    }
                }
            }));
            up
        });
        // The node may be down (killed): the packet is lost, as on a network.
        let _ = up.send(&buf[..len]);
    }
    for t in back {
        let _ = t.join();
    }
}
