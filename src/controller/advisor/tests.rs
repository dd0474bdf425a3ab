use super::*;
use crate::controller::brain::{NodeView, SliceView};
use crate::domain::{ControllerMode, Outcome};

fn slice(blueprint: &str, name: &str, desired: u32, min: u32, max: u32) -> SliceView {
    SliceView {
        blueprint: blueprint.into(),
        slice: name.into(),
        desired,
        active: desired,
        min,
        max,
        ..SliceView::default()
    }
}

fn node(id: u64, name: &str, state: NodeState) -> NodeView {
    NodeView {
        id,
        name: name.into(),
        state,
        live: true,
        cpu: 0.5,
        mem: 0.25,
        gpu_util: Some(0.9),
        gpu_temp: Some(84.0),
        anomalies: 1,
        drained_by_controller: false,
        gpu_health: None,
    }
}

fn world() -> World {
    World {
        now: 10_000_000,
        slices: vec![slice("shop", "web", 2, 1, 4), slice("shop", "db", 1, 1, 1)],
        nodes: vec![
            node(1, "n1", NodeState::Ready),
            node(2, "n2", NodeState::Drained),
        ],
    }
}

fn decision(id: u64, at: Millis, status: DecisionStatus) -> Decision {
    let action = Action::Scale {
        blueprint: "shop".into(),
        slice: "web".into(),
        from: 1,
        to: 2,
    };
    Decision {
        mode: ControllerMode::Guarded,
        layers: vec!["rules:cpu-high".into()],
        ..Decision::bare(id, at, "n1", "cpu-high", action, status)
    }
}

fn answer(items: &str) -> String {
    format!("{{\"items\": [{items}]}}")
}

fn parsed(message: &str) -> Result<Vec<AdviceItem>, AdviceError> {
    parse(message, &world(), 5, 1)
}

#[test]
fn the_summary_names_slices_nodes_decisions_and_is_bounded() {
    let w = world();
    let mut vetoed = decision(
        7,
        w.now - 60_000,
        DecisionStatus::Vetoed {
            at: w.now - 30_000,
            by: "ops".into(),
            reason: Some("not during the sale".into()),
            reverted: None,
        },
    );
    vetoed.outcome = None;
    let mut applied = decision(
        6,
        w.now - 600_000,
        DecisionStatus::Applied {
            at: w.now - 590_000,
            by: "n1".into(),
        },
    );
    applied.outcome = Some(Outcome {
        at: w.now - 500_000,
        verdict: "as intended".into(),
        detail: "cpu per instance 0.9 → 0.5".into(),
    });
    let old = decision(5, w.now - 2 * HOUR_MS, DecisionStatus::Proposed);
    let inputs = Inputs {
        world: w.clone(),
        leader: "n1".into(),
        mode: "guarded".into(),
        decisions: vec![vetoed, applied, old],
        capped: vec![CappedView {
            target: "shop/db".into(),
            bound: "max".into(),
            limit: 1,
            wanted: Some(3),
            since: w.now - 120_000,
            said: w.now - 60_000,
        }],
        slices: BTreeMap::from([(
            "shop/web".to_string(),
            SliceTrends {
                load: Trend::of(&[(1, 1.0), (3601, 3.0), (1801, f64::NAN)]),
                unit: "calls/s",
                calls: None,
                forecast_peak: Some((5.0, 600)),
            },
        )]),
        nodes: BTreeMap::from([(
            "n1".to_string(),
            NodeTrends {
                cpu: None,
                gpu_temp: Trend::of(&[(0, 70.0), (1800, 80.0), (3600, 84.0)]),
            },
        )]),
    };
    let s = summary(&inputs);
    for part in [
        "leader n1; controller mode guarded",
        "- shop/web: 2/2 instances, min 1, max 4; load calls/s now 3.00, over 1h0m: from 1.00",
        "forecast peak 5.00 calls/s in 10m0s",
        "- shop/db: 1/1 instances, min 1, max 1; CAPPED at max=1 for 2m0s (wanted 3)",
        "- n2: drained",
        "gpu temp °C now 84, over 1h0m: from 70, mean 78, 70–84, anomalies now 1",
        "d-7 1m0s ago: scale shop/web 1 → 2",
        "vetoed by ops: not during the sale",
        "outcome as intended: cpu per instance 0.9 → 0.5",
    ] {
        assert!(s.contains(part), "{part:?} missing from:\n{s}");
    }
    assert!(!s.contains("d-5"), "older than an hour: {s}");

    // Many slices and decisions: listed up to their limits, and the text stays bounded.
    let mut big = inputs.clone();
    big.world.slices = (0..500)
        .map(|i| slice("b", &format!("slice-with-a-long-name-{i}"), 3, 1, 9))
        .collect();
    big.decisions = (0..500)
        .map(|i| {
            decision(
                i,
                w.now - i,
                DecisionStatus::Rejected {
                    reason: "x".repeat(5000),
                },
            )
        })
        .collect();
    let s = summary(&big);
    assert!(s.len() <= SUMMARY_MAX, "{} bytes", s.len());
    assert!(s.contains("… and 460 more slices"), "{s}");
    assert!(s.contains("… and 470 more decisions"), "{s}");
}

