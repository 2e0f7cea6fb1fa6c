//! The run's scratch directory: where a query spills what does not fit in memory,
//! and the host's count of what the guest writes there.
//!
//! A request with `spill_limit_bytes` above zero gets a directory of its own, made
//! fresh under the spill root (`RUN_SPILL_DIR`) and preopened read-write at
//! [`protocol::SCRATCH_MOUNT`]; nothing else the guest sees becomes writable, and no
//! run sees another's. [`ScratchDir`] removes it when dropped, however the run ended.
//! A process that crashed leaves its directories behind: [`ScratchRoot::open`]
//! removes every one no live process holds. Each directory is held by an exclusive
//! lock on it for as long as its run lasts, so several processes can share a root.
//!
//! The guest's own disk manager stops at the cap, but the host does not trust it:
//! [`guard_writes`] puts its own versions of the WASI calls that write or create
//! files in front of wasmtime's, and they count every byte a run writes to any file
//! (stdout and stderr are the capped pipes of `crate::output`, and are not counted),
//! plus [`ENTRY_BYTES`] for each file created. Files are always in append mode, so a
//! write never leaves a hole (a sparse file would take more blocks than bytes);
//! folders and links are refused. A write that would pass the cap, or more than
//! [`MAX_ENTRIES`] files, stops the guest at once ([`SpillLimitExceeded`]), and the
//! run ends with `SPILL_LIMIT`. The count is never credited back when a file is
//! deleted (a deleted file that is still open keeps its blocks), so the disk a run
//! uses never passes its cap, and a service's never passes its slots times the cap.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
use wasmtime_wasi::runtime::in_tokio;
use wiggle::GuestMemory;

/// The WASI module name the guest imports from.
const WASI: &str = "wasi_snapshot_preview1";
/// Run directories are named this, then a unique id.
const PREFIX: &str = "csv-analyst-scratch-";
/// A directory being made is named `.{PREFIX}…` until its lock is held.
const MAKING: &str = ".csv-analyst-scratch-";
/// A half-made directory older than this is left over from a crash.
const MAKING_STALE_AFTER: Duration = Duration::from_secs(60);
/// Files a spilling run may create in its scratch directory.
pub const MAX_ENTRIES: u64 = 10_000;
/// What a created file is charged beyond its bytes: its inode and last block.
pub const ENTRY_BYTES: u64 = protocol::SCRATCH_FILE_BYTES;
/// Files and folders a run may hold open at once (the host's descriptors are
/// shared by every run).
pub const MAX_OPEN_FILES: usize = 512;

/// WASI errno values the guards return themselves.
mod errno {
    pub const FAULT: i32 = 21;
    pub const NFILE: i32 = 41;
    pub const NOTSUP: i32 = 58;
}

/// The folder runs' scratch directories are made in.
#[derive(Debug, Clone)]
pub struct ScratchRoot {
    dir: PathBuf,
}

impl ScratchRoot {
    /// Uses `dir` and removes the scratch directories in it that no live process
    /// holds; returns how many it removed. `dir` need not exist yet (it is made
    /// when a run first needs it), so a sandbox whose runs never spill never writes.
    pub fn open(dir: &Path) -> (ScratchRoot, usize) {
        let root = ScratchRoot { dir: dir.to_path_buf() };
        let Ok(entries) = fs::read_dir(dir) else { return (root, 0) };
        let mut removed = 0;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else { continue };
            if !kind.is_dir() {
                continue;
            }
            let candidate = name.starts_with(PREFIX)
                || (name.starts_with(MAKING)
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > MAKING_STALE_AFTER));
            // Removed under its lock, so a directory nobody held a moment ago cannot
            // have become a live run's meanwhile.
            if candidate
                && let Some(_lock) = lock_if_free(&entry.path())
                && fs::remove_dir_all(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        (root, removed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty directory for one run, locked until the returned value drops.
    pub fn make_dir(&self) -> io::Result<ScratchDir> {
        // Unique within the process by the counter, between processes (whatever
        // their pid namespace) by the pid and the clock; `create_dir` refuses a name
        // taken all the same.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let id = format!("{:x}-{nanos:x}-{:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let making = self.dir.join(format!("{MAKING}{id}"));
        fs::create_dir_all(&self.dir)?;
        // The service's user's alone: spill files hold the dataset's rows.
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700).create(&making)?;
        let made = (|| {
            let lock = File::open(&making)?;
            lock.try_lock().map_err(io::Error::from)?;
            let path = self.dir.join(format!("{PREFIX}{id}"));
            fs::rename(&making, &path)?;
            Ok(ScratchDir { path, _lock: lock })
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&making);
        }
        made
    }
}

/// The directory's lock, when no process holds it (it is a crashed process's).
fn lock_if_free(dir: &Path) -> Option<File> {
    let file = File::open(dir).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// One run's scratch directory, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Held for the directory's life: see [`ScratchRoot::open`].
    _lock: File,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            // Never a panic in a drop, even with stderr closed.
            let _ =
                writeln!(io::stderr(), "runner-host: cannot remove the scratch directory {}: {e}", self.path.display());
        }
    }
}

