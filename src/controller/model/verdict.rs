//! The constrained verdict. The numbers speak first ([`super::prompt::by_numbers`]: a risk
//! rejects and the model is not run; a step that misses the needed count adjusts); the model
//! reads the text and objects or not. An objection rejects; otherwise the numbers' adjust
//! stands, else approve. Nothing is parsed from free text.
//!
//! - With a head that fits the model ([`super::head`]), the head reads the residual stream
//!   after block 16 (the rest of the network is not run), and an objection's reason quotes the
//!   line of the notes, events or logs whose positions object most by the head's own margin.
//! - Without one, by the log-probability of the first token of " reject" against " approve"
//!   after the answer prefix, calibrated by the same tokens after a content-free situation (so
//!   a verb the model favours whatever it reads does not win by default); then up to
//!   [`REASON_TOKENS`] tokens of reason are generated greedily.

use std::time::Instant;

use candle_core::{IndexOp, Tensor};

use super::ModelError;
use super::head::Head;
use super::llama::{Cache, Llama, log_softmax};
use super::prompt::{ANSWER, CONTENT_FREE, REASON, SYSTEM, answer_text, line_age, words_start};
use super::tokenizer::Tokenizer;
use crate::controller::review::Verdict;

/// Most tokens of reason.
pub const REASON_TOKENS: usize = 18;

/// A model ready to review: the network, its tokenizer, and the cached system prefix.
pub struct Reviewer {
    pub llama: Llama,
    pub tok: Tokenizer,
    /// The KV cache after [`SYSTEM`].
    system: Cache,
    /// Next-token log-probabilities after a content-free situation (the calibration prior).
    free: Vec<f32>,
    /// Subtract the content-free prior from each candidate's score (without a head).
    pub calibrate: bool,
    /// The verdict head, when one fits this model.
    pub head: Option<Head>,
    /// The features of the content-free situation (what a head is checked against).
    pub probe: Vec<f32>,
    /// The block whose residual stream the features average ([`TAP`] or the last).
    tap: usize,
    /// The fixed texts every review runs, tokenized once.
    fixed: Fixed,
}

