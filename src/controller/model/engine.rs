//! The model's own thread. It owns the network (loaded when this node first leads, so
//! followers hold no weights), takes one review at a time from a queue of one, and keeps a
//! status for `aether model status`. Inference never runs on the async runtime; the controller
//! waits for a verdict only up to its budget and the engine drops work whose deadline passed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::file::{FileInfo, open};
use super::llama::Llama;
use super::prompt::{self, Detail, TOKEN_BUDGET};
use super::tokenizer::Tokenizer;
use super::verdict::{Answer, Reviewer};
use crate::config::{ModelConfig, ModelFormat};
use crate::controller::review::{self, Review, Situation, Verdict};

/// How much of the budget a review leaves for its answer to reach the controller: the reason
/// is cut this much before the budget.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);

/// How often a missing or changed model file is looked for.
const RESCAN: Duration = Duration::from_secs(5);

/// Where the model stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// `controller.model.enabled = false`.
    Disabled,
    /// No file at the path (pull one with `aether model pull`).
    Absent,
    /// The file is there; it loads when this node leads.
    Idle,
    Loading,
    Ready,
    Failed(String),
}

impl ModelState {
    /// The state in one word (`ready`, `failed` …), as the console and `/metrics` label it.
    pub fn word(&self) -> &'static str {
        match self {
            ModelState::Disabled => "disabled",
            ModelState::Absent => "absent",
            ModelState::Idle => "idle",
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelState::Disabled => write!(f, "disabled (controller.model.enabled = false)"),
            ModelState::Absent => write!(f, "absent (pull one with `aether model pull`)"),
            ModelState::Idle => write!(f, "idle (loads when this node leads)"),
            ModelState::Loading => write!(f, "loading"),
            ModelState::Ready => write!(f, "ready"),
            ModelState::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// What `aether model status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub state: ModelState,
    pub path: String,
    /// The file's header, once read.
    pub file: Option<FileInfo>,
    pub format: ModelFormat,
    pub threads: u32,
    pub load_ms: Option<u64>,
    /// Tokens of the cached system prefix.
    pub prefix_tokens: usize,
    pub reviews: u64,
    /// Reviews that missed their deadline.
    pub timeouts: u64,
    /// Reviews whose generated reason cited a number the situation does not hold, replaced by
    /// a plain reason.
    #[serde(default)]
    pub replaced_reasons: u64,
    /// Who chooses the verdict: `head` (the trained head fits this model) or `calibrated`.
    #[serde(default)]
    pub chooser: String,
    pub last_latency_ms: Option<u64>,
    pub last_prompt_tokens: Option<usize>,
    /// Prompt tokens per second of the last review.
    pub prefill_tok_s: Option<f64>,
    /// Generated tokens per second of the last review.
    pub decode_tok_s: Option<f64>,
    /// The last verdict and reason.
    pub last_review: Option<String>,
    /// The situation text the last review read (numbers, notes, events, log lines).
    #[serde(default)]
    pub last_text: Option<String>,
}

struct Job {
    situation: Situation,
    deadline: Instant,
    reply: SyncSender<Result<Reviewed, String>>,
}

/// Handle to the model thread.
pub struct Engine {
    jobs: SyncSender<Job>,
    status: Arc<Mutex<ModelStatus>>,
    wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cfg: ModelConfig,
}

impl Engine {
    /// Start the thread for the model at `path`; nothing is read until this node leads.
    pub fn start(cfg: &ModelConfig, path: PathBuf, max_step: u32) -> Arc<Engine> {
        let status = Arc::new(Mutex::new(ModelStatus {
            // What the thread's first scan will find, so nothing reports "absent" before it.
            state: if !cfg.enabled {
                ModelState::Disabled
            } else if path.exists() {
                ModelState::Idle
            } else {
                ModelState::Absent
            },
            path: path.display().to_string(),
            file: None,
            format: cfg.format,
            threads: cfg.threads,
            load_ms: None,
            prefix_tokens: 0,
            reviews: 0,
            timeouts: 0,
            replaced_reasons: 0,
            chooser: String::new(),
            last_latency_ms: None,
            last_prompt_tokens: None,
            prefill_tok_s: None,
            decode_tok_s: None,
            last_review: None,
            last_text: None,
        }));
        let (tx, rx) = sync_channel(1);
        let engine = Arc::new(Engine {
            jobs: tx,
            status: status.clone(),
            wanted: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            cfg: cfg.clone(),
        });
        if cfg.enabled {
            let (wanted, stop, format) = (engine.wanted.clone(), engine.stop.clone(), cfg.format);
            let spawned = std::thread::Builder::new()
                .name("aether-model".into())
                .spawn(move || run(rx, path, format, status, wanted, stop, max_step));
            if let Err(e) = spawned {
                engine.set(ModelState::Failed(format!("cannot start its thread: {e}")));
            }
        }
        engine
    }

