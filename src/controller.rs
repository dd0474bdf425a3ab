//! The controller (DESIGN §9): runs on the leader every second and turns the cluster's metrics
//! into explained, bounded, overrulable decisions.
//!
//! ```text
//!  every node, every second: flow::world (store + metrics snapshot: hosts, processes and the
//!                            ingress's traffic per slice) ──▶ brain::observe
//!  leader only:  brain::propose (rules → forecast) ──▶ decide (safety) ──▶ review (model thread,
//!                asked without blocking the tick, waited for up to its budget)
//!                ──RecordDecision──▶ raft ── mode: observe/propose: proposed
//!                                            guarded: pending until the grace deadline
//!                                            auto: applied at once
//!                ──ApplyDecision at the deadline──▶ raft (refused if vetoed meanwhile)
//!                ──RecordOutcome after it converged──▶ raft
//! ```
//!
//! - [`world`]: the cluster as the controller sees it (CPU, and calls/s, p95/p99 latency, errors
//!   and waiting requests per slice); [`rules`]: the rule file and its located
//!   errors; [`forecast`]: seasonal profile plus Holt level and trend; [`brain`]: rules and
//!   forecast over the history; [`safety`]: the bounds and why they stop a proposal;
//!   [`decide`]: the decision policy (advance, judge outcomes, the safety context, screen and
//!   conclude a proposal by the mode). All pure, unit-tested, and driven by the simulator in
//!   `benches/controller.rs`.
//! - [`review`]: the reviewer hook and the situation file (`review::file`, what `aether model
//!   review` reads); [`context`]: the words around a proposal that the leader gathers for its
//!   review (the slice's log lines, events, operators' notes); [`model`]: the language model
//!   behind it (candle, SmolLM2 GGUF) on its own thread: a verdict and a reason, never a write.
//! - [`advisor`]: the strategic layer's pure core (the summary of the hour, the request and its
//!   schema, strict validation of the answer, what a taken item proposes); [`advise`]: its
//!   loop on the leader (only with `[controller.advisor]` enabled), advice only.
//! - [`spot`]: spot interruption notices: the pure policy (an interruption drains at once
//!   whatever the mode; a rebalance recommendation proposes a drain) and the signal loop
//!   that asks the cloud's metadata service ([`spot::watch`]).
//! - [`shift`]: time shifting of flexible slices by the carbon signal (pure); [`carbon`]: the
//!   loop on every node that reads its signal (`[carbon]`) into its metrics.
//! - [`flow`]: the loop with I/O: builds the world, asks [`decide`] what to write and writes
//!   it, runs the reviewer. A decision's lifecycle is enforced by the state machine
//!   (`raft::control`), so a veto wins over an apply on every node, whoever leads.

pub mod advise;
pub mod advisor;
pub mod brain;
pub mod carbon;
pub mod context;
pub mod decide;
pub mod flow;
pub mod forecast;
pub mod model;
pub mod power;
pub mod review;
pub mod rules;
pub mod safety;
pub mod shift;
pub mod spot;
pub mod world;
