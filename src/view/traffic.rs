//! `aether traffic`: each slice's requests over the cluster as the answering node's metrics view
//! sums them (calls/s, error rate, latency quantiles per slice and entry point, each instance's
//! share, requests waiting), joined with the stored blueprints so that every declared entry
//! point has a row and a slice without a service says so. Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::Blueprint;
use crate::metrics::requests::{EntryTraffic, SliceTraffic};
use crate::raft::api::{ErrorKind, RequestError as AdminError};

/// `aether traffic`: the slices asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficView {
    /// The node that answered.
    pub seen_by: String,
    /// How long ago the answering node received (or, on the leader, built) its latest metrics
    /// snapshot; `None`: none yet.
    pub snapshot_age_ms: Option<u64>,
    /// The span rates and quantiles cover, seconds.
    pub window_secs: u64,
    pub slices: Vec<SliceTrafficView>,
}

/// One slice in [`TrafficView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceTrafficView {
    /// `blueprint/slice`.
    pub slice: String,
    /// The slice's service port; `None`: it declares no `[slices.service]`, so no request
    /// reaches it through the ingress.
    pub port: Option<u16>,
    /// Its traffic: every declared entry point (zero when idle), then any other entry called
    /// (`other`: requests that match none); instances by index with their share of the calls.
    pub traffic: SliceTraffic,
}

fn failed(m: String) -> AdminError {
    AdminError::new(ErrorKind::Failed, m)
}

