//! The tokenizer, rebuilt from the GGUF's own metadata (no tokenizer.json): a byte-level BPE
//! from `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, the pre-tokenizer named by
//! `tokenizer.ggml.pre`, and the control tokens (`token_type` 3) as special tokens, so
//! `<|im_start|>` in a prompt is one token.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use super::ModelError;

/// GGUF token type of a control token (`<|im_start|>` and the like).
const CONTROL: i32 = 3;

/// A tokenizer and the ids the prompt needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// End of a turn in the chat template (`<|im_end|>`), where generation stops.
    pub end_of_turn: Option<u32>,
    pub eos: Option<u32>,
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, ModelError> {
    v.to_vec()
        .map_err(|_| ModelError::Metadata(format!("'{key}' is not an array")))?
        .iter()
        .map(|s| {
            s.to_string()
                .cloned()
                .map_err(|_| ModelError::Metadata(format!("'{key}' holds a non-string")))
        })
        .collect()
}

impl Tokenizer {
    /// Build the tokenizer the GGUF describes; only byte-level BPE (`gpt2`) is supported.
    pub fn from_gguf(ct: &Content) -> Result<Tokenizer, ModelError> {
        let md = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| ModelError::Metadata(format!("'{k}' is missing")))
        };
        let model = md("tokenizer.ggml.model")?
            .to_string()
            .map_err(|_| ModelError::Metadata("'tokenizer.ggml.model' is not a string".into()))?;
        if model != "gpt2" {
            return Err(ModelError::Metadata(format!(
                "tokenizer model '{model}' is not supported (aether rebuilds byte-level BPE, 'gpt2')"
            )));
        }
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let tokens = strings(md("tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let merges = strings(md("tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| {
                    ModelError::Metadata("'tokenizer.ggml.token_type' is not an array".into())
                })?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Metadata(format!("merge '{m}' is not 'a b'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Metadata(format!("the BPE does not build: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        // `smollm` (and llama.cpp's other digit-splitting pre-tokenizers) split digits one by
        // one before the GPT-2 byte-level split; `gpt2`/`default` do not.
        let byte_level: PreTokenizerWrapper = ByteLevel::new(false, true, true).into();
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            "smollm" | "llama3" | "llama-bpe" | "qwen2" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level]).into()
            }
            _ => byte_level,
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, t)| **t == CONTROL)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner
            .add_special_tokens(special)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let id = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());
        Ok(Tokenizer {
            end_of_turn: inner
                .token_to_id("<|im_end|>")
                .or(id("tokenizer.ggml.eos_token_id")),
            eos: id("tokenizer.ggml.eos_token_id"),
            inner,
        })
    }

    /// Token ids of `text`; control tokens written in the text are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The text of `ids`, control tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
