//! The llama network over candle tensors: token embedding, N blocks (RMS norm, attention with
//! grouped key/value heads and interleaved rotary embedding, SwiGLU MLP), a final norm and the
//! output layer, tied to the embedding when the file has no `output.weight`. A [`Cache`] holds
//! the keys and values of the tokens seen so far in append-only segments; cloning it is cheap
//! (the segments are shared), which is how the fixed system prefix and the candidates reuse work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, IndexOp, Module, Tensor};

use super::ModelError;
use super::q4::Q4Matrix;
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

/// A weight matrix: `full` in the chosen format for products of several rows (a prompt), and
/// for a single row (one token's step) a copy that reads fewer bytes when the file's own
/// blocks have one: a step reads every weight once, so its speed is the bytes it reads.
struct Linear {
    full: QMatMul,
    step: Option<Step>,
}

enum Step {
    /// The file's Q4_1 blocks through [`super::q4`].
    Q4(Q4Matrix),
    /// The file's blocks through candle (types it has vector kernels for, e.g. Q8_0).
    Stored(QMatMul),
}

/// Products of at most this many rows go row by row through the step copy: a matrix product
/// of a few rows still packs the whole dense matrix, which costs more than reading the file's
/// blocks once per row.
const STEP_ROWS: usize = 4;

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let cols = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / cols.max(1);
        match &self.step {
            Some(Step::Stored(m)) if rows == 1 => m.forward(x),
            Some(Step::Q4(m)) if rows <= STEP_ROWS => {
                let v = x.flatten_all()?.to_vec1::<f32>()?;
                let mut out = vec![0f32; rows * m.rows];
                for (x, out) in v.chunks_exact(cols).zip(out.chunks_exact_mut(m.rows)) {
                    m.matvec(x, out);
                }
                let mut shape = dims.to_vec();
                if let Some(last) = shape.last_mut() {
                    *last = m.rows;
                }
                Tensor::from_vec(out, shape, &Device::Cpu)
            }
            _ => self.full.forward(x),
        }
    }

    fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.full.embedding(ids)
    }
}

struct Block {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The loaded network.
pub struct Llama {
    pub hyper: Hyper,
    blocks: Vec<Block>,
    norm: Tensor,
    /// The output layer; also the embedding table when the file ties the two.
    output: Linear,
    /// The embedding table when the file has its own output layer.
    embed: Option<Linear>,
    cos: Tensor,
    sin: Tensor,
    /// Positions the rotary tables cover (the cache may not grow past it).
    max_positions: usize,
}

/// Keys and values of the tokens seen so far: a list of [`Piece`]s, each the first tokens of an
/// append-only [`Segment`]. A clone shares the segments; a cache appends in place when its last
/// piece ends where its segment is filled (and there is room), else in a new segment, so no
/// clone ever sees the tokens another one wrote after it and appending never copies the cache.
#[derive(Clone, Default)]
pub struct Cache {
    pieces: Vec<Piece>,
    /// Tokens in the cache.
    pub len: usize,
}

/// The first `len` tokens of `seg`.
#[derive(Clone)]
struct Piece {
    seg: Arc<Segment>,
    len: usize,
}

/// Room for `cap` tokens' keys and values, per block, written once each, in order.
struct Segment {
    /// Per block, the keys transposed: `[1, kv_heads, head_dim, cap]`.
    k: Vec<Tensor>,
    /// Per block, the values: `[1, kv_heads, cap, head_dim]`.
    v: Vec<Tensor>,
    cap: usize,
    /// Tokens claimed by some cache; claims only grow (compare-and-swap).
    filled: AtomicUsize,
}

/// A new segment's least room, in tokens (a few tokens' branch should not start with a large one).
const MIN_SEGMENT: usize = 64;
/// More pieces than this are merged into one segment (each piece costs two matmuls per block).
const MAX_PIECES: usize = 6;

impl Segment {
    fn new(h: &Hyper, cap: usize, filled: usize) -> candle_core::Result<Segment> {
        let (n, hd, cpu) = (h.kv_heads, h.head_dim(), Device::Cpu);
        let mut k = Vec::with_capacity(h.blocks);
        let mut v = Vec::with_capacity(h.blocks);
        for _ in 0..h.blocks {
            k.push(Tensor::zeros((1, n, hd, cap), DType::F32, &cpu)?);
            v.push(Tensor::zeros((1, n, cap, hd), DType::F32, &cpu)?);
        }
        Ok(Segment {
            k,
            v,
            cap,
            filled: AtomicUsize::new(filled),
        })
    }
}

impl Piece {
    /// Keys (transposed) and values of block `i`: `[1, kv_heads, head_dim, len]`, `[1, kv_heads, len, head_dim]`.
    fn kv(&self, i: usize) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.seg.k[i].narrow(3, 0, self.len)?,
            self.seg.v[i].narrow(2, 0, self.len)?,
        ))
    }
}

