//! `aether model pull`, `status`, `bench` and `review`: the on-device language model.

use std::io::{self, Write};

use super::write_json;
use crate::admin::protocol::ModelBenchView;
use crate::controller::model::{ModelStatus, Pulled};
use crate::domain::human_millis;

/// Bytes in decimal megabytes.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `aether model pull`.
pub fn pulled(w: &mut dyn Write, p: &Pulled, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, p);
    }
    let i = &p.info;
    writeln!(w, "pulled '{}' to {} ({})", p.source, i.path, mb(i.size))?;
    writeln!(
        w,
        "model   {} · {} · {} blocks × {} · context {} · vocab {} · {}",
        i.name, i.arch, i.blocks, i.width, i.context, i.vocab, i.quant
    )?;
    match &p.known {
        Some(what) => writeln!(w, "sha256  {} (verified: {what})", p.sha256)?,
        None => writeln!(
            w,
            "sha256  {} (not a file aether knows; pin it with --sha256 next time)",
            p.sha256
        )?,
    }
    writeln!(
        w,
        "a running node loads it within a few seconds when it leads; see `aether model status`"
    )?;
    Ok(())
}

/// `aether model status`.
pub fn model(w: &mut dyn Write, m: &ModelStatus, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, m);
    }
    writeln!(w, "state     {}", m.state)?;
    match &m.file {
        Some(i) => {
            writeln!(w, "path      {} ({})", m.path, mb(i.size))?;
            writeln!(
                w,
                "model     {} · {} · {} blocks × {} · context {} · vocab {} · {}",
                i.name, i.arch, i.blocks, i.width, i.context, i.vocab, i.quant
            )?;
        }
        None => writeln!(w, "path      {}", m.path)?,
    }
    let loaded = m
        .load_ms
        .map(|ms| {
            format!(
                " · loaded in {ms} ms · prefix {} tokens cached",
                m.prefix_tokens
            )
        })
        .unwrap_or_default();
    writeln!(
        w,
        "memory    {} · {} thread(s){loaded}",
        m.format, m.threads
    )?;
    let tok_s = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or("-".into());
    writeln!(
        w,
        "reviews   {} ({} past the budget) · last {} · {} prompt tokens · prefill {} tok/s · decode {} tok/s",
        m.reviews,
        m.timeouts,
        m.last_latency_ms.map(human_millis).unwrap_or("-".into()),
        m.last_prompt_tokens
            .map(|t| t.to_string())
            .unwrap_or("-".into()),
        tok_s(m.prefill_tok_s),
        tok_s(m.decode_tok_s),
    )?;
    if !m.chooser.is_empty() {
        let how = if m.chooser == "head" {
            "the trained head (assets/reviewer-head.json fits this model)"
        } else {
            "calibrated scoring (no trained head fits this model)"
        };
        writeln!(
            w,
            "verdicts  by {how} · {} reason(s) replaced for citing numbers not in the situation",
            m.replaced_reasons
        )?;
    }
    if let Some(r) = &m.last_review {
        writeln!(w, "last      {r}")?;
    }
    Ok(())
}

/// `aether model bench`.
pub fn model_bench(w: &mut dyn Write, b: &ModelBenchView, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, b);
    }
    writeln!(
        w,
        "{} reviews ({} failed) · p50 {} ms · p95 {} ms",
        b.reviews, b.failed, b.p50_ms, b.p95_ms
    )?;
    model(w, &b.status, false)?;
    Ok(())
}

/// `aether model review FILE`: the verdict, the reason, the timing, then the text read.
pub fn model_review(
    w: &mut dyn Write,
    r: &crate::controller::model::engine::ReviewView,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, r);
    }
    let verdict = match r.adjust_to {
        Some(n) => format!("{} to {n}", r.verdict),
        None => r.verdict.clone(),
    };
    writeln!(w, "verdict  {verdict}")?;
    let replaced = if r.replaced {
        " (plain: the model's own cited numbers the situation does not hold)"
    } else {
        ""
    };
    writeln!(w, "reason   {}{replaced}", r.reason)?;
    let scores: Vec<String> = r
        .scores
        .iter()
        .map(|(c, v)| format!("{c} {v:.2}"))
        .collect();
    writeln!(w, "chosen   by the {} · {}", r.chooser, scores.join(" · "))?;
    let fits = if r.latency_ms <= r.budget_ms {
        "within"
    } else {
        "over"
    };
    // A verdict by the head or the numbers generates nothing: no "wrote 0".
    let wrote = if r.generated > 0 {
        format!(", wrote {} in {} ms", r.generated, r.decode_ms)
    } else {
        String::new()
    };
    writeln!(
        w,
        "timing   {} ms ({fits} the {} budget): read {} tokens in {} ms{wrote}",
        r.latency_ms,
        human_millis(r.budget_ms),
        r.prompt_tokens,
        r.prefill_ms,
    )?;
    writeln!(w, "read")?;
    for line in r.text.lines() {
        writeln!(w, "  {line}")?;
    }
    Ok(())
}
