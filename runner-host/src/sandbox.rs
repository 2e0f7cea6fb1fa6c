//! The wasmtime sandbox: one engine and one pre-linked module per process, and a
//! fresh, locked-down store for every run.
//!
//! Each run gets:
//! - a memory cap (a [`ResourceLimiter`] that refuses growth past the request's
//!   `memory_limit_bytes` and remembers that it did),
//! - a wall-clock deadline (epoch interruption; a ticker thread advances the epoch),
//!   and a watchdog for the time the guest spends in host calls, which epochs do not
//!   interrupt (a read that blocks, `poll_oneoff` with a long timeout): a run still
//!   going [`limits::HOST_CALL_GRACE`] past its deadline is abandoned and reported as
//!   a timeout, and its thread is counted in [`Sandbox::stuck_runs`] until it ends;
//! - stdin holding the request, stdout and stderr captured through capped pipes,
//! - no environment, no arguments beyond the program name, no network, and one
//!   preopened directory: the dataset's folder, read-only, at `/data`, checked on
//!   disk first (see [`crate::mount::verify`]: no symbolic links to other places,
//!   regular files only); and, when the request may spill, a second: a fresh scratch
//!   directory of its own, read-write, at `/scratch`, whose writes the host counts
//!   against the request's `spill_limit_bytes` and which is removed when the run
//!   ends (see [`crate::scratch`]).
//!
//! Whatever the guest does (trap, loop, exhaust memory, flood its output, exit
//! early, block, print garbage), [`Sandbox::run`] returns a [`RunResult`] that says
//! so, by the deadline plus the grace.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunRequest, RunResult, RunStatus};
use wasmtime::{
    Config, Engine, InstancePre, Linker, OptLevel, ProfilingStrategy, ResourceLimiter, Store, Trap, WasmFeatures,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::module::{self, LoadedFrom, ModuleError, ModuleSource};
use crate::output::CappedOutput;
use crate::scratch::{self, Guarded, ScratchRoot, SpillBudget, SpillLimitExceeded};

/// Every limit of the sandbox that is not per request, in one place.
pub mod limits {
    use std::time::Duration;

    /// How often the epoch advances: the resolution of run deadlines.
    pub const EPOCH_TICK: Duration = Duration::from_millis(5);
    /// How long past its deadline a run may stay in a host call (which epochs do
    /// not interrupt) before it is abandoned.
    pub const HOST_CALL_GRACE: Duration = Duration::from_secs(1);
    /// Native stack the guest's wasm frames may use.
    pub const MAX_WASM_STACK: usize = 4 * 1024 * 1024;
    /// Stack of the thread each run executes on (wasm frames plus host calls).
    pub const RUN_THREAD_STACK: usize = 16 * 1024 * 1024;
    /// Room on stdout beyond `max_output_bytes` for the result's envelope
    /// (column names, types, error messages, stats).
    pub const STDOUT_ENVELOPE_BYTES: usize = 256 * 1024;
    /// What the guest may write to stderr (diagnostics only).
    pub const STDERR_BYTES: usize = 64 * 1024;
    /// Smallest memory limit a request may ask for: the guest's static data and
    /// stack alone take several MiB.
    pub const MIN_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
    /// Largest memory limit: wasm32 addresses 4 GiB.
    pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;
    /// Largest scratch disk a request may ask for (1 TiB).
    pub const MAX_SPILL_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
    /// Longest timeout a request may ask for.
    pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
    /// Table elements a module may grow to.
    pub const MAX_TABLE_ELEMENTS: usize = 100_000;
    /// The program name the guest sees as `argv[0]`.
    pub const PROGRAM_NAME: &str = "runner-guest";
}

/// Per-store state: WASI, the memory limiter and the scratch budget.
struct GuestState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    /// `None` when the run may not spill (it has no scratch directory).
    spill: Option<Arc<SpillBudget>>,
    /// Files and folders the guest holds open.
    open_files: usize,
}

impl Guarded for GuestState {
    fn budget(&self) -> Option<&SpillBudget> {
        self.spill.as_deref()
    }

    fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    fn open_files(&mut self) -> &mut usize {
        &mut self.open_files
    }
}

