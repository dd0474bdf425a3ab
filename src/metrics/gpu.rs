//! NVIDIA GPUs; the only module that knows NVML and `nvidia-smi`.
//!
//! A dynamically linked build loads `libnvidia-ml.so.1` at run time, once (nvml-wrapper). A
//! static build never does: loading a shared library into a static glibc binary pulls in the
//! host's `libc.so.6` beside the one linked in, and on a host whose glibc differs (Ubuntu 24.04's
//! 2.39 against the 2.36 built in) the node died of SIGFPE inside NVML's initialisation. A static
//! build reads the same figures from the driver's `nvidia-smi` instead: one long-running `-lms`
//! child for the GPUs and one for the compute processes, each read by a thread of its own, so a
//! sample costs no process start. Where neither works (no driver), the node reports `gpu:
//! unavailable (<reason>)`, logs that once, and carries on: never a crash.

use std::fmt;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde::{Deserialize, Serialize};

/// One GPU's sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: u32,
    pub name: String,
    /// Utilisation, 0.0–1.0.
    pub util: f32,
    pub mem_used: u64,
    pub mem_total: u64,
    pub temp_c: f32,
    pub power_w: f32,
    /// (pid, GPU memory bytes) of compute processes.
    pub processes: Vec<(u32, u64)>,
}

/// What the node knows about its GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GpuState {
    /// NVML could not be used; the reason says why (e.g. the library is missing).
    Unavailable(String),
    /// Every GPU NVML lists (possibly none).
    Gpus(Vec<GpuSample>),
}

impl fmt::Display for GpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuState::Unavailable(r) => write!(f, "gpu: unavailable ({r})"),
            GpuState::Gpus(g) if g.is_empty() => f.write_str("gpu: none"),
            GpuState::Gpus(g) => {
                let names: Vec<String> = g
                    .iter()
                    .map(|g| format!("{} {}", g.index, g.name))
                    .collect();
                write!(f, "gpu: {}", names.join(", "))
            }
        }
    }
}

/// How GPUs are read: NVML, `nvidia-smi`, or not at all (and why).
enum Source {
    /// Boxed: NVML's handle is large beside the others.
    Nvml(Box<Nvml>),
    Smi(smi::Smi),
    Off(String),
}

/// The GPU reader, set up once.
pub struct Gpus {
    source: Source,
}

impl Gpus {
    /// Load and initialise NVML (a dynamic build) or start `nvidia-smi` (a static one).
    /// Failure is logged once and remembered, not retried.
    pub fn init() -> Gpus {
        let source = if crate::platform::STATIC {
            match smi::Smi::start(std::path::Path::new("nvidia-smi")) {
                Ok(s) => Source::Smi(s),
                Err(why) => Source::Off(why),
            }
        } else {
            match Nvml::init() {
                Ok(n) => Source::Nvml(Box::new(n)),
                Err(e) => Source::Off(e.to_string()),
            }
        };
        if let Source::Off(reason) = &source {
            tracing::warn!("gpu: unavailable ({reason}); GPU metrics are off on this node");
        }
        Gpus { source }
    }

    /// Why GPUs cannot be read, if they cannot.
    pub fn unavailable(&self) -> Option<String> {
        match &self.source {
            Source::Off(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Sample every GPU. A device that fails to answer is left out of this sample, with a log
    /// line, rather than failing the whole sample.
    pub fn sample(&self) -> GpuState {
        let nvml = match &self.source {
            Source::Nvml(n) => n,
            Source::Smi(s) => return s.sample(),
            Source::Off(r) => return GpuState::Unavailable(r.clone()),
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => return GpuState::Unavailable(format!("cannot count devices: {e}")),
        };
        let mut out = Vec::new();
        for index in 0..count {
            let one = || -> Result<GpuSample, nvml_wrapper::error::NvmlError> {
                let d = nvml.device_by_index(index)?;
                let mem = d.memory_info()?;
                let processes = d
                    .running_compute_processes()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| {
                        (
                            p.pid,
                            if let UsedGpuMemory::Used(b) = p.used_gpu_memory {
                                b
                            } else {
                                0
                            },
                        )
                    })
                    .collect();
                Ok(GpuSample {
                    index,
                    name: d.name()?,
                    util: d.utilization_rates()?.gpu as f32 / 100.0,
                    mem_used: mem.used,
                    mem_total: mem.total,
                    temp_c: d.temperature(TemperatureSensor::Gpu)? as f32,
                    power_w: d
                        .power_usage()
                        .map(|mw| mw as f32 / 1000.0)
                        .unwrap_or(f32::NAN),
                    processes,
                })
            };
            match one() {
                Ok(s) => out.push(s),
                Err(e) => tracing::debug!("gpu {index}: {e}"),
            }
        }
        GpuState::Gpus(out)
    }
}

mod smi;

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a driver NVML is unavailable with a reason; with one, samples are sane. Either
    /// way nothing panics and the state prints as DESIGN §7 says.
    #[test]
    fn gpu_state_is_reported_whether_or_not_nvml_is_present() {
        match Gpus::init().sample() {
            GpuState::Unavailable(reason) => {
                assert!(!reason.is_empty());
                let shown = GpuState::Unavailable(reason.clone()).to_string();
                assert_eq!(shown, format!("gpu: unavailable ({reason})"));
            }
            GpuState::Gpus(gpus) => {
                for g in gpus {
                    assert!((0.0..=1.0).contains(&g.util), "{g:?}");
                    assert!(g.mem_total > 0 && g.mem_used <= g.mem_total, "{g:?}");
                    assert!(g.temp_c > 0.0 && g.temp_c < 130.0, "{g:?}");
                }
            }
        }
    }
}