    fn set(&self, s: ModelState) {
        self.status.lock().expect("model status").state = s;
    }

    /// The model's status now.
    pub fn status(&self) -> ModelStatus {
        self.status.lock().expect("model status").clone()
    }

    /// Ask for a review and wait for it until the budget is spent.
    pub fn review(&self, situation: Situation) -> Result<Review, String> {
        self.review_within(situation, self.cfg.budget.0)
    }

    /// Ask for a review and wait for it at most `budget`.
    pub fn review_within(&self, situation: Situation, budget: Duration) -> Result<Review, String> {
        self.review_in_full(situation, budget).map(|r| Review {
            verdict: r.answer.verdict,
            reason: r.answer.reason,
        })
    }

    /// Ask for a review and wait for it at most `budget`: the review in full.
    pub fn review_in_full(
        &self,
        situation: Situation,
        budget: Duration,
    ) -> Result<Reviewed, String> {
        let state = self.status().state;
        if state != ModelState::Ready {
            self.wanted.store(true, Ordering::Relaxed);
            return Err(format!("no model review: the model is {state}"));
        }
        let deadline = Instant::now() + budget;
        let (reply, answer) = sync_channel(1);
        match self.jobs.try_send(Job {
            situation,
            deadline,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(
                    "the model is busy with another review; the rules decide this one".into(),
                );
            }
            Err(TrySendError::Disconnected(_)) => return Err("the model thread has stopped".into()),
        }
        answer
            .recv_timeout(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(200),
            )
            .map_err(|_| {
                format!(
                    "no verdict within {} (controller.model.budget); the rules decide. \
                     'aether model bench' shows this machine's review time",
                    crate::domain::human_millis(budget.as_millis() as u64)
                )
            })?
    }
}

/// What `aether model bench` measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub reviews: u32,
    /// Reviews that failed or missed the budget.
    pub failed: u32,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub status: ModelStatus,
}

/// What `aether model review FILE` prints: the verdict, the reason and the timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewView {
    /// `approve`, `reject` or `adjust`.
    pub verdict: String,
    pub adjust_to: Option<u32>,
    pub reason: String,
    /// The generated reason cited a number the situation does not hold: this is the plain one.
    pub replaced: bool,
    /// Who chose the verdict: `numbers` (a risk, or an adjust the text did not object to),
    /// else the model's side, `head` or `calibrated`.
    pub chooser: String,
    /// Score per verb (does the text object?), then the numbers' count when adjusted.
    pub scores: Vec<(String, f32)>,
    /// The verdicts on offer.
    pub candidates: Vec<String>,
    pub latency_ms: u64,
    pub prompt_tokens: usize,
    pub prefill_ms: u64,
    pub generated: usize,
    pub decode_ms: u64,
    /// The controller's budget for a review (`controller.model.budget`).
    pub budget_ms: u64,
    /// The situation as the model read it.
    pub text: String,
}