/// What one run may write to its scratch directory, and what it wrote.
#[derive(Debug)]
pub struct SpillBudget {
    limit: u64,
    written: AtomicU64,
    entries: AtomicU64,
    exceeded: AtomicBool,
}

impl SpillBudget {
    pub fn new(limit: u64) -> Arc<SpillBudget> {
        Arc::new(SpillBudget {
            limit,
            written: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes written to files so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Whether the guest was stopped for writing past the cap.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }

    fn charge(&self, bytes: u64) -> Result<(), SpillLimitExceeded> {
        let written = self.written.load(Ordering::SeqCst);
        if written.saturating_add(bytes) > self.limit {
            self.exceeded.store(true, Ordering::SeqCst);
            return Err(SpillLimitExceeded { limit: self.limit });
        }
        self.written.store(written + bytes, Ordering::SeqCst);
        Ok(())
    }

    fn refund(&self, bytes: u64) {
        self.written.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// One more file created: counted, and charged [`ENTRY_BYTES`].
    fn count_entry(&self) -> Result<(), SpillLimitExceeded> {
        if self.entries.fetch_add(1, Ordering::SeqCst) >= MAX_ENTRIES {
            self.exceeded.store(true, Ordering::SeqCst);
            return Err(SpillLimitExceeded { limit: self.limit });
        }
        self.charge(ENTRY_BYTES)
    }
}

/// The trap that stops a guest writing past its scratch cap.
#[derive(Debug, thiserror::Error)]
#[error("the guest wrote more than {} MiB to its scratch directory, or created more than {MAX_ENTRIES} files there", .limit >> 20)]
pub struct SpillLimitExceeded {
    pub limit: u64,
}

/// What the guards need of a run's state.
pub trait Guarded: Sized + 'static {
    /// The run's budget; `None` when it has no scratch directory (then nothing
    /// outside stdout and stderr is writable, and the guards only pass calls on).
    fn budget(&self) -> Option<&SpillBudget>;
    /// wasmtime's WASIp1 state for this run.
    fn wasi(&mut self) -> &mut WasiP1Ctx;
    /// Files and folders the guest holds open (see [`MAX_OPEN_FILES`]).
    fn open_files(&mut self) -> &mut usize;
}

/// Calls wasmtime's own implementation of a WASIp1 function (`call`, one of the
/// functions wiggle generates in `wasmtime_wasi::p1::wasi_snapshot_preview1`) with
/// the guest's memory, exactly as wasmtime's linker does: what the guards pass on.
fn with_p1<T: Guarded, R>(
    caller: &mut Caller<'_, T>,
    call: impl FnOnce(&mut WasiP1Ctx, &mut GuestMemory<'_>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("missing required memory export");
    };
    let (data, state) = memory.data_and_store_mut(caller);
    let ctx = state.wasi();
    WasiSnapshotPreview1::set_hostcall_fuel(ctx, fuel);
    call(ctx, &mut GuestMemory::Unshared(data))
}

/// Whether `fd` is one of the guest's standard streams (capped pipes, not files).
fn is_stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

/// The total length of the `count` iovecs at `iovs` in the guest's memory; `None`
/// when they are not all in it.
fn iovec_bytes<T>(caller: &mut Caller<'_, T>, iovs: i32, count: i32) -> Option<u64> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return None };
    let data = memory.data(&caller);
    let start = usize::try_from(iovs as u32).ok()?;
    let len = usize::try_from(count as u32).ok()?.checked_mul(8)?;
    let array = data.get(start..start.checked_add(len)?)?;
    Some(array.chunks_exact(8).map(|iov| u64::from(u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]))).sum())
}

