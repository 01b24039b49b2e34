//! The OS sandbox: after the converter has opened its inputs and created its output's
//! temporary file, and before it parses a single untrusted byte, the process gives up what a
//! parser bug could abuse.
//!
//! * **Landlock** (Linux >= 5.13): the input files become read-only, the output directories
//!   readable and writable (create, write, truncate, remove and rename regular files, list the
//!   directory for the `fsync` of the rename); every other path, executing anything, TCP
//!   bind/connect (ABI >= 4) and signals or abstract sockets outside the process (ABI >= 6) are
//!   denied. A rename inside one directory needs `REMOVE_FILE` and `MAKE_REG` only (`REFER`,
//!   ABI 2, is for moves between directories); `TRUNCATE` (ABI 3) is granted in the output
//!   directory. Landlock restricts the calling thread and the threads it creates later: the
//!   sandbox must be applied before any other thread exists (rayon's pool included), unless
//!   the kernel supports `LANDLOCK_RESTRICT_SELF_TSYNC` (ABI 8), which is requested.
//! * **seccomp-BPF**, installed on every thread (`SECCOMP_FILTER_FLAG_TSYNC`): no `execve`,
//!   no new processes (`fork`, `vfork`, `clone` without `CLONE_THREAD`; `clone3` answers
//!   `ENOSYS` so glibc falls back to `clone` for threads), no sockets other than `AF_UNIX`, no
//!   `connect`/`bind`/`listen`/`accept`, no `ptrace` or `process_vm_*`, no mounts, namespaces,
//!   module loading, `kexec`, `bpf`, `perf_event_open`, keyrings, `userfaultfd`, `io_uring`
//!   (which would bypass the filter), `open_by_handle_at`; on x86-64, x32-ABI system calls
//!   are refused too. Denied calls fail with `EPERM` rather than killing the process, so the
//!   converter reports them as errors.
//! * `PR_SET_NO_NEW_PRIVS`, which both of the above require.
//!
//! Where the kernel lacks a feature the report says so and, unless the caller requires the
//! sandbox, conversion goes on.

use crate::error::SandboxError;
use std::path::{Path, PathBuf};

/// How much sandboxing the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Apply what the kernel supports; report what is missing as warnings.
    #[default]
    BestEffort,
    /// Fail unless both Landlock (file system restriction) and seccomp are in force
    /// (`--require-sandbox`).
    Required,
    /// Apply nothing (`--no-sandbox`).
    Disabled,
}

impl SandboxMode {
    /// The name the CLI flags and the Python `sandbox=` argument use.
    pub fn name(self) -> &'static str {
        match self {
            SandboxMode::BestEffort => "best-effort",
            SandboxMode::Required => "required",
            SandboxMode::Disabled => "off",
        }
    }
}

/// What to allow once locked down.
///
/// # Example
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tensorseal_convert::{SandboxMode, SandboxPolicy};
/// let input = std::path::Path::new("model.pt");
/// let bytes = tensorseal::FileBytes::open(input, tensorseal::MapMode::Map)?;
/// let out = tensorseal::AtomicFile::create(std::path::Path::new("out/model.tseal"))?;
/// let report = SandboxPolicy::new(SandboxMode::BestEffort)
///     .read(input)
///     .write_dir("out")
///     .apply()?;
/// report.eprint_warnings();
/// // ... parse `bytes`, write `out`, commit ...
/// # drop((bytes, out)); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SandboxPolicy {
    mode: SandboxMode,
    read: Vec<PathBuf>,
    write_dirs: Vec<PathBuf>,
}

/// Whether and how Landlock was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandlockOutcome {
    /// Every requested restriction is in force.
    Enforced {
        /// The Landlock ABI used (the lower of the kernel's and the one this crate vets, 6).
        abi: u32,
    },
    /// Some restrictions are in force; the rest are listed in the report's warnings.
    Partial {
        /// The Landlock ABI used.
        abi: u32,
    },
    /// Not applied: the kernel lacks Landlock, or the sandbox is disabled.
    NotApplied {
        /// Why.
        reason: String,
    },
}

