//! Shaping: the situation as compact text the model can use, after a fixed system prefix (with
//! worked examples) whose KV cache is computed once at load and reused by every review. Pure;
//! the engine checks the token count against [`TOKEN_BUDGET`] and shapes again with less detail
//! when it is over.

use crate::controller::brain::SliceView;
use crate::controller::review::{Situation, Verdict};
use crate::domain::{Action, DecisionStatus, human_millis};

/// Most tokens the situation text may take (the fixed prefix is not counted: it is cached).
pub const TOKEN_BUDGET: usize = 400;

/// The fixed start of every prompt (ChatML, as the GGUF's chat template writes it): the task
/// and worked examples, ending where the situation begins. Cached once per load.
pub const SYSTEM: &str = "<|im_start|>system
You review an autoscaler's proposals for a server cluster. Reply with a verdict: approve when the action fits the load; reject when it repeats an action an operator vetoed, flaps back and forth, scales in on a forecast alone, or the load does not need it; adjust to N when a different instance count fits better. Then one short reason.<|im_end|>
<|im_start|>user
Proposal: drain node n2 (rule gpu-hot).
Node n2: ready, cpu 0.40, gpu 93C; 3 nodes ready.
Risks: none.<|im_end|>
<|im_start|>assistant
Verdict: approve
Reason: The GPU is overheating, so moving work off n2 is safe.<|im_end|>
<|im_start|>user
Proposal: scale_down shop/api from 6 to 3 (rule forecast).
Slice shop/api: 6 of 6 active, bounds 2..=10, cpu per instance 0.55 (target 0.60).
Risks: forecast only: a scale-in on a forecast alone.<|im_end|>
<|im_start|>assistant
Verdict: reject
Reason: The measured load does not support scaling in; only the forecast does.<|im_end|>
<|im_start|>user
Proposal: scale_up shop/web from 3 to 5 (rule cpu-high).
Slice shop/web: 3 of 3 active, bounds 1..=8, cpu per instance 0.80 (target 0.60).
Risks: operator vetoed d-12 (scale_up shop/web) 4m ago.<|im_end|>
<|im_start|>assistant
Verdict: reject
Reason: An operator vetoed the same scale-up minutes ago.<|im_end|>
<|im_start|>user
Proposal: scale_up shop/web from 2 to 4 (rule cpu-high).
Slice shop/web: 2 of 2 active, bounds 1..=8, cpu per instance 0.95 (target 0.60).
Risks: none.<|im_end|>
<|im_start|>assistant
Verdict: approve
Reason: CPU is far above target, so more instances are needed.<|im_end|>
<|im_start|>user
";

/// How the assistant's answer starts; the candidates follow it.
pub const ANSWER: &str = "<|im_end|>\n<|im_start|>assistant\nVerdict:";
/// Written after the chosen verdict; the reason is generated after it.
pub const REASON: &str = "\nReason:";
/// A situation with no content, for calibrating the candidates' prior.
pub const CONTENT_FREE: &str = "Proposal: N/A.\nRisks: N/A.";

/// How much to include; shaping again with a smaller detail fits the token budget.
#[derive(Debug, Clone, Copy)]
pub struct Detail {
    pub nodes: usize,
    pub recent: usize,
    pub reasoning: usize,
}

impl Detail {
    pub const FULL: Detail = Detail {
        nodes: 8,
        recent: 4,
        reasoning: 3,
    };

    /// The next smaller level, or `None` at the smallest.
    pub fn smaller(self) -> Option<Detail> {
        if self.nodes == 0 && self.recent == 0 && self.reasoning == 0 {
            return None;
        }
        Some(Detail {
            nodes: self.nodes / 2,
            recent: self.recent / 2,
            reasoning: self.reasoning.saturating_sub(1),
        })
    }
}

fn input<'a>(s: &'a Situation, key: &str) -> Option<&'a str> {
    s.proposal
        .inputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn slice(s: &Situation) -> Option<&SliceView> {
    match &s.proposal.action {
        Action::Scale {
            blueprint, slice, ..
        } => s
            .world
            .slices
            .iter()
            .find(|v| &v.blueprint == blueprint && &v.slice == slice),
        _ => None,
    }
}