/// The `u32` at `ptr` in the guest's memory.
fn read_u32<T>(caller: &mut Caller<'_, T>, ptr: i32) -> Option<u32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return None };
    let data = memory.data(&caller);
    let start = usize::try_from(ptr as u32).ok()?;
    let bytes = data.get(start..start.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// A write of the iovecs through `call`: charged before (the write that would pass
/// the cap never happens), and what was not written refunded after. A call that
/// traps keeps its charge: the bytes may be on disk.
fn charged_write<T: Guarded>(
    caller: &mut Caller<'_, T>,
    fd: i32,
    iovs: i32,
    count: i32,
    nwritten: i32,
    call: impl FnOnce(&mut Caller<'_, T>) -> wasmtime::Result<i32>,
) -> wasmtime::Result<i32> {
    if is_stdio(fd) || caller.data().budget().is_none() {
        return call(caller);
    }
    let Some(requested) = iovec_bytes(caller, iovs, count) else { return Ok(errno::FAULT) };
    caller.data().budget().expect("checked above").charge(requested)?;
    let status = call(caller);
    let written = match status {
        Ok(0) => read_u32(caller, nwritten).map_or(requested, |n| u64::from(n).min(requested)),
        Ok(_) => 0,
        Err(_) => requested,
    };
    caller.data().budget().expect("checked above").refund(requested - written);
    status
}

/// `path_open`'s `oflags` bit that creates the file.
const O_CREAT: i32 = 1;
/// The `fdflags` bit for appending: every file a spilling run opens is in append
/// mode (set at open, never cleared), so no write lands past the end of a file and
/// no file has holes: the bytes counted are the bytes on disk.
const FDFLAGS_APPEND: i32 = 1;

/// Puts the guards in front of `linker`'s WASI functions (which must be wasmtime's,
/// from `wasmtime_wasi::p1::add_to_linker_sync`), shadowing them; the guards call
/// wasmtime's implementations themselves ([`with_p1`]), so nothing a guest imports
/// reaches them unguarded.
pub fn guard_writes<T: Guarded>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, T>, fd: i32, iovs: i32, count: i32, nwritten: i32| {
            charged_write(&mut caller, fd, iovs, count, nwritten, |caller| {
                with_p1(caller, |ctx, memory| in_tokio(abi::fd_write(ctx, memory, fd, iovs, count, nwritten)))
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pwrite",
        |mut caller: Caller<'_, T>, fd: i32, iovs: i32, count: i32, offset: i64, nwritten: i32| {
            charged_write(&mut caller, fd, iovs, count, nwritten, |caller| {
                with_p1(caller, |ctx, memory| in_tokio(abi::fd_pwrite(ctx, memory, fd, iovs, count, offset, nwritten)))
            })
        },
    )?;
    // Growing a file without writing makes a sparse file; it is charged all the same.
    linker.func_wrap(WASI, "fd_filestat_set_size", |mut caller: Caller<'_, T>, fd: i32, size: i64| {
        if let Some(budget) = caller.data().budget() {
            budget.charge(size.max(0) as u64)?;
        }
        with_p1(&mut caller, |ctx, memory| in_tokio(abi::fd_filestat_set_size(ctx, memory, fd, size)))
    })?;
    linker.func_wrap(
        WASI,
        "path_open",
        |mut caller: Caller<'_, T>,
         fd: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         base: i64,
         inheriting: i64,
         fdflags: i32,
         opened: i32| {
            if *caller.data_mut().open_files() >= MAX_OPEN_FILES {
                return Ok(errno::NFILE);
            }
            let fdflags = match caller.data().budget() {
                Some(budget) => {
                    if oflags & O_CREAT != 0 {
                        budget.count_entry()?;
                    }
                    fdflags | FDFLAGS_APPEND
                }
                None => fdflags,
            };
            let status = with_p1(&mut caller, |ctx, memory| {
                in_tokio(abi::path_open(
                    ctx, memory, fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened,
                ))
            })?;
            if status == 0 {
                *caller.data_mut().open_files() += 1;
            }
            Ok(status)
        },
    )?;
    linker.func_wrap(WASI, "fd_fdstat_set_flags", |mut caller: Caller<'_, T>, fd: i32, flags: i32| {
        let flags = if caller.data().budget().is_some() { flags | FDFLAGS_APPEND } else { flags };
        with_p1(&mut caller, |ctx, memory| abi::fd_fdstat_set_flags(ctx, memory, fd, flags))
    })?;
    // A spilling run makes files, nothing else: folders, links and hard links would
    // take disk the byte count does not see (and deep trees outlast clean-up).
    linker.func_wrap(WASI, "path_create_directory", |mut caller: Caller<'_, T>, fd: i32, path: i32, len: i32| {
        if caller.data().budget().is_some() {
            return Ok(errno::NOTSUP);
        }
        with_p1(&mut caller, |ctx, memory| in_tokio(abi::path_create_directory(ctx, memory, fd, path, len)))
    })?;
    linker.func_wrap(
        WASI,
        "path_symlink",
        |mut caller: Caller<'_, T>, old: i32, old_len: i32, fd: i32, new: i32, new_len: i32| {
            if caller.data().budget().is_some() {
                return Ok(errno::NOTSUP);
            }
            with_p1(&mut caller, |ctx, memory| in_tokio(abi::path_symlink(ctx, memory, old, old_len, fd, new, new_len)))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_link",
        |mut caller: Caller<'_, T>,
         old_fd: i32,
         flags: i32,
         old: i32,
         old_len: i32,
         fd: i32,
         new: i32,
         new_len: i32| {
            if caller.data().budget().is_some() {
                return Ok(errno::NOTSUP);
            }
            with_p1(&mut caller, |ctx, memory| {
                in_tokio(abi::path_link(ctx, memory, old_fd, flags, old, old_len, fd, new, new_len))
            })
        },
    )?;
    // The standard streams stay the capped pipes: closing one would let a file take
    // its number (and its writes go uncounted), and so would renumbering onto it.
    linker.func_wrap(WASI, "fd_close", |mut caller: Caller<'_, T>, fd: i32| {
        if is_stdio(fd) {
            return Ok(errno::NOTSUP);
        }
        let status = with_p1(&mut caller, |ctx, memory| in_tokio(abi::fd_close(ctx, memory, fd)))?;
        let open = caller.data_mut().open_files();
        if status == 0 {
            *open = open.saturating_sub(1);
        }
        Ok(status)
    })?;
    linker.func_wrap(WASI, "fd_renumber", |_caller: Caller<'_, T>, _from: i32, _to: i32| Ok(errno::NOTSUP))?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn start_up_removes_only_directories_no_live_process_holds() {
        let root = tempfile::tempdir().unwrap();
        let (scratch, removed) = ScratchRoot::open(&root.path().join("not-yet"));
        assert_eq!(removed, 0, "a root that does not exist yet is left alone");
        assert!(!scratch.dir().exists(), "and not made until a run needs it");

        let (scratch, _) = ScratchRoot::open(root.path());
        let live = scratch.make_dir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(live.path()).unwrap().permissions().mode() & 0o777, 0o700, "the service's alone");
        fs::write(live.path().join("spill-0.arrows"), b"live").unwrap();
        let crashed = root.path().join(format!("{PREFIX}crashed"));
        fs::create_dir(&crashed).unwrap();
        fs::write(crashed.join("spill-0.arrows"), b"left behind").unwrap();
        fs::create_dir(root.path().join(format!("{MAKING}being-made"))).unwrap();
        fs::create_dir(root.path().join("someone-elses")).unwrap();

        let (_, removed) = ScratchRoot::open(root.path());
        assert_eq!(removed, 1);
        let live_name = live.path().file_name().unwrap().to_string_lossy().into_owned();
        let mut expected = vec![format!("{MAKING}being-made"), live_name, "someone-elses".to_string()];
        expected.sort();
        assert_eq!(names(root.path()), expected, "the crashed run's directory went, the rest stayed");

        drop(live);
        assert_eq!(names(root.path()), [format!("{MAKING}being-made"), "someone-elses".to_string()]);
    }

    #[test]
    fn the_budget_refuses_the_write_that_would_pass_the_cap_and_the_entry_past_the_limit() {
        let budget = SpillBudget::new(10);
        budget.charge(6).unwrap();
        assert!(budget.charge(5).is_err());
        assert!(budget.exceeded());
        assert_eq!(budget.written(), 6, "the refused write is not counted");
        budget.refund(2);
        budget.charge(6).unwrap();
        assert_eq!(budget.written(), 10);

        let budget = SpillBudget::new(1 << 40);
        for _ in 0..MAX_ENTRIES {
            budget.count_entry().unwrap();
        }
        assert_eq!(budget.written(), MAX_ENTRIES * ENTRY_BYTES, "each file is charged its block");
        assert!(budget.count_entry().is_err());
        assert!(budget.exceeded());
    }
}