/// What [`SandboxPolicy::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    /// Landlock's outcome.
    pub landlock: LandlockOutcome,
    /// Whether the Landlock domain covers every thread (ABI 8 TSYNC, or a single-threaded
    /// process).
    pub landlock_all_threads: bool,
    /// Whether the seccomp filters are installed (on every thread).
    pub seccomp: bool,
    /// Whether `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// Threads the process had when it locked down.
    pub threads: usize,
    /// What could not be applied, one line each, for stderr.
    pub warnings: Vec<String>,
}

impl SandboxReport {
    /// The report as the `sandbox` member of `convert --json` and the Python report.
    pub fn to_json(&self, mode: SandboxMode) -> serde_json::Value {
        serde_json::json!({
            "mode": mode.name(),
            "fully_enforced": self.fully_enforced(),
            "seccomp": self.seccomp,
            "landlock": format!("{:?}", self.landlock),
            "landlock_all_threads": self.landlock_all_threads,
            "no_new_privs": self.no_new_privs,
            "threads": self.threads,
            "warnings": self.warnings,
        })
    }

    fn disabled() -> SandboxReport {
        SandboxReport {
            landlock: LandlockOutcome::NotApplied {
                reason: "sandbox disabled".into(),
            },
            landlock_all_threads: false,
            seccomp: false,
            no_new_privs: false,
            threads: 0,
            warnings: Vec::new(),
        }
    }

    /// Whether Landlock and seccomp are both fully in force on every thread.
    pub fn fully_enforced(&self) -> bool {
        matches!(self.landlock, LandlockOutcome::Enforced { .. })
            && self.landlock_all_threads
            && self.seccomp
    }

    /// Prints the warnings to stderr, at most once per process however often it is called.
    pub fn eprint_warnings(&self) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        if self.warnings.is_empty() {
            return;
        }
        ONCE.call_once(|| {
            for w in &self.warnings {
                eprintln!("warning: sandbox: {w}");
            }
        });
    }
}

impl SandboxPolicy {
    /// A policy with no paths yet.
    pub fn new(mode: SandboxMode) -> SandboxPolicy {
        SandboxPolicy {
            mode,
            ..SandboxPolicy::default()
        }
    }

    /// Allows reading `path` (an input file, or a directory of inputs) after lock-down.
    pub fn read(mut self, path: impl Into<PathBuf>) -> SandboxPolicy {
        self.read.push(path.into());
        self
    }

    /// Allows creating, writing, truncating, removing and renaming regular files in `dir`
    /// (the output's directory), and listing it.
    pub fn write_dir(mut self, dir: impl Into<PathBuf>) -> SandboxPolicy {
        let dir = dir.into();
        // `Path::parent` of a bare file name is "": that means the current directory.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        self.write_dirs.push(dir);
        self
    }

    /// The output directory of `output` (its parent, or `.`).
    pub fn write_dir_of(self, output: &Path) -> SandboxPolicy {
        let dir = output.parent().map(Path::to_path_buf).unwrap_or_default();
        self.write_dir(dir)
    }

    /// Locks the process down. Call it after opening (or mapping) every input and creating the
    /// output's temporary file, and before parsing input or starting any thread pool; anything
    /// that needs another path (locale files, `/proc`, DNS) must happen before.
    ///
    /// # Errors
    /// * [`SandboxError::Rule`]: a path given to the policy cannot be opened;
    /// * [`SandboxError::Unavailable`]: in [`SandboxMode::Required`], Landlock or seccomp is
    ///   not available, or other threads exist that Landlock cannot cover;
    /// * [`SandboxError::Failed`]: a sandbox system call failed unexpectedly.
    pub fn apply(&self) -> Result<SandboxReport, SandboxError> {
        if self.mode == SandboxMode::Disabled {
            return Ok(SandboxReport::disabled());
        }
        imp::apply(self)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn apply(policy: &SandboxPolicy) -> Result<SandboxReport, SandboxError> {
        let what = "no OS sandbox on this platform (Landlock and seccomp are Linux-only)";
        if policy.mode == SandboxMode::Required {
            return Err(SandboxError::Unavailable { what: what.into() });
        }
        let mut r = SandboxReport::disabled();
        r.landlock = LandlockOutcome::NotApplied {
            reason: what.into(),
        };
        r.warnings.push(what.into());
        Ok(r)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath,
        PathFd, RestrictSelfAttr, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    };
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;

    /// The newest Landlock ABI whose rights this module has vetted.
    const ABI_VETTED: ABI = ABI::V6;

    fn thread_count() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
    }