/// Refuses memory growth past the limit, and records the high-water mark.
#[derive(Debug)]
struct MemoryLimiter {
    limit: usize,
    peak: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            // Growth fails inside the guest (its allocator sees -1); a guest that
            // cannot cope traps, and the run reports MEMORY_LIMIT.
            self.exceeded = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Growth past what a 32-bit memory can address (4 GiB) fails before the
        // limiter is asked: it is the limit too.
        self.exceeded = true;
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= limits::MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Where the module comes from, where compilations are cached, and whether a native
/// profiler is told where the compiled guest functions are.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub module: ModuleSource,
    /// The compilation cache; `None` compiles in memory at every start.
    pub cache_dir: Option<std::path::PathBuf>,
    /// [`Profiler::None`] but for profiling (the benchmark's `--profile`).
    pub profiler: Profiler,
    /// Where runs that may spill get their scratch directories (`RUN_SPILL_DIR`).
    pub spill_dir: PathBuf,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            module: ModuleSource::Embedded,
            cache_dir: module::default_cache_dir(),
            profiler: Profiler::None,
            spill_dir: std::env::temp_dir(),
        }
    }
}

/// Which native profiler the engine tells where each compiled guest function lies.
/// Without one, `perf` sees the guest as anonymous executable memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profiler {
    /// Nothing is written (production).
    #[default]
    None,
    /// `/tmp/perf-<pid>.map`, which `perf report` reads to name JIT code: guest samples
    /// are attributed to the module's functions (by their name-section names, or
    /// `wasm[0]::function[N]` when the module has no name section). Cached and
    /// precompiled modules get it too: wasmtime registers the code with the profiler
    /// whenever it loads a module, and the profiler is not part of the engine's
    /// compatibility hash, so the same cache entry serves. (wasmtime writes perf maps
    /// without its `profiling` feature, which this crate leaves off.)
    PerfMap,
}

impl Profiler {
    fn strategy(self) -> ProfilingStrategy {
        match self {
            Profiler::None => ProfilingStrategy::None,
            Profiler::PerfMap => ProfilingStrategy::PerfMap,
        }
    }
}

/// A loaded guest, ready to run requests. Cheap to share: runs take `&self`.
pub struct Sandbox {
    runner: Runner,
    module: wasmtime::Module,
    loaded_from: LoadedFrom,
    load_time: Duration,
    /// Runs abandoned past their deadline whose thread has not ended yet.
    stuck: Arc<AtomicUsize>,
}

/// What a run's thread needs, owned: the thread may outlive the call that started it.
#[derive(Clone)]
struct Runner {
    engine: Engine,
    pre: InstancePre<GuestState>,
    scratch: ScratchRoot,
}

/// The CPU a precompiled artifact is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuTarget {
    /// This machine's CPU, every feature it has (what a running sandbox uses).
    Native,
    /// x86-64-v2 (SSE4.2, POPCNT): any x86-64 machine of the last fifteen years.
    X86_64V2,
    /// x86-64-v3 (AVX2, BMI2, FMA): Intel Haswell, AMD Zen and later.
    X86_64V3,
}

impl CpuTarget {
    /// The Cranelift x86 flags the level enables.
    fn cranelift_flags(self) -> &'static [&'static str] {
        const V2: &[&str] = &["has_sse3", "has_ssse3", "has_cmpxchg16b", "has_sse41", "has_sse42", "has_popcnt"];
        const V3: &[&str] = &[
            "has_sse3",
            "has_ssse3",
            "has_cmpxchg16b",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
            "has_avx",
            "has_avx2",
            "has_fma",
            "has_bmi1",
            "has_bmi2",
            "has_lzcnt",
        ];
        match self {
            CpuTarget::Native => &[],
            CpuTarget::X86_64V2 => V2,
            CpuTarget::X86_64V3 => V3,
        }
    }
}

