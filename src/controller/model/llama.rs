//! The llama network over candle tensors: token embedding, N blocks (RMS norm, attention with
//! grouped key/value heads and interleaved rotary embedding, SwiGLU MLP), a final norm and the
//! output layer, tied to the embedding when the file has no `output.weight`. A [`Cache`] holds
//! the keys and values of the tokens seen so far; cloning it is cheap (tensors are shared and
//! never written in place), which is how the fixed system prefix and the candidates reuse work.

use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, IndexOp, Module, Tensor};

use super::ModelError;
use crate::config::ModelFormat;

/// The shape of the network, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    pub blocks: usize,
    pub width: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub eps: f64,
    pub rope_base: f32,
    pub rope_dim: usize,
    /// Longest sequence the file was trained for.
    pub context: usize,
    pub vocab: usize,
}

impl Hyper {
    /// Read the `llama.*` keys; a missing one is a clear error.
    pub fn from_gguf(ct: &Content) -> Result<Hyper, ModelError> {
        let get = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| ModelError::Metadata(format!("'{k}' is missing")))
        };
        let u = |k: &str| -> Result<usize, ModelError> {
            get(k)?
                .to_u32()
                .map(|v| v as usize)
                .map_err(|_| ModelError::Metadata(format!("'{k}' is not a u32")))
        };
        let width = u("llama.embedding_length")?;
        let heads = u("llama.attention.head_count")?;
        if heads == 0 || width % heads != 0 {
            return Err(ModelError::Metadata(format!(
                "width {width} is not a multiple of {heads} heads"
            )));
        }
        let kv_heads = u("llama.attention.head_count_kv").unwrap_or(heads);
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ModelError::Metadata(format!(
                "{heads} heads cannot share {kv_heads} key/value heads"
            )));
        }
        let vocab = match ct.tensor_infos.get("token_embd.weight") {
            Some(t) => t.shape.dims()[0],
            None => {
                return Err(ModelError::Metadata(
                    "tensor 'token_embd.weight' is missing".into(),
                ));
            }
        };
        Ok(Hyper {
            blocks: u("llama.block_count")?,
            width,
            heads,
            kv_heads,
            ffn: u("llama.feed_forward_length")?,
            eps: get("llama.attention.layer_norm_rms_epsilon")?
                .to_f32()
                .map(f64::from)
                .unwrap_or(1e-5),
            rope_base: ct
                .metadata
                .get("llama.rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
            rope_dim: u("llama.rope.dimension_count").unwrap_or(width / heads),
            context: u("llama.context_length").unwrap_or(2048),
            vocab,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

struct Block {
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    o: QMatMul,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The loaded network.
pub struct Llama {
    pub hyper: Hyper,
    blocks: Vec<Block>,
    norm: Tensor,
    /// The output layer; also the embedding table when the file ties the two.
    output: QMatMul,
    /// The embedding table when the file has its own output layer.
    embed: Option<QMatMul>,
    cos: Tensor,
    sin: Tensor,
    /// Positions the rotary tables cover (the cache may not grow past it).
    max_positions: usize,
}

/// Keys and values of the tokens seen so far, per block.
#[derive(Clone, Default)]
pub struct Cache {
    kv: Vec<(Tensor, Tensor)>,
    /// Tokens in the cache.
    pub len: usize,
}

fn candle(e: candle_core::Error) -> ModelError {
    ModelError::Candle(e.to_string())
}

/// A weight matrix in the chosen in-memory format.
fn linear(t: QTensor, format: ModelFormat) -> candle_core::Result<QMatMul> {
    let cpu = Device::Cpu;
    Ok(match format {
        ModelFormat::Keep => QMatMul::from_qtensor(t)?,
        ModelFormat::Q8_0 if t.dtype() == GgmlDType::Q8_0 => QMatMul::QTensor(Arc::new(t)),
        ModelFormat::Q8_0 => QMatMul::QTensor(Arc::new(QTensor::quantize(
            &t.dequantize(&cpu)?,
            GgmlDType::Q8_0,
        )?)),
        ModelFormat::F16 => QMatMul::TensorF16(t.dequantize_f16(&cpu)?),
        ModelFormat::F32 => QMatMul::Tensor(t.dequantize(&cpu)?),
    })
}

impl Llama {
    /// Read every tensor of `ct` from `reader` into `format`.
    pub fn load<R: std::io::Read + std::io::Seek>(
        ct: &Content,
        reader: &mut R,
        format: ModelFormat,
    ) -> Result<Llama, ModelError> {
        let hyper = Hyper::from_gguf(ct)?;
        let cpu = Device::Cpu;
        let mut tensor = |name: &str| {
            ct.tensor(reader, name, &cpu)
                .map_err(|e| ModelError::Metadata(format!("tensor '{name}': {e}")))
        };
        let vector = |t: QTensor| t.dequantize(&cpu).map_err(candle);
        let mut blocks = Vec::with_capacity(hyper.blocks);
        for i in 0..hyper.blocks {
            let mut w = |n: &str| -> Result<QMatMul, ModelError> {
                linear(tensor(&format!("blk.{i}.{n}.weight"))?, format).map_err(candle)
            };
            let (q, k, v, o) = (w("attn_q")?, w("attn_k")?, w("attn_v")?, w("attn_output")?);
            let (gate, up, down) = (w("ffn_gate")?, w("ffn_up")?, w("ffn_down")?);
            blocks.push(Block {
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
                attn_norm: vector(tensor(&format!("blk.{i}.attn_norm.weight"))?)?,
                ffn_norm: vector(tensor(&format!("blk.{i}.ffn_norm.weight"))?)?,
            });
        }
        let norm = vector(tensor("output_norm.weight")?)?;
        let embed_q = tensor("token_embd.weight")?;
        let (output, embed) = if ct.tensor_infos.contains_key("output.weight") {
            let out = linear(tensor("output.weight")?, format).map_err(candle)?;
            (out, Some(linear(embed_q, format).map_err(candle)?))
        } else {
            (linear(embed_q, format).map_err(candle)?, None)
        };
        let max_positions = hyper.context.min(4096);
        let (cos, sin) = rope_tables(&hyper, max_positions).map_err(candle)?;
        Ok(Llama {
            hyper,
            blocks,
            norm,
            output,
            embed,
            cos,
            sin,
            max_positions,
        })
    }

    /// Positions a cache may hold.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Run `tokens` after what `cache` holds; the logits of the last `keep` positions
    /// (`[keep, vocab]`), and `cache` extended by `tokens`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut Cache,
        keep: usize,
    ) -> Result<Tensor, ModelError> {
        let x = self.hidden(tokens, cache, keep)?;
        self.logits(&x)
    }

    /// Run `tokens` after what `cache` holds; the final hidden states (after the last norm)
    /// of the last `keep` positions (`[keep, width]`), and `cache` extended by `tokens`.
    pub fn hidden(
        &self,
        tokens: &[u32],
        cache: &mut Cache,
        keep: usize,
    ) -> Result<Tensor, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Candle("nothing to run".into()));
        }
        if cache.len + tokens.len() > self.max_positions {
            return Err(ModelError::Candle(format!(
                "{} tokens exceed the model's {} positions",
                cache.len + tokens.len(),
                self.max_positions
            )));
        }
        self.run(tokens, cache, keep.clamp(1, tokens.len()))
            .map_err(candle)
    }

    /// The logits of hidden states (`[n, width]` → `[n, vocab]`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        self.output
            .forward(hidden)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(candle)
    }

    fn run(&self, tokens: &[u32], cache: &mut Cache, keep: usize) -> candle_core::Result<Tensor> {
        let h = &self.hyper;
        let (seq, pos, hd) = (tokens.len(), cache.len, h.head_dim());
        let cpu = Device::Cpu;
        let ids = Tensor::new(tokens, &cpu)?;
        let table = self.embed.as_ref().unwrap_or(&self.output);
        let mut x = table.embedding(&ids)?.to_dtype(DType::F32)?.unsqueeze(0)?;
        let mask = (seq > 1).then(|| causal_mask(seq, pos)).transpose()?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let rep = h.heads / h.kv_heads;
        for (i, b) in self.blocks.iter().enumerate() {
            let a = candle_nn::ops::rms_norm(&x, &b.attn_norm, h.eps as f32)?;
            let split = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
                t.reshape((1, seq, n, hd))?.transpose(1, 2)?.contiguous()
            };
            let q = split(b.q.forward(&a)?, h.heads)?;
            let k = split(b.k.forward(&a)?, h.kv_heads)?;
            let v = split(b.v.forward(&a)?, h.kv_heads)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = match cache.kv.get(i) {
                Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                None => (k, v),
            };
            if i < cache.kv.len() {
                cache.kv[i] = (k.clone(), v.clone());
            } else {
                cache.kv.push((k.clone(), v.clone()));
            }
            let k = repeat_kv(k, rep)?;
            let v = repeat_kv(v, rep)?;
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((1, seq, h.width))?;
            x = (x + b.o.forward(&y)?)?;
            let f = candle_nn::ops::rms_norm(&x, &b.ffn_norm, h.eps as f32)?;
            let g = b.gate.forward(&f)?.silu()?;
            let u = b.up.forward(&f)?;
            x = (x + b.down.forward(&(g * u)?)?)?;
        }
        cache.len += seq;
        let x = x.i((.., seq - keep.., ..))?.contiguous()?;
        candle_nn::ops::rms_norm(&x, &self.norm, h.eps as f32)?.squeeze(0)
    }
}