    pub(super) fn apply(policy: &SandboxPolicy) -> Result<SandboxReport, SandboxError> {
        let required = policy.mode == SandboxMode::Required;
        let threads = thread_count();
        let mut warnings = Vec::new();

        let (landlock, landlock_all_threads, nnp) = landlock(policy, threads, &mut warnings)?;
        if required {
            if let LandlockOutcome::NotApplied { reason } = &landlock {
                return Err(SandboxError::Unavailable {
                    what: format!("Landlock: {reason}"),
                });
            }
            if !landlock_all_threads {
                return Err(SandboxError::Unavailable {
                    what: format!(
                        "{threads} threads were running before lock-down and this kernel cannot \
                         restrict them all with Landlock; lock down before starting threads"
                    ),
                });
            }
        }

        let seccomp = match seccomp() {
            Ok(()) => true,
            Err(e) if required => {
                return Err(SandboxError::Unavailable {
                    what: format!("seccomp: {e}"),
                });
            }
            Err(e) => {
                warnings.push(format!("seccomp filter not installed: {e}"));
                false
            }
        };
        Ok(SandboxReport {
            landlock,
            landlock_all_threads,
            seccomp,
            no_new_privs: nnp || seccomp,
            threads,
            warnings,
        })
    }

    fn rule_err(path: &Path, e: impl std::fmt::Display) -> SandboxError {
        SandboxError::Rule {
            path: path.display().to_string(),
            what: e.to_string(),
        }
    }