fn candle(e: candle_core::Error) -> ModelError {
    ModelError::Candle(e.to_string())
}

/// A weight matrix in the chosen in-memory format, with a step copy of the file's blocks where
/// they read fewer bytes than that format: Q4_1 always (our kernel), and blocks candle has a
/// vector kernel for when the format is a dense one (f16, f32).
fn linear(t: QTensor, format: ModelFormat) -> candle_core::Result<Linear> {
    let cpu = Device::Cpu;
    Ok(match (t.dtype(), format) {
        (GgmlDType::Q4_1, _) => {
            let (rows, cols) = t.shape().dims2()?;
            let step = Q4Matrix::from_file_bytes(&t.data()?, rows, cols).map(Step::Q4);
            Linear {
                full: dense(t, format)?,
                step,
            }
        }
        (GgmlDType::Q8_0 | GgmlDType::Q4_0, ModelFormat::F16) => Linear {
            full: QMatMul::TensorF16(t.dequantize_f16(&cpu)?),
            step: Some(Step::Stored(QMatMul::QTensor(Arc::new(t)))),
        },
        (GgmlDType::Q8_0 | GgmlDType::Q4_0, ModelFormat::F32) => Linear {
            full: QMatMul::Tensor(t.dequantize(&cpu)?),
            step: Some(Step::Stored(QMatMul::QTensor(Arc::new(t)))),
        },
        _ => Linear {
            full: dense(t, format)?,
            step: None,
        },
    })
}

