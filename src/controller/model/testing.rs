//! A tiny GGUF of the same architecture as SmolLM2 (llama, byte-level BPE, ChatML template,
//! tied output, Q4_1 matrices) with random weights: fast tests of loading, shaping and the
//! verdict path without the real 98 MB file. Its answers are noise, but always valid ones.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The GPT-2 byte-to-character table of byte-level BPE.
pub fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in printable.iter().zip(chars) {
        table[*b as usize] = char::from_u32(c).expect("valid char");
    }
    table
}

/// Write a tiny model to `path`. `arch` is normally "llama"; another value makes a file the
/// loader must refuse.
pub fn write_tiny(path: &Path, arch: &str) -> anyhow::Result<()> {
    let (width, heads, kv_heads, ffn, blocks) = (64usize, 4usize, 2usize, 128usize, 2usize);
    let hd = width / heads;
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![3i32; 3];
    for c in byte_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges = ["Ġ a", "a p", "Ġa p"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    // Pad to a multiple of 32 rows.
    while tokens.len() % 32 != 0 {
        tokens.push(format!("<pad{}>", tokens.len()));
        types.push(3);
    }
    let vocab = tokens.len();
    let dev = Device::Cpu;
    let mut seed = 0u64;
    let mut matrix = |rows: usize, cols: usize, dtype: GgmlDType| -> anyhow::Result<QTensor> {
        seed += 1;
        // A fixed pseudo-random pattern: tests see the same model every time.
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let x = ((i as u64 + 1) * 2_654_435_761 + seed * 97) % 10_007;
                (x as f32 / 10_007.0 - 0.5) * 0.2
            })
            .collect();
        Ok(QTensor::quantize(
            &Tensor::from_vec(v, (rows, cols), &dev)?,
            dtype,
        )?)
    };
    let ones = |n: usize| -> anyhow::Result<QTensor> {
        Ok(QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &dev)?,
            GgmlDType::F32,
        )?)
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            matrix(vocab, width, GgmlDType::Q8_0)?,
        ),
        ("output_norm.weight".into(), ones(width)?),
    ];
    for b in 0..blocks {
        let q4 = GgmlDType::Q4_1;
        tensors.push((format!("blk.{b}.attn_q.weight"), matrix(width, width, q4)?));
        tensors.push((
            format!("blk.{b}.attn_k.weight"),
            matrix(kv_heads * hd, width, q4)?,
        ));
        tensors.push((
            format!("blk.{b}.attn_v.weight"),
            matrix(kv_heads * hd, width, q4)?,
        ));
        tensors.push((
            format!("blk.{b}.attn_output.weight"),
            matrix(width, width, q4)?,
        ));
        tensors.push((format!("blk.{b}.ffn_gate.weight"), matrix(ffn, width, q4)?));
        tensors.push((format!("blk.{b}.ffn_up.weight"), matrix(ffn, width, q4)?));
        tensors.push((format!("blk.{b}.ffn_down.weight"), matrix(width, ffn, q4)?));
        tensors.push((format!("blk.{b}.attn_norm.weight"), ones(width)?));
        tensors.push((format!("blk.{b}.ffn_norm.weight"), ones(width)?));
    }
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", s(arch)),
        ("general.name", s("aether tiny test model")),
        ("llama.block_count", u(blocks)),
        ("llama.context_length", u(4096)),
        ("llama.embedding_length", u(width)),
        ("llama.feed_forward_length", u(ffn)),
        ("llama.attention.head_count", u(heads)),
        ("llama.attention.head_count_kv", u(kv_heads)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.rope.dimension_count", u(hd)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", u(1)),
        ("tokenizer.ggml.eos_token_id", u(2)),
        (
            "tokenizer.chat_template",
            s(
                "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}",
            ),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path)?;
    gguf_file::write(&mut f, &md_refs, &t_refs)?;
    Ok(())
}
