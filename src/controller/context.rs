//! The words around a proposal (issue 21): what the reviewer reads beside the numbers. The
//! core ([`gather`]) picks, from records the leader already holds, the events and notes that
//! concern the proposal's target; the loop adds the slice's last log lines ([`logs`]), read
//! from the nodes that run its instances within a short bound.

use std::time::Duration;

use super::review::{Context, Event, LogLine, Note};
use crate::domain::{Action, AuditRecord, Decision, DecisionStatus, InstanceStatus, Millis};

/// Most events, notes and log lines kept (the prompt shapes fewer).
const KEEP: usize = 12;
/// Log lines read per instance.
const LINES_PER_INSTANCE: u32 = 8;
/// Instances whose logs are read.
const INSTANCES: usize = 4;
/// Longest wait for a remote node's log lines: the review's budget is counted meanwhile.
pub const LOG_WAIT: Duration = Duration::from_millis(250);
/// Records older than this are not shown.
const HORIZON_MS: Millis = 6 * 3_600_000;

/// The events and notes about the proposal's target: its instances' restarts and exits, audit
/// records that name its blueprint or node (applies, rollouts, scales, drains, joins) and the
/// reasons of vetoes of the same target. (A pause reason never shows: a paused controller
/// makes no proposals to review.)
pub fn gather(
    action: &Action,
    now: Millis,
    audit: &[AuditRecord],
    statuses: &[InstanceStatus],
    decisions: &[Decision],
    node_name: impl Fn(u64) -> String,
) -> Context {
    let target = action.target();
    let (blueprint, slice_prefix) = match action {
        Action::Scale {
            blueprint, slice, ..
        }
        | Action::Rollback {
            blueprint, slice, ..
        } => (
            Some(blueprint.clone()),
            Some(format!("{blueprint}/{slice}/")),
        ),
        _ => (None, None),
    };
    let recent = |at: Millis| now.saturating_sub(at) <= HORIZON_MS;
    let mut c = Context::default();
    for s in statuses {
        let mine = match (&slice_prefix, action) {
            (Some(p), _) => s.instance.starts_with(p),
            (
                None,
                Action::Drain { node, .. }
                | Action::Undrain { node, .. }
                | Action::Sleep { node, .. }
                | Action::Wake { node, .. },
            ) => s.node == *node,
            _ => false,
        };
        if !mine || !recent(s.since) {
            continue;
        }
        if s.restarts > 0 || s.last_exit.is_some() {
            let mut what = format!("{} on {} is {}", s.instance, node_name(s.node), s.state);
            if s.restarts > 0 {
                what.push_str(&format!(", {} restarts", s.restarts));
            }
            if let Some(e) = &s.last_exit {
                what.push_str(&format!(", last exit: {e}"));
            }
            c.events.push(Event { at: s.since, what });
        }
    }
    let words: Vec<String> = match action {
        Action::Drain { name, .. }
        | Action::Undrain { name, .. }
        | Action::Sleep { name, .. }
        | Action::Wake { name, .. } => vec![name.clone()],
        _ => blueprint.into_iter().collect(),
    };
    for a in audit.iter().filter(|a| recent(a.at) && telling(&a.what)) {
        let names = a
            .what
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '-'))
            .any(|w| words.iter().any(|x| x == w));
        if names {
            let mut what = format!("{} by {}", a.what, a.actor);
            if a.outcome != "ok" {
                what.push_str(&format!(" (refused: {})", a.outcome));
            }
            c.events.push(Event { at: a.at, what });
        }
    }
    for d in decisions {
        if d.action.target() != target {
            continue;
        }
        if let DecisionStatus::Vetoed {
            at,
            by,
            reason: Some(r),
            ..
        } = &d.status
            && recent(*at)
        {
            c.notes.push(Note {
                at: *at,
                by: by.clone(),
                text: format!("vetoed {} {target}: {r}", d.action.verb()),
            });
        }
    }
    c.events.sort_by_key(|e| e.at);
    c.notes.sort_by_key(|n| n.at);
    let drop_old = |n: usize| n.saturating_sub(KEEP);
    c.events.drain(..drop_old(c.events.len()));
    c.notes.drain(..drop_old(c.notes.len()));
    c
}

/// The records an operator would call events: changes to blueprints, counts, rollouts and
/// nodes (not the leader's placement and the nodes' instance reports).
fn telling(what: &str) -> bool {
    const KINDS: &[&str] = &[
        "apply blueprint",
        "remove blueprint",
        "scale ",
        "rollout",
        "drain",
        "undrain",
        "mark node",
        "add node",
        "join",
        "remove node",
    ];
    KINDS.iter().any(|k| what.starts_with(k))
}