impl ReviewView {
    /// The view of a review that took `latency`.
    pub fn of(r: &Reviewed, latency: Duration, budget: Duration) -> ReviewView {
        let a = &r.answer;
        let (verdict, adjust_to) = match a.verdict {
            Verdict::Approve => ("approve", None),
            Verdict::Reject => ("reject", None),
            Verdict::Adjust(n) => ("adjust", Some(n)),
        };
        ReviewView {
            verdict: verdict.into(),
            adjust_to,
            reason: a.reason.clone(),
            replaced: r.replaced,
            chooser: if a.by_numbers { "numbers" } else { a.chooser }.into(),
            scores: a.scores.clone(),
            candidates: r
                .candidates
                .iter()
                .map(|c| prompt::answer_text(c).trim().to_string())
                .collect(),
            latency_ms: latency.as_millis() as u64,
            prompt_tokens: a.prompt_tokens,
            prefill_ms: a.prefill_ms,
            generated: a.generated,
            decode_ms: a.decode_ms,
            budget_ms: budget.as_millis() as u64,
            text: r.text.clone(),
        }
    }
}

impl Engine {
    /// Load the model if it is not loaded (waiting up to a minute).
    fn ready(&self) -> Result<(), String> {
        self.wanted.store(true, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status();
            // A file pulled a moment ago is found by the thread's next scan.
            let pulled = || std::path::Path::new(&status.path).exists();
            match status.state {
                ModelState::Ready => return Ok(()),
                ModelState::Idle | ModelState::Loading if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                ModelState::Absent if Instant::now() < until && pulled() => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                s => return Err(format!("the model is {s}")),
            }
        }
    }

    /// Review one situation as the controller would (`aether model review FILE`), loading
    /// the model first if needed; waits up to a minute, so a slow review still answers (the
    /// view says whether it was within the budget).
    pub fn review_file(&self, situation: Situation) -> Result<ReviewView, String> {
        self.ready()?;
        let t = Instant::now();
        let r = self.review_in_full(situation, Duration::from_secs(60))?;
        Ok(ReviewView::of(&r, t.elapsed(), self.cfg.budget.0))
    }

    /// Review [`demo`] back to back for `seconds` (after loading the model, up to a minute),
    /// each with up to a minute: it measures the speed, not the budget.
    pub fn bench(&self, seconds: u32) -> Result<BenchReport, String> {
        self.ready()?;
        let end = Instant::now() + Duration::from_secs(seconds as u64);
        let (mut lat, mut failed) = (Vec::new(), 0);
        while Instant::now() < end {
            let t = Instant::now();
            match self.review_within(demo(), Duration::from_secs(60)) {
                Ok(_) => lat.push(t.elapsed().as_millis() as u64),
                // The model went away (a new file, a failed load): stop, do not spin.
                Err(e) if self.status().state != ModelState::Ready => return Err(e),
                Err(_) => failed += 1,
            }
        }
        lat.sort_unstable();
        let pick = |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Ok(BenchReport {
            reviews: lat.len() as u32,
            failed,
            p50_ms: pick(0.5),
            p95_ms: pick(0.95),
            status: self.status(),
        })
    }
}

