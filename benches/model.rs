//! Evaluation of the language-model reviewer (issue 6): a fixed set of scenarios, each with the
//! verdict an operator expects, reviewed by the model and by the rules alone (which approve
//! whatever passed the safety bounds). Prints agreement, invalid outputs, p50/p95 review
//! latency and tokens/s, per in-memory format.
//!
//!   cargo bench --bench model -- --model PATH [--format f16|q8_0|f32|keep|all]
//!                                [--no-calibrate] [--threads 1] [--dump-prompt FILE] [--verbose]
//!                                [--speed PROMPT_FILE]
//!
//! `scripts/bench/model.sh` fetches the model and runs llama.cpp on the same prompt beside it.

#[path = "model/scenarios.rs"]
mod scenarios;

use std::time::{Duration, Instant};

use aether::config::ModelFormat;
use aether::controller::model::engine::{answer, load};
use aether::controller::model::prompt;
use aether::controller::review::Verdict;
use scenarios::{Expected, scenarios};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let threads: u32 = flag("--threads")
        .map(|t| t.parse())
        .transpose()?
        .unwrap_or(1);
    aether::controller::model::set_threads(threads);
    let Some(path) = flag("--model").or_else(|| std::env::var("AETHER_MODEL").ok()) else {
        println!("model bench: no model (pass --model PATH or set AETHER_MODEL); skipped");
        return Ok(());
    };
    let formats = match flag("--format").as_deref() {
        None => vec![ModelFormat::F16],
        Some("all") => vec![
            ModelFormat::F16,
            ModelFormat::Q8_0,
            ModelFormat::F32,
            ModelFormat::Keep,
        ],
        Some(f) => vec![toml::Value::String(f.into()).try_into()?],
    };
    let calibrate = !args.iter().any(|a| a == "--no-calibrate");
    let verbose = args.iter().any(|a| a == "--verbose");
    let set = scenarios();
    let expected_approve = set
        .iter()
        .filter(|s| s.expected == Expected::Approve)
        .count();
    println!(
        "model bench: {} scenarios ({} approve, {} reject, {} adjust), {threads} thread(s), calibrated={calibrate}",
        set.len(),
        expected_approve,
        set.iter()
            .filter(|s| s.expected == Expected::Reject)
            .count(),
        set.iter()
            .filter(|s| s.expected == Expected::Adjust)
            .count(),
    );
    if let Some(file) = flag("--dump-prompt") {
        let text = format!(
            "{}{}{}",
            prompt::SYSTEM,
            prompt::shape(&set[0].situation, prompt::Detail::FULL),
            prompt::ANSWER
        );
        std::fs::write(&file, text)?;
        println!("wrote the first scenario's whole prompt to {file}");
        return Ok(());
    }
    if let Some(file) = flag("--speed") {
        for format in &formats {
            speed(&path, *format, &std::fs::read_to_string(&file)?)?;
        }
        return Ok(());
    }
    let max_step = aether::config::ControllerConfig::default().max_step;
    for format in formats {
        let t0 = Instant::now();
        let (mut r, info) = load(std::path::Path::new(&path), format)?;
        r.calibrate = calibrate;
        let load_ms = t0.elapsed().as_millis();
        let mut lat = Vec::new();
        let (mut agree, mut invalid, mut over_budget) = (0, 0, 0);
        let (mut ptok, mut pms, mut gtok, mut gms) = (0usize, 0u64, 0usize, 0u64);
        let mut confusion = std::collections::BTreeMap::<(String, String), u32>::new();
        for s in &set {
            let t = Instant::now();
            let deadline = t + Duration::from_secs(60);
            let (a, cands) = answer(&mut r, &s.situation, max_step, deadline)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            lat.push(ms);
            if ms > 3000.0 {
                over_budget += 1;
            }
            ptok += a.prompt_tokens;
            pms += a.prefill_ms;
            gtok += a.generated;
            gms += a.decode_ms;
            let got = match a.verdict {
                Verdict::Approve => Expected::Approve,
                Verdict::Reject => Expected::Reject,
                Verdict::Adjust(_) => Expected::Adjust,
            };
            if !cands.contains(&a.verdict) || a.reason.is_empty() {
                invalid += 1;
            }
            if got == s.expected {
                agree += 1;
            }
            *confusion
                .entry((format!("{:?}", s.expected), format!("{got:?}")))
                .or_default() += 1;
            if verbose {
                let scores: Vec<String> = a
                    .scores
                    .iter()
                    .map(|(c, v)| format!("{c}={v:.2}"))
                    .collect();
                println!(
                    "  {:<40} want {:<7} got {:<13} {:>6.0} ms  [{}]  reason: {}",
                    s.name,
                    format!("{:?}", s.expected),
                    prompt::answer_text(&a.verdict).trim(),
                    ms,
                    scores.join(" "),
                    a.reason
                );
            }
        }
        let n = set.len();
        let (p50, p95) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.95));
        println!(
            "format {format:<5} load {load_ms} ms ({}, rss {} MB): agreement {agree}/{n} ({:.0}%), invalid {invalid}, latency p50 {p50:.0} ms p95 {p95:.0} ms, over 3 s: {over_budget}, prefill {:.0} tok/s, decode {:.0} tok/s",
            info.quant,
            rss_mb(),
            agree as f64 * 100.0 / n as f64,
            ptok as f64 * 1000.0 / pms.max(1) as f64,
            gtok as f64 * 1000.0 / gms.max(1) as f64,
        );
        let cells: Vec<String> = confusion
            .iter()
            .map(|((w, g), c)| format!("{w}→{g}: {c}"))
            .collect();
        println!("  confusion (expected→model): {}", cells.join(", "));
    }
    println!(
        "rules alone: agreement {expected_approve}/{} ({:.0}%), invalid 0, latency p50 0 ms (they approve what passed the safety bounds)",
        set.len(),
        expected_approve as f64 * 100.0 / set.len() as f64
    );
    Ok(())
}

