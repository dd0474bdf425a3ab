//! Host sampling (sysinfo): CPU total and per core, memory and swap, load, disk I/O and free
//! space per mount, network rates per interface, GPUs, and CPU/RSS of given processes. The only
//! module that knows sysinfo. Rates are per second over the time since the previous sample.

use std::time::Instant;

use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::gpu::{GpuState, Gpus};
use super::update::{DiskSample, MAX_DISKS, MAX_NETS, NetSample, NodeMetrics, ProcessSample};
use crate::domain::now_millis;

/// Sampling failed to start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read host metrics: {0}")]
pub struct SampleError(String);

/// Keeps the sysinfo state between samples (rates need the previous counters).
pub struct Sampler {
    sys: System,
    disks: Disks,
    nets: Networks,
    gpus: Gpus,
    last: Instant,
}

impl Sampler {
    /// Read the host's inventory (cores, disks, interfaces) and initialise NVML once.
    pub fn new() -> Result<Sampler, SampleError> {
        let err = |e: sysinfo::Error| SampleError(e.to_string());
        let mut sys = System::new().map_err(err)?;
        sys.refresh_cpu_usage();
        Ok(Sampler {
            sys,
            disks: Disks::new_with_refreshed_list().map_err(err)?,
            nets: Networks::new_with_refreshed_list().map_err(err)?,
            gpus: Gpus::init(),
            last: Instant::now(),
        })
    }

    /// Why NVML cannot be used on this host, if it cannot.
    pub fn gpu_unavailable(&self) -> Option<String> {
        self.gpus.unavailable()
    }

    /// Take one sample, with the CPU and RSS of `pids` (the supervised instances). CPU and rates
    /// cover the time since the previous call (or since `new`).
    pub fn sample(&mut self, pids: &[u32]) -> NodeMetrics {
        let secs = self.last.elapsed().as_secs_f32().max(1e-3);
        self.last = Instant::now();
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.disks.refresh(true);
        self.nets.refresh(true);
        let load = System::load_average()
            .map(|l| [l.one as f32, l.five as f32, l.fifteen as f32])
            .unwrap_or([f32::NAN; 3]);
        let cores: Vec<f32> = self
            .sys
            .cpus()
            .iter()
            .map(|c| (c.usage() / 100.0).clamp(0.0, 1.0))
            .collect();
        let mut disks: Vec<DiskSample> = self
            .disks
            .iter()
            .map(|d| {
                let u = d.usage();
                DiskSample {
                    mount: d.mount_point().display().to_string(),
                    read_bps: u.read_bytes as f32 / secs,
                    write_bps: u.written_bytes as f32 / secs,
                    free_bytes: d.available_space(),
                    total_bytes: d.total_space(),
                }
            })
            .collect();
        disks.sort_by(|a, b| {
            b.total_bytes
                .cmp(&a.total_bytes)
                .then(a.mount.cmp(&b.mount))
        });
        disks.dedup_by(|a, b| a.mount == b.mount);
        disks.truncate(MAX_DISKS);
        let mut nets: Vec<NetSample> = self
            .nets
            .iter()
            .filter(|(name, _)| name.as_os_str() != "lo")
            .map(|(name, n)| NetSample {
                iface: name.to_string_lossy().into_owned(),
                rx_bps: n.received() as f32 / secs,
                tx_bps: n.transmitted() as f32 / secs,
            })
            .collect();
        nets.sort_by(|a, b| {
            (b.rx_bps + b.tx_bps)
                .total_cmp(&(a.rx_bps + a.tx_bps))
                .then(a.iface.cmp(&b.iface))
        });
        nets.truncate(MAX_NETS);
        NodeMetrics {
            at: now_millis(),
            // The mean of the cores, so the total always agrees with them (sysinfo's global
            // figure is measured separately and can disagree with them over short intervals).
            cpu: cores.iter().sum::<f32>() / cores.len().max(1) as f32,
            cores: cores.iter().map(|c| (c * 100.0).round() as u8).collect(),
            mem_used: self.sys.used_memory(),
            mem_total: self.sys.total_memory(),
            swap_used: self.sys.used_swap(),
            swap_total: self.sys.total_swap(),
            load,
            disks,
            nets,
            gpus: match self.gpus.sample() {
                GpuState::Gpus(g) => g,
                GpuState::Unavailable(_) => Vec::new(),
            },
            procs: if pids.is_empty() {
                Vec::new()
            } else {
                self.processes(pids)
            },
            // The pipeline adds the ingress's counts to the update it builds.
            traffic: Vec::new(),
            waiting: Vec::new(),
            listen_errors: Vec::new(),
        }
    }

    /// CPU and RSS of `pids` (the supervised instances). Processes that are gone are left out.
    fn processes(&mut self, pids: &[u32]) -> Vec<ProcessSample> {
        let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        pids.iter()
            .filter_map(|pid| self.sys.process(*pid))
            .map(|p| ProcessSample {
                pid: p.pid().as_u32(),
                cpu: p.cpu_usage() / 100.0,
                rss: p.memory(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_sample_has_sane_values() {
        let mut s = Sampler::new().unwrap();
        // CPU usage is a rate: measure over an interval.
        let busy_until = Instant::now() + std::time::Duration::from_millis(300);
        let mut spin = 0u64;
        while Instant::now() < busy_until {
            spin = spin.wrapping_add(1);
        }
        let me = std::process::id();
        let h = s.sample(&[me]);
        assert!(spin > 0);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(h.cores.len(), cores);
        assert!((0.0..=1.0).contains(&h.cpu), "cpu {}", h.cpu);
        assert!(h.cores.iter().all(|c| *c <= 100), "{:?}", h.cores);
        assert!(h.cpu > 0.0, "a core was spinning, cpu must show it");
        assert!(h.mem_total > 0 && h.mem_used > 0 && h.mem_used <= h.mem_total);
        assert!(h.load.iter().all(|l| *l >= 0.0));
        assert!(
            h.disks
                .iter()
                .any(|d| d.total_bytes > 0 && d.free_bytes <= d.total_bytes),
            "{:?}",
            h.disks
        );
        assert!(h.disks.len() <= MAX_DISKS && h.nets.len() <= MAX_NETS);
        assert!(
            h.nets.iter().all(|n| n.iface != "lo"),
            "loopback left out: {:?}",
            h.nets
        );
        assert_eq!(h.procs.len(), 1, "the pid asked for: {:?}", h.procs);
        // Without NVML there are no GPUs and the reason is known (see gpu.rs).
        assert!(h.gpus.is_empty() || s.gpu_unavailable().is_none());
    }

    #[test]
    fn processes_are_sampled_by_pid() {
        let mut s = Sampler::new().unwrap();
        let me = std::process::id();
        let got = s.processes(&[me, u32::MAX - 7]);
        assert_eq!(got.len(), 1, "a missing pid is left out");
        assert_eq!(got[0].pid, me);
        assert!(got[0].rss > 1024 * 1024, "rss {}", got[0].rss);
    }
}