/// Build the answer to `aether traffic [BLUEPRINT[/SLICE]]` from the stored `blueprints` and
/// the cluster's `traffic` (keyed by `blueprint/slice`). Without a target: every slice that
/// declares a service or has traffic. An unknown blueprint or slice is an error naming it and
/// how to list them.
pub fn traffic_view(
    blueprints: &[Blueprint],
    traffic: &BTreeMap<String, SliceTraffic>,
    target: Option<&str>,
    seen_by: &str,
    snapshot_age_ms: Option<u64>,
) -> Result<TrafficView, AdminError> {
    let (want_bp, want_slice) = match target {
        None => (None, None),
        Some(t) => {
            let (bp, slice) = match t.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (t, None),
            };
            if bp.is_empty() || slice.is_some_and(|s| s.is_empty() || s.contains('/')) {
                return Err(AdminError::new(
                    ErrorKind::Invalid,
                    format!("expected BLUEPRINT or BLUEPRINT/SLICE (e.g. shop/web), found '{t}'"),
                ));
            }
            (Some(bp), slice)
        }
    };
    if let Some(bp) = want_bp {
        let Some(b) = blueprints.iter().find(|b| b.name == bp) else {
            return Err(failed(format!(
                "no blueprint named '{bp}': 'aether blueprint list' shows the stored ones"
            )));
        };
        if let Some(s) = want_slice
            && !b.slices.iter().any(|x| x.name == s)
        {
            let names: Vec<&str> = b.slices.iter().map(|s| s.name.as_str()).collect();
            return Err(failed(format!(
                "blueprint '{bp}' has no slice '{s}'; its slices: {}",
                names.join(", ")
            )));
        }
    }
    let mut slices = Vec::new();
    for b in blueprints
        .iter()
        .filter(|b| want_bp.is_none_or(|n| b.name == n))
    {
        for s in b
            .slices
            .iter()
            .filter(|s| want_slice.is_none_or(|n| s.name == n))
        {
            let key = format!("{}/{}", b.name, s.name);
            let known = traffic.get(&key);
            // Asked for by name, a slice shows even without a service (the renderer says so).
            if s.service.is_none() && known.is_none() && want_slice.is_none() {
                continue;
            }
            let mut t = known.cloned().unwrap_or_else(|| SliceTraffic {
                slice: key.clone(),
                ..SliceTraffic::default()
            });
            // Declared entry points first, in their order (zero when idle), then the rest.
            let mut called: BTreeMap<String, EntryTraffic> = std::mem::take(&mut t.entries)
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect();
            for e in s.service.iter().flat_map(|svc| &svc.entry_points) {
                t.entries
                    .push(called.remove(&e.name).unwrap_or_else(|| EntryTraffic {
                        name: e.name.clone(),
                        ..EntryTraffic::default()
                    }));
            }
            t.entries.extend(called.into_values());
            slices.push(SliceTrafficView {
                slice: key,
                port: s.service.as_ref().map(|svc| svc.port),
                traffic: t,
            });
        }
    }
    Ok(TrafficView {
        seen_by: seen_by.into(),
        snapshot_age_ms,
        window_secs: crate::metrics::traffic::RATE_SECS,
        slices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryPoint, Resources, Service, Slice};

    fn slice(name: &str, service: Option<&[&str]>) -> Slice {
        Slice {
            name: name.into(),
            command: vec!["true".into()],
            instances: 1,
            min: 0,
            max: 4,
            env: Default::default(),
            resources: Resources {
                cpu: 0.5,
                memory: 1 << 20,
                gpu: 0,
            },
            stop_timeout_ms: 1000,
            health: None,
            scaling: None,
            service: service.map(|entries| Service {
                port: 8080,
                entry_points: entries
                    .iter()
                    .map(|e| EntryPoint {
                        name: e.to_string(),
                        path: format!("/{e}"),
                        method: None,
                    })
                    .collect(),
                timeout_ms: None,
            }),
            update: None,
            user: None,
        }
    }

    fn shop() -> Vec<Blueprint> {
        vec![Blueprint {
            name: "shop".into(),
            slices: vec![
                slice("web", Some(&["home", "checkout"])),
                slice("worker", None),
            ],
        }]
    }

    fn web_traffic() -> BTreeMap<String, SliceTraffic> {
        let entry = |name: &str, calls_per_s| EntryTraffic {
            name: name.into(),
            calls_per_s,
            p99_ms: Some(12.0),
            ..EntryTraffic::default()
        };
        BTreeMap::from([(
            "shop/web".to_string(),
            SliceTraffic {
                slice: "shop/web".into(),
                calls_per_s: 12.0,
                entries: vec![entry("other", 2.0), entry("checkout", 10.0)],
                ..SliceTraffic::default()
            },
        )])
    }

    #[test]
    fn every_declared_entry_point_has_a_row_and_services_only_unless_asked() {
        let v = traffic_view(&shop(), &web_traffic(), None, "n1", Some(300)).unwrap();
        assert_eq!(
            v.slices.len(),
            1,
            "a slice without a service is left out: {v:?}"
        );
        let names: Vec<(&str, f64)> = v.slices[0]
            .traffic
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.calls_per_s))
            .collect();
        assert_eq!(names, [("home", 0.0), ("checkout", 10.0), ("other", 2.0)]);
        assert_eq!(v.slices[0].port, Some(8080));
        let w = traffic_view(&shop(), &web_traffic(), Some("shop/worker"), "n1", None).unwrap();
        assert_eq!(w.slices.len(), 1);
        assert_eq!(
            (w.slices[0].port, w.slices[0].traffic.calls_per_s),
            (None, 0.0)
        );
        let all = traffic_view(&shop(), &BTreeMap::new(), Some("shop"), "n1", None).unwrap();
        assert_eq!(all.slices.len(), 1, "{all:?}");
    }

    #[test]
    fn unknown_names_are_errors_that_say_how_to_list_them() {
        let e = traffic_view(&shop(), &web_traffic(), Some("shap/web"), "n1", None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(
            e.message,
            "no blueprint named 'shap': 'aether blueprint list' shows the stored ones"
        );
        let e = traffic_view(&shop(), &web_traffic(), Some("shop/api"), "n1", None).unwrap_err();
        assert_eq!(
            e.message,
            "blueprint 'shop' has no slice 'api'; its slices: web, worker"
        );
        let e = traffic_view(&shop(), &web_traffic(), Some("shop/web/0"), "n1", None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("found 'shop/web/0'"), "{}", e.message);
    }
}
