//! The controller (DESIGN §9): runs on the leader every second and turns the cluster's metrics
//! into explained, bounded, overrulable decisions.
//!
//! ```text
//!  every node, every second: flow::world (store + metrics snapshot) ──▶ brain::observe
//!  leader only:  brain::propose (rules → forecast) ──▶ safety::check ──▶ review (model thread,
//!                asked without blocking the tick, waited for up to its budget)
//!                ──RecordDecision──▶ raft ── mode: observe/propose: proposed
//!                                            guarded: pending until the grace deadline
//!                                            auto: applied at once
//!                ──ApplyDecision at the deadline──▶ raft (refused if vetoed meanwhile)
//!                ──RecordOutcome after it converged──▶ raft
//! ```
//!
//! - [`rules`]: the rule file and its located errors; [`forecast`]: seasonal profile plus
//!   Holt level and trend; [`safety`]: the bounds; [`brain`]: rules and forecast over the
//!   history. All pure, unit-tested, and driven by the simulator in `benches/controller.rs`.
//! - [`review`]: the reviewer hook; [`model`]: the language model behind it (candle,
//!   SmolLM2 GGUF) on its own thread: a verdict and a reason, never a write.
//! - [`flow`]: the loop with I/O: builds the world, writes decisions, applies them at their
//!   deadline, checks outcomes. A decision's lifecycle is enforced by the state machine
//!   (`raft::control`), so a veto wins over an apply on every node, whoever leads.

pub mod brain;
pub mod flow;
pub mod forecast;
pub mod model;
pub mod review;
pub mod rules;
pub mod safety;
pub mod world;
