//! Running the simulations on every core and printing the header, results, verdict, diagnostics,
//! variants and timelines.

use super::*;

/// One simulation to run on some core.
pub(crate) type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Run `jobs` on the available cores; results in job order.
pub(crate) fn run_parallel<T: Send>(jobs: Vec<Job<'_, T>>) -> Vec<T> {
    let n = jobs.len();
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(n.max(1));
    let queue: Mutex<Vec<(usize, Job<'_, T>)>> =
        Mutex::new(jobs.into_iter().enumerate().rev().collect());
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some((i, job)) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let r = job();
                    results.lock().expect("results")[i] = Some(r);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), n);
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `a / b` as a percentage, or a word when `b` is 0.
pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 { "0/0".into() } else { "∞".into() }
    } else {
        pct(a / b)
    }
}

/// The goal's three criteria on Aether against the HPA: (violations, cost, slack).
pub(crate) fn criteria(a: &Score, h: &Score) -> [bool; 3] {
    [
        a.violations as f64 <= GOAL_VIOLATIONS * h.violations as f64,
        a.instance_secs as f64 <= GOAL_COST * h.instance_secs as f64,
        a.slack() <= GOAL_SLACK,
    ]
}

pub(crate) fn mark(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

pub(crate) fn describe_rules(r: &Rules) -> Vec<String> {
    let s = &r.settings;
    let mut out = vec![format!(
        "settings: target_cpu {:.2}, tolerance {:.2} (band {:.3}..{:.3}), stabilization {}s, up_cooldown {}s, down_cooldown {}s, predictive {}",
        s.target_cpu,
        s.tolerance,
        s.target_cpu * (1.0 - s.tolerance),
        s.target_cpu * (1.0 + s.tolerance),
        s.stabilization_secs,
        s.up_cooldown_secs,
        s.down_cooldown_secs,
        s.predictive
    )];
    for rule in r.rules.iter().filter(|r| r.scope == rules::Scope::Slice) {
        let when: Vec<String> = rule.when.iter().map(|c| c.to_string()).collect();
        out.push(format!(
            "rule {} (priority {}): {} → {:?} {:?}",
            rule.name,
            rule.priority,
            when.join(" and "),
            rule.action,
            rule.step
        ));
    }
    out
}

/// Aether's configurations: the default first, then one knob changed at a time.
pub(crate) fn variants(base: &Rules) -> Vec<Variant> {
    let default = Variant {
        name: "default (as the header)".into(),
        rules: base.clone(),
        bounds: D.bounds.clone(),
        predictive: true,
    };
    let variant = |name: &str, f: &dyn Fn(&mut Variant)| {
        let mut v = default.clone();
        v.name = name.into();
        f(&mut v);
        v
    };
    let cpu_high_for = |v: &mut Variant, secs: u64| {
        for rule in v.rules.rules.iter_mut().filter(|r| r.name == "cpu-high") {
            rule.when[0].for_secs = secs;
        }
    };
    vec![
        default.clone(),
        variant("predictive off (rules only)", &|v| v.predictive = false),
        variant("rules: up_cooldown 0s", &|v| {
            v.rules.settings.up_cooldown_secs = 0
        }),
        variant("rules: cpu-high for 10s", &|v| cpu_high_for(v, 10)),
        variant("rules: down_cooldown 60s", &|v| {
            v.rules.settings.down_cooldown_secs = 60
        }),
        variant(
            &format!("config: max_step {MAX} (not a rules knob)"),
            &|v| v.bounds.max_step = MAX,
        ),
        variant(
            &format!("up_cooldown 0s + for 10s + max_step {MAX}"),
            &|v| {
                v.rules.settings.up_cooldown_secs = 0;
                cpu_high_for(v, 10);
                v.bounds.max_step = MAX;
            },
        ),
        variant("without the cpu-saturated rule", &|v| {
            v.rules.rules.retain(|r| r.name != "cpu-saturated")
        }),
        variant("config: max_step_percent 100 (the HPA's)", &|v| {
            v.bounds.max_step_percent = 100
        }),
    ]
}

/// One line of the results: Aether and the HPA on a trace (or the totals).
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) aether: Score,
    pub(crate) hpa: Score,
}

