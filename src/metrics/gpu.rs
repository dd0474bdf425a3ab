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
//!
//! Besides load, NVML gives the signals that predict trouble ([`GpuSample::slowdown_c`],
//! [`GpuSample::xid_errors`], [`GpuSample::ecc_uncorrected`], [`GpuSample::throttle`]); the
//! `nvidia-smi` path leaves them unknown. `AETHER_FAKE_GPU=<file.json>` replaces the devices
//! with the samples that file holds (a JSON list of [`GpuSample`], read at every sample), so
//! tests on hosts without a GPU can drive the GPU-health rules.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::event::EventSet;
use serde::{Deserialize, Serialize};

/// The environment variable naming a JSON file of fake GPU samples (tests).
pub const FAKE_GPU_ENV: &str = "AETHER_FAKE_GPU";

/// Why a GPU's clocks are held back, as bits of [`GpuSample::throttle`].
pub mod throttle {
    /// Software power capping: the board draws its power limit.
    pub const POWER_CAP: u8 = 1;
    /// Hardware slowdown (clocks halved or more: heat, power brake or power spikes).
    pub const HW_SLOWDOWN: u8 = 2;
    /// Thermal slowdown, software or hardware.
    pub const THERMAL: u8 = 4;
    /// An external power brake (e.g. the power supply) holds the clocks.
    pub const POWER_BRAKE: u8 = 8;
}

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
    /// The temperature at which the GPU starts slowing itself down (NVML's slowdown
    /// threshold), °C; NaN where the device does not say.
    pub slowdown_c: f32,
    /// Critical XID errors NVML reported for this GPU since the node process started.
    pub xid_errors: u32,
    /// The XID code of the newest of them; 0 before any.
    pub last_xid: u32,
    /// Uncorrected ECC errors since the driver loaded (volatile); 0 without ECC.
    pub ecc_uncorrected: u64,
    /// Why the clocks are held back now, as [`throttle`] bits; 0 when they are not.
    pub throttle: u8,
}

#[cfg(test)]
impl GpuSample {
    /// A quiet GPU for tests: an H100 at 60 °C and 300 W, slowdown at 87 °C, no errors.
    pub fn quiet(index: u32) -> GpuSample {
        GpuSample {
            index,
            name: "H100".into(),
            util: 0.9,
            mem_used: 1,
            mem_total: 2,
            temp_c: 60.0,
            power_w: 300.0,
            processes: Vec::new(),
            slowdown_c: 87.0,
            xid_errors: 0,
            last_xid: 0,
            ecc_uncorrected: 0,
            throttle: 0,
        }
    }
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

/// How GPUs are read: NVML, `nvidia-smi`, a file of fake samples, or not at all (and why).
enum Source {
    /// NVML lives as long as the process (the event set borrows it), with the critical-XID
    /// event set when a device supports it.
    Nvml {
        nvml: &'static Nvml,
        events: Option<EventSet<'static>>,
    },
    Smi(smi::Smi),
    Fake(PathBuf),
    Off(String),
}

/// The GPU reader, set up once.
pub struct Gpus {
    source: Source,
    /// Per GPU index: critical XID errors seen, and the newest code.
    xids: BTreeMap<u32, (u32, u32)>,
}

/// An event set with every device that supports critical-XID events registered; `None` when
/// none does (or registering failed: XIDs are then unknown, never an error).
fn xid_events(nvml: &'static Nvml) -> Option<EventSet<'static>> {
    let count = nvml.device_count().ok()?;
    let mut set = nvml.create_event_set().ok()?;
    let mut any = false;
    for index in 0..count {
        let Ok(d) = nvml.device_by_index(index) else {
            continue;
        };
        if !d
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
        {
            continue;
        }
        match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                any = true;
            }
            Err(e) => {
                tracing::info!("gpu {index}: XID errors cannot be watched: {}", e.error);
                return None;
            }
        }
    }
    any.then_some(set)
}

/// What `throttle` bits NVML's throttle reasons amount to.
fn throttle_bits(r: ThrottleReasons) -> u8 {
    let mut b = 0;
    if r.contains(ThrottleReasons::SW_POWER_CAP) {
        b |= throttle::POWER_CAP;
    }
    if r.contains(ThrottleReasons::HW_SLOWDOWN) {
        b |= throttle::HW_SLOWDOWN;
    }
    if r.intersects(ThrottleReasons::SW_THERMAL_SLOWDOWN | ThrottleReasons::HW_THERMAL_SLOWDOWN) {
        b |= throttle::THERMAL;
    }
    if r.contains(ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN) {
        b |= throttle::POWER_BRAKE;
    }
    b
}

