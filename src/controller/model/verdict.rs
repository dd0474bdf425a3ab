//! The constrained verdict. With a head that fits the model ([`super::head`]), the verb
//! (approve, reject, adjust) is the head's choice over the model's hidden states of the
//! situation; without one, the verb is scored by the log-probability of its first token after
//! the answer prefix, calibrated by the same token's log-probability after a content-free
//! situation (so a verb the model favours whatever it reads does not win by default). For
//! adjust, the count is the offered one the model scores highest after "adjust to". Nothing is
//! parsed from free text. Then up to [`REASON_TOKENS`] tokens of reason are generated greedily.

use std::time::Instant;

use candle_core::{D, IndexOp, Tensor};

use super::ModelError;
use super::head::Head;
use super::llama::{Cache, Llama, log_softmax};
use super::prompt::{ANSWER, CONTENT_FREE, REASON, SYSTEM, answer_text};
use super::tokenizer::Tokenizer;
use crate::controller::review::Verdict;

/// Most tokens of reason.
pub const REASON_TOKENS: usize = 28;

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
    /// The fixed texts every review runs, tokenized once.
    fixed: Fixed,
}

/// Tokens of the texts every review uses.
struct Fixed {
    /// The first token of each verb, with the verdict it stands for and its word.
    verbs: [(Verdict, &'static str, u32); 3],
    adjust_to: Vec<u32>,
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
                (Verdict::Adjust(0), "adjust", first(" adjust")?),
            ],
            adjust_to: tok.encode(" adjust to")?,
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
    /// Who chose the verb: `head` or `calibrated`.
    pub chooser: &'static str,
}

/// What the features are: the last position's final hidden state, then the mean over the
/// situation's positions.
pub const FEATURES: &str = "last+mean";

/// The features of a situation's hidden states (`[n, width]`).
fn features(hidden: &Tensor) -> Result<Vec<f32>, ModelError> {
    let f = || -> candle_core::Result<Vec<f32>> {
        let n = hidden.dim(0)?;
        let last = hidden.i(n - 1)?;
        let mean = hidden.mean(0)?;
        Tensor::cat(&[&last, &mean], D::Minus1)?.to_vec1::<f32>()
    };
    f().map_err(|e| ModelError::Candle(e.to_string()))
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
        let ids = tok.encode(&format!("{CONTENT_FREE}{ANSWER}"))?;
        let hidden = llama.hidden(&ids, &mut cache, ids.len())?;
        let probe = features(&hidden)?;
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
            fixed,
        })
    }

    /// The features the head reads of a situation text (the prompt's prefill only).
    pub fn read(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let mut cache = self.system.clone();
        features(&self.llama.hidden(&ids, &mut cache, ids.len())?)
    }

    /// Tokens in the cached prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.system.len
    }

    /// Score of `ids` following a state whose next-token log-probabilities are `lp`, and the
    /// cache after them.
    fn score(&self, cache: &Cache, lp: &[f32], ids: &[u32]) -> Result<(f32, Cache), ModelError> {
        let mut score = lp[ids[0] as usize];
        let mut c = cache.clone();
        let rows = log_softmax(&self.llama.forward(ids, &mut c, ids.len())?)?;
        for (i, id) in ids.iter().enumerate().skip(1) {
            score += rows[i - 1][*id as usize];
        }
        Ok((score, c))
    }

    /// Pick a verdict among `candidates` for the situation `text`, then write its reason. The
    /// verb (approve, reject, adjust) is chosen on its first token, calibrated; for adjust the
    /// count is then chosen among the offered ones, given "adjust to".
    pub fn review(
        &mut self,
        text: &str,
        candidates: &[Verdict],
        deadline: Instant,
    ) -> Result<Answer, ModelError> {
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let t0 = Instant::now();
        let mut cache = self.system.clone();
        let hidden = self.llama.hidden(&ids, &mut cache, ids.len())?;
        let feats = features(&hidden)?;
        let last = hidden
            .i(ids.len() - 1..ids.len())
            .map_err(|e| ModelError::Candle(e.to_string()))?;
        let lp = log_softmax(&self.llama.logits(&last)?)?.remove(0);
        let prefill_ms = t0.elapsed().as_millis() as u64;
        check(deadline)?;
        let counts: Vec<u32> = candidates
            .iter()
            .filter_map(|c| match c {
                Verdict::Adjust(n) => Some(*n),
                _ => None,
            })
            .collect();
        // Adjust is a candidate only when a count is offered.
        let verbs = if counts.is_empty() {
            &self.fixed.verbs[..2]
        } else {
            &self.fixed.verbs[..]
        };
        let mut scores = Vec::new();
        let mut best: Option<(Verdict, f32)> = None;
        let by_head = self
            .head
            .as_ref()
            .map(|h| h.log_probs(&feats, &[true, true, verbs.len() == 3]));
        for (i, (c, word, first)) in verbs.iter().enumerate() {
            let s = match by_head {
                Some(lp) => lp[i],
                None if self.calibrate => lp[*first as usize] - self.free[*first as usize],
                None => lp[*first as usize],
            };
            if best.as_ref().is_none_or(|b| s > b.1) {
                best = Some((c.clone(), s));
            }
            scores.push((word.to_string(), s));
        }
        let (mut verdict, _) = best.ok_or_else(|| ModelError::Candle("no candidates".into()))?;
        // The text after the verdict, run through the model before the reason.
        let mut after = cache.clone();
        let said = match verdict {
            Verdict::Adjust(_) => {
                let prefix = &self.fixed.adjust_to;
                let l = log_softmax(&self.llama.forward(prefix, &mut after, 1)?)?.remove(0);
                let mut pick: Option<(u32, f32, Cache)> = None;
                for n in &counts {
                    check(deadline)?;
                    let nid = self.tok.encode(&format!(" {n}"))?;
                    let (sc, c) = self.score(&after, &l, &nid)?;
                    scores.push((format!("adjust to {n}"), sc));
                    if pick.as_ref().is_none_or(|p| sc > p.1) {
                        pick = Some((*n, sc, c));
                    }
                }
                let (n, _, c) = pick.ok_or_else(|| ModelError::Candle("no counts".into()))?;
                verdict = Verdict::Adjust(n);
                after = c;
                None
            }
            _ => Some(answer_text(&verdict)),
        };
        if let Some(word) = said {
            self.llama
                .forward(&self.tok.encode(&word)?, &mut after, 1)?;
        }
        let t1 = Instant::now();
        let (reason, generated) = self.reason(&mut after, deadline)?;
        Ok(Answer {
            verdict,
            reason,
            scores,
            prompt_tokens: ids.len(),
            prefill_ms,
            generated,
            decode_ms: t1.elapsed().as_millis() as u64,
            features: feats,
            chooser: if by_head.is_some() {
                "head"
            } else {
                "calibrated"
            },
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