/// Rows of one Aether configuration: the goal's traces, `all` (their totals, when more than one),
/// then the extras.
pub(crate) fn rows(traces: &[Trace], aether: &[Score], hpa: &[Score]) -> Vec<Row> {
    let row = |i: usize| Row {
        name: format!("{} ({})", traces[i].name, traces[i].window),
        aether: aether[i],
        hpa: hpa[i],
    };
    let goal: Vec<usize> = (0..traces.len()).filter(|&i| !traces[i].extra).collect();
    let mut out: Vec<Row> = goal.iter().map(|&i| row(i)).collect();
    if goal.len() > 1 {
        let mut all = Row {
            name: "all".into(),
            aether: Score::default(),
            hpa: Score::default(),
        };
        for &i in &goal {
            all.aether.add(&aether[i]);
            all.hpa.add(&hpa[i]);
        }
        out.push(all);
    }
    out.extend((0..traces.len()).filter(|&i| traces[i].extra).map(row));
    out
}

/// The row the goal is judged on: `all` when there is one, else the first.
pub(crate) fn goal_row(rows: &[Row]) -> &Row {
    rows.iter().find(|r| r.name == "all").unwrap_or(&rows[0])
}

pub(crate) fn print_header(o: &Opts, rules: &Rules, model: Model, traces: &[Trace]) {
    let lead = model.startup + 1;
    println!(
        "controller simulator: does prediction pay? (seed {})",
        o.seed
    );
    println!();
    println!("model");
    println!(
        "  time step 1 s; load = demand in cores; each instance serves capacity {CAPACITY:.1} core (reserved cpu {CAPACITY:.1})"
    );
    println!(
        "  fluid queue: served = min(load + backlog, active × capacity) = the measured cpu_used; backlog += load − served"
    );
    println!(
        "  start-up {} s from the applied decision to active; scale-in removes instances at once (starting ones first)",
        model.startup
    );
    println!(
        "  instances min {MIN}, max {MAX}; initial = ceil(mean load of the first minute / (capacity × target)), all active"
    );
    println!(
        "  latency = {:.0} ms / (1 − min(u, {U_CAP})) + backlog / (active × capacity) s, u = served / (active × capacity)",
        SERVICE_S * 1000.0
    );
    println!(
        "  SLO {:.0} ms: a second violates when latency > SLO (u > {:.2}, or a backlog over {:.2} s of capacity)",
        SLO_S * 1000.0,
        1.0 - SERVICE_S / SLO_S,
        SLO_S - SERVICE_S
    );
    println!(
        "  cost = instance-seconds of active + starting instances; slack = 1 − served / (active × capacity), mean over seconds"
    );
    println!(
        "  target utilisation, both controllers: {:.2} ({})",
        model.target,
        if o.target.is_some() {
            "--target"
        } else {
            "the built-in rules' target_cpu"
        }
    );
    println!("aether (the real core, mode auto)");
    println!(
        "  Brain::new(rules::parse(\"assets\", DEFAULT_RULES){}, ForecastConfig::default(), horizon {} s)",
        if o.target.is_some() {
            " with settings.target_cpu = --target"
        } else {
            ""
        },
        D.horizon_s
    );
    for line in describe_rules(rules) {
        println!("    {line}");
    }
    println!("    forecast: {:?}", ForecastConfig::default());
    println!(
        "  cpu drive: SliceView cpu_reserved {CAPACITY:.1}, cpu_used = served, predictive Some(true); no request figures \
         (a slice without a service)"
    );
    println!(
        "  request drive: the same, plus a service: calls_per_s = arrivals = load / {:.0} ms while an instance is active \
         (0 at zero: requests wait), latency_ms (p95) = p99 = the second's latency (none when nothing is served), \
         error_rate 0, waiting = backlog / service time while no instance is active, last_call_at = now while calls \
         arrive or wait; target_calls_per_instance = target × capacity / service time = {:.1}, target_latency = the SLO \
         ({:.0} ms); the forecaster learns calls/s. (Arrivals are an upper bound of what an ingress that counts a call \
         when it ends sees during a backlog; the model drops no request.)",
        SERVICE_S * 1000.0,
        model.target * CAPACITY / SERVICE_S,
        SLO_S * 1000.0
    );
    println!(
        "  observe + propose every second, the decision applied at once; lead = startup + 1 s = {lead} s \
         (guarded mode would apply {grace} s later and need a lead {grace} s longer)",
        grace = D.grace_s
    );
    println!(
        "  safety::check with {:?} (the [controller] defaults); cooldowns from the rule settings; converging = the newest \
         applied decision (≤ {} s old) while active < desired; recent_decisions = applied in the last 60 s",
        D.bounds,
        D.converge_timeout_ms / 1000
    );
    println!("hpa baseline (the Kubernetes HPA algorithm on cpu utilisation)");
    println!(
        "  every {HPA_SYNC_S} s: u = mean utilisation of the active instances over the period (since the active count last \
         changed); within |u/target − 1| ≤ {HPA_TOLERANCE} the recommendation is the current count, else ceil(active × u / target)"
    );
    println!(
        "  scale-up: no stabilisation, at most max({HPA_UP_PODS} pods, {HPA_UP_PERCENT}%) per {HPA_SYNC_S} s; \
         scale-down: to the highest recommendation of the last {HPA_DOWN_WINDOW_S} s; same min/max and start-up"
    );
    println!("traces (seeded; each trace its own stream)");
    for tr in traces {
        println!("  {:<9} {}", tr.name, tr.what);
    }
    println!(
        "goal: Aether ≤ {:.0}% of the HPA's SLO-violation seconds, ≤ {:.0}% of its instance-seconds, slack ≤ {:.0}%",
        GOAL_VIOLATIONS * 100.0,
        GOAL_COST * 100.0,
        GOAL_SLACK * 100.0
    );
    println!();
}