    fn landlock(
        policy: &SandboxPolicy,
        threads: usize,
        warnings: &mut Vec<String>,
    ) -> Result<(LandlockOutcome, bool, bool), SandboxError> {
        let failed = |e: landlock::RulesetError| SandboxError::Failed {
            what: format!("Landlock: {e}"),
        };
        let abi = ABI_VETTED;
        let read_file = AccessFs::ReadFile;
        let read_dir = AccessFs::ReadFile | AccessFs::ReadDir;
        let write_dir = AccessFs::ReadFile
            | AccessFs::ReadDir
            | AccessFs::WriteFile
            | AccessFs::MakeReg
            | AccessFs::RemoveFile
            | AccessFs::Truncate;

        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))
            .map_err(failed)?
            .handle_access(AccessNet::from_all(abi))
            .map_err(failed)?
            .scope(Scope::from_all(abi))
            .map_err(failed)?
            .create()
            .map_err(failed)?
            // TSYNC (ABI 8) is only needed, and only requested, when other threads exist: on
            // older kernels asking for it would mark the ruleset as partially enforced.
            .all_threads(threads > 1)
            .map_err(failed)?;
        for path in &policy.read {
            let is_dir = path.is_dir();
            let fd = PathFd::new(path).map_err(|e| rule_err(path, e))?;
            let access = if is_dir { read_dir } else { read_file.into() };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| rule_err(path, e))?;
        }
        for dir in &policy.write_dirs {
            if !dir.is_dir() {
                return Err(rule_err(dir, "not a directory"));
            }
            let fd = PathFd::new(dir).map_err(|e| rule_err(dir, e))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, write_dir))
                .map_err(|e| rule_err(dir, e))?;
        }
        let status = ruleset.restrict_self().map_err(failed)?;
        let all_threads = status.all_threads || threads <= 1;
        let effective = match status.landlock {
            LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
            _ => 0,
        };
        let outcome = match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockOutcome::Enforced { abi: effective },
            RulesetStatus::PartiallyEnforced => {
                warnings.push(format!(
                    "Landlock ABI {effective} only: {}",
                    missing_features(effective)
                ));
                LandlockOutcome::Partial { abi: effective }
            }
            RulesetStatus::NotEnforced => {
                let reason = match status.landlock {
                    LandlockStatus::NotEnabled => "Landlock is built into the kernel but disabled",
                    LandlockStatus::NotImplemented => "the kernel has no Landlock",
                    _ => "Landlock is not enforced",
                };
                warnings.push(format!(
                    "{reason}: file system access is not restricted (only seccomp applies)"
                ));
                LandlockOutcome::NotApplied {
                    reason: reason.into(),
                }
            }
        };
        if !all_threads && !matches!(outcome, LandlockOutcome::NotApplied { .. }) {
            warnings.push(format!(
                "{threads} threads were running at lock-down; Landlock restricts only this one \
                 and those it starts"
            ));
        }
        Ok((outcome, all_threads, status.no_new_privs))
    }

    fn missing_features(abi: u32) -> String {
        let mut missing = Vec::new();
        if abi < 2 {
            missing.push("renames between directories are refused (no REFER)");
        }
        if abi < 3 {
            missing.push("truncation is not restricted");
        }
        if abi < 4 {
            missing.push("TCP is not restricted by Landlock (seccomp still refuses sockets)");
        }
        if abi < 5 {
            missing.push("device ioctls are not restricted");
        }
        if abi < 6 {
            missing.push("signals and abstract UNIX sockets are not scoped");
        }
        missing.join("; ")
    }

    fn arch() -> Result<TargetArch, String> {
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())
    }

    /// The system calls refused outright with `EPERM`.
    fn denied() -> Vec<i64> {
        let mut v = vec![
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_fsopen,
            libc::SYS_fsmount,
            libc::SYS_fsconfig,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_userfaultfd,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_open_by_handle_at,
            libc::SYS_name_to_handle_at,
            libc::SYS_pidfd_getfd,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_reboot,
            libc::SYS_quotactl,
            libc::SYS_acct,
        ];
        #[cfg(target_arch = "x86_64")]
        v.extend([
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_iopl,
            libc::SYS_ioperm,
        ]);
        v
    }

    fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
    }

    fn main_filter(arch: TargetArch) -> Result<BpfProgram, String> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            denied().into_iter().map(|nr| (nr, Vec::new())).collect();
        let rule = |c: SeccompCondition| SeccompRule::new(vec![c]).map_err(|e| e.to_string());
        // Sockets: only AF_UNIX (the domain is a 32-bit int).
        let not_unix = || {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_UNIX as u64,
            )
            .map_err(|e| e.to_string())
        };
        rules.insert(libc::SYS_socket, vec![rule(not_unix()?)?]);
        rules.insert(libc::SYS_socketpair, vec![rule(not_unix()?)?]);
        // clone: threads only (CLONE_THREAD set); anything else would be a new process.
        rules.insert(
            libc::SYS_clone,
            vec![rule(cond(
                0,
                SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
                0,
            )?)?],
        );
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        BpfProgram::try_from(filter).map_err(|e| e.to_string())
    }

    /// clone3 passes its flags in memory, out of a filter's reach: answer ENOSYS so that glibc
    /// falls back to clone, whose flags the main filter checks.
    fn clone3_filter(arch: TargetArch) -> Result<BpfProgram, String> {
        let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        BpfProgram::try_from(filter).map_err(|e| e.to_string())
    }

    /// x86-64 only: x32-ABI system calls carry bit 30 in their number and the x86-64 audit
    /// arch, so a number-based deny list would miss them. Refuse them all.
    #[cfg(target_arch = "x86_64")]
    fn x32_filter() -> BpfProgram {
        const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
        const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        let ins = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
        vec![
            ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
            ins(JGE_K, 0, 1, X32_SYSCALL_BIT),
            ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }

    fn seccomp() -> Result<(), String> {
        let arch = arch()?;
        let mut programs = vec![main_filter(arch)?, clone3_filter(arch)?];
        #[cfg(target_arch = "x86_64")]
        programs.push(x32_filter());
        for p in &programs {
            seccompiler::apply_filter_all_threads(p).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