/// The situation `aether model bench` reviews: the example of `aether model review --example`
/// (a scale-up while the copies crash on an out-of-memory error), at the current time.
pub fn demo() -> Situation {
    let mut s = review::file::parse(review::file::EXAMPLE, 0)
        .expect("the example situation parses")
        .situation;
    let shift = crate::domain::now_millis().saturating_sub(s.world.now);
    s.world.now += shift;
    for d in &mut s.recent {
        d.at += shift;
    }
    for l in &mut s.context.logs {
        l.at += shift;
    }
    for e in &mut s.context.events {
        e.at += shift;
    }
    for n in &mut s.context.notes {
        n.at += shift;
    }
    s
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The controller's reviewer backed by the engine.
pub struct ModelReviewer(pub Arc<Engine>);

impl review::Reviewer for ModelReviewer {
    fn name(&self) -> String {
        let s = self.0.status();
        match s
            .file
            .as_ref()
            .map(|f| f.name.as_str())
            .filter(|n| !n.is_empty())
        {
            Some(name) => format!("model {name} ({}, {} thread)", s.format, s.threads),
            None => format!("model ({}, {} thread)", s.format, s.threads),
        }
    }
    /// Reviewed within the budget less [`ANSWER_MARGIN`] and the time the leader may have spent
    /// reading the slice's logs: the reason is cut in time for the answer to reach the
    /// controller within the budget (a later one counts as a timeout).
    fn review(&self, situation: &Situation) -> Result<Review, String> {
        // The leader read the slice's logs first, within LOG_WAIT of the same budget.
        let budget = self.0.cfg.budget.0;
        let left = budget.saturating_sub(ANSWER_MARGIN + crate::controller::context::LOG_WAIT);
        self.0.review_within(situation.clone(), left)
    }
    fn budget(&self) -> Duration {
        self.0.cfg.budget.0
    }
    fn interval(&self) -> Duration {
        self.0.cfg.review_interval.0
    }
    fn warm(&self) {
        self.0.wanted.store(true, Ordering::Relaxed);
    }
    fn available(&self) -> Result<(), review::Unavailable> {
        match self.0.status().state {
            ModelState::Ready => Ok(()),
            s => Err(review::Unavailable {
                why: format!("the model is {s}"),
                // Not pulled, not loaded yet or loading: expected; a failed load is not.
                expected: !matches!(s, ModelState::Failed(_)),
            }),
        }
    }
}

/// Load the file into a ready reviewer.
pub fn load(
    path: &std::path::Path,
    format: ModelFormat,
) -> Result<(Reviewer, FileInfo), ModelError> {
    let (ct, file, info) = open(path)?;
    let template = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if !template.contains("<|im_start|>") {
        return Err(ModelError::Metadata(
            "the chat template is not ChatML (<|im_start|>…<|im_end|>), the only one aether writes"
                .into(),
        ));
    }
    let tok = Tokenizer::from_gguf(&ct)?;
    let mut r = std::io::BufReader::new(file);
    let llama = Llama::load(&ct, &mut r, format)?;
    if tok.vocab_size() > llama.hyper.vocab {
        return Err(ModelError::Metadata(format!(
            "the tokenizer has {} tokens but the embedding {}",
            tok.vocab_size(),
            llama.hyper.vocab
        )));
    }
    Ok((Reviewer::new(llama, tok)?, info))
}

/// One review in full: the answer, the verdicts that were on offer, the situation text the
/// model read, and whether its reason was replaced by a plain one.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub answer: Answer,
    pub candidates: Vec<Verdict>,
    pub text: String,
    /// The generated reason cited a number the situation does not hold (or was empty): the
    /// reason is [`prompt::plain_reason`] instead.
    pub replaced: bool,
}

/// The situation as text within [`TOKEN_BUDGET`] tokens: shaped with less detail until it
/// fits, or cut at the budget when even the least detail does not.
pub fn situation_text(r: &Reviewer, s: &Situation) -> Result<String, ModelError> {
    let mut detail = Detail::FULL;
    loop {
        let t = prompt::shape(s, detail);
        let ids = r.tok.encode(&t)?;
        if ids.len() <= TOKEN_BUDGET {
            return Ok(t);
        }
        match detail.smaller() {
            Some(d) => detail = d,
            None => return r.tok.decode(&ids[..TOKEN_BUDGET]),
        }
    }
}

/// Shape the situation within the token budget, review it, and keep the reason only if it is
/// grounded in the text.
pub fn answer(
    r: &mut Reviewer,
    s: &Situation,
    max_step: u32,
    deadline: Instant,
) -> Result<Reviewed, ModelError> {
    let text = situation_text(r, s)?;
    let candidates = prompt::candidates(s, max_step);
    let numbers = prompt::by_numbers(s, max_step);
    let mut answer = r.review(&text, &candidates, numbers, deadline)?;
    // The verdict's own count may be cited beside what the situation holds.
    let known = format!("{text}\n{}", prompt::answer_text(&answer.verdict));
    let replaced =
        !answer.plain && (answer.reason.is_empty() || !prompt::grounded(&answer.reason, &known));
    if replaced || answer.plain {
        answer.reason = prompt::plain_reason(s, &answer.verdict, &text);
    }
    Ok(Reviewed {
        answer,
        candidates,
        text,
        replaced,
    })
}