pub(crate) fn print_results(rows: &[Row]) {
    println!("results (default run)");
    println!(
        "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
        "trace (window)", "controller", "SLO viol s", "instance-s", "slack", "actions"
    );
    for r in rows {
        for (ctl, s) in [("aether", &r.aether), ("hpa", &r.hpa)] {
            println!(
                "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
                if ctl == "aether" { r.name.as_str() } else { "" },
                ctl,
                s.violations,
                s.instance_secs,
                pct(s.slack()),
                s.actions
            );
        }
        let (a, h) = (&r.aether, &r.hpa);
        println!(
            "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
            "",
            "aether/hpa",
            ratio(a.violations as f64, h.violations as f64),
            ratio(a.instance_secs as f64, h.instance_secs as f64),
            format!("{:+.1}pt", (a.slack() - h.slack()) * 100.0),
            ratio(a.actions as f64, h.actions as f64)
        );
    }
    println!();
}

pub(crate) fn print_verdict(rows: &[Row]) {
    println!(
        "verdict (SLO-violation seconds ≤ {:.0}% of the HPA's | instance-seconds ≤ {:.0}% of the HPA's | slack ≤ {:.0}%)",
        GOAL_VIOLATIONS * 100.0,
        GOAL_COST * 100.0,
        GOAL_SLACK * 100.0
    );
    for r in rows {
        let (a, h) = (&r.aether, &r.hpa);
        let [v, c, s] = criteria(a, h);
        println!(
            "  {:<22} violations {} ({} vs {}) | cost {} ({}) | slack {} ({}) => {}",
            r.name,
            mark(v),
            a.violations,
            h.violations,
            mark(c),
            ratio(a.instance_secs as f64, h.instance_secs as f64),
            mark(s),
            pct(a.slack()),
            if v && c && s {
                "goal met"
            } else {
                "goal MISSED"
            }
        );
    }
    let g = goal_row(rows);
    let [v, c, s] = criteria(&g.aether, &g.hpa);
    println!(
        "  overall ({}): {}",
        g.name,
        if v && c && s {
            "GOAL MET"
        } else {
            "GOAL MISSED"
        }
    );
    println!();
}