/// A weight matrix in the chosen in-memory format.
fn dense(t: QTensor, format: ModelFormat) -> candle_core::Result<QMatMul> {
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
            let mut w = |n: &str| -> Result<Linear, ModelError> {
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

    /// How many blocks the network has.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The network without its step copies: every product runs in the chosen format (the
    /// reference a step copy is compared with).
    #[cfg(test)]
    pub fn without_steps(mut self) -> Llama {
        let all = self
            .blocks
            .iter_mut()
            .flat_map(|b| {
                [
                    &mut b.q,
                    &mut b.k,
                    &mut b.v,
                    &mut b.o,
                    &mut b.gate,
                    &mut b.up,
                    &mut b.down,
                ]
            })
            .chain([&mut self.output])
            .chain(self.embed.as_mut());
        for l in all {
            l.step = None;
        }
        self
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
        self.fits(tokens, cache)?;
        self.run(
            tokens,
            cache,
            keep.clamp(1, tokens.len()),
            &[],
            &mut Vec::new(),
            self.blocks.len(),
        )
        .map_err(candle)
    }

    /// Whether `tokens` can run after what `cache` holds.
    fn fits(&self, tokens: &[u32], cache: &Cache) -> Result<(), ModelError> {
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
        Ok(())
    }

    /// Like [`Llama::hidden`] for every position, and also the residual stream after each
    /// block numbered in `taps` (1-based; `[seq, width]` each, in the order of `taps`).
    pub fn hidden_and_taps(
        &self,
        tokens: &[u32],
        cache: &mut Cache,
        taps: &[usize],
    ) -> Result<(Tensor, Vec<Tensor>), ModelError> {
        self.fits(tokens, cache)?;
        let mut out = Vec::new();
        let h = self
            .run(
                tokens,
                cache,
                tokens.len(),
                taps,
                &mut out,
                self.blocks.len(),
            )
            .map_err(candle)?;
        let mut ordered = Vec::with_capacity(taps.len());
        for t in taps {
            let i = out
                .iter()
                .position(|(n, _)| n == t)
                .ok_or_else(|| ModelError::Candle(format!("no block {t} to tap")))?;
            ordered.push(out[i].1.clone());
        }
        Ok((h, ordered))
    }

    /// The residual stream after the first `blocks` blocks for every position of `tokens`
    /// run after what `cache` holds (`[seq, width]`); the rest of the network is not run, and
    /// `cache` is left as it was (the keys and values written go to a copy that is dropped).
    pub fn residual(
        &self,
        tokens: &[u32],
        cache: &Cache,
        blocks: usize,
    ) -> Result<Tensor, ModelError> {
        self.fits(tokens, cache)?;
        let blocks = blocks.clamp(1, self.blocks.len());
        let mut scratch = cache.clone();
        let mut out = Vec::new();
        self.run(tokens, &mut scratch, 1, &[blocks], &mut out, blocks)
            .map_err(candle)?;
        out.pop()
            .map(|(_, t)| t)
            .ok_or_else(|| ModelError::Candle(format!("no block {blocks} to tap")))
    }

    /// The logits of hidden states (`[n, width]` → `[n, vocab]`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        self.output
            .forward(hidden)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(candle)
    }

    /// Where `seq` new tokens after `pieces` go: the segment and the offset in it; `pieces`
    /// then ends with them.
    fn claim(
        &self,
        pieces: &mut Vec<Piece>,
        pos: usize,
        seq: usize,
    ) -> candle_core::Result<(Arc<Segment>, usize)> {
        if let Some(last) = pieces.last_mut() {
            let at = last.len;
            if at + seq <= last.seg.cap
                && last
                    .seg
                    .filled
                    .compare_exchange(at, at + seq, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                last.len += seq;
                return Ok((last.seg.clone(), at));
            }
        }
        let room = self.max_positions - pos;
        if pieces.len() < MAX_PIECES {
            let cap = (2 * seq).max(MIN_SEGMENT).min(room).max(seq);
            let seg = Arc::new(Segment::new(&self.hyper, cap, seq)?);
            pieces.push(Piece {
                seg: seg.clone(),
                len: seq,
            });
            return Ok((seg, 0));
        }
        // Too many pieces: copy them into one segment with room to grow.
        let cap = (2 * (pos + seq)).min(room + pos).max(pos + seq);
        let seg = Arc::new(Segment::new(&self.hyper, cap, pos + seq)?);
        for i in 0..self.hyper.blocks {
            let mut at = 0;
            for p in pieces.iter() {
                let (k, v) = p.kv(i)?;
                seg.k[i].slice_set(&k.contiguous()?, 3, at)?;
                seg.v[i].slice_set(&v.contiguous()?, 2, at)?;
                at += p.len;
            }
        }
        *pieces = vec![Piece {
            seg: seg.clone(),
            len: pos + seq,
        }];
        Ok((seg, pos))
    }

    /// Run `tokens` after `cache` through the first `stop` blocks; through all of them, the
    /// final states of the last `keep` positions (after the last norm). Stopped early, the
    /// residual stream (`[seq, width]`), and the cache holds keys and values of those blocks
    /// alone: the caller must drop it.
    fn run(
        &self,
        tokens: &[u32],
        cache: &mut Cache,
        keep: usize,
        taps: &[usize],
        tapped: &mut Vec<(usize, Tensor)>,
        stop: usize,
    ) -> candle_core::Result<Tensor> {
        let h = &self.hyper;
        let (seq, pos, hd) = (tokens.len(), cache.len, h.head_dim());
        let (kv_heads, rep) = (h.kv_heads, h.heads / h.kv_heads);
        let cpu = Device::Cpu;
        let ids = Tensor::new(tokens, &cpu)?;
        let table = self.embed.as_ref().unwrap_or(&self.output);
        let mut x = table.embedding(&ids)?.to_dtype(DType::F32)?.unsqueeze(0)?;
        let mask = (seq > 1).then(|| causal_mask(seq, pos, rep)).transpose()?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut pieces = cache.pieces.clone();
        let (seg, at) = self.claim(&mut pieces, pos, seq)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let a = candle_nn::ops::rms_norm(&x, &b.attn_norm, h.eps as f32)?;
            let split = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
                t.reshape((1, seq, n, hd))?.transpose(1, 2)?.contiguous()
            };
            // The query heads that share a key/value head as one matrix of `rep * seq` rows
            // (head-major), so one matmul serves the group without repeating keys and values.
            let q = split(b.q.forward(&a)?, h.heads)?;
            let q = (candle_nn::rotary_emb::rope_i(&q, &cos, &sin)? * scale)?.reshape((
                1,
                kv_heads,
                rep * seq,
                hd,
            ))?;
            let k = split(b.k.forward(&a)?, kv_heads)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            seg.k[i].slice_set(&k.transpose(2, 3)?.contiguous()?, 3, at)?;
            seg.v[i].slice_set(&split(b.v.forward(&a)?, kv_heads)?, 2, at)?;
            let y = if seq == 1 {
                attend_one(&q, &pieces, i)?
            } else {
                attend(&q, &pieces, i, mask.as_ref())?
            };
            let y = y
                .reshape((1, h.heads, seq, hd))?
                .transpose(1, 2)?
                .reshape((1, seq, h.width))?;
            x = (x + b.o.forward(&y)?)?;
            let f = candle_nn::ops::rms_norm(&x, &b.ffn_norm, h.eps as f32)?;
            let g = b.gate.forward(&f)?.silu()?;
            let u = b.up.forward(&f)?;
            x = (x + b.down.forward(&(g * u)?)?)?;
            if taps.contains(&(i + 1)) {
                tapped.push((i + 1, x.squeeze(0)?));
            }
            if i + 1 == stop && stop < self.blocks.len() {
                cache.pieces = pieces;
                cache.len += seq;
                return x.squeeze(0);
            }
        }
        cache.pieces = pieces;
        cache.len += seq;
        let x = x.i((.., seq - keep.., ..))?.contiguous()?;
        candle_nn::ops::rms_norm(&x, &self.norm, h.eps as f32)?.squeeze(0)
    }
}

