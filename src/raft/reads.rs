//! The read side of the state machine: consistent reads of this node's replica that views and
//! loops use (members, blueprints, assignments, decisions, audit, kv).

use std::collections::BTreeMap;

use openraft::LogId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Deserialize;

use super::apply::ClusterMeta;
use super::store::{
    ASSIGNMENTS, AUDIT, BLUEPRINT_VERSIONS, BLUEPRINTS, DECISIONS, FLEXIBLE, HEALTH, INSTANCES, KV,
    NODES, OPERATORS, POWER, ROLLOUTS, ROLLOUTS_OPEN, SM_META, SPOT_NOTICES, Store, TOKENS, dec,
    io,
};
use super::txn::K_CONTROL;
use super::txn::{K_APPLIED, K_CLUSTER};
use crate::domain::{
    Assignment, AuditRecord, Health, InstanceStatus, Millis, NodeId, NodeRecord, SpotNotice,
    StoredBlueprint, TokenRecord,
};

impl Store {
    fn scan<K: redb::Key + 'static, T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<K, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), what)?);
        }
        Ok(out)
    }

    /// The last applied log id.
    pub fn applied_log_id(&self) -> Result<Option<LogId<NodeId>>, std::io::Error> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(SM_META, K_APPLIED)?
            .flatten())
    }

    /// The cluster record, once the founder wrote it.
    pub fn cluster(&self) -> Result<Option<ClusterMeta>, std::io::Error> {
        self.read_meta(SM_META, K_CLUSTER)
    }

    /// Every join token, by id.
    pub fn tokens(&self) -> Result<Vec<crate::domain::TokenRecord>, std::io::Error> {
        self.scan(TOKENS, "token")
    }

    /// The flexible slices of the stored blueprints, by `blueprint/slice`.
    pub fn flexible(&self) -> Result<Vec<crate::domain::FlexibleRecord>, std::io::Error> {
        self.scan(FLEXIBLE, "flexible slice")
    }

    /// Every operator certificate record, by name.
    pub fn operators(&self) -> Result<Vec<crate::domain::OperatorRecord>, std::io::Error> {
        self.scan(OPERATORS, "operator")
    }

    /// Operator `name`'s record, read from this node's replica: the check every remote request
    /// makes, so a revocation takes effect here as soon as it is applied here.
    pub fn operator(
        &self,
        name: &str,
    ) -> Result<Option<crate::domain::OperatorRecord>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(OPERATORS).map_err(io)?;
        t.get(name)
            .map_err(io)?
            .map(|v| dec(v.value(), "operator"))
            .transpose()
    }

    /// Every member record, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, std::io::Error> {
        self.scan(NODES, "node")
    }

    /// Every row of `table`, by key (`key` makes an owned key of a stored one).
    fn scan_map<K: redb::Key + 'static, O: Ord, T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<K, &[u8]>,
        what: &str,
        key: impl Fn(K::SelfType<'_>) -> O,
    ) -> Result<BTreeMap<O, T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        let mut out = BTreeMap::new();
        for row in t.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            out.insert(key(k.value()), dec(v.value(), what)?);
        }
        Ok(out)
    }

    /// Members whose health is not `ready` (a member absent here is ready).
    pub fn health(&self) -> Result<BTreeMap<NodeId, Health>, std::io::Error> {
        self.scan_map(HEALTH, "health", |k| k)
    }

    /// What a cloud announced about members' machines, by member (absent: nothing).
    pub fn spot_notices(&self) -> Result<BTreeMap<NodeId, SpotNotice>, std::io::Error> {
        self.scan_map(SPOT_NOTICES, "spot notice", |k| k)
    }

    /// Each node's sleep-and-wake record, by node id (nodes that never slept have none).
    pub fn power(&self) -> Result<BTreeMap<NodeId, crate::domain::PowerRecord>, std::io::Error> {
        self.scan_map(POWER, "power record", |k| k)
    }

    /// Every stored blueprint, by name.
    pub fn blueprints(&self) -> Result<Vec<StoredBlueprint>, std::io::Error> {
        self.scan(BLUEPRINTS, "blueprint")
    }

    /// Every assignment, by instance key.
    pub fn assignments(&self) -> Result<BTreeMap<String, Assignment>, std::io::Error> {
        self.scan_map(ASSIGNMENTS, "assignment", |k: &str| k.to_string())
    }

    /// Every kept rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<crate::domain::Rollout>, std::io::Error> {
        self.scan(ROLLOUTS, "rollout")
    }

    /// The open rollouts (running, paused, failed and holding), oldest first: read from their
    /// index, without the closed ones.
    pub fn open_rollouts(&self) -> Result<Vec<crate::domain::Rollout>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let open = txn.open_table(ROLLOUTS_OPEN).map_err(io)?;
        let all = txn.open_table(ROLLOUTS).map_err(io)?;
        let mut out = Vec::new();
        for row in open.iter().map_err(io)? {
            let (id, _) = row.map_err(io)?;
            if let Some(v) = all.get(id.value()).map_err(io)? {
                out.push(dec(v.value(), "rollout")?);
            }
        }
        Ok(out)
    }

    /// Version `version` of blueprint `name`, if it is kept (the stored one, one that copies
    /// or a rollout still run, or one of the newest).
    pub fn blueprint_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredBlueprint>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(BLUEPRINT_VERSIONS).map_err(io)?;
        let v = t
            .get(super::rollouts::version_key(name, version).as_str())
            .map_err(io)?;
        v.map(|v| dec(v.value(), "blueprint version")).transpose()
    }

    /// The kept versions of blueprint `name`, oldest first.
    pub fn blueprint_versions(&self, name: &str) -> Result<Vec<StoredBlueprint>, std::io::Error> {
        let prefix = format!("{name}@");
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(BLUEPRINT_VERSIONS).map_err(io)?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_str()..).map_err(io)? {
            let (k, v) = row.map_err(io)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(dec(v.value(), "blueprint version")?);
        }
        Ok(out)
    }

    /// The controller's mode, grace window and pause (the defaults until someone set them).
    pub fn control(&self) -> Result<crate::domain::ControlState, std::io::Error> {
        Ok(self.read_meta(SM_META, K_CONTROL)?.unwrap_or_default())
    }

    /// Up to `limit` decisions, newest first; only the open ones (proposed, pending) and those
    /// of the last `recent_ms` unless `all`.
    pub fn decisions(
        &self,
        limit: usize,
        all: bool,
        recent_ms: u64,
        now: Millis,
    ) -> Result<Vec<crate::domain::Decision>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(DECISIONS).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = row.map_err(io)?;
            let d: crate::domain::Decision = dec(v.value(), "decision")?;
            if all || d.status.is_open() || now.saturating_sub(d.at) <= recent_ms {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The newest stored decision that `pick` picks, over all of them (newest first): for a
    /// record that may have scrolled out of the recent ones.
    pub fn find_decision(
        &self,
        pick: impl Fn(&crate::domain::Decision) -> bool,
    ) -> Result<Option<crate::domain::Decision>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(DECISIONS).map_err(io)?;
        for row in t.iter().map_err(io)?.rev() {
            let (_, v) = row.map_err(io)?;
            let d: crate::domain::Decision = dec(v.value(), "decision")?;
            if pick(&d) {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// One decision.
    pub fn decision(&self, id: u64) -> Result<Option<crate::domain::Decision>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(DECISIONS).map_err(io)?;
        let v = t.get(id).map_err(io)?;
        v.map(|v| dec(v.value(), "decision")).transpose()
    }

    /// Every reported instance status, by instance then node.
    pub fn instances(&self) -> Result<Vec<InstanceStatus>, std::io::Error> {
        self.scan(INSTANCES, "instance status")
    }

    /// One join token record.
    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(TOKENS).map_err(io)?;
        t.get(id)
            .map_err(io)?
            .map(|v| dec(v.value(), "token"))
            .transpose()
    }

    /// Audit records after `seq` (all when `None`), oldest first, at most the newest `n`.
    pub fn audit_after(
        &self,
        seq: Option<u64>,
        n: usize,
    ) -> Result<Vec<AuditRecord>, std::io::Error> {
        let Some(seq) = seq else {
            return self.audit(n);
        };
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(AUDIT).map_err(io)?;
        let mut out = Vec::new();
        for row in t.range(seq + 1..).map_err(io)?.rev().take(n) {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), "audit record")?);
        }
        out.reverse();
        Ok(out)
    }

    /// The newest `n` audit records, oldest first.
    pub fn audit(&self, n: usize) -> Result<Vec<AuditRecord>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(AUDIT).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)?.rev().take(n) {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), "audit record")?);
        }
        out.reverse();
        Ok(out)
    }

    /// A kv value.
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    /// kv pairs whose key starts with `prefix`, in key order, at most `limit`.
    pub fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(io)? {
            let (k, v) = row.map_err(io)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

// ---- snapshots ----
