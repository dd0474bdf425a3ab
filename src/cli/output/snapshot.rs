//! `aether snapshot save|inspect|restore`.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::{opt, table, write_json};
use crate::domain::{Millis, human_millis};
use crate::raft::backup::{BackupInfo, RestoredView};

/// A file and what it holds (`--output json` of save and inspect).
#[derive(Serialize)]
struct FileInfo<'a> {
    file: String,
    #[serde(flatten)]
    info: &'a BackupInfo,
}

/// `aether snapshot save`: where it went, its position, size and checksum.
pub fn snapshot_saved(
    w: &mut dyn Write,
    file: &Path,
    info: &BackupInfo,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(
            w,
            &FileInfo {
                file: file.display().to_string(),
                info,
            },
        );
    }
    writeln!(
        w,
        "saved '{}': index {}, term {}, {} bytes, sha256 {}",
        file.display(),
        opt(info.index),
        opt(info.term),
        info.size,
        info.sha256
    )
}

/// `aether snapshot inspect`: the verified file's format, cluster, position, members and
/// records per table; ages from `now`.
pub fn snapshot_info(
    w: &mut dyn Write,
    file: &Path,
    info: &BackupInfo,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(
            w,
            &FileInfo {
                file: file.display().to_string(),
                info,
            },
        );
    }
    writeln!(w, "file:      {}", file.display())?;
    writeln!(
        w,
        "format:    {} (snapshot records {})",
        info.format, info.snapshot_format
    )?;
    writeln!(w, "checksum:  sha256 {} (verified)", info.sha256)?;
    writeln!(w, "size:      {} bytes", info.size)?;
    writeln!(
        w,
        "cluster:   {}",
        info.cluster_id.as_deref().unwrap_or("-")
    )?;
    writeln!(
        w,
        "position:  index {}, term {}",
        opt(info.index),
        opt(info.term)
    )?;
    writeln!(
        w,
        "taken:     {} ago on {}",
        human_millis(now.saturating_sub(info.taken_at)),
        info.node
    )?;
    writeln!(w)?;
    let members: Vec<Vec<String>> = info
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                if m.name.is_empty() {
                    "-".into()
                } else {
                    m.name.clone()
                },
                m.addr.clone(),
                if m.voter { "voter" } else { "learner" }.into(),
            ]
        })
        .collect();
    write!(w, "{}", table(&["ID", "NAME", "ADDR", "ROLE"], &members))?;
    writeln!(w)?;
    let counts: Vec<Vec<String>> = info
        .counts
        .iter()
        .map(|(t, n)| vec![t.clone(), n.to_string()])
        .collect();
    write!(w, "{}", table(&["TABLE", "RECORDS"], &counts))
}

/// `aether snapshot restore`: what was kept and left out, and how to start the new cluster.
pub fn snapshot_restored(w: &mut dyn Write, r: &RestoredView, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, r);
    }
    writeln!(
        w,
        "restored cluster '{}' at index {} (term {}) into '{}'",
        r.from_cluster_id.as_deref().unwrap_or("-"),
        opt(r.index),
        opt(r.term),
        r.data_dir.display()
    )?;
    let kept: Vec<String> = r.kept.iter().map(|(t, n)| format!("{t} {n}")).collect();
    writeln!(
        w,
        "kept:      {}",
        if kept.is_empty() {
            "nothing".into()
        } else {
            kept.join(", ")
        }
    )?;
    writeln!(
        w,
        "left out:  {} (of the old cluster)",
        r.dropped.join(", ")
    )?;
    writeln!(
        w,
        "next:      aether node --data-dir {} --name NAME   (a new cluster: new id and CA, that node the only voter; others join with 'aether token create')",
        r.data_dir.display()
    )
}
