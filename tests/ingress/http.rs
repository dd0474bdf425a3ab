//! A small HTTP/1.1 client for the tests (std only): one request on a new connection, and a
//! load of keep-alive connections that counts every answer until told to stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A response: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_answer(r: &mut BufReader<TcpStream>) -> Result<Answer, String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("reading status: {e}"))?;
    if line.is_empty() {
        return Err("connection closed before a response".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)
            .map_err(|e| format!("reading headers: {e}"))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)
        .map_err(|e| format!("reading body: {e}"))?;
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `method path` on a new connection to `addr`, with `body`.
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Result<Answer, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write: {e}"))?;
    read_answer(&mut BufReader::new(s))
}

pub fn get(addr: &str, path: &str) -> Result<Answer, String> {
    request(addr, "GET", path, "")
}

/// Keep-alive GETs from several threads until stopped (or `limit` passes).
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: &str, path: &str, threads: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let (addr, path) = (addr.to_string(), path.to_string());
                std::thread::spawn(move || {
                    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        if conn.is_none() {
                            match TcpStream::connect(&addr) {
                                Ok(s) => {
                                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                                    let r = BufReader::new(s.try_clone().unwrap());
                                    conn = Some((s, r));
                                }
                                Err(e) => {
                                    failures.lock().unwrap().push(format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            }
                        }
                        let (w, r) = conn.as_mut().unwrap();
                        let sent = write!(w, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                        let answer = sent
                            .map_err(|e| format!("write: {e}"))
                            .and_then(|_| read_answer(r));
                        match answer {
                            Ok(a) if a.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(a) => {
                                failures.lock().unwrap().push(format!(
                                    "{}: {}",
                                    a.status,
                                    a.body.trim()
                                ));
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(e);
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Stop and wait for the threads; (answered 200, failures).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.ok(), self.failures())
    }
}