#[test]
fn the_summary_is_cut_at_a_line_when_too_long() {
    let text = "line of text\n".repeat(2000);
    let cut = bound(text, 1000);
    assert!(cut.len() <= 1000);
    assert!(cut.ends_with("more lines)\n"), "{cut}");
}

#[test]
fn the_request_carries_the_model_the_summary_and_the_schema() {
    use crate::config::ResponseFormat;
    let r = request("smollm2", "cluster at …", 3, ResponseFormat::JsonSchema);
    assert_eq!(r["model"], "smollm2");
    assert_eq!(r["temperature"], 0);
    assert_eq!(r["messages"][1]["content"], "cluster at …");
    assert_eq!(r["response_format"]["type"], "json_schema");
    assert_eq!(r["response_format"]["json_schema"]["schema"], schema(3));
    let r = request("smollm2", "…", 3, ResponseFormat::JsonObject);
    assert_eq!(r["response_format"]["type"], "json_object");
    assert_eq!(r["response_format"]["schema"], schema(3));
}

#[test]
fn good_answers_are_accepted_also_in_fences() {
    let items = parsed(&answer(
        r#"{"kind": "scale", "target": "shop/web", "count": 3, "reason": "calls/s rose from 4 to 12 in an hour"},
           {"kind": "prescale", "target": "shop/web", "count": 4, "when": "08:45 UTC", "reason": "daily peak at 09:00"},
           {"kind": "raise_max", "target": "shop/db", "count": 3, "reason": "capped at max=1 for 2m"},
           {"kind": "drain", "target": "n1", "reason": "gpu at 84 °C and rising"},
           {"kind": "note", "target": "", "reason": "all quiet"}"#,
    ))
    .unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0].id, "a-1");
    assert_eq!(items[4].id, "a-5");
    assert_eq!(items[1].when.as_deref(), Some("08:45 UTC"));
    assert_eq!(items[3].kind, AdviceKind::Drain);
    let fenced = format!(
        "Here you go:\n```json\n{}\n```\n",
        answer(r#"{"kind": "note", "target": "n2", "reason": "drained for 2h"}"#)
    );
    assert_eq!(parsed(&fenced).unwrap()[0].target, "n2");
    assert_eq!(
        parsed(&answer("")).unwrap(),
        vec![],
        "no advice is an answer"
    );
}

