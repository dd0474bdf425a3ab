//! The reviewer hook (DESIGN §9, principle 2): a layer that reads a proposal, after the safety
//! bounds, and returns a verdict and a reason. It never writes state; the controller decides
//! what a verdict means (a `reject` closes the proposal as rejected, an `adjust` goes through
//! the safety bounds again). With no reviewer the loop runs unchanged. The language model
//! (issue 6) is one implementation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::brain::{Proposal, World};
use crate::domain::{Decision, Millis};

pub mod file;

/// What a reviewer can say.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Approve,
    Reject,
    /// Scale to this many instances instead (clamped again by the safety bounds).
    Adjust(u32),
}

/// A verdict with its one-sentence reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub verdict: Verdict,
    pub reason: String,
}

/// What a reviewer sees: the proposal after the safety bounds, the cluster this second, the
/// latest decisions (vetoes and outcomes among them) and the text around them.
#[derive(Debug, Clone)]
pub struct Situation {
    pub proposal: Proposal,
    pub world: World,
    pub recent: Vec<Decision>,
    pub context: Context,
}

/// What the numbers cannot show: the words beside them, oldest first in each list. The
/// controller gathers it for the proposal's target; the prompt shapes it to a budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The slice's recent log lines (its instances' output and the supervisor's notes).
    pub logs: Vec<LogLine>,
    /// Restarts and exits, deploys and rollouts, node changes.
    pub events: Vec<Event>,
    /// Operators' words: the leader gathers veto reasons; a situation file may hold any.
    pub notes: Vec<Note>,
}

/// One log line of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was read or written (Unix ms).
    pub at: Millis,
    /// `blueprint/slice/index`.
    pub instance: String,
    pub line: String,
}

/// Something that happened, in one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Millis,
    pub what: String,
}

/// An operator's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub at: Millis,
    /// Who wrote it (`uid:1000@n1`, an operator's name).
    pub by: String,
    pub text: String,
}

/// How long the controller waits for the reviewer before recording `timeout`.
pub const REVIEW_BUDGET: Duration = Duration::from_secs(3);

/// A reviewer layer. `review` is called on a blocking thread, one at a time, never more often
/// than `interval`; the controller keeps deciding meanwhile and stops waiting after `budget`
/// (the review is then recorded as `timeout` and the rules decide).
pub trait Reviewer: Send + Sync + 'static {
    /// Shown in decisions (`review:<name>`) and in `aether status`.
    fn name(&self) -> String;
    /// Review one proposal; an error means no verdict (the rules' proposal stands).
    fn review(&self, situation: &Situation) -> Result<Review, String>;
    /// Longest wait for a verdict.
    fn budget(&self) -> Duration {
        REVIEW_BUDGET
    }
    /// Least time between the starts of two reviews.
    fn interval(&self) -> Duration {
        Duration::ZERO
    }
    /// Called on every tick this node decides: a reviewer may get ready (load a model).
    fn warm(&self) {}
    /// Whether a review can be asked for now, or why not (recorded in the decision instead).
    fn available(&self) -> Result<(), Unavailable> {
        Ok(())
    }
}

/// Why a reviewer cannot review now.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    /// What stands in the way (`the model is absent (pull one with …)`).
    pub why: String,
    /// An expected state (no model pulled, not loaded yet): the review is recorded as skipped,
    /// not as an error.
    pub expected: bool,
}

/// Whether a review that took `took` counts: the one rule for the budget, applied once, to the
/// latency measured from the review's start to its answer. A review not answered when `took`
/// has passed this is abandoned as a timeout by the same rule.
pub fn in_time(took: Duration, budget: Duration) -> bool {
    took <= budget
}

/// The most a stored reason keeps, in characters: a reason cut by its token limit or the
/// budget is cut further back, to the end of a sentence or a clause (see [`whole_reason`]).
pub const REASON_CHARS: usize = 240;

/// A reason as it is kept: whole if it ends a sentence; else cut back to its last sentence
/// end, or its last clause (`,` `;` `:` `—`) with '…', or its last whole word with '…', within
/// [`REASON_CHARS`]. `cut`: generation stopped before the reason ended (its token limit or the
/// budget), so the tail is unfinished even if it ends in a word.
pub fn whole_reason(text: &str, cut: bool) -> String {
    let text = text.trim().trim_end_matches('…').trim_end();
    let ends_sentence = |t: &str| t.ends_with(['.', '!', '?']);
    if text.chars().count() <= REASON_CHARS && (!cut || ends_sentence(text)) {
        return text.to_string();
    }
    let head: String = text.chars().take(REASON_CHARS).collect();
    // The last sentence end (followed by a space, or the end of the head).
    let sentence = head
        .char_indices()
        .filter(|(i, c)| {
            matches!(c, '.' | '!' | '?')
                && head[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back();
    if let Some(end) = sentence.filter(|e| *e > 0) {
        return head[..end].to_string();
    }
    let clause = head
        .char_indices()
        .filter(|(_, c)| matches!(c, ',' | ';' | ':' | '—'))
        .map(|(i, _)| i)
        .next_back()
        .filter(|i| *i > 0);
    let end = clause.unwrap_or_else(|| {
        if !cut && head.len() == text.len() {
            head.len()
        } else {
            head.rfind(char::is_whitespace)
                .filter(|i| *i > 0)
                .unwrap_or(head.len())
        }
    });
    format!("{}…", head[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_kept_whole_or_cut_at_a_boundary() {
        let cases = [
            ("1 instance is enough.", false, "1 instance is enough."),
            (
                "Load is low, so one goes",
                false,
                "Load is low, so one goes",
            ),
            ("1 instance is enough, so", true, "1 instance is enough…"),
            ("1 instance is enough, so…", true, "1 instance is enough…"),
            (
                "CPU stays low. One instance is enough, so the",
                true,
                "CPU stays low.",
            ),
            (
                "Traffic grows steadily while",
                true,
                "Traffic grows steadily…",
            ),
            ("v1.2 is out; rolling", true, "v1.2 is out…"),
        ];
        for (text, cut, want) in cases {
            assert_eq!(whole_reason(text, cut), want, "{text:?}");
        }
        let long = "word ".repeat(100);
        let kept = whole_reason(&long, false);
        assert!(
            kept.chars().count() <= REASON_CHARS + 1 && kept.ends_with("word…"),
            "{kept}"
        );
    }

    #[test]
    fn the_budget_is_one_rule() {
        let budget = Duration::from_millis(3_000);
        assert!(in_time(Duration::from_millis(2_999), budget));
        assert!(in_time(budget, budget));
        assert!(!in_time(Duration::from_millis(3_016), budget));
        assert!(!in_time(Duration::from_millis(3_089), budget));
    }
}