/// Aether's two drives side by side on the traces both ran, per variant: violation seconds
/// and instance-seconds of each, summed over the goal's traces (`all`), and the extras apart.
pub(crate) fn print_drives(
    traces: &[Trace],
    vars: &[Variant],
    cpu_idx: &[usize],
    req_idx: &[usize],
    cpu: &[Vec<(Score, Diag)>],
    req: &[Vec<(Score, Diag)>],
) {
    println!(
        "aether, request drive vs cpu drive per variant (SLO-violation s and instance-s, cpu → requests; the traces both ran)"
    );
    // (position in the request runs, position in the cpu runs) of the shared traces.
    let shared: Vec<(usize, usize)> = req_idx
        .iter()
        .enumerate()
        .filter_map(|(j, i)| cpu_idx.iter().position(|c| c == i).map(|k| (j, k)))
        .collect();
    let groups: Vec<(String, Vec<(usize, usize)>)> = std::iter::once((
        "all".to_string(),
        shared
            .iter()
            .copied()
            .filter(|(j, _)| !traces[*j].extra)
            .collect(),
    ))
    .chain(
        shared
            .iter()
            .filter(|(j, _)| traces[*j].extra)
            .map(|&(j, k)| (traces[j].name.to_string(), vec![(j, k)])),
    )
    .filter(|(_, g)| !g.is_empty())
    .collect();
    print!("  {:<42}", "variant");
    for (name, _) in &groups {
        print!(" {:>30}", name);
    }
    println!();
    for (v, (c, r)) in vars.iter().zip(cpu.iter().zip(req)) {
        print!("  {:<42}", v.name);
        for (_, g) in &groups {
            let (mut sc, mut sr) = (Score::default(), Score::default());
            for &(j, k) in g {
                sc.add(&c[k].0);
                sr.add(&r[j].0);
            }
            let cell = format!(
                "{} → {} / {} → {}",
                sc.violations, sr.violations, sc.instance_secs, sr.instance_secs
            );
            print!(" {cell:>30}");
        }
        println!();
    }
    println!();
}

pub(crate) fn print_diagnostics(traces: &[Trace], runs: &[(Score, Diag)]) {
    println!(
        "aether diagnostics (default run, reported window): applied decisions by origin; seconds a proposal was held back \
         by safety::check, by reason"
    );
    let line = |name: &str, d: &Diag| {
        println!(
            "  {:<10} {:>4} {:>5} {:>5} {:>7} {:>7} {:>6} {:>10} {:>7} {:>9} {:>5} {:>8} {:>15}",
            name,
            d.ups,
            d.downs,
            d.by_rule,
            d.by_rule_raised,
            d.by_forecast,
            format!("{}/{}", d.from_zero, d.to_zero),
            d.held_converging,
            d.held_up_cooldown,
            d.held_down_cooldown,
            d.held_rate,
            d.held_bound + d.held_other,
            format!("{} (−{} inst)", d.step_clamps, d.step_cut)
        );
    };
    println!(
        "  {:<10} {:>4} {:>5} {:>5} {:>7} {:>7} {:>6} {:>10} {:>7} {:>9} {:>5} {:>8} {:>15}",
        "trace",
        "ups",
        "downs",
        "rule",
        "rule+fc",
        "fc only",
        "0↔",
        "converging",
        "up-cool",
        "down-cool",
        "rate",
        "at-bound",
        "max_step clamps"
    );
    let mut all = Diag::default();
    let goal = traces.iter().filter(|t| !t.extra).count();
    for (tr, (_, d)) in traces.iter().zip(runs).filter(|(t, _)| !t.extra) {
        all.add(d);
        line(tr.name, d);
    }
    if goal > 1 {
        line("all", &all);
    }
    for (tr, (_, d)) in traces.iter().zip(runs).filter(|(t, _)| t.extra) {
        line(tr.name, d);
    }
    println!(
        "  (rule: a rule alone; rule+fc: a rule's count raised, or a scale-in limited, by the forecast; fc only: the forecast"
    );
    println!(
        "   alone; 0↔: scales from zero on demand / to zero after idle_to_zero (request drive, sporadic);"
    );
    println!(
        "   at-bound: at min/max already; max_step clamps: applied scale-ups cut to a step of {}, and the instances cut)",
        D.bounds.max_step
    );
    println!();
}

