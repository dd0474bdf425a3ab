//! The etcd side of the kv benchmark: starting a 3-member cluster and asking it for its state,
//! through a minimal HTTP/1.1 client for etcd's JSON gRPC gateway.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::daemon::{Daemon, Ports, wait_for};

pub(crate) struct EtcdMember {
    client: SocketAddr,
    pub(crate) daemon: Daemon,
}

pub(crate) struct EtcdCluster {
    pub(crate) members: Vec<EtcdMember>,
}

/// Minimal HTTP/1.1 keep-alive client: one connection, one request at a time.
pub(crate) struct Http {
    stream: BufReader<TcpStream>,
    host: String,
    buf: Vec<u8>,
}

impl Http {
    pub(crate) async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(s),
            host: addr.to_string(),
            buf: Vec::with_capacity(1024),
        })
    }

    /// POST a JSON body; answers the status code and the body.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{Error, ErrorKind::InvalidData};
        self.buf.clear();
        self.buf.extend_from_slice(
            format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.host, body.len()).as_bytes(),
        );
        self.buf.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.buf).await?;

        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(InvalidData, format!("bad status line {line:?}")))?;
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in headers",
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => len = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| Error::new(InvalidData, "bad chunk size"))?;
                let start = body.len();
                body.resize(start + n, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                self.stream.read_exact(&mut crlf).await?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else {
            return Err(Error::new(InvalidData, "response without length"));
        }
        if close {
            return Err(Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("server closed the connection (status {status})"),
            ));
        }
        Ok((status, body))
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What `/v3/maintenance/status` says: (this member's id, the leader's id, raft index).
async fn etcd_status(addr: SocketAddr) -> Result<(u64, u64, u64)> {
    let mut h = tokio::time::timeout(Duration::from_secs(2), Http::connect(addr)).await??;
    let (code, body) = tokio::time::timeout(
        Duration::from_secs(3),
        h.post("/v3/maintenance/status", b"{}"),
    )
    .await??;
    if code != 200 {
        bail!("status {code}: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    // The gateway prints 64-bit integers as strings.
    let num = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    Ok((
        num(&v["header"]["member_id"]),
        num(&v["leader"]),
        num(&v["raftIndex"]),
    ))
}

impl EtcdCluster {
    pub(crate) fn start(
        bin: &Path,
        base: &Path,
        ports: &mut Ports,
        election_ms: u64,
    ) -> Result<EtcdCluster> {
        let mut spec = Vec::new();
        for i in 1..=3 {
            spec.push((format!("e{i}"), ports.tcp()?, ports.tcp()?));
        }
        let initial: Vec<String> = spec
            .iter()
            .map(|(n, _, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for (name, cport, pport) in &spec {
            let args: Vec<String> = [
                "--name",
                name,
                "--data-dir",
                &base.join(name).display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{cport}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{cport}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{pport}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{pport}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "aether-bench",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                &election_ms.to_string(),
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut daemon = Daemon::new(
                &format!("etcd {name}"),
                bin,
                args,
                base.join(format!("{name}.log")),
            );
            daemon.start().with_context(|| format!("is etcd installed? (apt-get install etcd-server, or pass --etcd-bin / ETCD_BIN '{}')", bin.display()))?;
            members.push(EtcdMember {
                client: format!("127.0.0.1:{cport}").parse()?,
                daemon,
            });
        }
        Ok(EtcdCluster { members })
    }

    /// Every listed member answers and all agree on one leader; answers the leader's index and
    /// raft index.
    async fn agreed_leader(&self, which: &[usize]) -> Result<Option<(usize, u64)>> {
        let mut ids = Vec::new();
        let mut leaders = BTreeSet::new();
        let mut indexes = Vec::new();
        for &i in which {
            let (id, leader, idx) = etcd_status(self.members[i].client).await?;
            ids.push((i, id));
            leaders.insert(leader);
            indexes.push(idx);
        }
        if leaders.len() != 1 || leaders.contains(&0) {
            return Ok(None);
        }
        let leader = *leaders.iter().next().unwrap();
        let Some(&(li, _)) = ids.iter().find(|(_, id)| *id == leader) else {
            return Ok(None);
        };
        Ok(Some((li, indexes.iter().copied().max().unwrap_or(0))))
    }

    pub(crate) async fn wait_healthy(&self) -> Result<()> {
        wait_for(
            "the 3 etcd members answer and agree on a leader",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                self.members
                    .iter()
                    .try_for_each(|m| m.daemon.ensure_running())?;
                Ok(self.agreed_leader(&[0, 1, 2]).await?.map(|_| ()))
            },
        )
        .await
        .map_err(|e| {
            let logs: String = self
                .members
                .iter()
                .map(|m| format!("  {}:\n{}", m.daemon.name, m.daemon.log_tail()))
                .collect();
            e.context(logs)
        })
    }

    pub(crate) async fn leader(&self) -> Result<usize> {
        let alive: Vec<usize> = (0..3)
            .filter(|i| self.members[*i].daemon.child.is_some())
            .collect();
        self.agreed_leader(&alive)
            .await?
            .map(|(l, _)| l)
            .ok_or_else(|| anyhow!("etcd members do not agree on a leader"))
    }

    /// Wait until restarted member `i` is back: all 3 agree on a leader and it holds entries
    /// written after it restarted (the survivors' raft index then, plus a few), so the leader
    /// replicates to it again.
    pub(crate) async fn wait_rejoined(&self, i: usize) -> Result<()> {
        let survivors: Vec<usize> = (0..3).filter(|j| *j != i).collect();
        let (_, since) = wait_for(
            "the surviving etcd members agree on a leader",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || self.agreed_leader(&survivors),
        )
        .await?;
        wait_for(
            &format!("etcd e{} is back (holds raft index {} or later) and all 3 members agree on a leader", i + 1, since + 10),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async move {
                self.members[i].daemon.ensure_running()?;
                if self.agreed_leader(&[0, 1, 2]).await?.is_none() {
                    return Ok(None);
                }
                let (_, _, mine) = etcd_status(self.members[i].client).await?;
                Ok((mine >= since + 10).then_some(()))
            },
        )
        .await
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.daemon.child.as_ref().map(|c| c.id()))
            .collect()
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    pub(crate) fn check_alive(&mut self) -> Result<()> {
        self.members
            .iter_mut()
            .try_for_each(|m| m.daemon.check_alive())
    }
}