fn run(
    rx: Receiver<Job>,
    path: PathBuf,
    format: ModelFormat,
    status: Arc<Mutex<ModelStatus>>,
    wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    max_step: u32,
) {
    let set = |f: &dyn Fn(&mut ModelStatus)| f(&mut status.lock().expect("model status"));
    let mut model: Option<Reviewer> = None;
    let mut seen: Option<(u64, SystemTime)> = None;
    let mut last_scan: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            last_scan = Some(Instant::now());
            let meta = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            if meta != seen {
                model = None;
                seen = meta;
                set(&|s| {
                    s.state = if meta.is_some() {
                        ModelState::Idle
                    } else {
                        ModelState::Absent
                    };
                    s.file = None;
                });
            }
        }
        let idle = status.lock().expect("model status").state == ModelState::Idle;
        if model.is_none() && idle && wanted.load(Ordering::Relaxed) {
            set(&|s| s.state = ModelState::Loading);
            let t0 = Instant::now();
            match load(&path, format) {
                Ok((r, info)) => {
                    let ms = t0.elapsed().as_millis() as u64;
                    tracing::info!(
                        "model: loaded '{}' ({}, {format}) in {ms} ms; prefix {} tokens",
                        path.display(),
                        info.quant,
                        r.prefix_tokens()
                    );
                    set(&|s| {
                        s.state = ModelState::Ready;
                        s.file = Some(info.clone());
                        s.load_ms = Some(ms);
                        s.prefix_tokens = r.prefix_tokens();
                        s.chooser = if r.head.is_some() {
                            "head"
                        } else {
                            "calibrated"
                        }
                        .into();
                    });
                    model = Some(r);
                }
                Err(e) => {
                    tracing::warn!("model: {e}; the controller runs on its rules");
                    let reason = e.to_string();
                    set(&|s| s.state = ModelState::Failed(reason.clone()));
                }
            }
        }
        let job = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(m) = model.as_mut() else {
            let _ = job.reply.send(Err("the model is not loaded".into()));
            continue;
        };
        if Instant::now() >= job.deadline {
            set(&|s| s.timeouts += 1);
            let _ = job
                .reply
                .send(Err("the review waited past its budget".into()));
            continue;
        }
        let t0 = Instant::now();
        let res = answer(m, &job.situation, max_step, job.deadline);
        let ms = t0.elapsed().as_millis() as u64;
        let reply = match res {
            Ok(r) => {
                let a = &r.answer;
                let said = format!("{}: {}", prompt::answer_text(&a.verdict).trim(), a.reason);
                set(&|s| {
                    s.reviews += 1;
                    s.replaced_reasons += u64::from(r.replaced);
                    s.last_latency_ms = Some(ms);
                    // A risk's verdict runs no model: the speeds stay those of the last run.
                    if a.prompt_tokens > 0 {
                        s.last_prompt_tokens = Some(a.prompt_tokens);
                        s.prefill_tok_s =
                            Some(a.prompt_tokens as f64 * 1000.0 / a.prefill_ms.max(1) as f64);
                        s.decode_tok_s = (a.generated > 0)
                            .then(|| a.generated as f64 * 1000.0 / a.decode_ms.max(1) as f64);
                    }
                    s.last_review = Some(said.clone());
                    s.last_text = Some(r.text.clone());
                });
                Ok(r)
            }
            Err(e) => {
                set(&|s| s.timeouts += u64::from(Instant::now() >= job.deadline));
                Err(e.to_string())
            }
        };
        let _ = job.reply.send(reply);
    }
}