/// The instances whose logs are read for a scale of `blueprint/slice`: those of the slice,
/// crashed or restarted ones first, at most [`INSTANCES`].
pub fn log_sources(action: &Action, statuses: &[InstanceStatus]) -> Vec<(String, u64)> {
    let Action::Scale {
        blueprint, slice, ..
    } = action
    else {
        return Vec::new();
    };
    let prefix = format!("{blueprint}/{slice}/");
    let mut mine: Vec<&InstanceStatus> = statuses
        .iter()
        .filter(|s| s.instance.starts_with(&prefix))
        .collect();
    mine.sort_by_key(|s| (std::cmp::Reverse(s.restarts), s.instance.clone()));
    mine.iter()
        .take(INSTANCES)
        .map(|s| (s.instance.clone(), s.node))
        .collect()
}

/// Split the text read from `instance`'s log into lines, at `now` (log files carry no times
/// of their own beyond what the program wrote).
pub fn lines(instance: &str, data: &str, now: Millis) -> Vec<LogLine> {
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| LogLine {
            at: now,
            instance: instance.to_string(),
            line: l.chars().take(400).collect(),
        })
        .collect()
}

/// The last lines of each source's log, read here or asked of its node, all at once and within
/// [`LOG_WAIT`]; a node that does not answer in time is left out.
pub async fn logs(
    cluster: &crate::raft::Cluster,
    sources: Vec<(String, u64)>,
    addr_of: impl Fn(u64) -> Option<String>,
    now: Millis,
) -> Vec<LogLine> {
    use crate::deploy::logs::{LogReply, LogRequest, ROUTE, read_local};
    let reads = sources.into_iter().map(|(instance, node)| {
        let addr = addr_of(node);
        async move {
            let read = if node == cluster.id {
                read_local(cluster.data_dir(), &instance, None, LINES_PER_INSTANCE)
                    .await
                    .ok()
            } else if let Some(addr) = addr {
                let req = LogRequest {
                    instance: instance.clone(),
                    offset: None,
                    tail: LINES_PER_INSTANCE,
                };
                cluster
                    .ep
                    .call::<_, LogReply>(&addr, ROUTE, &req, Some(LOG_WAIT))
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            read.map(|(data, _)| lines(&instance, &data, now))
                .unwrap_or_default()
        }
    });
    let all = futures::future::join_all(reads.map(|r| tokio::time::timeout(LOG_WAIT, r)));
    let mut out: Vec<LogLine> = all.await.into_iter().flatten().flatten().collect();
    let n = out.len().saturating_sub(KEEP * 2);
    out.drain(..n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceState;

    fn status(instance: &str, node: u64, restarts: u32, exit: Option<&str>) -> InstanceStatus {
        InstanceStatus {
            instance: instance.into(),
            node,
            placement: 1,
            state: InstanceState::Active,
            port: 0,
            pid: None,
            restarts,
            last_exit: exit.map(Into::into),
            health: String::new(),
            since: 9_000_000,
            gpus: vec![],
        }
    }

    #[test]
    fn the_context_names_the_targets_restarts_records_and_veto_reasons() {
        let action = Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from: 2,
            to: 4,
        };
        let statuses = vec![
            status("shop/web/0", 1, 4, Some("oom-killed")),
            status("shop/web/1", 2, 0, None),
            status("shop/api/0", 1, 9, Some("exit code 1")),
        ];
        let audit = vec![
            AuditRecord {
                seq: 1,
                at: 9_500_000,
                actor: "uid:0@n1".into(),
                what: "apply blueprint shop (2 slices, 3 instances)".into(),
                outcome: "ok".into(),
            },
            AuditRecord {
                seq: 2,
                at: 9_600_000,
                actor: "uid:0@n1".into(),
                what: "apply blueprint shopfront (1 slices, 1 instances)".into(),
                outcome: "ok".into(),
            },
        ];
        let c = gather(&action, 10_000_000, &audit, &statuses, &[], |n| {
            format!("n{n}")
        });
        let events: Vec<&str> = c.events.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            events,
            vec![
                "shop/web/0 on n1 is active, 4 restarts, last exit: oom-killed",
                "apply blueprint shop (2 slices, 3 instances) by uid:0@n1",
            ],
            "its own instance and the record naming its blueprint, not 'shopfront' or shop/api"
        );
        assert!(c.notes.is_empty());
        let sources = log_sources(&action, &statuses);
        assert_eq!(
            sources,
            vec![("shop/web/0".to_string(), 1), ("shop/web/1".to_string(), 2)],
            "the restarted instance first"
        );
    }

    #[test]
    fn log_text_becomes_lines_without_blanks() {
        let l = lines("a/b/0", "one\n\n  \ntwo\n", 5);
        assert_eq!(
            l.iter().map(|x| x.line.as_str()).collect::<Vec<_>>(),
            vec!["one", "two"]
        );
    }
}