#[test]
fn each_kind_of_bad_answer_is_refused_with_its_reason() {
    let item = |body: &str| parsed(&answer(body)).unwrap_err();
    let cases: Vec<(AdviceError, &str)> = vec![
        (parsed("sure! scale up").unwrap_err(), "not JSON"),
        (
            parsed("{\"advice\": []}").unwrap_err(),
            "unknown field `advice`",
        ),
        (
            item(r#"{"kind": "reboot", "target": "n1", "reason": "x"}"#),
            "unknown variant `reboot`",
        ),
        (
            item(r#"{"kind": "note", "target": "", "reason": "x", "mood": "calm"}"#),
            "unknown field `mood`",
        ),
        (
            item(r#"{"kind": "note", "target": ""}"#),
            "missing field `reason`",
        ),
        (
            item(r#"{"kind": "scale", "target": "shop/web", "count": -1, "reason": "x"}"#),
            "invalid value",
        ),
        (
            item(r#"{"kind": "scale", "target": "shop/api", "count": 2, "reason": "x"}"#),
            "no slice 'shop/api'",
        ),
        (
            item(r#"{"kind": "drain", "target": "n9", "reason": "x"}"#),
            "no node 'n9'",
        ),
        (
            item(r#"{"kind": "scale", "target": "shop/web", "reason": "x"}"#),
            "scale needs a count",
        ),
        (
            item(r#"{"kind": "scale", "target": "shop/web", "count": 41, "reason": "x"}"#),
            "more than ten times its max",
        ),
        (
            item(r#"{"kind": "scale", "target": "shop/web", "count": 5000, "reason": "x"}"#),
            "above 1000",
        ),
        (
            item(r#"{"kind": "raise_max", "target": "shop/web", "count": 3, "reason": "x"}"#),
            "its max is 4 already",
        ),
        (
            item(r#"{"kind": "lower_max", "target": "shop/web", "count": 0, "reason": "x"}"#),
            "expected from its min 1",
        ),
        (
            item(r#"{"kind": "drain", "target": "n1", "count": 1, "reason": "x"}"#),
            "takes no count",
        ),
        (
            item(
                r#"{"kind": "scale", "target": "shop/web", "count": 2, "when": "now", "reason": "x"}"#,
            ),
            "takes no 'when'",
        ),
        (
            item(r#"{"kind": "note", "target": "", "reason": "  "}"#),
            "reason is empty",
        ),
        (
            item(&format!(
                r#"{{"kind": "note", "target": "", "reason": "{}"}}"#,
                "é".repeat(241)
            )),
            "241 characters, at most 240",
        ),
        (
            item(r#"{"kind": "note", "target": "", "reason": "\u001b[2Jgone"}"#),
            "control characters",
        ),
        (
            item(r#"{"kind": "note", "target": "mars", "reason": "x"}"#),
            "neither a slice nor a node",
        ),
    ];
    for (err, want) in cases {
        assert!(err.to_string().contains(want), "{want:?} not in '{err}'");
    }
    let six = [r#"{"kind": "note", "target": "", "reason": "x"}"#; 6].join(",");
    assert!(
        parsed(&answer(&six))
            .unwrap_err()
            .to_string()
            .contains("6 items, at most 5")
    );
}

#[test]
fn the_completion_envelope_is_checked() {
    let body = serde_json::to_vec(&json!({
        "choices": [{ "message": { "role": "assistant", "content": "{\"items\": []}" } }]
    }))
    .unwrap();
    assert_eq!(content(&body).unwrap(), "{\"items\": []}");
    let e = content(b"<html>502 bad gateway</html>").unwrap_err();
    assert_eq!(e.word(), "not_completion");
    assert!(e.to_string().contains("it begins '<html>502"), "{e}");
    let e = content(br#"{"choices": []}"#).unwrap_err();
    assert!(e.to_string().contains("choices[0].message.content"), "{e}");
}

/// A small validator for the part of JSON schema that [`schema`] uses.
fn valid(schema: &Value, v: &Value) -> bool {
    let s = |k: &str| schema.get(k);
    if let Some(e) = s("enum")
        && !e.as_array().unwrap().contains(v)
    {
        return false;
    }
    match s("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(o) = v.as_object() else { return false };
            let props = s("properties").and_then(Value::as_object).unwrap();
            let required = s("required").and_then(Value::as_array).unwrap();
            required.iter().all(|r| o.contains_key(r.as_str().unwrap()))
                && o.iter()
                    .all(|(k, x)| props.get(k).is_some_and(|p| valid(p, x)))
        }
        Some("array") => {
            let Some(a) = v.as_array() else { return false };
            s("maxItems").is_none_or(|m| a.len() as u64 <= m.as_u64().unwrap())
                && a.iter().all(|x| valid(&schema["items"], x))
        }
        Some("string") => {
            let Some(t) = v.as_str() else { return false };
            let n = t.chars().count() as u64;
            s("maxLength").is_none_or(|m| n <= m.as_u64().unwrap())
                && s("minLength").is_none_or(|m| n >= m.as_u64().unwrap())
        }
        Some("integer") => {
            let Some(i) = v.as_i64() else { return false };
            s("minimum").is_none_or(|m| i >= m.as_i64().unwrap())
                && s("maximum").is_none_or(|m| i <= m.as_i64().unwrap())
        }
        _ => true,
    }
}

/// What the schema refuses, parse refuses; what parse accepts, the schema allows (parse adds
/// the checks against the world the schema cannot say).
#[test]
fn parse_agrees_with_the_schema() {
    let schema = schema(5);
    let kinds: Vec<Value> = AdviceKind::ALL.iter().map(|k| json!(k.word())).collect();
    assert_eq!(
        schema.pointer("/properties/items/items/properties/kind/enum"),
        Some(&Value::Array(kinds))
    );
    let examples = [
        json!({"items": []}),
        json!({"items": [{"kind": "scale", "target": "shop/web", "count": 3, "reason": "up"}]}),
        json!({"items": [{"kind": "note", "target": "", "reason": "fine"}]}),
        json!({"items": [{"kind": "prescale", "target": "shop/web", "count": 3, "when": "9:00", "reason": "peak"}]}),
        json!({"items": [{"kind": "scale", "target": "shop/web", "count": 3}]}),
        json!({"items": [{"kind": "nap", "target": "", "reason": "x"}]}),
        json!({"items": [{"kind": "note", "target": "", "reason": ""}]}),
        json!({"items": [{"kind": "note", "target": "", "reason": "x".repeat(241)}]}),
        json!({"items": [{"kind": "scale", "target": "shop/web", "count": 1001, "reason": "x"}]}),
        json!({"items": [{"kind": "scale", "target": "shop/web", "count": -2, "reason": "x"}]}),
        json!({"items": [{"kind": "note", "target": "", "reason": "x", "extra": 1}]}),
        json!({"items": [{"kind": "note", "target": "", "reason": "x"}], "why": "x"}),
        json!({"items": vec![json!({"kind": "note", "target": "", "reason": "x"}); 6]}),
        json!({"items": "none"}),
        json!([]),
    ];
    for e in examples {
        let by_schema = valid(&schema, &e);
        let by_parse = parse(&e.to_string(), &world(), 5, 1);
        if by_parse.is_ok() {
            assert!(by_schema, "parse accepts what the schema refuses: {e}");
        }
        if !by_schema {
            assert!(
                by_parse.is_err(),
                "parse accepts what the schema refuses: {e}"
            );
        }
        if by_schema && e.to_string().contains("shop/web") {
            assert!(by_parse.is_ok(), "{e}: {by_parse:?}");
        }
    }
}

#[test]
fn taking_an_item_maps_it_to_an_action_or_says_why_not() {
    let w = world();
    let item = |kind, target: &str, count| AdviceItem {
        id: "a-3".into(),
        kind,
        target: target.into(),
        count,
        when: None,
        reason: "calls/s doubled".into(),
    };
    assert_eq!(
        action(&item(AdviceKind::Scale, "shop/web", Some(3)), &w),
        Ok(Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from: 2,
            to: 3
        })
    );
    assert!(matches!(
        action(&item(AdviceKind::Prescale, "shop/web", Some(1)), &w),
        Ok(Action::Scale { from: 2, to: 1, .. })
    ));
    assert!(matches!(
        action(&item(AdviceKind::Scale, "shop/web", Some(2)), &w),
        Err(TakeError::Stale(m)) if m.contains("runs 2 instances already")
    ));
    assert_eq!(
        action(&item(AdviceKind::Drain, "n1", None), &w),
        Ok(Action::Drain {
            node: 1,
            name: "n1".into()
        })
    );
    assert_eq!(
        action(&item(AdviceKind::Undrain, "n2", None), &w),
        Ok(Action::Undrain {
            node: 2,
            name: "n2".into()
        })
    );
    assert!(matches!(
        action(&item(AdviceKind::Drain, "n2", None), &w),
        Err(TakeError::Stale(m)) if m.contains("node n2 is drained")
    ));
    assert!(matches!(
        action(&item(AdviceKind::RaiseMax, "shop/db", Some(3)), &w),
        Err(TakeError::NotAnAction(m))
            if m.contains("set max = 3 for slice 'db' in blueprint 'shop'")
    ));
    assert!(matches!(
        action(&item(AdviceKind::Note, "", None), &w),
        Err(TakeError::NotAnAction(_))
    ));
    assert!(matches!(
        action(&item(AdviceKind::Scale, "shop/gone", Some(3)), &w),
        Err(TakeError::Stale(_))
    ));

    let p = proposal(
        &item(AdviceKind::Scale, "shop/web", Some(3)),
        &w,
        "smollm2",
        "uid:0@n1",
    )
    .unwrap();
    assert_eq!(p.rule, "advisor");
    assert_eq!(p.layers, vec!["advisor:smollm2".to_string()]);
    assert_eq!(p.reasoning[0], "calls/s doubled");
    assert!(p.inputs.contains(&("advice".into(), "a-3".into())));
    assert!(p.inputs.contains(&("taken_by".into(), "uid:0@n1".into())));
}
