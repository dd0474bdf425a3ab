//! The reviewer hook (DESIGN §9, principle 2): a layer that reads a proposal, after the safety
//! bounds, and returns a verdict and a reason. It never writes state; the controller decides
//! what a verdict means (a `reject` closes the proposal as rejected, an `adjust` goes through
//! the safety bounds again). With no reviewer the loop runs unchanged. The language model
//! (issue 6) is one implementation.

use std::time::Duration;

use super::brain::{Proposal, World};
use crate::domain::Decision;

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

/// What a reviewer sees: the proposal after the safety bounds, the cluster this second and the
/// latest decisions (vetoes and outcomes among them).
#[derive(Debug, Clone)]
pub struct Situation {
    pub proposal: Proposal,
    pub world: World,
    pub recent: Vec<Decision>,
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
    fn available(&self) -> Result<(), String> {
        Ok(())
    }
}
