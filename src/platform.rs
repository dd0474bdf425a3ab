//! What this binary is and what it needs of the machine: version, commit, target, linkage and
//! the CPU baseline it was compiled for, and the start-up gate that refuses an x86-64 CPU
//! without that baseline with a message instead of "Illegal instruction".
//!
//! The x86_64 release artifact is compiled for x86-64-v3 (AVX2, FMA, BMI1/2, F16C, LZCNT,
//! MOVBE) because the model's kernels are vectorised at compile time; a second, baseline
//! artifact serves older CPUs (`scripts/release.sh`, README "Install").

pub mod daemon_log;
pub mod probe;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (`build.rs`; "unknown" outside git).
pub const COMMIT: &str = env!("AETHER_COMMIT");
/// The target triple.
pub const TARGET: &str = env!("AETHER_TARGET");

/// Whether the C runtime is linked in (a static binary).
pub const STATIC: bool = cfg!(target_feature = "crt-static");

/// The instruction-set level the binary was compiled for.
pub const fn baseline() -> &'static str {
    if cfg!(all(target_arch = "x86_64", target_feature = "avx2")) {
        "x86-64-v3"
    } else if cfg!(all(target_arch = "x86_64", target_feature = "sse4.2")) {
        "x86-64-v2"
    } else if cfg!(target_arch = "x86_64") {
        "x86-64"
    } else if cfg!(target_arch = "aarch64") {
        "armv8-a"
    } else {
        "generic"
    }
}

/// The CPU features the baseline needs beyond plain x86-64, and whether this CPU has each
/// (empty where the baseline needs none).
pub fn needed_features() -> Vec<(&'static str, bool)> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        use std::arch::is_x86_feature_detected as has;
        vec![
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("bmi1", has!("bmi1")),
            ("bmi2", has!("bmi2")),
            ("f16c", has!("f16c")),
            ("lzcnt", has!("lzcnt")),
            ("movbe", has!("movbe")),
        ]
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    {
        Vec::new()
    }
}

/// What `aether version` prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    pub version: String,
    pub commit: String,
    pub target: String,
    /// "static" or "dynamic".
    pub linkage: String,
    /// The instruction-set level compiled for.
    pub cpu_baseline: String,
    /// The features that level needs (beyond plain x86-64) that this CPU lacks.
    pub cpu_missing: Vec<String>,
    /// The features that level needs, all of which this CPU has when `cpu_missing` is empty.
    pub cpu_needs: Vec<String>,
}

impl BuildInfo {
    /// This binary, on this CPU.
    pub fn current() -> BuildInfo {
        let needed = needed_features();
        BuildInfo {
            version: VERSION.into(),
            commit: COMMIT.into(),
            target: TARGET.into(),
            linkage: if STATIC { "static" } else { "dynamic" }.into(),
            cpu_baseline: baseline().into(),
            cpu_missing: needed
                .iter()
                .filter(|(_, has)| !has)
                .map(|(f, _)| f.to_string())
                .collect(),
            cpu_needs: needed.iter().map(|(f, _)| f.to_string()).collect(),
        }
    }
}

/// The refusal the gate prints (kept in one static: the gate only points at it).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_feature = "avx2"))]
static GATE_MESSAGE: [u8; GATE_TEXT.len()] = {
    let mut a = [0u8; GATE_TEXT.len()];
    let mut i = 0;
    while i < a.len() {
        a[i] = GATE_TEXT[i];
        i += 1;
    }
    a
};

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_feature = "avx2"))]
const GATE_TEXT: &[u8] =
    b"error: this aether is built for x86-64-v3 CPUs (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE: \
Intel Haswell (2013), AMD Excavator (2015) and later) and this CPU does not offer them all. \
Install the baseline build, which runs on any x86-64 CPU (its on-device model is slower): \
AETHER_ARTIFACT=aether-x86_64-baseline sh install.sh (the installer picks it by itself on such \
a CPU). In a virtual machine, passing the host CPU through may be enough.\n";

