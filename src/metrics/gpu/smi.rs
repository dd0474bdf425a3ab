//! GPUs read through the driver's `nvidia-smi`, for static builds (which never load NVML).
//!
//! Two children run for the node's life, each printing CSV every second (`-lms 1000`): the
//! GPUs, and the compute processes. A thread per child keeps the newest lines; a sample reads
//! them. A GPU line older than [`STALE`] means the child stopped answering; a process line older
//! than that is a process that has gone (the child prints nothing when none run).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{GpuSample, GpuState};

/// The GPU fields asked for, in this order.
const GPU_QUERY: &str =
    "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw";
/// The process fields asked for, in this order.
const APP_QUERY: &str = "gpu_uuid,pid,used_memory";
/// Lines older than this are no longer current.
const STALE: Duration = Duration::from_secs(3);

/// One GPU line, with the uuid the process lines refer to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GpuLine {
    pub uuid: String,
    pub gpu: GpuSample,
}

/// A number of `nvidia-smi --format=csv,noheader,nounits`, which says `[N/A]` or
/// `[Not Supported]` where a device has none.
fn num(field: &str) -> Option<f64> {
    field.trim().parse().ok()
}

/// Parse one line of the GPU query; `None` for a line that is not one.
pub(super) fn parse_gpu(line: &str) -> Option<GpuLine> {
    let f: Vec<&str> = line.split(", ").collect();
    if f.len() != 8 {
        return None;
    }
    let mib = |s: &str| num(s).map(|m| (m * 1024.0 * 1024.0) as u64);
    Some(GpuLine {
        uuid: f[1].trim().to_string(),
        gpu: GpuSample {
            index: f[0].trim().parse().ok()?,
            name: f[2].trim().to_string(),
            util: num(f[3]).map_or(0.0, |u| (u / 100.0) as f32),
            mem_used: mib(f[4])?,
            mem_total: mib(f[5])?,
            temp_c: num(f[6]).map_or(f32::NAN, |t| t as f32),
            power_w: num(f[7]).map_or(f32::NAN, |p| p as f32),
            processes: Vec::new(),
            // nvidia-smi's fields for these differ between drivers: unknown here.
            slowdown_c: f32::NAN,
            xid_errors: 0,
            last_xid: 0,
            ecc_uncorrected: 0,
            throttle: 0,
        },
    })
}

/// Parse one line of the process query: (gpu uuid, pid, bytes).
pub(super) fn parse_app(line: &str) -> Option<(String, u32, u64)> {
    let f: Vec<&str> = line.split(", ").collect();
    if f.len() != 3 {
        return None;
    }
    let mem = num(f[2]).map_or(0, |m| (m * 1024.0 * 1024.0) as u64);
    Some((f[0].trim().to_string(), f[1].trim().parse().ok()?, mem))
}

/// The newest lines of both children.
#[derive(Default)]
struct Latest {
    gpus: Vec<(Instant, GpuLine)>,
    apps: Vec<(Instant, (String, u32, u64))>,
}

/// The two `nvidia-smi` children and what they last said.
pub(super) struct Smi {
    latest: Arc<Mutex<Latest>>,
    children: Vec<Child>,
}