/// Prefill of a whole prompt from an empty cache and 32 greedy tokens after it, three runs:
/// the figures llama.cpp is compared on (`scripts/bench/model.sh`).
fn speed(path: &str, format: ModelFormat, text: &str) -> anyhow::Result<()> {
    use aether::controller::model::llama::Cache;
    let (r, _) = load(std::path::Path::new(path), format)?;
    let ids = r.tok.encode(text)?;
    // CPU seconds of this process: on a busy machine, tokens per CPU second are steadier than
    // per wall second (scripts/bench/llama_cpp.py prints both too).
    fn cpu_s() -> f64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    }
    let (mut pre, mut dec) = (Vec::new(), Vec::new());
    let (mut pre_cpu, mut dec_cpu) = (Vec::new(), Vec::new());
    let mut greedy = Vec::new();
    for _ in 0..3 {
        let mut cache = Cache::default();
        let (t, c) = (Instant::now(), cpu_s());
        let mut logits = r.llama.forward(&ids, &mut cache, 1)?;
        pre.push(ids.len() as f64 / t.elapsed().as_secs_f64());
        pre_cpu.push(ids.len() as f64 / (cpu_s() - c));
        let (t, c) = (Instant::now(), cpu_s());
        greedy.clear();
        for _ in 0..32 {
            let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
            greedy.push(next);
            logits = r.llama.forward(&[next], &mut cache, 1)?;
        }
        dec.push(32.0 / t.elapsed().as_secs_f64());
        dec_cpu.push(32.0 / (cpu_s() - c));
    }
    println!(
        "candle {format} prompt_tokens={} prefill_tok_s={:.1} decode_tok_s={:.1} rss_mb={} prefill_tok_cpu_s={:.1} decode_tok_cpu_s={:.1}",
        ids.len(),
        percentile(&mut pre, 0.5),
        percentile(&mut dec, 0.5),
        rss_mb(),
        percentile(&mut pre_cpu, 0.5),
        percentile(&mut dec_cpu, 0.5),
    );
    // The greedy continuation: the same tokens before and after a change to the network.
    println!("  greedy {format}: {greedy:?}");
    Ok(())
}

/// Resident memory of this process in MB (Linux).
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
