//! Group proposals: concurrent writes on the leader share one log entry.
//!
//! openraft 0.9 turns every `client_write` into its own entry, append and replication round, so
//! a busy leader spends its time per entry. The batcher keeps at most [`MAX_IN_FLIGHT`] proposals
//! in flight; writes that arrive meanwhile queue up and go out together as one
//! [`Command::Batch`]. Each inner request keeps its own id, at-most-once session and audit record
//! (see the state machine), so batching changes no answer. A lone write goes out as itself.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::Raft;
use super::types::{Command, Request, RequestId, Response};
use crate::domain::{NodeId, now_millis};

/// Proposals in flight at once. While they wait for a quorum, new writes gather for the next.
pub const MAX_IN_FLIGHT: usize = 2;
/// Most writes in one entry.
pub const MAX_BATCH: usize = 256;

/// The result of one proposal, as openraft reports it.
pub type Outcome = Result<Response, RaftError<NodeId, ClientWriteError<NodeId, super::Node>>>;

type Waiter = (Request, oneshot::Sender<Outcome>);

/// Handle to the batching task.
pub struct Batcher {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Batcher {
    /// Start the batching task for `raft`.
    pub fn spawn(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Propose `req`, possibly together with others, and wait for its own answer.
    pub async fn propose(&self, req: Request) -> Outcome {
        let (done, rx) = oneshot::channel();
        if self.tx.send((req, done)).is_err() {
            return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        }
        rx.await
            .unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped)))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut serial = 0u64;
    let client: u128 = rand::random();
    while let Some(first) = rx.recv().await {
        // Waiting for a free slot is what lets later writes gather behind this one.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        serial += 1;
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose_batch(&raft, batch, RequestId { client, serial }).await;
        });
    }
}

async fn propose_batch(raft: &Raft, mut batch: Vec<Waiter>, id: RequestId) {
    if batch.len() == 1 {
        let (req, done) = batch.pop().expect("one");
        let _ = done.send(raft.client_write(req).await.map(|r| r.data));
        return;
    }
    let (reqs, waiters): (Vec<Request>, Vec<oneshot::Sender<Outcome>>) = batch.into_iter().unzip();
    let n = reqs.len();
    let outer = Request {
        id,
        actor: "batch".into(),
        at: now_millis(),
        cmd: Command::Batch(reqs),
    };
    match raft.client_write(outer).await.map(|r| r.data) {
        Ok(Response::Batch(answers)) if answers.len() == n => {
            for (done, answer) in waiters.into_iter().zip(answers) {
                let _ = done.send(Ok(answer));
            }
        }
        Ok(other) => {
            let msg = format!("a batch of {n} writes was answered with {other:?}");
            for done in waiters {
                let _ = done.send(Ok(Response::Refused(msg.clone())));
            }
        }
        Err(e) => {
            for done in waiters {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}
