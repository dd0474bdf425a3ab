//! The constrained verdict: each candidate (approve, reject, adjust to N) is scored by the
//! log-probability the model gives its tokens after the answer prefix, calibrated by the same
//! candidate's score after a content-free situation (so a candidate the model favours whatever
//! it reads does not win by default). The verdict is the best candidate, never parsed from free
//! text; then up to [`REASON_TOKENS`] tokens of reason are generated greedily after it.

use std::collections::HashMap;
use std::time::Instant;

use super::ModelError;
use super::llama::{Cache, Llama, log_softmax};
use super::prompt::{ANSWER, CONTENT_FREE, Candidate, REASON, SYSTEM};
use super::tokenizer::Tokenizer;

/// Most tokens of reason.
pub const REASON_TOKENS: usize = 40;

/// A model ready to review: the network, its tokenizer, and the cached system prefix.
pub struct Reviewer {
    pub llama: Llama,
    pub tok: Tokenizer,
    /// The KV cache after [`SYSTEM`].
    system: Cache,
    /// The cache and next-token log-probabilities after a content-free situation.
    free: (Cache, Vec<f32>),
    /// Calibration scores per candidate text.
    prior: HashMap<String, f32>,
    /// Subtract the content-free prior from each candidate's score.
    pub calibrate: bool,
}

/// What one review produced.
#[derive(Debug, Clone)]
pub struct Answer {
    pub verdict: Candidate,
    pub reason: String,
    /// Calibrated score per candidate, in the order given.
    pub scores: Vec<(Candidate, f32)>,
    pub prompt_tokens: usize,
    pub prefill_ms: u64,
    pub generated: usize,
    pub decode_ms: u64,
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
        let lp = log_softmax(&llama.forward(&ids, &mut cache, 1)?)?.remove(0);
        Ok(Reviewer {
            llama,
            tok,
            system,
            free: (cache, lp),
            prior: HashMap::new(),
            calibrate: true,
        })
    }

    /// Tokens in the cached prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.system.len
    }

    /// Score of `ids` following a state whose next-token log-probabilities are `lp`; the cache
    /// after them, and the log-probabilities after the last one.
    fn score(
        &self,
        cache: &Cache,
        lp: &[f32],
        ids: &[u32],
    ) -> Result<(f32, Cache, Vec<f32>), ModelError> {
        let mut score = lp[ids[0] as usize];
        let mut c = cache.clone();
        let rows = log_softmax(&self.llama.forward(ids, &mut c, ids.len())?)?;
        for (i, id) in ids.iter().enumerate().skip(1) {
            score += rows[i - 1][*id as usize];
        }
        let last = rows.into_iter().last().unwrap_or_default();
        Ok((score, c, last))
    }

    fn prior(&mut self, text: &str, ids: &[u32]) -> Result<f32, ModelError> {
        if let Some(p) = self.prior.get(text) {
            return Ok(*p);
        }
        let (cache, lp) = (&self.free.0, &self.free.1);
        let (p, ..) = self.score(cache, lp, ids)?;
        self.prior.insert(text.to_string(), p);
        Ok(p)
    }

    /// Pick a verdict among `candidates` for the situation `text`, then write its reason.
    pub fn review(
        &mut self,
        text: &str,
        candidates: &[Candidate],
        deadline: Instant,
    ) -> Result<Answer, ModelError> {
        let ids = self.tok.encode(&format!("{text}{ANSWER}"))?;
        let t0 = Instant::now();
        let mut cache = self.system.clone();
        let lp = log_softmax(&self.llama.forward(&ids, &mut cache, 1)?)?.remove(0);
        let prefill_ms = t0.elapsed().as_millis() as u64;
        let mut best: Option<(usize, f32, Cache, Vec<f32>)> = None;
        let mut scores = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            check(deadline)?;
            let t = c.text();
            let cids = self.tok.encode(&t)?;
            let (raw, after, next) = self.score(&cache, &lp, &cids)?;
            let s = if self.calibrate {
                raw - self.prior(&t, &cids)?
            } else {
                raw
            };
            scores.push((c.clone(), s));
            if best.as_ref().is_none_or(|b| s > b.1) {
                best = Some((i, s, after, next));
            }
        }
        let (i, _, mut after, _) =
            best.ok_or_else(|| ModelError::Candle("no candidates".into()))?;
        let t1 = Instant::now();
        let (reason, generated) = self.reason(&mut after, deadline)?;
        Ok(Answer {
            verdict: candidates[i].clone(),
            reason,
            scores,
            prompt_tokens: ids.len(),
            prefill_ms,
            generated,
            decode_ms: t1.elapsed().as_millis() as u64,
        })
    }

    /// Greedy tokens after "Reason:" until a newline or the end of the turn; cut at the
    /// deadline (the reason then ends with '…').
    fn reason(&self, cache: &mut Cache, deadline: Instant) -> Result<(String, usize), ModelError> {
        let ids = self.tok.encode(REASON)?;
        let mut logits = self.llama.forward(&ids, cache, 1)?;
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
            if self.tok.decode(&out)?.contains('\n') {
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
        let mut text = text.trim().to_string();
        if cut || out.len() == REASON_TOKENS {
            text.push('…');
        }
        Ok((text, out.len()))
    }
}