/// Tokens of the texts every review uses.
struct Fixed {
    /// The first token of each verb the model scores, with the verdict and its word.
    verbs: [(Verdict, &'static str, u32); 2],
    reason: Vec<u32>,
}

impl Fixed {
    fn new(tok: &Tokenizer) -> Result<Fixed, ModelError> {
        let first = |word: &str| -> Result<u32, ModelError> {
            tok.encode(word)?
                .first()
                .copied()
                .ok_or_else(|| ModelError::Tokenizer(format!("'{word}' has no tokens")))
        };
        Ok(Fixed {
            verbs: [
                (Verdict::Approve, "approve", first(" approve")?),
                (Verdict::Reject, "reject", first(" reject")?),
            ],
            reason: tok.encode(REASON)?,
        })
    }
}

/// What one review produced.
#[derive(Debug, Clone)]
pub struct Answer {
    pub verdict: Verdict,
    pub reason: String,
    /// Score per verb (calibrated), then per count when the verb was adjust: `("reject", 1.9)`.
    pub scores: Vec<(String, f32)>,
    pub prompt_tokens: usize,
    pub prefill_ms: u64,
    pub generated: usize,
    pub decode_ms: u64,
    /// The hidden-state features the head reads (what `--train` collects).
    pub features: Vec<f32>,
    /// Who chose the verb: `head` or `calibrated` (the model's side of it).
    pub chooser: &'static str,
    /// The numbers decided the verdict (a risk, or an adjust the text did not object to).
    pub by_numbers: bool,
    /// No reason was written here: the plain one from the numbers stands
    /// ([`super::prompt::plain_reason`]): what the numbers decided, or, with a head, an
    /// approval the text did not object to.
    pub plain: bool,
}

/// What the features are, all from the residual stream after block 16: its mean over the
/// positions of the situation's words (its notes, events and log lines, else its risks: see
/// [`super::prompt::words_start`]); its mean over the events and log lines [`RECENT_S`] old
/// or more alone, the past; and the greatest, feature by feature, of the means of each newer
/// event and log line; each group with a flag for whether it has lines, and zeros where it has
/// none ([`assemble`]). The numbers above the words are the numbers stage's to judge.
///
/// Chosen on the generated set and dev: among blocks 4, 8 and 16 and the final state, each
/// over the last position, all positions or the words, block 16's words missed the fewest of
/// dev's objections. Alone they object to old errors (an out-of-memory error fixed three hours
/// ago reads like one now) and miss one bad line among many good ones. On features dumped
/// by the bench (`--dump-features --lines`), a logistic regression trained on the generated
/// set alone answered dev's 144 "does the text object?" questions right 81 % of the time with
/// the words' mean, 85 % with the past's mean beside it and 88 % with the recent lines'
/// greatest as well (out of fold on dev, with the generated set: 83, 88 and 90 %). Horizons
/// of 10 to 30 minutes did about as well; 15 minutes is also the controller's flapping
/// window. A review runs 16 of the network's 30 blocks.
pub const FEATURES: &str = "block16-words-mean+past15m-mean+recent-max";

/// Events and log lines at least this old (in seconds) are the past: the head reads them
/// apart as well as among all the words ([`FEATURES`]).
pub const RECENT_S: u64 = 900;

/// Whether a word line is the past ([`RECENT_S`]); notes and risks never are.
fn is_earlier(line: &WordLine) -> bool {
    line.age.is_some_and(|a| a >= RECENT_S)
}

/// Whether a word line is a recent event or log line (one without an age is read now).
fn is_recent(line: &WordLine) -> bool {
    matches!(line.kind, "the events" | "the log lines") && !is_earlier(line)
}

/// The head's features ([`FEATURES`]) from the words' mean `all`, the past lines' mean and
/// the recent lines' greatest, each where there are such lines.
fn assemble(mut all: Vec<f32>, past: Option<Vec<f32>>, recent: Option<Vec<f32>>) -> Vec<f32> {
    let width = all.len();
    for group in [past, recent] {
        match group {
            Some(g) => {
                all.extend(g);
                all.push(1.0);
            }
            None => {
                all.extend(std::iter::repeat_n(0.0, width));
                all.push(0.0);
            }
        }
    }
    all
}

/// The head's features ([`FEATURES`]) from the words' mean `all` and the word lines' own
/// means: the past lines' mean (weighted by their tokens) and the recent lines' greatest.
fn head_features(all: Vec<f32>, lines: &[LineMean]) -> Vec<f32> {
    let mut sum = vec![0f32; all.len()];
    let mut n = 0usize;
    let mut max: Option<Vec<f32>> = None;
    for (line, tokens, mean) in lines {
        if is_earlier(line) {
            for (s, v) in sum.iter_mut().zip(mean) {
                *s += v * *tokens as f32;
            }
            n += tokens;
        } else if is_recent(line) {
            max = Some(match max {
                Some(m) => m.iter().zip(mean).map(|(x, y)| x.max(*y)).collect(),
                None => mean.clone(),
            });
        }
    }
    let past = (n > 0).then(|| sum.into_iter().map(|s| s / n as f32).collect());
    assemble(all, past, max)
}

/// The block [`FEATURES`] taps (the last one, in a network shallower than that).
const TAP: usize = 16;

/// The head's features of a situation: `taps` the residual stream at the tapped block, `from`
/// the first position of the words.
fn features(taps: &[Tensor], from: usize) -> Result<Vec<f32>, ModelError> {
    let tap = taps
        .first()
        .ok_or_else(|| ModelError::Candle("no tapped block".into()))?;
    mean_from(tap, from)
}

/// The last position of `[n, width]` states.
fn last(states: &Tensor) -> Result<Vec<f32>, ModelError> {
    let n = states.dim(0).map_err(candle)?;
    states.i(n - 1).and_then(|t| t.to_vec1()).map_err(candle)
}

/// The mean of `[n, width]` states over positions `from..` (the last one at least).
fn mean_from(states: &Tensor, from: usize) -> Result<Vec<f32>, ModelError> {
    let n = states.dim(0).map_err(candle)?;
    mean_rows(states, from, n)
}

/// The mean of `[n, width]` states over positions `from..to` (clamped; one position at least).
fn mean_rows(states: &Tensor, from: usize, to: usize) -> Result<Vec<f32>, ModelError> {
    let n = states.dim(0).map_err(candle)?;
    let to = to.clamp(1, n);
    states
        .i(from.min(to - 1)..to)
        .and_then(|t| t.mean(0))
        .and_then(|t| t.to_vec1())
        .map_err(candle)
}

/// A line of a shaped situation's words (see [`word_lines`]).
#[derive(Clone, Debug, PartialEq)]
pub struct WordLine {
    /// What it is, as a reason names it: `the notes`, `the events`, `the log lines`,
    /// `the risks`.
    pub kind: &'static str,
    /// Its bytes in the text.
    pub range: std::ops::Range<usize>,
    /// How long ago it happened, in seconds, for an event or a log line that says
    /// ([`line_age`]).
    pub age: Option<u64>,
}

/// A word line, its token count and the mean of the tapped states over its tokens.
pub type LineMean = (WordLine, usize, Vec<f32>);

/// The lines of a shaped situation's words that a head can point at: from
/// [`words_start`] on, the notes (one line), each event and log line, and the risks. Section
/// headers and an empty risk line are not lines.
pub fn word_lines(text: &str) -> Vec<WordLine> {
    let mut out = Vec::new();
    let mut at = words_start(text);
    let mut section = "the text";
    for line in text[at..].split_inclusive('\n') {
        let range = at..at + line.trim_end().len();
        at += line.len();
        let l = line.trim();
        if l.starts_with("Logs (") {
            section = "the log lines";
            continue;
        }
        if l == "Events:" {
            section = "the events";
            continue;
        }
        if l.is_empty() || l == "Risks: none." {
            continue;
        }
        let kind = if l.starts_with("Notes: ") {
            "the notes"
        } else if l.starts_with("Risks: ") {
            "the risks"
        } else {
            section
        };
        let age = match kind {
            "the events" | "the log lines" => line_age(l),
            _ => None,
        };
        out.push(WordLine { kind, range, age });
    }
    out
}

/// A line quoted in a reason: whole words up to about 120 characters (a number is never cut).
fn quote(line: &str) -> String {
    let mut out = String::new();
    for w in line.split_whitespace() {
        if !out.is_empty() && out.len() + 1 + w.len() > 120 {
            out.push('…');
            return out;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

fn candle(e: candle_core::Error) -> ModelError {
    ModelError::Candle(e.to_string())
}

/// Past the deadline between two steps.
fn check(deadline: Instant) -> Result<(), ModelError> {
    if Instant::now() > deadline {
        return Err(ModelError::Candle("past the review budget".into()));
    }
    Ok(())
}

impl Reviewer {
    /// Run the fixed prefix once (its cache is reused by every review).
    pub fn new(llama: Llama, tok: Tokenizer) -> Result<Reviewer, ModelError> {
        let mut system = Cache::default();
        llama.forward(&tok.encode(SYSTEM)?, &mut system, 1)?;
        let mut cache = system.clone();
        let tap = TAP.min(llama.depth());
        let ids = tok.encode(&format!("{CONTENT_FREE}{ANSWER}"))?;
        let from = tok
            .encode(&CONTENT_FREE[..words_start(CONTENT_FREE)])?
            .len();
        let (hidden, taps) = llama.hidden_and_taps(&ids, &mut cache, &[tap])?;
        let probe = assemble(features(&taps, from)?, None, None);
        let last = hidden
            .i(ids.len() - 1..ids.len())
            .map_err(|e| ModelError::Candle(e.to_string()))?;
        let lp = log_softmax(&llama.logits(&last)?)?.remove(0);
        let fixed = Fixed::new(&tok)?;
        let head = super::head::shipped().filter(|h| h.fits(FEATURES, &probe));
        Ok(Reviewer {
            llama,
            tok,
            system,
            free: lp,
            calibrate: true,
            head,
            probe,
            tap,
            fixed,
        })
    }

    /// The features the head reads of a situation text (the prompt's prefill only).
    pub fn read(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let (all, lines) = self.read_lines(text)?;
        Ok(head_features(all, &lines))
    }

    /// The mean of the states at the tapped block `tap` over the words of `text`, then each
    /// word line with its token count and its own mean.
    fn line_means(
        &self,
        text: &str,
        tap: &Tensor,
    ) -> Result<(Vec<f32>, Vec<LineMean>), ModelError> {
        let all = mean_from(tap, self.words(text)?)?;
        let position =
            |at: usize| -> Result<usize, ModelError> { Ok(self.tok.encode(&text[..at])?.len()) };
        let mut lines = Vec::new();
        for line in word_lines(text) {
            let a = position(line.range.start)?;
            let b = position(line.range.end)?.max(a + 1);
            let mean = mean_rows(tap, a, b)?;
            lines.push((line, b - a, mean));
        }
        Ok((all, lines))
    }

    /// Which line of the words objects most, by the head's margin over its positions read as
    /// if they were all the words, as a reason that quotes it.
    fn objection(&self, text: &str, lines: &[LineMean], head: &Head) -> String {
        let mut best: Option<(f32, &str, &str)> = None;
        for (line, _, mean) in lines {
            let past = is_earlier(line).then(|| mean.clone());
            let recent = is_recent(line).then(|| mean.clone());
            let m = head.margin(&assemble(mean.clone(), past, recent));
            if best.is_none_or(|(bm, _, _)| m > bm) {
                best = Some((m, line.kind, &text[line.range.clone()]));
            }
        }
        match best {
            Some((_, kind, line)) => {
                let line = ["Notes: ", "Risks: "]
                    .iter()
                    .find_map(|p| line.trim().strip_prefix(p))
                    .unwrap_or(line.trim());
                format!("{kind} argue against it, most of all: {}", quote(line))
            }
            None => "the text argues against it.".into(),
        }
    }

    /// The position of the first token of `text`'s words ([`words_start`]).
    fn words(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tok.encode(&text[..words_start(text)])?.len())
    }

    /// Last position and mean of the final states, then of the residual stream after each
    /// block in `taps`; then the mean of each from where the words begin (`words`, a byte
    /// offset in `text`): what the training bench dumps to compare features.
    pub fn read_taps(
        &self,
        text: &str,
        taps: &[usize],
        words: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let from = self.tok.encode(&text[..words])?.len().min(ids.len() - 1);
        let mut cache = self.system.clone();
        let (hidden, tapped) = self.llama.hidden_and_taps(&ids, &mut cache, taps)?;
        let mut all = Vec::new();
        for t in std::iter::once(&hidden).chain(&tapped) {
            all.extend(last(t)?);
            all.extend(mean_from(t, 0)?);
        }
        for t in std::iter::once(&hidden).chain(&tapped) {
            all.extend(mean_from(t, from)?);
        }
        Ok(all)
    }

    /// The mean of the tapped states over the words, then each word line with its token
    /// count and its own mean: what the training bench dumps to compare groupings of lines.
    pub fn read_lines(&self, text: &str) -> Result<(Vec<f32>, Vec<LineMean>), ModelError> {
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let tap = self.llama.residual(&ids, &self.system, self.tap)?;
        self.line_means(text, &tap)
    }

    /// Tokens in the cached prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.system.len
    }

    /// Pick a verdict for the situation `text`, then write its reason. `numbers` is what the
    /// numbers alone say ([`super::prompt::by_numbers`]): a reject stands; otherwise the model
    /// reads the text and objects or not (the head over its hidden states, or the calibrated
    /// score of the first token of " approve" against " reject"); without an objection the
    /// numbers' adjust, if any, stands, else approve. The verdict is always among `candidates`.
    pub fn review(
        &mut self,
        text: &str,
        candidates: &[Verdict],
        numbers: Option<Verdict>,
        deadline: Instant,
    ) -> Result<Answer, ModelError> {
        check(deadline)?;
        // A risk rejects before any text is read: the model has nothing to add.
        if matches!(numbers, Some(Verdict::Reject)) {
            return Ok(Answer {
                verdict: Verdict::Reject,
                reason: String::new(),
                scores: Vec::new(),
                prompt_tokens: 0,
                prefill_ms: 0,
                generated: 0,
                decode_ms: 0,
                features: Vec::new(),
                chooser: "numbers",
                by_numbers: true,
                plain: true,
            });
        }
        let settle = |objects: bool| match numbers.clone() {
            _ if objects => Verdict::Reject,
            Some(v) if candidates.contains(&v) => v,
            _ => Verdict::Approve,
        };
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let t0 = Instant::now();
        if let Some(head) = &self.head {
            // The head reads block 16's states: the rest of the network is not run, and its
            // reason quotes the line that objects most rather than being generated.
            let tap = self.llama.residual(&ids, &self.system, self.tap)?;
            let (all, lines) = self.line_means(text, &tap)?;
            let feats = head_features(all, &lines);
            let lp = head.log_probs(&feats, &[true, true, false]);
            let mut scores = vec![
                ("approve".to_string(), lp[0]),
                ("reject".to_string(), lp[1]),
            ];
            let objects = lp[1] > lp[0];
            let verdict = settle(objects);
            if let Verdict::Adjust(n) = verdict {
                scores.push((format!("adjust to {n}"), 0.0));
            }
            let prefill_ms = t0.elapsed().as_millis() as u64;
            let t1 = Instant::now();
            let reason = if objects {
                check(deadline)?;
                self.objection(text, &lines, head)
            } else {
                String::new()
            };
            return Ok(Answer {
                by_numbers: matches!(verdict, Verdict::Adjust(_)),
                plain: !objects,
                verdict,
                reason,
                scores,
                prompt_tokens: ids.len(),
                prefill_ms,
                generated: 0,
                decode_ms: t1.elapsed().as_millis() as u64,
                features: feats,
                chooser: "head",
            });
        }
        let mut cache = self.system.clone();
        let (hidden, taps) = self.llama.hidden_and_taps(&ids, &mut cache, &[self.tap])?;
        let feats = features(&taps, self.words(text)?)?;
        let last = hidden
            .i(ids.len() - 1..ids.len())
            .map_err(|e| ModelError::Candle(e.to_string()))?;
        let lp = log_softmax(&self.llama.logits(&last)?)?.remove(0);
        let prefill_ms = t0.elapsed().as_millis() as u64;
        check(deadline)?;
        let mut scores = Vec::new();
        for (_, word, first) in self.fixed.verbs.iter() {
            let s = if self.calibrate {
                lp[*first as usize] - self.free[*first as usize]
            } else {
                lp[*first as usize]
            };
            scores.push((word.to_string(), s));
        }
        let verdict = settle(scores[1].1 > scores[0].1);
        if let Verdict::Adjust(n) = verdict {
            scores.push((format!("adjust to {n}"), 0.0));
        }
        // What the numbers decided, they explain: no reason is generated for it.
        let by_numbers = matches!(verdict, Verdict::Adjust(_));
        let t1 = Instant::now();
        let (reason, generated) = if by_numbers {
            (String::new(), 0)
        } else {
            let mut after = cache;
            self.llama
                .forward(&self.tok.encode(&answer_text(&verdict))?, &mut after, 1)?;
            self.reason(&mut after, deadline)?
        };
        Ok(Answer {
            by_numbers,
            plain: by_numbers,
            verdict,
            reason,
            scores,
            prompt_tokens: ids.len(),
            prefill_ms,
            generated,
            decode_ms: t1.elapsed().as_millis() as u64,
            features: feats,
            chooser: "calibrated",
        })
    }

    /// Greedy tokens after "Reason:" until a newline or the end of the turn, or the token
    /// limit or the deadline: then cut back to a sentence or clause boundary
    /// ([`crate::controller::review::whole_reason`]).
    fn reason(&self, cache: &mut Cache, deadline: Instant) -> Result<(String, usize), ModelError> {
        let mut logits = self.llama.forward(&self.fixed.reason, cache, 1)?;
        let mut out: Vec<u32> = Vec::new();
        let stops = [self.tok.end_of_turn, self.tok.eos];
        let mut cut = false;
        while out.len() < REASON_TOKENS {
            if Instant::now() > deadline {
                cut = true;
                break;
            }
            let next = logits
                .squeeze(0)
                .and_then(|l| l.argmax(0))
                .and_then(|t| t.to_scalar::<u32>())
                .map_err(|e| ModelError::Candle(e.to_string()))?;
            if stops.contains(&Some(next)) {
                break;
            }
            out.push(next);
            let so_far = self.tok.decode(&out)?;
            if so_far.contains('\n') || (so_far.len() > 12 && so_far.trim_end().ends_with('.')) {
                break;
            }
            if cache.len + 1 >= self.llama.max_positions() {
                break;
            }
            logits = self.llama.forward(&[next], cache, 1)?;
        }
        let mut text = self.tok.decode(&out)?;
        if let Some(i) = text.find('\n') {
            text.truncate(i);
        }
        let cut = cut || out.len() == REASON_TOKENS;
        Ok((
            crate::controller::review::whole_reason(&text, cut),
            out.len(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_a_head_can_point_at_are_the_notes_events_and_log_lines() {
        let text = "Now 09:15 UTC.\nProposal: scale_up pay/api from 3 to 5 (rule cpu-high).\n\
                    Notes: marco 40m ago: \"cert expired, their side\".\n\
                    Events:\n  2m ago pay/api/1 exited (exit code 1)\n  3h ago rollout r-2 done\n\
                    Logs (2 lines):\n  #0 5s ago: x509: certificate has expired\n  \
                    #1: retrying charge attempt=3\nRisks: none.";
        let lines: Vec<(&str, &str, Option<u64>)> = word_lines(text)
            .into_iter()
            .map(|l| (l.kind, &text[l.range], l.age))
            .collect();
        assert_eq!(
            lines,
            vec![
                (
                    "the notes",
                    "Notes: marco 40m ago: \"cert expired, their side\".",
                    None
                ),
                (
                    "the events",
                    "  2m ago pay/api/1 exited (exit code 1)",
                    Some(120)
                ),
                ("the events", "  3h ago rollout r-2 done", Some(10_800)),
                (
                    "the log lines",
                    "  #0 5s ago: x509: certificate has expired",
                    Some(5)
                ),
                ("the log lines", "  #1: retrying charge attempt=3", None),
            ]
        );
        assert!(word_lines("Now 09:15 UTC.\nProposal: drain node g1.\nRisks: none.").is_empty());
    }

    #[test]
    fn events_and_log_lines_of_fifteen_minutes_or_more_are_the_past_newer_ones_recent() {
        let text = "Now 09:15 UTC.\nProposal: x.\nNotes: ann 3h ago: \"old note\".\n\
                    Events:\n  3h ago rollout r-2 done\n  14m ago node n3 ready\n\
                    Logs (3 lines):\n  #0 15m ago: OutOfMemoryError\n  #1 5s ago: GET / 200\n  \
                    #2: read from a file\nRisks: none.";
        let lines_where = |keep: fn(&WordLine) -> bool| -> Vec<&str> {
            word_lines(text)
                .into_iter()
                .filter(keep)
                .map(|l| text[l.range].trim())
                .collect()
        };
        assert_eq!(
            lines_where(is_earlier),
            vec!["3h ago rollout r-2 done", "#0 15m ago: OutOfMemoryError"],
            "a note is never the past, nor a line without an age"
        );
        assert_eq!(
            lines_where(is_recent),
            vec![
                "14m ago node n3 ready",
                "#1 5s ago: GET / 200",
                "#2: read from a file"
            ]
        );
        let line = |kind, age| WordLine {
            kind,
            range: 0..0,
            age,
        };
        let lines: Vec<LineMean> = vec![
            (line("the notes", None), 2, vec![9.0, 9.0]),
            (line("the events", Some(3600)), 1, vec![1.0, 1.0]),
            (line("the log lines", Some(900)), 3, vec![3.0, 3.0]),
            (line("the log lines", Some(5)), 1, vec![1.0, 5.0]),
            (line("the log lines", None), 1, vec![4.0, 2.0]),
        ];
        assert_eq!(
            head_features(vec![0.5, 0.5], &lines),
            vec![0.5, 0.5, 2.5, 2.5, 1.0, 4.0, 5.0, 1.0],
            "the past's mean by tokens, the recent lines' greatest, the notes in neither"
        );
        assert_eq!(
            assemble(vec![1.0, 2.0], None, Some(vec![5.0, 6.0])),
            vec![1.0, 2.0, 0.0, 0.0, 0.0, 5.0, 6.0, 1.0]
        );
        assert_eq!(
            assemble(vec![1.0, 2.0], Some(vec![3.0, 4.0]), None),
            vec![1.0, 2.0, 3.0, 4.0, 1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn a_quoted_line_keeps_whole_words_and_numbers() {
        let long = format!("{} 123456 tail", "word ".repeat(23));
        let q = quote(&long);
        assert!(q.ends_with('…') && q.len() <= 124, "{q}");
        assert!(!q.contains("1234"), "a number is never cut: {q}");
        assert_eq!(quote("  #0 5s ago:  boom "), "#0 5s ago: boom");
    }
}