/// Runs before `main` and before the Rust runtime (from `.init_array`, ahead of std's own
/// entry): on a CPU without x86-64-v3 it writes [`GATE_MESSAGE`] to stderr and exits 1.
/// Hand-written assembly, so that no instruction of the gate itself needs AVX (the compiler
/// encodes even SSE moves with VEX in a v3 build).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_feature = "avx2"))]
#[unsafe(naked)]
extern "C" fn cpu_gate() {
    core::arch::naked_asm!(
        "push rbx",
        // The highest basic leaf must reach 7.
        "xor eax, eax",
        "xor ecx, ecx",
        "cpuid",
        "cmp eax, 7",
        "jb 2f",
        // Leaf 1, ecx: FMA (12), MOVBE (22), OSXSAVE (27), AVX (28), F16C (29).
        "mov eax, 1",
        "xor ecx, ecx",
        "cpuid",
        "and ecx, {leaf1}",
        "cmp ecx, {leaf1}",
        "jne 2f",
        // The OS saves the SSE and AVX registers (XCR0 bits 1 and 2).
        "xor ecx, ecx",
        "xgetbv",
        "and eax, 6",
        "cmp eax, 6",
        "jne 2f",
        // Leaf 7.0, ebx: BMI1 (3), AVX2 (5), BMI2 (8).
        "mov eax, 7",
        "xor ecx, ecx",
        "cpuid",
        "and ebx, {leaf7}",
        "cmp ebx, {leaf7}",
        "jne 2f",
        // Leaf 0x80000001, ecx: LZCNT (5).
        "mov eax, 0x80000001",
        "xor ecx, ecx",
        "cpuid",
        "and ecx, 32",
        "cmp ecx, 32",
        "jne 2f",
        "pop rbx",
        "ret",
        "2:",
        // write(2, GATE_MESSAGE, len); exit_group(1)
        "mov eax, 1",
        "mov edi, 2",
        "lea rsi, [rip + {msg}]",
        "mov edx, {len}",
        "syscall",
        "mov eax, 231",
        "mov edi, 1",
        "syscall",
        "ud2",
        leaf1 = const (1u32 << 12) | (1 << 22) | (1 << 27) | (1 << 28) | (1 << 29),
        leaf7 = const (1u32 << 3) | (1 << 5) | (1 << 8),
        msg = sym GATE_MESSAGE,
        len = const GATE_TEXT.len(),
    )
}

/// The gate's entry in the C runtime's constructor table; `.init_array.00098` sorts it ahead
/// of std's (00099).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_feature = "avx2"))]
#[used]
#[unsafe(link_section = ".init_array.00098")]
static CPU_GATE: extern "C" fn() = cpu_gate;

/// In a static glibc build: users, groups and host names come from the name services built
/// into the binary (`files`, and `dns` for hosts), never from a module named in
/// `/etc/nsswitch.conf` (`systemd`, `sss`, `mdns4_minimal` …). Loading one would pull the
/// host's `libc.so.6` into a process that already has its own glibc, which fails or crashes
/// where their versions differ. So workload users must be in `/etc/passwd`. Call before any
/// thread starts. Nothing in a dynamic build.
pub fn confine_name_services() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
    {
        unsafe extern "C" {
            /// glibc's override of one line of nsswitch.conf (`<nss.h>`).
            fn __nss_configure_lookup(
                db: *const std::ffi::c_char,
                services: *const std::ffi::c_char,
            ) -> std::ffi::c_int;
        }
        for (db, services) in [
            (c"passwd", c"files"),
            (c"group", c"files"),
            (c"shadow", c"files"),
            (c"initgroups", c"files"),
            (c"hosts", c"files dns"),
            (c"services", c"files"),
            (c"protocols", c"files"),
        ] {
            // SAFETY: two NUL-terminated strings; called before any thread starts.
            unsafe { __nss_configure_lookup(db.as_ptr(), services.as_ptr()) };
        }
    }
}

/// Keeps the gate linked into the binary: `main` calls this, so the object file that holds
/// the gate's constructor entry is never left out of the link.
pub fn keep_cpu_gate() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_feature = "avx2"))]
    std::hint::black_box(&CPU_GATE);
}