impl Gpus {
    /// Load and initialise NVML (a dynamic build) or start `nvidia-smi` (a static one).
    /// Failure is logged once and remembered, not retried.
    pub fn init() -> Gpus {
        let source = if let Some(path) = std::env::var_os(FAKE_GPU_ENV) {
            tracing::warn!(
                "gpu: reading fake samples from '{}' ({FAKE_GPU_ENV} is set)",
                PathBuf::from(&path).display()
            );
            Source::Fake(path.into())
        } else if crate::platform::STATIC {
            match smi::Smi::start(std::path::Path::new("nvidia-smi")) {
                Ok(s) => Source::Smi(s),
                Err(why) => Source::Off(why),
            }
        } else {
            match Nvml::init() {
                Ok(n) => {
                    // Once per process: the event set borrows it for the process's life.
                    let nvml: &'static Nvml = Box::leak(Box::new(n));
                    Source::Nvml {
                        nvml,
                        events: xid_events(nvml),
                    }
                }
                Err(e) => Source::Off(e.to_string()),
            }
        };
        if let Source::Off(reason) = &source {
            tracing::warn!(
                "gpu: unavailable ({reason}); GPU metrics are off on this node and its GPU-health rules stay quiet"
            );
        }
        Gpus {
            source,
            xids: BTreeMap::new(),
        }
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
    pub fn sample(&mut self) -> GpuState {
        let nvml = match &self.source {
            Source::Nvml { nvml, events } => {
                if let Some(set) = events {
                    drain_xids(set, &mut self.xids);
                }
                *nvml
            }
            Source::Smi(s) => return s.sample(),
            Source::Fake(path) => return fake(path),
            Source::Off(r) => return GpuState::Unavailable(r.clone()),
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => return GpuState::Unavailable(format!("cannot count devices: {e}")),
        };
        let mut out = Vec::new();
        for index in 0..count {
            let (xid_errors, last_xid) = self.xids.get(&index).copied().unwrap_or((0, 0));
            let one = || -> Result<GpuSample, NvmlError> {
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
                    slowdown_c: d
                        .temperature_threshold(TemperatureThreshold::Slowdown)
                        .map_or(f32::NAN, |t| t as f32),
                    xid_errors,
                    last_xid,
                    ecc_uncorrected: d
                        .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                        .unwrap_or(0),
                    throttle: d.current_throttle_reasons().map_or(0, throttle_bits),
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

/// Count the critical XID events waiting in `set` per GPU index (a bounded number per sample,
/// so a storm of them cannot stall sampling).
fn drain_xids(set: &EventSet<'static>, xids: &mut BTreeMap<u32, (u32, u32)>) {
    for _ in 0..64 {
        match set.wait(0) {
            Ok(e) if e.event_type.contains(EventTypes::CRITICAL_XID_ERROR) => {
                let Ok(index) = e.device.index() else {
                    continue;
                };
                let code = match e.event_data {
                    Some(XidError::Value(v)) => u32::try_from(v).unwrap_or(u32::MAX),
                    _ => 0,
                };
                let entry = xids.entry(index).or_default();
                entry.0 = entry.0.saturating_add(1);
                entry.1 = code;
            }
            Ok(_) => {}
            Err(NvmlError::Timeout) => return,
            Err(e) => {
                tracing::debug!("gpu: waiting for XID events: {e}");
                return;
            }
        }
    }
}

/// The samples a fake GPU file holds now (see [`FAKE_GPU_ENV`]).
fn fake(path: &std::path::Path) -> GpuState {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return GpuState::Unavailable(format!(
                "{FAKE_GPU_ENV} file '{}' cannot be read: {e}",
                path.display()
            ));
        }
    };
    match serde_json::from_str::<Vec<GpuSample>>(&text) {
        Ok(g) => GpuState::Gpus(g),
        Err(e) => GpuState::Unavailable(format!(
            "{FAKE_GPU_ENV} file '{}' is not a JSON list of GPU samples: {e}",
            path.display()
        )),
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

    #[test]
    fn throttle_reasons_become_the_bits_health_judges() {
        assert_eq!(throttle_bits(ThrottleReasons::GPU_IDLE), 0);
        assert_eq!(
            throttle_bits(ThrottleReasons::SW_POWER_CAP),
            throttle::POWER_CAP
        );
        assert_eq!(
            throttle_bits(
                ThrottleReasons::HW_THERMAL_SLOWDOWN
                    | ThrottleReasons::HW_SLOWDOWN
                    | ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN
            ),
            throttle::THERMAL | throttle::HW_SLOWDOWN | throttle::POWER_BRAKE
        );
        assert_eq!(
            throttle_bits(ThrottleReasons::SW_THERMAL_SLOWDOWN),
            throttle::THERMAL
        );
    }

    #[test]
    fn a_fake_gpu_file_is_read_at_every_sample_and_a_bad_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpus.json");
        let mut gpus = Gpus {
            source: Source::Fake(path.clone()),
            xids: BTreeMap::new(),
        };
        match gpus.sample() {
            GpuState::Unavailable(why) => {
                assert!(why.contains("cannot be read"), "{why}");
                assert!(why.contains(FAKE_GPU_ENV), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let one = |xid: u32| {
            serde_json::json!([{
                "index": 0, "name": "fake", "util": 0.5, "mem_used": 1, "mem_total": 2,
                "temp_c": 60.0, "power_w": 300.0, "processes": [], "slowdown_c": 87.0,
                "xid_errors": xid, "last_xid": 79 * xid, "ecc_uncorrected": 0, "throttle": 0
            }])
            .to_string()
        };
        std::fs::write(&path, one(0)).unwrap();
        let GpuState::Gpus(g) = gpus.sample() else {
            panic!("fake GPUs")
        };
        assert_eq!((g.len(), g[0].xid_errors, g[0].slowdown_c), (1, 0, 87.0));
        std::fs::write(&path, one(1)).unwrap();
        let GpuState::Gpus(g) = gpus.sample() else {
            panic!("fake GPUs")
        };
        assert_eq!((g[0].xid_errors, g[0].last_xid), (1, 79));
        std::fs::write(&path, "[{\"index\": 0}]").unwrap();
        match gpus.sample() {
            GpuState::Unavailable(why) => {
                assert!(why.contains("is not a JSON list of GPU samples"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
