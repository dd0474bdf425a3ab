//! Shaping: the situation as compact text the model can use, after a fixed system prefix (with
//! worked examples) whose KV cache is computed once at load and reused by every review. Pure;
//! the engine checks the token count against [`TOKEN_BUDGET`] and shapes again with less detail
//! when it is over.

use crate::controller::brain::SliceView;
use crate::controller::review::{Situation, Verdict};
use crate::domain::{Action, DecisionStatus};

/// Most tokens the situation text may take (the fixed prefix is not counted: it is cached).
pub const TOKEN_BUDGET: usize = 400;

/// The fixed start of every prompt (ChatML, as the GGUF's chat template writes it): the task
/// and worked examples, ending where the situation begins. Cached once per load.
pub const SYSTEM: &str = "<|im_start|>system
You review an autoscaler's proposals for a server cluster. Read the numbers, then the notes, events and log lines: they show what numbers cannot. Reject when more copies cannot help (the copies crash on a fault of their own or of a dependency), when a rise is a passing warm-up, when an operator's note still forbids it, when it repeats a vetoed action or flaps, or scales in on a forecast alone. Approve when the load needs it, also when errors come from overload or are old or harmless, or a note's window has passed. Adjust to N when another count fits better. Then one short reason that cites the situation.<|im_end|>
<|im_start|>user
Now 09:30 UTC.
Proposal: scale_up pay/api from 3 to 5 (rule cpu-high).
Slice pay/api: 3 of 3 active, bounds 2..=10, cpu per instance 0.91 (target 0.60).
Logs (3 lines):
  #1 5s ago: panic: open /etc/pay/keys.pem: no such file or directory (x3)
Risks: none.<|im_end|>
<|im_start|>assistant
Verdict: reject
Reason: The copies crash on a missing key file; more copies would crash too.<|im_end|>
<|im_start|>user
Now 11:05 UTC.
Proposal: scale_up pay/web from 2 to 3 (rule latency-high).
Slice pay/web: 2 of 2 active, bounds 1..=6, 340.00 calls/s, p95 410 ms (target 250 ms).
Notes: bob 3h ago: \"no scaling of pay/web before 10:00, audit\".
Risks: none.<|im_end|>
<|im_start|>assistant
Verdict: approve
Reason: Latency is far above target and the 10:00 hold has passed.<|im_end|>
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
    pub logs: usize,
    pub events: usize,
    pub notes: usize,
}

impl Detail {
    pub const FULL: Detail = Detail {
        nodes: 8,
        recent: 3,
        reasoning: 1,
        logs: 4,
        events: 3,
        notes: 2,
    };