/// Attention of the grouped, scaled queries `q` (`[1, kv_heads, rep * seq, head_dim]`) over the
/// keys and values of block `i` in `pieces`: `[1, kv_heads, rep * seq, head_dim]`.
fn attend(
    q: &Tensor,
    pieces: &[Piece],
    i: usize,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let masked = |att: Tensor| match mask {
        Some(m) => att.broadcast_add(m),
        None => Ok(att),
    };
    if let [p] = pieces {
        let (k, v) = p.kv(i)?;
        let att = candle_nn::ops::softmax_last_dim(&masked(q.matmul(&k)?)?)?;
        return att.matmul(&v);
    }
    let scores = pieces
        .iter()
        .map(|p| q.matmul(&p.seg.k[i].narrow(3, 0, p.len)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let att = candle_nn::ops::softmax_last_dim(&masked(Tensor::cat(&scores, 3)?)?)?;
    let mut y: Option<Tensor> = None;
    let mut at = 0;
    for p in pieces {
        let part = att
            .narrow(3, at, p.len)?
            .matmul(&p.seg.v[i].narrow(2, 0, p.len)?)?;
        y = Some(match y {
            Some(y) => (y + part)?,
            None => part,
        });
        at += p.len;
    }
    y.ok_or_else(|| candle_core::Error::Msg("attention over an empty cache".into()))
}

/// The `f32` values of a contiguous CPU tensor's storage, from its first element.
fn f32_data<'a>(
    guard: &'a candle_core::StorageRef<'_>,
    t: &Tensor,
) -> candle_core::Result<&'a [f32]> {
    match &**guard {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => {
            let start = t.layout().start_offset();
            v.get(start..).ok_or_else(|| {
                candle_core::Error::Msg("a cache tensor is shorter than its layout".into())
            })
        }
        _ => Err(candle_core::Error::Msg(
            "the key/value cache is not f32 on the CPU".into(),
        )),
    }
}

