//! The Aether side of the kv benchmark: starting a 3-node cluster and asking it for its state
//! (leader, health, a restarted node back) over the admin socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use aether::admin::client::Client;
use aether::admin::protocol::{AdminRequest, AdminResponse, StatusView};

use crate::daemon::{Daemon, Ports, wait_for};

pub(crate) struct AetherNode {
    name: String,
    dir: PathBuf,
    quic: SocketAddr,
    pub(crate) daemon: Daemon,
}

impl AetherNode {
    fn socket(&self) -> PathBuf {
        self.dir.join("aether.sock")
    }
}

pub(crate) struct AetherCluster {
    pub(crate) nodes: Vec<AetherNode>,
}

async fn aether_status(sock: &Path) -> Result<StatusView> {
    let mut c = Client::connect(sock).await?;
    match tokio::time::timeout(Duration::from_secs(3), c.call(&AdminRequest::Status))
        .await
        .map_err(|_| anyhow!("status timed out"))??
    {
        AdminResponse::Status(s) => Ok(*s),
        other => bail!("unexpected answer to Status: {other:?}"),
    }
}

impl AetherCluster {
    pub(crate) async fn start(bin: &Path, base: &Path, ports: &mut Ports) -> Result<AetherCluster> {
        if !bin.exists() {
            bail!(
                "aether binary '{}' not found: run 'cargo build --release' or pass --aether-bin / AETHER_BIN",
                bin.display()
            );
        }
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let name = format!("n{i}");
            let dir = base.join(&name);
            let quic: SocketAddr = format!("127.0.0.1:{}", ports.udp()?).parse()?;
            let http = format!("127.0.0.1:{}", ports.tcp()?);
            let args = vec![
                "--data-dir".into(),
                dir.display().to_string(),
                "node".into(),
                "--name".into(),
                name.clone(),
                "--listen".into(),
                quic.to_string(),
                "--http".into(),
                http,
            ];
            let daemon = Daemon::new(
                &format!("aether {name}"),
                bin,
                args,
                base.join(format!("{name}.log")),
            );
            nodes.push(AetherNode {
                name,
                dir,
                quic,
                daemon,
            });
        }
        let mut cl = AetherCluster { nodes };
        cl.nodes[0].daemon.start()?;
        let sock1 = cl.nodes[0].socket();
        // Joins are refused until the founder has written the cluster record, which comes a
        // moment after it is ready.
        let n1 = &cl.nodes[0].daemon;
        wait_for(
            "aether n1 leads its new cluster and has written the cluster record",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let sock1 = sock1.clone();
                async move {
                    n1.ensure_running()?;
                    let s = aether_status(&sock1).await?;
                    Ok((s.node.ready && s.cluster_id.is_some()).then_some(()))
                }
            },
        )
        .await
        .map_err(|e| e.context(n1.log_tail()))?;
        let token = {
            let mut c = Client::connect(&sock1).await?;
            match c
                .call(&AdminRequest::TokenCreate {
                    ttl_ms: Some(3_600_000),
                    uses: 2,
                })
                .await?
            {
                AdminResponse::Token(t) => t.token,
                other => bail!("unexpected answer to TokenCreate: {other:?}"),
            }
        };
        let first = cl.nodes[0].quic.to_string();
        for n in &mut cl.nodes[1..] {
            n.daemon.args.extend([
                "--join".into(),
                first.clone(),
                "--token".into(),
                token.clone(),
            ]);
            n.daemon.start()?;
        }
        let r = wait_for(
            "the aether cluster has 3 reachable voters and a leader",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let (sock1, nodes) = (sock1.clone(), &cl.nodes);
                async move {
                    nodes.iter().try_for_each(|n| n.daemon.ensure_running())?;
                    Ok(healthy_aether(&aether_status(&sock1).await?).then_some(()))
                }
            },
        )
        .await;
        if let Err(e) = r {
            let logs: String = cl
                .nodes
                .iter()
                .map(|n| format!("  {}:\n{}", n.name, n.daemon.log_tail()))
                .collect();
            return Err(e.context(logs));
        }
        // A restart must not join again: drop --join/--token.
        for n in &mut cl.nodes[1..] {
            n.daemon.args.truncate(n.daemon.args.len() - 4);
        }
        Ok(cl)
    }

    /// Index of the current leader, asked of any live node.
    pub(crate) async fn leader(&self) -> Result<usize> {
        for n in &self.nodes {
            if n.daemon.child.is_none() {
                continue;
            }
            if let Ok(s) = aether_status(&n.socket()).await {
                if let Some(l) = s.leader {
                    return self
                        .nodes
                        .iter()
                        .position(|n| n.name == l.name)
                        .ok_or_else(|| anyhow!("unknown leader {}", l.name));
                }
            }
        }
        bail!("no node knows a leader")
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.daemon.child.as_ref().map(|c| c.id()))
            .collect()
    }

    pub(crate) fn sockets(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.socket()).collect()
    }

    pub(crate) fn check_alive(&mut self) -> Result<()> {
        self.nodes
            .iter_mut()
            .try_for_each(|n| n.daemon.check_alive())
    }

    /// Wait until the restarted node `i` is back: the leader replicates to it again (its matched
    /// index, as the leader sees it, reaches the leader's commit index as of the restart), it
    /// knows the leader and has applied what it knows to be committed, and the leader sees 3
    /// reachable voters.
    pub(crate) async fn wait_rejoined(&self, i: usize) -> Result<()> {
        let name = self.nodes[i].name.clone();
        let survivors: Vec<PathBuf> = (0..3)
            .filter(|j| *j != i)
            .map(|j| self.nodes[j].socket())
            .collect();
        let since = wait_for(
            "the surviving aether nodes know a leader",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                for s in &survivors {
                    if let Ok(st) = aether_status(s).await {
                        if st.leader.is_some() {
                            return Ok(Some(st.commit_index.unwrap_or(0)));
                        }
                    }
                }
                Ok(None)
            },
        )
        .await?;
        wait_for(
            &format!(
                "aether {name} is back (the leader replicates to it past index {since}) and the cluster has 3 reachable voters"
            ),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async {
                self.nodes[i].daemon.ensure_running()?;
                let mine = aether_status(&self.nodes[i].socket()).await?;
                let Some(leader) = mine.leader.clone() else {
                    return Ok(None);
                };
                if !mine.node.ready {
                    return Ok(None);
                }
                let lnode = self
                    .nodes
                    .iter()
                    .find(|n| n.name == leader.name)
                    .ok_or_else(|| anyhow!("unknown leader {}", leader.name))?;
                let ls = aether_status(&lnode.socket()).await?;
                let matched = ls.members.iter().find(|m| m.name == name).and_then(|m| m.matched_index);
                let same_leader = ls.leader.as_ref().is_some_and(|l| l.name == leader.name);
                Ok((same_leader && healthy_aether(&ls) && matched.is_some_and(|m| m >= since)).then_some(()))
            },
        )
        .await
    }
}

/// 3 voters, all reachable, and a leader.
fn healthy_aether(s: &StatusView) -> bool {
    s.leader.is_some()
        && s.members
            .iter()
            .filter(|m| m.role == "voter" && m.reachable == Some(true))
            .count()
            == 3
}