impl Smi {
    /// Ask `program` once (so a missing driver is said at once, with its reason), then start
    /// the two looping children.
    pub(super) fn start(program: &Path) -> Result<Smi, String> {
        let once = Command::new(program)
            .args([
                &format!("--query-gpu={GPU_QUERY}"),
                "--format=csv,noheader,nounits",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "this static build reads GPUs through '{}', which cannot run: {e}",
                    program.display()
                )
            })?;
        if !once.status.success() {
            let said = String::from_utf8_lossy(&once.stdout);
            let err = String::from_utf8_lossy(&once.stderr);
            let first = err.lines().chain(said.lines()).next().unwrap_or("");
            return Err(format!(
                "'{}' failed ({}): {}",
                program.display(),
                once.status,
                first.trim()
            ));
        }
        let text = String::from_utf8_lossy(&once.stdout);
        let now = Instant::now();
        let latest = Arc::new(Mutex::new(Latest {
            gpus: text
                .lines()
                .filter_map(parse_gpu)
                .map(|g| (now, g))
                .collect(),
            apps: Vec::new(),
        }));
        let mut children = Vec::new();
        for (query, is_gpu) in [
            (format!("--query-gpu={GPU_QUERY}"), true),
            (format!("--query-compute-apps={APP_QUERY}"), false),
        ] {
            let mut child = Command::new(program)
                .args([&query, "--format=csv,noheader,nounits", "-lms", "1000"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start '{}': {e}", program.display()))?;
            let out = child.stdout.take().expect("stdout is piped");
            let latest = latest.clone();
            std::thread::Builder::new()
                .name("nvidia-smi".into())
                .spawn(move || read_lines(out, is_gpu, &latest))
                .map_err(|e| format!("cannot start a thread for nvidia-smi: {e}"))?;
            children.push(child);
        }
        Ok(Smi { latest, children })
    }

    /// The GPUs as last printed, with the processes on each.
    pub(super) fn sample(&self) -> GpuState {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |at: &Instant| at.elapsed() < STALE;
        if !latest.gpus.iter().any(|(at, _)| fresh(at)) {
            return GpuState::Unavailable("nvidia-smi stopped answering".into());
        }
        let mut gpus: Vec<GpuSample> = latest
            .gpus
            .iter()
            .filter(|(at, _)| fresh(at))
            .map(|(_, g)| {
                let mut s = g.gpu.clone();
                s.processes = latest
                    .apps
                    .iter()
                    .filter(|(at, (uuid, ..))| fresh(at) && *uuid == g.uuid)
                    .map(|(_, (_, pid, mem))| (*pid, *mem))
                    .collect();
                s
            })
            .collect();
        gpus.sort_by_key(|g| g.index);
        GpuState::Gpus(gpus)
    }
}

impl Drop for Smi {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Keep the newest line per GPU (by index) or per process (by gpu and pid) until the child
/// ends.
fn read_lines(out: impl std::io::Read, is_gpu: bool, latest: &Mutex<Latest>) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let now = Instant::now();
        let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
        if is_gpu {
            if let Some(g) = parse_gpu(&line) {
                l.gpus.retain(|(_, old)| old.gpu.index != g.gpu.index);
                l.gpus.push((now, g));
            }
        } else if let Some(a) = parse_app(&line) {
            l.apps
                .retain(|(at, old)| (old.0 != a.0 || old.1 != a.1) && at.elapsed() < STALE);
            l.apps.push((now, a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_an_h200_driver_prints_them() {
        let g = parse_gpu(
            "0, GPU-969db14f-bc5b-ab61-d569-9cb615c9e71b, NVIDIA H200, 37, 1024, 143771, 31, 76.54",
        )
        .unwrap();
        assert_eq!(g.uuid, "GPU-969db14f-bc5b-ab61-d569-9cb615c9e71b");
        assert_eq!(g.gpu.index, 0);
        assert_eq!(g.gpu.name, "NVIDIA H200");
        assert!((g.gpu.util - 0.37).abs() < 1e-6);
        assert_eq!(g.gpu.mem_used, 1024 << 20);
        assert_eq!(g.gpu.mem_total, 143771 << 20);
        assert_eq!(g.gpu.temp_c, 31.0);
        assert!((g.gpu.power_w - 76.54).abs() < 1e-3);
        // A board without power readings.
        let g = parse_gpu("1, GPU-x, Tesla T4, [N/A], 0, 15360, 40, [N/A]").unwrap();
        assert!(g.gpu.power_w.is_nan());
        assert_eq!(g.gpu.util, 0.0);
        assert!(parse_gpu("No devices were found").is_none());
        assert_eq!(
            parse_app("GPU-x, 4242, 512"),
            Some(("GPU-x".into(), 4242, 512 << 20))
        );
        assert!(parse_app("garbage").is_none());
    }

    /// A stand-in `nvidia-smi` (a shell script) drives the real children and threads: GPUs
    /// are sampled with their processes; a program that fails says why.
    #[test]
    fn a_stand_in_nvidia_smi_is_read_through_its_children() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nvidia-smi");
        std::fs::write(
            &fake,
            "#!/bin/sh\n\
             case \"$1\" in\n\
             --query-gpu=*) line='0, GPU-a, Fake GPU, 50, 100, 1000, 40, 70.5' ;;\n\
             *) line='GPU-a, 77, 10' ;;\n\
             esac\n\
             if [ \"$3\" = -lms ]; then\n\
               i=0; while [ $i -lt 100 ]; do echo \"$line\"; i=$((i+1)); sleep 0.1; done\n\
             else echo \"$line\"; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let smi = Smi::start(&fake).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let GpuState::Gpus(g) = smi.sample()
                && g.len() == 1
                && g[0].processes == vec![(77, 10 << 20)]
            {
                assert_eq!(g[0].name, "Fake GPU");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no sample with the process: {:?}",
                smi.sample()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(smi);

        let failing = dir.path().join("broken");
        std::fs::write(
            &failing,
            "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n",
        )
        .unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Smi::start(&failing).err().unwrap();
        assert!(
            e.contains("could not communicate with the NVIDIA driver"),
            "{e}"
        );
        let e = Smi::start(&dir.path().join("absent")).err().unwrap();
        assert!(e.contains("cannot run"), "{e}");
    }
}
