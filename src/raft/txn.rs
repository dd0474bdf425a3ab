//! Helpers on a state-machine write transaction that the apply families share: the keys of
//! `SM_META` and typed access to them, and the ready members.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::store::{NODES, SM_META, dec, enc, io};
use crate::domain::{NodeRecord, NodeState};

// Keys of SM_META.
pub(super) const K_APPLIED: &str = "applied";
pub(super) const K_MEMBERSHIP: &str = "membership";
pub(super) const K_CLUSTER: &str = "cluster";
pub(super) const K_SNAPSHOT: &str = "snapshot";
pub(super) const K_AUDIT_SEQ: &str = "audit_seq";
/// The last placement number given out (`Assignment::placement`).
pub(super) const K_PLACEMENT_SEQ: &str = "placement_seq";
/// The controller's stored state (`ControlState`).
pub(super) const K_CONTROL: &str = "control";
/// The last decision id given out.
pub(super) const K_DECISION_SEQ: &str = "decision_seq";
/// The last rollout id given out.
pub(super) const K_ROLLOUT_SEQ: &str = "rollout_seq";

pub(super) fn meta_get<T: for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    key: &str,
) -> Result<Option<T>, std::io::Error> {
    let t = txn.open_table(SM_META).map_err(io)?;
    let v = t.get(key).map_err(io)?;
    v.map(|v| dec(v.value(), key)).transpose()
}

pub(super) fn meta_put<T: Serialize>(
    txn: &WriteTransaction,
    key: &str,
    v: &T,
) -> Result<(), std::io::Error> {
    txn.open_table(SM_META)
        .map_err(io)?
        .insert(key, enc(v).as_slice())
        .map_err(io)?;
    Ok(())
}

/// Members whose state is `ready`.
pub(super) fn ready_nodes(txn: &WriteTransaction) -> Result<Vec<NodeRecord>, std::io::Error> {
    let t = txn.open_table(NODES).map_err(io)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(io)? {
        let (_, v) = row.map_err(io)?;
        let rec: NodeRecord = dec(v.value(), "node")?;
        if rec.state == NodeState::Ready {
            out.push(rec);
        }
    }
    Ok(out)
}