/// Compiles `source` (a wasm or wat module) into a `.cwasm` artifact for `cpu`.
///
/// An artifact loads on any machine whose CPU has every feature it was compiled
/// with: [`CpuTarget::Native`] ties it to CPUs like this one (AVX-512 here, say),
/// the x86-64 levels make it portable, for container images.
pub fn precompile(source: &ModuleSource, cpu: CpuTarget, cache_dir: Option<&Path>) -> Result<Vec<u8>, ModuleError> {
    let fail = |message: String| ModuleError { source_name: source.to_string(), message };
    if cpu == CpuTarget::Native {
        let sandbox = Sandbox::new(&SandboxOptions {
            module: source.clone(),
            cache_dir: cache_dir.map(Path::to_path_buf),
            ..SandboxOptions::default()
        })?;
        return sandbox.precompiled().map_err(fail);
    }
    let mut config = engine_config();
    config.target("x86_64-unknown-linux-gnu").map_err(|e| fail(format!("cannot target x86-64: {e}")))?;
    for flag in cpu.cranelift_flags() {
        // SAFETY: these are x86-64 ISA feature flags; an artifact using them only
        // loads where the CPU has them (wasmtime checks at deserialization).
        unsafe {
            config.cranelift_flag_enable(flag);
        }
    }
    let engine = Engine::new(&config).map_err(|e| fail(format!("cannot create the engine: {e}")))?;
    let bytes = module::wasm_bytes(source).map_err(fail)?;
    engine.precompile_module(&bytes).map_err(|e| fail(format!("invalid module: {e:#}")))
}

/// The engine configuration: every wasm feature the guest does not use is off.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(limits::MAX_WASM_STACK)
        // Runs are synchronous; wasmtime only requires this to be at least the above.
        .async_stack_size(limits::MAX_WASM_STACK + 1024 * 1024)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        // Smaller artifacts: no wasm-offset maps (traps still name the function).
        .generate_address_map(false)
        .debug_info(false)
        // What rustc emits for wasm32-wasip1 with +simd128 (reference types stay on:
        // rustc uses their call_indirect encoding).
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        // Everything else off. (GC, exceptions and threads are not even compiled in.)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_tail_call(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_component_model(false)
        .wasm_features(
            WasmFeatures::FUNCTION_REFERENCES
                | WasmFeatures::GC
                | WasmFeatures::EXCEPTIONS
                | WasmFeatures::LEGACY_EXCEPTIONS
                | WasmFeatures::STACK_SWITCHING
                | WasmFeatures::THREADS
                | WasmFeatures::SHARED_EVERYTHING_THREADS,
            false,
        );
    config
}

impl Sandbox {
    /// Builds the engine, loads the module (from the cache when it can) and links WASI.
    pub fn new(options: &SandboxOptions) -> Result<Sandbox, ModuleError> {
        let fail = |message: String| ModuleError { source_name: options.module.to_string(), message };
        let mut config = engine_config();
        config.profiler(options.profiler.strategy());
        let engine = Engine::new(&config).map_err(|e| fail(format!("cannot create the engine: {e}")))?;
        let loaded = module::load(&engine, &options.module, options.cache_dir.as_deref())?;
        let (scratch, removed) = ScratchRoot::open(&options.spill_dir);
        if removed > 0 {
            eprintln!(
                "runner-host: removed {removed} scratch directories left in {} by a process that ended",
                options.spill_dir.display()
            );
        }
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut GuestState| &mut state.wasi)
            .map_err(|e| fail(format!("cannot link WASI: {e}")))?;
        scratch::guard_writes(&mut linker).map_err(|e| fail(format!("cannot link the scratch guards: {e}")))?;
        let pre = linker
            .instantiate_pre(&loaded.module)
            .map_err(|e| fail(format!("the module needs imports the sandbox does not provide: {e}")))?;
        start_epoch_ticker(&engine).map_err(|e| fail(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Sandbox {
            runner: Runner { engine, pre, scratch },
            module: loaded.module,
            loaded_from: loaded.from,
            load_time: loaded.elapsed,
            stuck: Arc::default(),
        })
    }