/// [`attend`] for one new token (`q`: `[1, kv_heads, rep, head_dim]`), reading the cached keys
/// and values in place: per query head, dot products over the keys (a row of the transposed
/// keys per dimension, so each step runs along contiguous memory), a softmax, and the sum of
/// the value rows weighted by it. No copy of the cache is made, which a matmul would do on
/// every call.
fn attend_one(q: &Tensor, pieces: &[Piece], i: usize) -> candle_core::Result<Tensor> {
    let (_, kv_heads, rep, hd) = q.dims4()?;
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let total: usize = pieces.iter().map(|p| p.len).sum();
    if total == 0 {
        return Err(candle_core::Error::Msg(
            "attention over an empty cache".into(),
        ));
    }
    let guards: Vec<_> = pieces
        .iter()
        .map(|p| {
            (
                p.seg.k[i].storage_and_layout().0,
                p.seg.v[i].storage_and_layout().0,
            )
        })
        .collect();
    let mut kv = Vec::with_capacity(pieces.len());
    for (p, (k, v)) in pieces.iter().zip(&guards) {
        kv.push((f32_data(k, &p.seg.k[i])?, f32_data(v, &p.seg.v[i])?, p));
    }
    let mut scores = vec![0f32; rep * total];
    let mut y = vec![0f32; kv_heads * rep * hd];
    for g in 0..kv_heads {
        scores.iter_mut().for_each(|s| *s = 0.0);
        let qg = &q[g * rep * hd..(g + 1) * rep * hd];
        // Scores: keys are `[kv_heads, head_dim, cap]`, so dimension `d` of every key is a row.
        let mut at = 0;
        for (k, _, p) in &kv {
            let cap = p.seg.cap;
            for d in 0..hd {
                let row = &k[(g * hd + d) * cap..][..p.len];
                for r in 0..rep {
                    let qd = qg[r * hd + d];
                    let s = &mut scores[r * total + at..][..p.len];
                    for (s, k) in s.iter_mut().zip(row) {
                        *s += qd * k;
                    }
                }
            }
            at += p.len;
        }
        for r in 0..rep {
            let s = &mut scores[r * total..][..total];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in s.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            s.iter_mut().for_each(|v| *v *= inv);
        }
        // Output: values are `[kv_heads, cap, head_dim]`, one row per token.
        let mut at = 0;
        for (_, v, p) in &kv {
            let cap = p.seg.cap;
            for j in 0..p.len {
                let row = &v[(g * cap + j) * hd..][..hd];
                for r in 0..rep {
                    let a = scores[r * total + at + j];
                    let out = &mut y[(g * rep + r) * hd..][..hd];
                    for (o, v) in out.iter_mut().zip(row) {
                        *o += a * v;
                    }
                }
            }
            at += p.len;
        }
    }
    Tensor::from_vec(y, (1, kv_heads, rep, hd), &Device::Cpu)
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

/// 0 where query `i` (at `pos + i`) may see key `j`, −∞ after it, for each of the `rep` query
/// heads of a group: `[rep * seq, pos + seq]`.
fn causal_mask(seq: usize, pos: usize, rep: usize) -> candle_core::Result<Tensor> {
    let kv = pos + seq;
    let m: Vec<f32> = (0..rep * seq)
        .flat_map(|r| {
            let i = r % seq;
            (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Tensor::from_slice(&m, (rep * seq, kv), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;

    /// The tiny network in `format`, without its step copies (each product in one format, so
    /// the cache's paths must agree to rounding).
    fn tiny(format: ModelFormat) -> Llama {
        tiny_with_steps(format).without_steps()
    }

    fn tiny_with_steps(format: ModelFormat) -> Llama {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::controller::model::testing::write_tiny(&path, "llama").unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        Llama::load(&ct, &mut f, format).unwrap()
    }

    fn rows(t: Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    /// Equal within 1e-4 of the largest logit's magnitude.
    fn assert_close(want: &[Vec<f32>], got: &[Vec<f32>], what: &str) {
        assert_eq!(want.len(), got.len(), "{what}");
        let top = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        for (r, (w, g)) in want.iter().zip(got).enumerate() {
            assert_eq!(w.len(), g.len(), "{what}");
            for (a, b) in w.iter().zip(g) {
                assert!(
                    (a - b).abs() <= 1e-4 * top,
                    "{what}: row {r}: {a} vs {b} (largest {top})"
                );
            }
        }
    }

    #[test]
    fn one_token_attention_reads_the_cache_as_the_matrix_path_does() {
        let m = tiny(ModelFormat::F32);
        let h = &m.hyper;
        let ids: Vec<u32> = (0..30u32).map(|i| (i * 53 + 7) % 250 + 3).collect();
        // A cache of three pieces: a prefix, then two branches' worth of appends.
        let mut c = Cache::default();
        m.forward(&ids[..12], &mut c, 1).unwrap();
        let mut other = c.clone();
        m.forward(&[9], &mut other, 1).unwrap();
        m.forward(&ids[12..20], &mut c, 1).unwrap();
        m.forward(&ids[20..], &mut c, 1).unwrap();
        assert!(c.pieces.len() >= 2, "{} pieces", c.pieces.len());
        let (kv, rep, hd) = (h.kv_heads, h.heads / h.kv_heads, h.head_dim());
        let q: Vec<f32> = (0..kv * rep * hd)
            .map(|i| ((i * 29 % 61) as f32 - 30.0) / 40.0)
            .collect();
        let q = Tensor::from_vec(q, (1, kv, rep, hd), &Device::Cpu).unwrap();
        for i in [0, h.blocks - 1] {
            let want = attend(&q, &c.pieces, i, None).unwrap();
            let got = attend_one(&q, &c.pieces, i).unwrap();
            let flat = |t: Tensor| vec![t.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            assert_close(&flat(want), &flat(got), &format!("block {i}"));
        }
    }

    #[test]
    fn steps_through_the_files_blocks_keep_the_greedy_tokens() {
        for format in [ModelFormat::F16, ModelFormat::F32, ModelFormat::Keep] {
            let (plain, stepped) = (tiny(format), tiny_with_steps(format));
            let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 11) % 250 + 3).collect();
            let n = ids.len();
            let (mut a, mut b) = (Cache::default(), Cache::default());
            let want = plain.hidden(&ids, &mut Cache::default(), n).unwrap();
            let got = stepped.hidden(&ids, &mut Cache::default(), n).unwrap();
            assert_close(
                &rows(want),
                &rows(got),
                "a prompt runs in the chosen format",
            );
            // Greedy steps (the last prompt position's logits are a one-row product too): the
            // same tokens, logits close (a step rounds its input to 8 bits).
            let mut x = rows(plain.forward(&ids, &mut a, 1).unwrap());
            let mut y = rows(stepped.forward(&ids, &mut b, 1).unwrap());
            for step in 0..8 {
                let argmax =
                    |r: &[f32]| (0..r.len()).max_by(|i, j| r[*i].total_cmp(&r[*j])).unwrap() as u32;
                let (tx, ty) = (argmax(&x[0]), argmax(&y[0]));
                assert_eq!(tx, ty, "{format}: step {step}");
                let top = x[0].iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = x[0]
                    .iter()
                    .zip(&y[0])
                    .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(
                    worst <= 0.05 * top,
                    "{format}: step {step}: {worst} of {top}"
                );
                x = rows(plain.forward(&[tx], &mut a, 1).unwrap());
                y = rows(stepped.forward(&[ty], &mut b, 1).unwrap());
            }
        }
    }

    #[test]
    fn a_sequence_gives_the_same_logits_at_once_token_by_token_and_in_cloned_branches() {
        for format in [ModelFormat::F32, ModelFormat::Keep] {
            let m = tiny(format);
            let ids: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 250 + 3).collect();
            let n = ids.len();
            let full = rows(m.forward(&ids, &mut Cache::default(), n).unwrap());
            // The hidden states of every position, then the logits, are the same thing.
            let hidden = m.hidden(&ids, &mut Cache::default(), n).unwrap();
            assert_eq!(hidden.dims(), [n, m.hyper.width]);
            assert_close(
                &full,
                &rows(m.logits(&hidden).unwrap()),
                "hidden then logits",
            );

            let mut c = Cache::default();
            let mut step = Vec::new();
            for t in &ids {
                step.extend(rows(m.forward(&[*t], &mut c, 1).unwrap()));
            }
            assert_eq!(c.len, n);
            assert_close(&full, &step, "token by token");

            // Two branches from a shared prefix: the sibling writes first (in place), the
            // branch after it must not see the sibling's tokens.
            let mut prefix = Cache::default();
            m.forward(&ids[..10], &mut prefix, 1).unwrap();
            let other = [5u32, 6, 7];
            let mut sibling = prefix.clone();
            let sib = rows(m.forward(&other, &mut sibling, 3).unwrap());
            let mut branch = prefix.clone();
            let mut got = rows(m.forward(&ids[10..25], &mut branch, 15).unwrap());
            for t in &ids[25..] {
                got.extend(rows(m.forward(&[*t], &mut branch, 1).unwrap()));
            }
            assert_close(&full[10..], &got, "cloned branch");
            let alone: Vec<u32> = ids[..10].iter().chain(&other).copied().collect();
            let want = rows(m.forward(&alone, &mut Cache::default(), 13).unwrap());
            assert_close(&want[10..], &sib, "the sibling");
            // The sibling goes on after the branch wrote: still its own tokens only.
            let more = rows(m.forward(&[8], &mut sibling, 1).unwrap());
            let alone: Vec<u32> = alone.into_iter().chain([8]).collect();
            let want = rows(m.forward(&alone, &mut Cache::default(), 1).unwrap());
            assert_close(&want, &more, "the sibling after the branch");

            // A branch at every token (a clone extended first each time): many segments,
            // merged past MAX_PIECES.
            let mut c = prefix.clone();
            let mut got = Vec::new();
            for t in &ids[10..] {
                let mut s = c.clone();
                m.forward(&[1], &mut s, 1).unwrap();
                got.extend(rows(m.forward(&[*t], &mut c, 1).unwrap()));
                assert!(c.pieces.len() <= MAX_PIECES);
            }
            assert_close(&full[10..], &got, "many branches");
        }
    }
}