    /// The next smaller level, or `None` at the smallest. Nodes, recent decisions and the
    /// rule's sentences go first; then log lines and events down to one each; then the event,
    /// all notes but the newest, the log line, the note: the words go last, since they are
    /// what the numbers cannot show.
    pub fn smaller(self) -> Option<Detail> {
        let d = self;
        let halve = |n: usize| if n == 0 { 0 } else { (n / 2).max(1) };
        let mut n = d;
        if d.nodes + d.recent + d.reasoning > 0 {
            n.nodes = d.nodes / 2;
            n.recent = d.recent / 2;
            n.reasoning = d.reasoning.saturating_sub(1);
            n.logs = halve(d.logs);
            n.events = halve(d.events);
        } else if d.logs > 1 || d.events > 1 {
            n.logs = halve(d.logs);
            n.events = halve(d.events);
        } else if d.events == 1 {
            n.events = 0;
        } else if d.notes > 1 {
            n.notes = 1;
        } else if d.logs == 1 {
            n.logs = 0;
        } else if d.notes == 1 {
            n.notes = 0;
        } else {
            return None;
        }
        Some(n)
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

/// How long an operator's veto of an action stands against the same action by itself (as long
/// as flapping is looked for); an older veto is left to its reason, among the notes.
pub const VETO_HOLDS: u64 = 15 * 60_000;

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
        matches!(d.status, DecisionStatus::Vetoed { at, .. } if now.saturating_sub(at) < VETO_HOLDS)
            && d.action.target() == target
            && d.action.verb() == verb
    }) && let DecisionStatus::Vetoed { at, .. } = d.status
    {
        out.push(format!(
            "operator vetoed {} ({verb} {target}) {} ago",
            d.name(),
            short_ago(now, at)
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
        let others: Vec<_> = s
            .world
            .nodes
            .iter()
            .filter(|n| n.state == crate::domain::NodeState::Ready && n.live && n.id != *node)
            .collect();
        let gpu = |n: &&crate::controller::brain::NodeView| n.gpu_temp.is_some();
        let drained_has_gpu = s
            .world
            .nodes
            .iter()
            .any(|n| n.id == *node && n.gpu_temp.is_some());
        if others.is_empty() {
            out.push("it would leave no ready node".into());
        } else if drained_has_gpu && !others.iter().any(gpu) {
            out.push("it would leave no ready GPU node".into());
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
        Action::Sleep { name, .. } => format!("drain and suspend node {name}"),
        Action::Wake { name, .. } => format!("resume sleeping node {name}"),
        a @ Action::Rollback { .. } => a.to_string(),
    };
    t.push_str(&format!("Now {}.\n", clock(s.world.now)));
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
    let focus = match &p.action {
        Action::Drain { node, .. }
        | Action::Undrain { node, .. }
        | Action::Sleep { node, .. }
        | Action::Wake { node, .. } => Some(*node),
        _ => None,
    };
    if focus.is_none() && detail.nodes > 0 && !s.world.nodes.is_empty() {
        let ready = s
            .world
            .nodes
            .iter()
            .filter(|n| n.state == crate::domain::NodeState::Ready && n.live)
            .count();
        t.push_str(&format!(
            "Nodes: {ready} of {} ready.\n",
            s.world.nodes.len()
        ));
    } else if detail.nodes > 0 && !s.world.nodes.is_empty() {
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
                    short_ago(s.world.now, d.at)
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
    text_lines(&mut t, s, detail);
    let risks = risks(s);
    if risks.is_empty() {
        t.push_str("Risks: none.");
    } else {
        t.push_str(&format!("Risks: {}.", risks.join("; ")));
    }
    t
}

/// The operators' notes, the events and the log lines, within `detail`: notes newest first,
/// events newest first, log lines with error words first, each distinct line once with its count.
fn text_lines(t: &mut String, s: &Situation, detail: Detail) {
    let now = s.world.now;
    let c = &s.context;
    if detail.notes > 0 && !c.notes.is_empty() {
        let shown: Vec<String> = c
            .notes
            .iter()
            .rev()
            .take(detail.notes)
            .map(|n| {
                let by = if n.by.is_empty() { "operator" } else { &n.by };
                let times = clock_times(&n.text, n.at, now);
                format!(
                    "{by} {} ago: \"{}\"{}",
                    short_ago(now, n.at),
                    cut(&n.text, 160),
                    if times.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", times.join(", "))
                    }
                )
            })
            .collect();
        t.push_str(&format!("Notes: {}.\n", shown.join("; ")));
    }
    if detail.events > 0 && !c.events.is_empty() {
        let shown: Vec<String> = c
            .events
            .iter()
            .rev()
            .take(detail.events)
            .map(|e| format!("  {} ago {}\n", short_ago(now, e.at), cut(&e.what, 120)))
            .collect();
        t.push_str("Events:\n");
        for e in shown {
            t.push_str(&e);
        }
    }
    if detail.logs > 0 && !c.logs.is_empty() {
        // Distinct lines (timestamps aside), newest copy kept, with their counts.
        let mut lines: Vec<(String, &str, u64, usize)> = Vec::new();
        for l in c.logs.iter().rev() {
            let body = log_body(&l.line);
            match lines.iter_mut().find(|x| x.0 == body) {
                Some(x) => x.3 += 1,
                None => lines.push((body, l.instance.as_str(), l.at, 1)),
            }
        }
        lines.sort_by_key(|x| (!is_error(&x.0), std::cmp::Reverse(x.2)));
        t.push_str(&format!("Logs ({} lines):\n", c.logs.len()));
        // The proposal's own slice is implied: its copies are named by index alone.
        let own = match &s.proposal.action {
            Action::Scale {
                blueprint, slice, ..
            } => Some(format!("{blueprint}/{slice}/")),
            _ => None,
        };
        for (body, instance, at, n) in lines.iter().take(detail.logs) {
            let instance = match own.as_deref().and_then(|o| instance.strip_prefix(o)) {
                Some(index) => format!("#{index}"),
                None => instance.to_string(),
            };
            let times = if *n > 1 {
                format!(" (x{n})")
            } else {
                String::new()
            };
            // Lines read from a log file carry no time of their own (`at` is the read).
            let age = if *at < now {
                format!(" {} ago", short_ago(now, *at))
            } else {
                String::new()
            };
            t.push_str(&format!("  {instance}{age}: {}{times}\n", cut(body, 100)));
        }
    }
}

/// Where the words of a shaped situation begin (a byte offset): its notes, events or log lines,
/// else its risks, else the start.
pub fn words_start(text: &str) -> usize {
    ["\nNotes: ", "\nEvents:\n", "\nLogs (", "\nRisks: "]
        .iter()
        .filter_map(|m| text.find(m).map(|i| i + 1))
        .min()
        .unwrap_or(0)
}

/// How long ago an event or log line of a shaped situation happened, in seconds, read back
/// from where [`text_lines`] writes it: an event's first word (`3h ago …`), a log line's second
/// (`#2 20s ago: …`); `None` for a line without one (a log line read from a file carries no
/// time of its own).
pub fn line_age(line: &str) -> Option<u64> {
    let w: Vec<&str> = line.split_whitespace().take(3).collect();
    let span = match w.as_slice() {
        [span, "ago", ..] => span,
        [_, span, "ago:"] => span,
        _ => return None,
    };
    humantime::parse_duration(span).ok().map(|d| d.as_secs())
}

/// Words that mark a log line as an error, for ordering lines (errors first); the reviewer, not
/// this list, judges what they mean.
const ERROR_WORDS: &[&str] = &[
    "error",
    "exception",
    "fatal",
    "panic",
    "fail",
    "refused",
    "denied",
    "killed",
    "oom",
    "outofmemory",
    "out of memory",
    "timeout",
    "timed out",
    "traceback",
    "crash",
    "unavailable",
    "cannot",
    "could not",
    "unable",
];

/// Whether a line holds an error word (case aside).
pub fn is_error(line: &str) -> bool {
    let l = line.to_lowercase();
    ERROR_WORDS.iter().any(|w| l.contains(w))
}

/// A log line without its leading timestamp: the words up to the first that has letters and
/// no digits (`2026-12-04T16:01:58Z`, `[16:01:58]`, `12/04` go; `ERROR` stays).
fn log_body(line: &str) -> String {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.peek() {
        let letters = w.chars().filter(|c| c.is_alphabetic()).count();
        if w.chars().any(|c| c.is_ascii_digit()) && letters <= 2 {
            words.next();
        } else {
            break;
        }
    }
    let body: Vec<&str> = words.collect();
    if body.is_empty() {
        line.trim().to_string()
    } else {
        body.join(" ")
    }
}

/// At most `n` characters on one line (a line break becomes a space), with '…' when cut.
fn cut(text: &str, n: usize) -> String {
    let text = text.trim().replace(['\r', '\n'], " ");
    if text.chars().count() <= n {
        return text;
    }
    let head: String = text.chars().take(n).collect();
    format!("{}…", head.trim_end())
}

/// The times of day a note names ("until 15:00", "before 9:30", "till 3pm", both ends of
/// "13:00-15:00"), each placed at its first occurrence after the note was written (`written`;
/// a window's start up to [`TIME_GRACE`] before it, as in "load test 13:00-15:00" written at
/// 13:10) and said against `now`: "15:00 was 1h05m ago", "9:30 is in 40m". Arithmetic the
/// small model cannot do; the words stay its to read. At most three.
pub fn clock_times(
    text: &str,
    written: crate::domain::Millis,
    now: crate::domain::Millis,
) -> Vec<String> {
    const DAY: u64 = 86_400_000;
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < 3 {
        // A time starts a number: not inside one, a version or an address. (A date's parts
        // have neither minutes nor am/pm, so they are refused below.)
        if !digit(i) || (i > 0 && (digit(i - 1) || matches!(b[i - 1], b':' | b'.'))) {
            i += 1;
            continue;
        }
        let mut j = i;
        while digit(j) {
            j += 1;
        }
        let hour: u64 = text[i..j].parse().unwrap_or(99);
        let (mut minute, mut end, mut half) = (0, j, None);
        if b.get(j) == Some(&b':') && digit(j + 1) && digit(j + 2) && !digit(j + 3) {
            minute = text[j + 1..j + 3].parse().unwrap_or(99);
            end = j + 3;
        }
        // "3pm", "11 am", "3:30pm"
        let gap = text[end..].len() - text[end..].trim_start_matches(' ').len();
        let word = text[end + gap..].to_ascii_lowercase();
        if (word.starts_with("am") || word.starts_with("pm"))
            && !word[2..].starts_with(|c: char| c.is_alphanumeric())
        {
            half = Some(word.starts_with("pm"));
            end += gap + 2;
        }
        let hour = match half {
            Some(pm) if (1..=12).contains(&hour) => hour % 12 + if pm { 12 } else { 0 },
            Some(_) => 99,
            None if end > j && j - i <= 2 => hour,
            None => 99,
        };
        if hour < 24 && minute < 60 {
            let mut at = written - written % DAY + (hour * 60 + minute) * 60_000;
            let starts_window = text[end..].trim_start().starts_with(['-', '–']);
            if at + if starts_window { TIME_GRACE } else { 0 } < written {
                at += DAY;
            }
            let said = &text[i..end];
            out.push(if at <= now {
                format!("{said} was {} ago", span(now - at))
            } else {
                format!("{said} is in {}", span(at - now))
            });
        }
        i = end.max(j);
    }
    out
}

/// How long before a note was written a window's start it names is still that day's.
const TIME_GRACE: u64 = 2 * 3_600_000;

/// A span to the minute: `40m`, `2h`, `1h05m`, `3d`.
fn span(ms: u64) -> String {
    let m = ms / 60_000;
    match m {
        0..=59 => format!("{m}m"),
        60..=2879 if m % 60 == 0 => format!("{}h", m / 60),
        60..=2879 => format!("{}h{:02}m", m / 60, m % 60),
        _ => format!("{}d", m / 1440),
    }
}

/// The time of day of `at`, UTC: `16:02 UTC`.
pub fn clock(at: crate::domain::Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", &text[11..16])
}

/// How long before `now` `at` was, in its largest unit: `20s`, `4m`, `2h`, `3d`.
pub fn short_ago(now: crate::domain::Millis, at: crate::domain::Millis) -> String {
    let s = now.saturating_sub(at) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The numbers in a text: runs of digits with at most one inner '.' (`0.93`, `12` of `d-12`,
/// `16` and `02` of `16:02`).
pub fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            let mut dot = false;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || (b[i] == b'.' && !dot && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                dot |= b[i] == b'.';
                i += 1;
            }
            if let Ok(v) = text[start..i].parse::<f64>() {
                out.push(v);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Whether every number in `reason` appears in `situation` (the text the model read), or is
/// a percentage of a fraction there (`93%` of `0.93`).
pub fn grounded(reason: &str, situation: &str) -> bool {
    let known = numbers(situation);
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    numbers(reason)
        .into_iter()
        .all(|n| known.iter().any(|k| near(*k, n) || near(*k * 100.0, n)))
}

/// A plain reason from the situation's own words, for a verdict whose generated reason cited
/// what the situation does not hold. It cites the rule's first sentence only where `text` (the
/// situation as the model read it, perhaps shaped down) still holds it.
pub fn plain_reason(s: &Situation, v: &Verdict, text: &str) -> String {
    let p = &s.proposal;
    let what = format!("{} {}", p.action.verb(), p.action.target());
    let why = p
        .reasoning
        .first()
        .map(|r| cut(r, 120))
        .filter(|r| text.contains(r.as_str()))
        .unwrap_or_else(|| format!("rule {} holds", p.rule));
    match v {
        Verdict::Approve => format!("{what} fits: {why}."),
        Verdict::Reject => match risks(s).first() {
            Some(r) => format!("{what} is doubtful: {r}."),
            None => format!("{what} is doubtful: the logs, events or notes argue against it."),
        },
        Verdict::Adjust(n) => match &p.action {
            Action::Scale { to, .. } => {
                format!("{n} instances fit {} better than {to}.", p.action.target())
            }
            _ => format!("{what}: {n} instances fit better."),
        },
    }
}

/// The answer text of a verdict after [`ANSWER`].
pub fn answer_text(v: &Verdict) -> String {
    match v {
        Verdict::Approve => " approve".into(),
        Verdict::Reject => " reject".into(),
        Verdict::Adjust(n) => format!(" adjust to {n}"),
    }
}

/// The count the numbers call for: for each per-instance measure the situation gives with a
/// target (CPU per instance, calls per instance or calls/s over the current count), the
/// current count times how far it is from its target, the largest of them (enough copies
/// for every load, whichever rule proposed the step), within the slice's bounds. `None`
/// without such a measure, for a forecast's step (sized for load still to come) or a drain.
pub fn needed(s: &Situation) -> Option<u32> {
    let Action::Scale { from, .. } = s.proposal.action else {
        return None;
    };
    if s.proposal.rule.starts_with("forecast") || input(s, "forecast_of").is_some() {
        return None;
    }
    let v = slice(s)?;
    let num = |k: &str| input(s, k).and_then(|x| x.parse::<f64>().ok());
    let cpu = num("cpu_per_instance").zip(num("target_cpu").or(v.target_cpu));
    let calls = num("calls_per_instance")
        .or_else(|| {
            num("calls_per_s")
                .or(v.calls_per_s)
                .map(|c| c / f64::from(from.max(1)))
        })
        .zip(num("target_calls_per_instance").or(v.target_calls_per_instance));
    let n = [cpu, calls]
        .into_iter()
        .flatten()
        .filter(|(now, goal)| now.is_finite() && goal.is_finite() && *goal > 0.0 && *now >= 0.0)
        .map(|(now, goal)| (f64::from(from) * now / goal - 1e-9).ceil().max(1.0) as u32)
        .max()?;
    Some(n.clamp(v.min.max(1), v.max))
}

/// The count a scale should go to instead when its step misses [`needed`]: a scale-up that
/// stops short of it or goes past it, a scale-in that cuts below it. That count, at least one
/// step in the proposal's direction, within the bounds and `max_step` of the current count.
fn better_count(s: &Situation, max_step: u32) -> Option<u32> {
    let Action::Scale { from, to, .. } = s.proposal.action else {
        return None;
    };
    let v = slice(s)?;
    let need = needed(s)?;
    let (lo, hi) = (
        v.min.max(from.saturating_sub(max_step)).max(1),
        v.max.min(from + max_step),
    );
    let n = if to > from && to != need {
        need.max(from + 1)
    } else if to < from && need > to && need < from {
        need
    } else {
        return None;
    };
    let n = n.clamp(lo, hi.max(lo));
    // Within the step it must still come nearer the need than the proposal does.
    (n != to && n != from && n.abs_diff(need) < to.abs_diff(need)).then_some(n)
}

/// What the numbers alone say of a proposal, before any text is read: reject when a risk
/// holds ([`risks`]), adjust when the step misses what the numbers need ([`needed`]), nothing
/// otherwise (the text then decides between approve and reject).
pub fn by_numbers(s: &Situation, max_step: u32) -> Option<Verdict> {
    if !risks(s).is_empty() {
        return Some(Verdict::Reject);
    }
    better_count(s, max_step).map(Verdict::Adjust)
}

/// The verdicts on offer: approve, reject, and for a scale, other counts within the slice's
/// bounds and the step the safety bounds allow (`max_step` instances from the current count),
/// the count the numbers call for among them ([`by_numbers`]).
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
        ns.extend(better_count(s, max_step));
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
        s.recent.clear();
        s.context = Default::default();
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
        let action = Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from,
            to,
        };
        Decision::bare(id, 10_000_000 - ago_ms, "n1", "cpu-high", action, status)
    }

    /// d-7, a scale-up of shop/web vetoed 3 minutes before the situation's now.
    fn vetoed_scale_up() -> Decision {
        let status = DecisionStatus::Vetoed {
            at: 10_000_000 - 180_000,
            by: "uid:0@n1".into(),
            reason: None,
            reverted: None,
        };
        decision(7, true, status, 200_000)
    }

    #[test]
    fn the_text_names_the_proposal_its_numbers_and_its_risks() {
        let mut s = situation("cpu-high", 2, 4);
        s.recent.push(vetoed_scale_up());
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
            t.starts_with(
                "Now 02:46 UTC.\nProposal: scale_up shop/web from 2 to 4 (rule cpu-high).\n"
            ),
            "{t}"
        );
        assert!(t.contains("cpu per instance 0.93 (target 0.60)"), "{t}");
        assert!(
            t.contains("Nodes: 12 of 12 ready.\n"),
            "a scale counts the nodes: {t}"
        );
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
    fn a_drain_shows_its_node_first_and_the_others_in_short() {
        let mut s = situation("gpu-hot", 2, 4);
        s.proposal.action = Action::Drain {
            node: 2,
            name: "n2".into(),
        };
        let t = shape(&s, Detail::FULL);
        assert!(
            t.contains("Proposal: drain node n2 (rule gpu-hot).\n"),
            "{t}"
        );
        assert!(
            t.contains("Nodes: n2 ready cpu 0.50 mem 0.30 gpu 91C; n1 ready"),
            "{t}"
        );
        assert!(t.contains("; 4 more."), "8 of 12 nodes shown: {t}");
    }

    #[test]
    fn notes_events_and_log_lines_are_shaped_errors_first_and_once_each() {
        use crate::controller::review::Note;
        let mut s = situation("cpu-high", 2, 4);
        let now = s.world.now;
        let log = |ago: u64, line: &str| log_line(now - ago, line);
        s.context.logs = vec![
            log(50_000, "2026-12-04T16:01:10Z INFO GET /cart 200 12ms"),
            log(
                40_000,
                "2026-12-04T16:01:20Z ERROR dial tcp 10.0.0.5:5432: connection refused",
            ),
            log(30_000, "2026-12-04T16:01:30Z INFO GET /cart 200 9ms"),
            log(
                20_000,
                "2026-12-04T16:01:40Z ERROR dial tcp 10.0.0.5:5432: connection refused",
            ),
        ];
        s.context.events = vec![event(
            now - 120_000,
            "shop/web/1 on n2 is backoff, 3 restarts, last exit: exit 1",
        )];
        s.context.notes = vec![Note {
            at: now - 7_200_000,
            by: "alice".into(),
            text: "db failover drill until 15:00".into(),
        }];
        let t = shape(&s, Detail::FULL);
        assert!(
            t.contains(
                "Notes: alice 2h ago: \"db failover drill until 15:00\" (15:00 is in 12h13m).\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "Events:\n  2m ago shop/web/1 on n2 is backoff, 3 restarts, last exit: exit 1\n"
            ),
            "{t}"
        );
        let logs = t.split("Logs (4 lines):\n").nth(1).expect("a log section");
        let lines: Vec<&str> = logs.lines().take(3).collect();
        assert_eq!(
            lines,
            vec![
                "  #0 20s ago: ERROR dial tcp 10.0.0.5:5432: connection refused (x2)",
                "  #0 30s ago: INFO GET /cart 200 9ms",
                "  #0 50s ago: INFO GET /cart 200 12ms",
            ],
            "errors first, each distinct line once, timestamps aside, the proposal's own \
             copies by index: {t}"
        );
        // The newest note and the worst log line are the last to go.
        let mut d = Detail::FULL;
        while let Some(n) = d.smaller() {
            if n.logs == 0 {
                break;
            }
            d = n;
        }
        let small = shape(&s, d);
        assert!(
            small.contains("db failover drill")
                && small.contains("connection refused")
                && !small.contains("Events:")
                && !small.contains("GET /cart"),
            "{small}"
        );
    }

    #[test]
    fn a_reason_is_grounded_only_in_numbers_the_situation_holds() {
        let text = "Now 16:02 UTC.\nSlice shop/web: cpu per instance 0.93 (target 0.60), errors 1.2%.\nRecent: d-12 vetoed.";
        assert!(grounded("CPU is 0.93, far above 0.60.", text));
        assert!(grounded("d-12 was vetoed at 16:02.", text));
        assert!(
            grounded("CPU at 93% is high.", text),
            "a fraction as a percentage"
        );
        assert!(grounded("No numbers at all.", text));
        assert!(!grounded("CPU is 0.97, above target.", text));
        assert!(!grounded("Scale to 6 instances.", text));
        assert_eq!(
            numbers("v1.2.3 at 10:05, 0.5."),
            vec![1.2, 3.0, 10.0, 5.0, 0.5]
        );
    }

    #[test]
    fn a_plain_reason_is_grounded_in_its_situation() {
        let mut s = situation("cpu-high", 2, 4);
        s.recent.push(vetoed_scale_up());
        let mut d = Some(Detail::FULL);
        while let Some(detail) = d {
            let text = shape(&s, detail);
            for v in [Verdict::Approve, Verdict::Reject, Verdict::Adjust(3)] {
                let r = plain_reason(&s, &v, &text);
                let known = format!("{text}\n{}", answer_text(&v));
                assert!(grounded(&r, &known), "{v:?} at {detail:?}: {r}\n{text}");
            }
            d = detail.smaller();
        }
        let text = shape(&s, Detail::FULL);
        assert_eq!(
            plain_reason(&s, &Verdict::Reject, &text),
            "scale_up shop/web is doubtful: operator vetoed d-7 (scale_up shop/web) 3m ago."
        );
        assert_eq!(
            plain_reason(
                &s,
                &Verdict::Approve,
                "Proposal: scale_up shop/web from 2 to 4."
            ),
            "scale_up shop/web fits: rule cpu-high holds.",
            "the rule's sentence is cited only where the text holds it"
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

    /// `situation` with the rule's measure at `now` against `goal`.
    fn measured(
        rule: &str,
        from: u32,
        to: u32,
        keys: [&str; 2],
        now: &str,
        goal: &str,
    ) -> Situation {
        let mut s = situation(rule, from, to);
        s.proposal.inputs = vec![(keys[0].into(), now.into()), (keys[1].into(), goal.into())];
        s
    }

    /// A log line of the proposal's first copy, at `at`.
    fn log_line(at: u64, line: &str) -> crate::controller::review::LogLine {
        crate::controller::review::LogLine {
            at,
            instance: "shop/web/0".into(),
            line: line.into(),
        }
    }

    /// An event at `at`.
    fn event(at: u64, what: &str) -> crate::controller::review::Event {
        crate::controller::review::Event {
            at,
            what: what.into(),
        }
    }

    /// `s` with the calls figures `pairs` among its inputs besides.
    fn and_calls(mut s: Situation, pairs: [(&str, &str); 2]) -> Situation {
        s.proposal
            .inputs
            .extend(pairs.map(|(k, v)| (k.to_string(), v.to_string())));
        s
    }

    #[test]
    fn the_numbers_reject_a_risk_and_adjust_a_step_that_misses_the_need() {
        let cpu = ["cpu_per_instance", "target_cpu"];
        let calls = ["calls_per_instance", "target_calls_per_instance"];
        // 3 copies at 190 calls/s each against 100 need 6; +1 to 4 falls short.
        let s = measured("calls-high", 3, 4, calls, "190.00", "100.00");
        assert_eq!(needed(&s), Some(6));
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(6)));
        assert!(candidates(&s, 4).contains(&Verdict::Adjust(6)));
        assert_eq!(
            by_numbers(&s, 1),
            None,
            "a step of 1 allows nothing nearer 6"
        );
        // One short of the need still leaves the copies over their target.
        let s = measured("calls-high", 3, 5, calls, "190.00", "100.00");
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(6)));
        // 2 copies at 0.70 against 0.60 need 3; +4 to 6 overshoots.
        let s = measured("cpu-high", 2, 6, cpu, "0.70", "0.60");
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(3)));
        // 8 copies at 0.45 need 6; cutting to 2 goes too deep.
        let s = measured("cpu-low", 8, 2, cpu, "0.45", "0.60");
        assert_eq!(by_numbers(&s, 8), Some(Verdict::Adjust(6)));
        // A step to the need stands, and so does a scale-in that keeps more than it needs.
        let s = measured("cpu-high", 2, 4, cpu, "0.93", "0.60");
        assert_eq!(by_numbers(&s, 4), None);
        let s = measured("cpu-low", 8, 5, cpu, "0.20", "0.60");
        assert_eq!(by_numbers(&s, 4), None);
        let latency = ["latency_p95_ms", "target_latency_ms"];
        let s = measured("latency-high", 2, 4, latency, "540", "250");
        assert_eq!(
            needed(&s),
            None,
            "latency does not fall in proportion to copies: no measure to size by"
        );
        // Whatever rule proposed it, a step is sized by every load per copy: a latency step
        // that overshoots what CPU and calls need, a saturated slice tripled past its load.
        let s = and_calls(
            measured("latency-high", 3, 6, cpu, "0.64", "0.60"),
            [
                ("calls_per_instance", "105"),
                ("target_calls_per_instance", "100"),
            ],
        );
        assert_eq!(needed(&s), Some(4));
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(4)));
        assert_eq!(
            by_numbers(&measured("cpu-saturated", 2, 6, cpu, "0.96", "0.60"), 4),
            Some(Verdict::Adjust(4))
        );
        // A CPU rule's scale-up that the calls outgrow: CPU at 0.72 on 4 copies needs 5, but
        // 250 calls a copy against 150 need 7.
        let s = and_calls(
            measured("cpu-high", 4, 5, cpu, "0.72", "0.60"),
            [
                ("calls_per_instance", "250"),
                ("target_calls_per_instance", "150"),
            ],
        );
        assert_eq!(needed(&s), Some(7));
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(7)));
        // A CPU-light scale-in that would leave the calls per copy over their target (450
        // calls/s at 100 a copy need 5, not 3).
        let s = and_calls(
            measured("cpu-low", 6, 3, cpu, "0.28", "0.60"),
            [("calls_per_s", "450"), ("target_calls_per_instance", "100")],
        );
        assert_eq!(needed(&s), Some(5));
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(5)));
        // A forecast's step is sized for load still to come.
        assert_eq!(
            needed(&measured("forecast", 2, 6, cpu, "0.70", "0.60")),
            None
        );
        // A zero target, a risk.
        assert_eq!(needed(&measured("cpu-high", 2, 6, cpu, "0.70", "0")), None);
        let mut s = measured("cpu-high", 2, 6, cpu, "0.70", "0.60");
        s.recent.push(vetoed_scale_up());
        assert_eq!(
            by_numbers(&s, 4),
            Some(Verdict::Reject),
            "a risk rejects first"
        );
        // A veto stands by itself for 15 minutes; after that its reason, among the notes, speaks.
        if let DecisionStatus::Vetoed { at, .. } = &mut s.recent[0].status {
            *at = s.world.now - VETO_HOLDS - 1;
        }
        assert_eq!(by_numbers(&s, 4), Some(Verdict::Adjust(3)));
    }

    #[test]
    fn the_words_begin_at_the_first_note_event_or_log_line_else_the_risks() {
        let t = "Now 10:00 UTC.\nProposal: x.\nEvents:\n  2m ago y\nLogs (1 lines):\n  #0: z\nRisks: none.";
        assert!(t[words_start(t)..].starts_with("Events:\n"));
        assert!(CONTENT_FREE[words_start(CONTENT_FREE)..].starts_with("Risks: "));
        assert_eq!(words_start("no sections"), 0);
    }

    #[test]
    fn a_multi_line_event_or_log_line_is_shaped_on_one_line() {
        let mut s = situation("cpu-high", 2, 4);
        let now = s.world.now;
        s.context.events = vec![event(now - 60_000, "veto: not now\nsee ticket")];
        s.context.logs = vec![log_line(now - 5_000, "panic: boom\n\tmain.go:12")];
        let t = shape(&s, Detail::FULL);
        assert!(t.contains("  1m ago veto: not now see ticket\n"), "{t}");
        assert!(t.contains("  #0 5s ago: panic: boom main.go:12\n"), "{t}");
    }

    #[test]
    fn a_line_s_age_is_read_from_its_first_words() {
        assert_eq!(line_age("  #0 20s ago: ERROR boom"), Some(20));
        assert_eq!(
            line_age("  #0: retry 5s ago"),
            None,
            "a line without an age whose words say one"
        );
        assert_eq!(
            line_age("  shop/db/1 3h ago: refused 2m ago"),
            Some(3 * 3600)
        );
        assert_eq!(line_age("  2m ago shop/web/1 exited"), Some(120));
        assert_eq!(line_age("  4d ago node n3 joined"), Some(4 * 86_400));
        assert_eq!(
            line_age("  #0: read from a file, 5m ago"),
            None,
            "past the first words"
        );
        assert_eq!(line_age("  #0 soon ago: x"), None);
        assert_eq!(line_age("ago"), None);
        assert_eq!(line_age("  #0 5€ ago: x"), None, "not a span, and no panic");
        assert_eq!(line_age("  #0 é ago: x"), None);
    }

    #[test]
    fn a_note_s_times_of_day_are_said_against_now() {
        let h = 3_600_000;
        let day = 24 * h;
        let (written, now) = (10 * day + 9 * h, 10 * day + 16 * h);
        assert_eq!(
            clock_times("load test until 15:00 UTC, hands off", written, now),
            vec!["15:00 was 1h ago"]
        );
        assert_eq!(
            clock_times("freeze till 5pm and again from 8 am", written, now),
            vec!["5pm is in 1h", "8 am is in 16h"],
            "a time before the note was written is the next day's"
        );
        assert_eq!(
            clock_times("k6 load test 08:00-11:30 UTC, hands off web", written, now),
            vec!["08:00 was 8h ago", "11:30 was 4h30m ago"],
            "both ends of a window; a start just before the note is that day's"
        );
        assert_eq!(
            clock_times(
                "hold before 16:30; v1.2.3, 10.0.0.5:5432, 2026-12-04, 45:10, 300 calls",
                written,
                now
            ),
            vec!["16:30 is in 30m"],
            "versions, addresses, dates and counts are not times"
        );
        assert!(clock_times("no times here", written, now).is_empty());
    }

    #[test]
    fn detail_shrinks_to_nothing_and_stops() {
        let mut d = Detail::FULL;
        let mut n = 0;
        while let Some(s) = d.smaller() {
            d = s;
            n += 1;
            assert!(n < 20);
        }
        assert_eq!(
            (d.nodes, d.recent, d.reasoning, d.logs, d.events, d.notes),
            (0, 0, 0, 0, 0, 0)
        );
    }
}