    /// Runs abandoned past their deadline (blocked in a host call) whose threads
    /// have not ended yet. Each holds its guest's memory until it ends; a count that
    /// stays above zero means something on the host blocks (a FIFO in a dataset
    /// folder, a hung file system).
    pub fn stuck_runs(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    /// How the module was loaded (precompiled, cache hit, compiled).
    pub fn loaded_from(&self) -> &LoadedFrom {
        &self.loaded_from
    }

    /// How long loading the module took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The module compiled for this engine, as a `.cwasm` artifact.
    pub fn precompiled(&self) -> Result<Vec<u8>, String> {
        self.module.serialize().map_err(|e| format!("cannot serialize the module: {e}"))
    }

    /// Runs `request` with `data_dir` mounted read-only at `/data`. The request's
    /// paths must already be relative to that mount (see [`crate::mount`]); they and
    /// the folder are checked on disk first ([`crate::mount::verify`]).
    pub fn run(&self, request: &RunRequest, data_dir: &Path) -> RunResult {
        let started = Instant::now();
        let mut result = match validate_limits(request) {
            Err(message) => RunResult::failure(ErrorType::InvalidRequest, message),
            Ok(()) => match crate::mount::verify(data_dir, request.clone()) {
                Ok(verified) => self.run_on_thread(verified.request, verified.host_dir),
                Err(e) => RunResult::failure(ErrorType::DatasetError, e.to_string()),
            },
        };
        result.exec_time_ms = started.elapsed().as_millis() as u64;
        result
    }

    /// Runs on a thread of our own, so the wasm stack limit holds whatever thread
    /// the caller is on (tokio's blocking pool, a test harness thread, ...), and so
    /// the caller can stop waiting: a guest blocked in a host call is abandoned
    /// [`limits::HOST_CALL_GRACE`] after its deadline.
    fn run_on_thread(&self, request: RunRequest, data_dir: PathBuf) -> RunResult {
        let give_up = Duration::from_millis(request.timeout_ms) + limits::HOST_CALL_GRACE;
        let timeout_ms = request.timeout_ms;
        let run = Arc::new(RunSlot { state: Mutex::new(RunState::Running), done: Condvar::new() });
        let (thread_run, runner, stuck) = (run.clone(), self.runner.clone(), self.stuck.clone());
        let spawned = std::thread::Builder::new()
            .name("sandbox-run".into())
            .stack_size(limits::RUN_THREAD_STACK)
            .spawn(move || {
                // Nothing the closure touches is used again after a panic.
                let run_guest = std::panic::AssertUnwindSafe(|| runner.run_guest(&request, &data_dir));
                let result = std::panic::catch_unwind(run_guest).unwrap_or_else(|_| {
                    RunResult::failure(ErrorType::Internal, "the sandbox thread panicked; this is a bug in runner-host")
                });
                let mut state = lock(&thread_run.state);
                if matches!(*state, RunState::Abandoned) {
                    stuck.fetch_sub(1, Ordering::SeqCst);
                } else {
                    *state = RunState::Finished(Box::new(result));
                    thread_run.done.notify_all();
                }
            });
        if let Err(e) = spawned {
            return RunResult::failure(ErrorType::Internal, format!("cannot start a sandbox thread: {e}"));
        }
        let state = lock(&run.state);
        let (mut state, _) = run
            .done
            .wait_timeout_while(state, give_up, |s| matches!(s, RunState::Running))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::mem::replace(&mut *state, RunState::Abandoned) {
            RunState::Finished(result) => *result,
            RunState::Running | RunState::Abandoned => {
                self.stuck.fetch_add(1, Ordering::SeqCst);
                RunResult::failure(
                    ErrorType::Timeout,
                    format!(
                        "the query ran longer than {timeout_ms} ms: the guest was still blocked in a host call \
                         (reading a file or waiting) {} ms after its deadline",
                        limits::HOST_CALL_GRACE.as_millis()
                    ),
                )
            }
        }
    }
}

/// One run, shared by the caller and the run's thread.
struct RunSlot {
    state: Mutex<RunState>,
    done: Condvar,
}

enum RunState {
    Running,
    Finished(Box<RunResult>),
    /// The caller stopped waiting; the thread is still blocked.
    Abandoned,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the state inconsistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runner {
    fn run_guest(&self, request: &RunRequest, data_dir: &Path) -> RunResult {
        let stdin = match serde_json::to_vec(request) {
            Ok(bytes) => bytes,
            Err(e) => {
                return RunResult::failure(ErrorType::Internal, format!("cannot encode the request: {e}"));
            }
        };
        let stdout_cap = usize::try_from(request.max_output_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(limits::STDOUT_ENVELOPE_BYTES);
        let stdout = CappedOutput::new(stdout_cap);
        let stderr = CappedOutput::new(limits::STDERR_BYTES);

        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(true)
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .arg(limits::PROGRAM_NAME)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Err(e) = wasi.preopened_dir(data_dir, protocol::DATA_MOUNT, FsPerms::ReadOnly) {
            let message = format!("cannot open the dataset folder: {e}");
            return RunResult::failure(ErrorType::DatasetError, message);
        }
        // Dropped (and so removed) when this function returns, however the run ended.
        let scratch_dir = match request.spill_limit_bytes {
            0 => None,
            _ => match self.scratch.make_dir() {
                Ok(dir) => Some(dir),
                Err(e) => {
                    let message = format!(
                        "cannot make the run's scratch directory in {} (RUN_SPILL_DIR must be a writable folder; \
                         RUN_SPILL_MAX_MB=0 turns spilling off): {e}",
                        self.scratch.dir().display()
                    );
                    return RunResult::failure(ErrorType::SandboxError, message);
                }
            },
        };
        if let Some(dir) = &scratch_dir
            && let Err(e) = wasi.preopened_dir(dir.path(), protocol::SCRATCH_MOUNT, FsPerms::ReadWrite)
        {
            let message = format!("cannot open the run's scratch directory: {e}");
            return RunResult::failure(ErrorType::SandboxError, message);
        }
        let limiter = MemoryLimiter {
            limit: usize::try_from(request.memory_limit_bytes).unwrap_or(usize::MAX),
            peak: 0,
            exceeded: false,
        };
        let spill = scratch_dir.as_ref().map(|_| SpillBudget::new(request.spill_limit_bytes));
        let state = GuestState { wasi: wasi.build_p1(), limiter, spill: spill.clone(), open_files: 0 };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let ticks = request.timeout_ms.div_ceil(limits::EPOCH_TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let instantiate_started = Instant::now();
        let mut instantiate_ms = None;
        let outcome = self.pre.instantiate(&mut store).and_then(|instance| {
            instantiate_ms = Some(instantiate_started.elapsed().as_secs_f64() * 1000.0);
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });

        let limiter = &store.data().limiter;
        let mut result = outcome_to_result(outcome, request, limiter, spill.as_deref(), &stdout, &stderr);
        result.stats.peak_memory_bytes = Some(limiter.peak as u64);
        result.stats.output_bytes = Some(stdout.attempted());
        result.stats.instantiate_ms = instantiate_ms;
        result.stats.spilled_bytes = spill.as_ref().map(|budget| budget.written());
        result
    }
}

fn validate_limits(request: &RunRequest) -> Result<(), String> {
    if request.timeout_ms == 0 || request.timeout_ms > limits::MAX_TIMEOUT_MS {
        return Err(format!("timeout_ms must be between 1 and {}", limits::MAX_TIMEOUT_MS));
    }
    if !(limits::MIN_MEMORY_BYTES..=limits::MAX_MEMORY_BYTES).contains(&request.memory_limit_bytes) {
        return Err(format!(
            "memory_limit_bytes must be between {} MiB and {} MiB",
            limits::MIN_MEMORY_BYTES >> 20,
            limits::MAX_MEMORY_BYTES >> 20
        ));
    }
    if request.max_output_bytes == 0 {
        return Err("max_output_bytes must be at least 1".to_string());
    }
    if request.spill_limit_bytes > limits::MAX_SPILL_BYTES {
        return Err(format!("spill_limit_bytes must be at most {} MiB", limits::MAX_SPILL_BYTES >> 20));
    }
    Ok(())
}

/// Sorts what happened into one result. The order matters: a guest that hit a cap
/// usually traps afterwards, and the cap is the cause worth reporting.
fn outcome_to_result(
    outcome: wasmtime::Result<()>,
    request: &RunRequest,
    limiter: &MemoryLimiter,
    spill: Option<&SpillBudget>,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
) -> RunResult {
    if let Some(budget) = spill
        && (budget.exceeded() || outcome.as_ref().is_err_and(|e| e.downcast_ref::<SpillLimitExceeded>().is_some()))
    {
        return RunResult::failure(
            ErrorType::SpillLimit,
            format!(
                "the guest wrote more than its scratch disk allows ({} MiB, RUN_SPILL_MAX_MB) and was stopped",
                budget.limit() >> 20
            ),
        );
    }
    if stdout.overflowed() || stderr.overflowed() {
        let (stream, cap) =
            if stdout.overflowed() { ("stdout", stdout.capacity()) } else { ("stderr", stderr.capacity()) };
        return RunResult::failure(
            ErrorType::OutputLimit,
            format!("the guest wrote more than {cap} bytes to {stream}; results are capped at max_output_bytes"),
        );
    }
    let exit_code = match &outcome {
        Ok(()) => Some(0),
        Err(e) => e.downcast_ref::<I32Exit>().map(|exit| exit.0),
    };
    let trap = outcome.as_ref().err().and_then(|e| e.downcast_ref::<Trap>().copied());
    if trap == Some(Trap::Interrupt) {
        return RunResult::failure(ErrorType::Timeout, format!("the query ran longer than {} ms", request.timeout_ms));
    }
    let memory_limit = || {
        RunResult::failure(
            ErrorType::MemoryLimit,
            format!("the query needed more than {} MiB of memory", request.memory_limit_bytes >> 20),
        )
    };
    if limiter.exceeded && exit_code != Some(0) {
        return memory_limit();
    }
    let guest_result = parse_result(&stdout.contents());
    let stderr_text = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
    // An allocation too large for wasm32 (2 GiB and more) fails inside the guest's
    // allocator without ever asking to grow the memory, so the limiter does not see
    // it; the guest then aborts saying so.
    if exit_code != Some(0) && failed_allocation(guest_result.as_ref(), &stderr_text) {
        return memory_limit();
    }
    // The guest's own result: after a clean exit, or written by its panic hook
    // before it trapped.
    if let Some(result) = guest_result {
        return enforce_caps(result, request);
    }
    let detail = |what: String| {
        if stderr_text.is_empty() { what } else { format!("{what}; guest stderr: {}", tail(&stderr_text, 2000)) }
    };
    match (outcome, exit_code) {
        (_, Some(0)) => {
            RunResult::failure(ErrorType::Internal, detail("the guest exited without printing a valid result".into()))
        }
        (_, Some(code)) => {
            RunResult::failure(ErrorType::Internal, detail(format!("the guest exited with code {code}")))
        }
        (Err(_), None) if trap == Some(Trap::StackOverflow) => RunResult::failure(
            ErrorType::Internal,
            detail("the guest exhausted its stack (is the query nested too deeply?)".into()),
        ),
        (Err(e), None) => {
            let what = match trap {
                Some(trap) => format!("the guest trapped: {trap}"),
                None => format!("the guest failed: {}", first_line(&e.to_string())),
            };
            RunResult::failure(ErrorType::Internal, detail(what))
        }
        (Ok(()), None) => unreachable!("a clean return has exit code 0"),
    }
}

/// Whether the guest died of an allocation it could not get: Rust's standard
/// allocation-failure message on stderr, or a panic on a collection's capacity
/// overflowing the 32-bit address space (reported by the guest's panic hook).
fn failed_allocation(guest_result: Option<&RunResult>, stderr: &str) -> bool {
    let allocation_failed =
        stderr.lines().any(|line| line.starts_with("memory allocation of ") && line.ends_with(" bytes failed"));
    let capacity_overflow = guest_result.and_then(|r| r.error.as_ref()).is_some_and(|e| {
        e.error_type == ErrorType::Internal && e.message.contains("panicked") && e.message.contains("capacity overflow")
    });
    allocation_failed || capacity_overflow
}

/// The guest's result: exactly one line holding a `RunResult`.
fn parse_result(stdout: &[u8]) -> Option<RunResult> {
    let text = std::str::from_utf8(stdout).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// The host does not trust the guest to have honoured `max_rows`.
fn enforce_caps(mut result: RunResult, request: &RunRequest) -> RunResult {
    let max_rows = usize::try_from(request.max_rows).unwrap_or(usize::MAX);
    if result.rows.len() > max_rows {
        result.rows.truncate(max_rows);
        result.truncated = true;
    }
    result.row_count = result.rows.len() as u64;
    if result.status == RunStatus::Success && result.error.is_some() {
        result.status = RunStatus::Error;
    }
    result
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Advances the engine's epoch every tick for as long as the engine lives.
/// Without it no deadline fires, so failing to start it fails the sandbox.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new().name("sandbox-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(limits::EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(())
}