/// What makes the proposal doubtful, in words; empty when nothing does.
pub fn risks(s: &Situation) -> Vec<String> {
    let p = &s.proposal;
    let target = p.action.target();
    let verb = p.action.verb();
    let now = s.world.now;
    let mut out = Vec::new();
    if p.rule == "forecast" && verb == "scale_down" {
        out.push("forecast only: a scale-in on a forecast alone".to_string());
    }
    if let Some(d) = s.recent.iter().find(|d| {
        matches!(d.status, DecisionStatus::Vetoed { .. })
            && d.action.target() == target
            && d.action.verb() == verb
    }) && let DecisionStatus::Vetoed { at, .. } = d.status
    {
        out.push(format!(
            "operator vetoed {} ({verb} {target}) {} ago",
            d.name(),
            human_millis(now.saturating_sub(at))
        ));
    }
    let opposite = match verb {
        "scale_up" => "scale_down",
        "scale_down" => "scale_up",
        "drain" => "undrain",
        _ => "drain",
    };
    let flips = s
        .recent
        .iter()
        .filter(|d| {
            d.action.target() == target
                && d.action.verb() == opposite
                && matches!(d.status, DecisionStatus::Applied { .. })
                && now.saturating_sub(d.at) < 15 * 60_000
        })
        .count();
    if flips > 0 {
        out.push(format!(
            "flapping: {flips} {opposite} of {target} applied in the last 15m"
        ));
    }
    if let Action::Drain { node, .. } = &p.action {
        let ready = s
            .world
            .nodes
            .iter()
            .filter(|n| n.state == crate::domain::NodeState::Ready && n.id != *node)
            .count();
        if ready == 0 {
            out.push("it would leave no ready node".into());
        }
    }
    out
}

/// The situation text (the user turn after [`SYSTEM`]).
pub fn shape(s: &Situation, detail: Detail) -> String {
    let p = &s.proposal;
    let mut t = String::new();
    let action = match &p.action {
        Action::Scale {
            blueprint,
            slice,
            from,
            to,
        } => format!(
            "{} {blueprint}/{slice} from {from} to {to}",
            p.action.verb()
        ),
        Action::Drain { name, .. } => format!("drain node {name}"),
        Action::Undrain { name, .. } => format!("undrain node {name}"),
        a @ Action::Rollback { .. } => a.to_string(),
    };
    t.push_str(&format!("Proposal: {action} (rule {}).\n", p.rule));
    if let Some(v) = slice(s) {
        t.push_str(&format!(
            "Slice {}/{}: {} of {} active, bounds {}..={}",
            v.blueprint, v.slice, v.active, v.desired, v.min, v.max
        ));
        if let Some(c) = input(s, "cpu_per_instance") {
            t.push_str(&format!(
                ", cpu per instance {c} (target {})",
                input(s, "target_cpu").unwrap_or("0.60")
            ));
        }
        if let Some(c) = input(s, "calls_per_s") {
            t.push_str(&format!(", {c} calls/s"));
            if let Some(per) = input(s, "calls_per_instance") {
                t.push_str(&format!(
                    " ({per} per instance, target {})",
                    input(s, "target_calls_per_instance").unwrap_or("?")
                ));
            }
            if let Some(p95) = input(s, "latency_p95_ms") {
                t.push_str(&format!(", p95 {p95} ms"));
            }
            if let Some(p99) = input(s, "latency_p99_ms") {
                t.push_str(&format!(", p99 {p99} ms"));
            }
            if let Some(goal) = input(s, "target_latency_ms") {
                t.push_str(&format!(" (target {goal} ms)"));
            }
            if let Some(e) = input(s, "error_rate").and_then(|e| e.parse::<f64>().ok()) {
                t.push_str(&format!(", errors {:.1}%", e * 100.0));
            }
            match input(s, "waiting") {
                Some(w) if w != "0" => t.push_str(&format!(", {w} requests waiting")),
                _ => {}
            }
        }
        t.push_str(".\n");
        let forecast = p
            .inputs
            .iter()
            .find(|(k, _)| k.starts_with("forecast_in_"))
            .map(|(k, v)| (k.trim_start_matches("forecast_in_").to_string(), v.clone()));
        if let (Some(l), Some(tr), Some((h, f))) = (
            input(s, "forecast_level"),
            input(s, "forecast_trend_per_min"),
            forecast,
        ) {
            let of = match input(s, "forecast_of") {
                Some("calls/s") => "calls/s",
                _ => "cpu",
            };
            t.push_str(&format!(
                "Forecast: {of} {l} now, trend {tr}/min, {f} in {h}.\n"
            ));
        }
    }
    for r in p.reasoning.iter().take(detail.reasoning) {
        let r: String = r.chars().take(160).collect();
        t.push_str(&format!("Why: {r}\n"));
    }
    if detail.nodes > 0 && !s.world.nodes.is_empty() {
        let focus = match &p.action {
            Action::Drain { node, .. } | Action::Undrain { node, .. } => Some(*node),
            _ => None,
        };
        let mut nodes: Vec<_> = s.world.nodes.iter().collect();
        nodes.sort_by_key(|n| (Some(n.id) != focus, n.name.clone()));
        let shown: Vec<String> = nodes
            .iter()
            .take(detail.nodes)
            .map(|n| {
                let mut d = format!("{} {} cpu {:.2} mem {:.2}", n.name, n.state, n.cpu, n.mem);
                if let Some(g) = n.gpu_temp {
                    d.push_str(&format!(" gpu {g:.0}C"));
                }
                if !n.live {
                    d.push_str(" (not live)");
                }
                d
            })
            .collect();
        let more = nodes.len().saturating_sub(detail.nodes);
        t.push_str(&format!("Nodes: {}", shown.join("; ")));
        if more > 0 {
            t.push_str(&format!("; {more} more"));
        }
        t.push_str(".\n");
    }
    if detail.recent > 0 {
        let target = p.action.target();
        let mut recent: Vec<_> = s.recent.iter().collect();
        recent.sort_by_key(|d| (d.action.target() != target, std::cmp::Reverse(d.at)));
        let shown: Vec<String> = recent
            .iter()
            .take(detail.recent)
            .map(|d| {
                let mut x = format!(
                    "{} {} {} {} ago",
                    d.name(),
                    d.status.word(),
                    d.action,
                    human_millis(s.world.now.saturating_sub(d.at))
                );
                if let Some(o) = &d.outcome {
                    x.push_str(&format!(", outcome {}", o.verdict));
                }
                x
            })
            .collect();
        if !shown.is_empty() {
            t.push_str(&format!("Recent: {}.\n", shown.join("; ")));
        }
    }
    let risks = risks(s);
    if risks.is_empty() {
        t.push_str("Risks: none.");
    } else {
        t.push_str(&format!("Risks: {}.", risks.join("; ")));
    }
    t
}