pub(crate) fn print_variants(
    traces: &[Trace],
    vars: &[Variant],
    runs: &[Vec<(Score, Diag)>],
    hpa: &[Score],
) {
    println!(
        "variants (Aether with one knob changed; the HPA and the model unchanged; for the analysis: the verdict above is the default's)"
    );
    let base_rows = rows(
        traces,
        &hpa.iter().map(|_| Score::default()).collect::<Vec<_>>(),
        hpa,
    );
    let goal = goal_row(&base_rows).name.clone();
    print!("  {:<42}", "SLO-violation s / instance-s vs the HPA");
    for r in &base_rows {
        print!(" {:>20}", r.name);
    }
    println!("   goal on {goal}");
    print!("  {:<42}", "hpa baseline");
    for r in &base_rows {
        print!(" {:>20}", format!("{} / 100%", r.hpa.violations));
    }
    println!();
    for (v, run) in vars.iter().zip(runs) {
        let scores: Vec<Score> = run.iter().map(|(s, _)| *s).collect();
        let rs = rows(traces, &scores, hpa);
        print!("  {:<42}", v.name);
        for r in &rs {
            let cell = format!(
                "{} / {}",
                r.aether.violations,
                ratio(r.aether.instance_secs as f64, r.hpa.instance_secs as f64)
            );
            print!(" {cell:>20}");
        }
        let g = goal_row(&rs);
        let [vi, c, s] = criteria(&g.aether, &g.hpa);
        println!(
            "   viol {} cost {} slack {} ({})",
            mark(vi),
            mark(c),
            mark(s),
            pct(g.aether.slack())
        );
    }
    println!();
}

/// Per 10 s of `tr.event`: the mean load, then for each controller its desired/active count at
/// the end, the mean utilisation, the largest backlog and the violating seconds; for Aether also
/// the forecaster's peak over the lead time at the end of the row.
pub(crate) fn print_timeline(model: Model, tr: &Trace, base: &Rules, drive: Drive) {
    let mut logs = [Vec::new(), Vec::new()];
    let mut a = Aether::new(&variants(base)[0], model, tr, drive);
    a.report_from = 0;
    simulate(model, tr, aether_min(tr, drive), &mut a, Some(&mut logs[0]));
    simulate(
        model,
        tr,
        MIN,
        &mut Hpa::new(model.target),
        Some(&mut logs[1]),
    );
    println!(
        "timeline of {}, {} drive (per 10 s: mean load; desired/active at the end, mean u, largest backlog in \
         core-seconds, violating seconds; fc = Aether's forecast peak within its {} s lead at the end, in {})",
        tr.name,
        drive.name(),
        model.startup + 1,
        match drive {
            Drive::Cpu => "cores",
            Drive::Requests => "calls/s",
        }
    );
    println!(
        "  {:>7} {:>6}   {:>7} {:>5} {:>7} {:>4} {:>6}   {:>7} {:>5} {:>7} {:>4}",
        "t", "load", "aether", "u", "backlog", "viol", "fc", "hpa", "u", "backlog", "viol"
    );
    let end = tr.event.end.min(tr.load.len());
    for start in (tr.event.start..end).step_by(10) {
        let stop = (start + 10).min(end);
        let load = tr.load[start..stop].iter().sum::<f64>() / (stop - start) as f64;
        print!("  {start:>7} {load:>6.2}");
        for (i, log) in logs.iter().enumerate() {
            let w = &log[start..stop];
            let last = w[w.len() - 1];
            let u = w.iter().map(|s| s.u).sum::<f64>() / w.len() as f64;
            let backlog = w.iter().map(|s| s.backlog).fold(0.0, f64::max);
            let viol = w.iter().filter(|s| s.violated).count();
            print!(
                "   {:>7} {u:>5.2} {backlog:>7.1} {viol:>4}",
                format!("{}/{}", last.desired, last.active)
            );
            if i == 0 {
                let fc = last.forecast.map_or("-".into(), |v| format!("{v:.2}"));
                print!(" {fc:>6}");
            }
        }
        println!();
    }
    println!();
}