/// Log-probabilities over the vocabulary of each row of `logits` (`[n, vocab]`).
pub fn log_softmax(logits: &Tensor) -> Result<Vec<Vec<f32>>, ModelError> {
    let f = || -> candle_core::Result<Vec<Vec<f32>>> {
        let max = logits.max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        shifted.broadcast_sub(&lse)?.to_vec2::<f32>()
    };
    f().map_err(candle)
}

/// cos and sin of the interleaved rotary embedding for `n` positions (`[n, rope_dim / 2]`).
fn rope_tables(h: &Hyper, n: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let d = h.rope_dim;
    let theta: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| 1.0 / h.rope_base.powf(i as f32 / d as f32))
        .collect();
    let cpu = Device::Cpu;
    let theta = Tensor::new(theta.as_slice(), &cpu)?;
    let angles = Tensor::arange(0u32, n as u32, &cpu)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?
        .matmul(&theta.reshape((1, d / 2))?)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// 0 where query `i` (at `pos + i`) may see key `j`, −∞ after it: `[seq, pos + seq]`.
fn causal_mask(seq: usize, pos: usize) -> candle_core::Result<Tensor> {
    let kv = pos + seq;
    let m: Vec<f32> = (0..seq)
        .flat_map(|i| (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_slice(&m, (seq, kv), &Device::Cpu)
}

/// Each key/value head repeated for the query heads that share it.
fn repeat_kv(x: Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return x.contiguous();
    }
    let (b, n, s, d) = x.dims4()?;
    Tensor::cat(&vec![&x; rep], 2)?.reshape((b, n * rep, s, d))
}