/// The answer text of a verdict after [`ANSWER`].
pub fn answer_text(v: &Verdict) -> String {
    match v {
        Verdict::Approve => " approve".into(),
        Verdict::Reject => " reject".into(),
        Verdict::Adjust(n) => format!(" adjust to {n}"),
    }
}

/// The verdicts on offer: approve, reject, and for a scale, other counts within the slice's
/// bounds and the step the safety bounds allow (`max_step` instances from the current count).
pub fn candidates(s: &Situation, max_step: u32) -> Vec<Verdict> {
    let mut out = vec![Verdict::Approve, Verdict::Reject];
    if let Action::Scale { from, to, .. } = s.proposal.action
        && let Some(v) = slice(s)
    {
        let lo = v.min.max(from.saturating_sub(max_step));
        let hi = v.max.min(from + max_step);
        let mut ns = vec![to.saturating_sub(1), to + 1];
        if to > from + 1 {
            ns.push(from + (to - from) / 2);
        }
        ns.sort_unstable();
        ns.dedup();
        for n in ns {
            if n >= lo && n <= hi && n != to && n != from {
                out.push(Verdict::Adjust(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::brain::NodeView;
    use crate::domain::Decision;

    /// The engine's demo scale-up, from `from` to `to` by `rule`, on 12 nodes (n2's GPU hot).
    fn situation(rule: &str, from: u32, to: u32) -> Situation {
        let mut s = crate::controller::model::engine::demo();
        s.proposal.rule = rule.into();
        s.proposal.action = Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from,
            to,
        };
        s.world.now = 10_000_000;
        s.world.slices[0].desired = from;
        s.world.slices[0].active = from;
        let proto = s.world.nodes[0].clone();
        s.world.nodes = (1..=12)
            .map(|i| NodeView {
                id: i,
                name: format!("n{i}"),
                cpu: 0.5,
                mem: 0.3,
                gpu_temp: (i == 2).then_some(91.0),
                ..proto.clone()
            })
            .collect();
        s
    }

    fn decision(id: u64, verb_up: bool, status: DecisionStatus, ago_ms: u64) -> Decision {
        let (from, to) = if verb_up { (2, 3) } else { (3, 2) };
        Decision {
            id,
            at: 10_000_000 - ago_ms,
            by: "n1".into(),
            mode: Default::default(),
            layers: vec![],
            action: Action::Scale {
                blueprint: "shop".into(),
                slice: "web".into(),
                from,
                to,
            },
            rule: "cpu-high".into(),
            reasoning: vec![],
            inputs: vec![],
            review: None,
            status,
            timeline: vec![],
            outcome: None,
        }
    }

    #[test]
    fn the_text_names_the_proposal_its_numbers_and_its_risks() {
        let mut s = situation("cpu-high", 2, 4);
        s.recent.push(decision(
            7,
            true,
            DecisionStatus::Vetoed {
                at: 10_000_000 - 180_000,
                by: "uid:0@n1".into(),
                reason: None,
                reverted: None,
            },
            200_000,
        ));
        s.recent.push(decision(
            6,
            false,
            DecisionStatus::Applied {
                at: 9_500_000,
                by: "n1".into(),
            },
            500_000,
        ));
        let t = shape(&s, Detail::FULL);
        assert!(
            t.starts_with("Proposal: scale_up shop/web from 2 to 4 (rule cpu-high).\n"),
            "{t}"
        );
        assert!(t.contains("cpu per instance 0.93 (target 0.60)"), "{t}");
        assert!(t.contains("n2 ready cpu 0.50 mem 0.30 gpu 91C"), "{t}");
        assert!(t.contains("; 4 more."), "8 of 12 nodes shown: {t}");
        assert!(
            t.contains("operator vetoed d-7 (scale_up shop/web) 3m"),
            "{t}"
        );
        assert!(t.contains("flapping: 1 scale_down of shop/web"), "{t}");
        let small = shape(&s, Detail::FULL.smaller().unwrap().smaller().unwrap());
        assert!(small.len() < t.len(), "less detail is shorter");
        assert!(
            small.contains("Risks: operator vetoed"),
            "risks are never dropped"
        );
    }

    #[test]
    fn the_text_cites_the_request_figures() {
        let mut s = situation("calls-high", 2, 3);
        for (k, v) in [
            ("calls_per_s", "300.00"),
            ("calls_per_instance", "150.00"),
            ("target_calls_per_instance", "100.00"),
            ("latency_p95_ms", "180"),
            ("latency_p99_ms", "420"),
            ("target_latency_ms", "250"),
            ("error_rate", "0.0120"),
            ("waiting", "0"),
            ("forecast_of", "calls/s"),
            ("forecast_level", "300.00"),
            ("forecast_trend_per_min", "6.00"),
            ("forecast_in_5m0s", "330.00"),
        ] {
            s.proposal.inputs.push((k.into(), v.into()));
        }
        let t = shape(&s, Detail::FULL);
        assert!(
            t.contains(
                ", 300.00 calls/s (150.00 per instance, target 100.00), p95 180 ms, p99 420 ms \
                 (target 250 ms), errors 1.2%.\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("Forecast: calls/s 300.00 now, trend 6.00/min, 330.00 in 5m0s."),
            "{t}"
        );
    }

    #[test]
    fn a_forecast_only_scale_in_is_named_a_risk() {
        let s = situation("forecast", 4, 2);
        assert_eq!(
            risks(&s),
            vec!["forecast only: a scale-in on a forecast alone".to_string()]
        );
        assert!(risks(&situation("cpu-low", 4, 2)).is_empty());
    }

    #[test]
    fn adjustments_stay_within_the_bounds_and_the_step() {
        let s = situation("cpu-high", 2, 4);
        assert_eq!(
            candidates(&s, 4),
            vec![
                Verdict::Approve,
                Verdict::Reject,
                Verdict::Adjust(3),
                Verdict::Adjust(5)
            ]
        );
        // From 7 with max 8: 9 is out of bounds.
        let s = situation("cpu-high", 7, 8);
        assert_eq!(candidates(&s, 4), vec![Verdict::Approve, Verdict::Reject]);
        // A step of 1 allows nothing but 3 from 2 (which is the proposal itself).
        let s = situation("cpu-high", 2, 3);
        assert_eq!(candidates(&s, 1), vec![Verdict::Approve, Verdict::Reject]);
    }

    #[test]
    fn detail_shrinks_to_nothing_and_stops() {
        let mut d = Detail::FULL;
        let mut n = 0;
        while let Some(s) = d.smaller() {
            d = s;
            n += 1;
            assert!(n < 10);
        }
        assert_eq!((d.nodes, d.recent, d.reasoning), (0, 0, 0));
    }
}
