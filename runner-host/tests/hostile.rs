//! Hostile guests: hand-written WAT modules run in the same sandbox as the
//! DataFusion guest, each trying one way out. Every one must be contained and
//! reported with the right error type.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunRequest, RunResult, RunStatus, TableFile};
use runner_host::{ModuleSource, Profiler, Sandbox, SandboxOptions};

const WASI: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
"#;

struct Hostile {
    _dir: tempfile::TempDir,
    data: PathBuf,
    /// The sandbox's spill root (RUN_SPILL_DIR): runs' scratch directories go here.
    spill: PathBuf,
    sandbox: Sandbox,
}

/// Compiles `body` (with the WASI imports above) into a sandbox, next to a data
/// folder holding one CSV.
fn hostile(body: &str) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hostile.wat");
    std::fs::write(&module, format!("(module {WASI} {body})")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("t.csv"), "a\n1\n").unwrap();
    let spill = dir.path().join("spill");
    let options = SandboxOptions {
        module: ModuleSource::File(module),
        cache_dir: None,
        profiler: Profiler::None,
        spill_dir: spill.clone(),
    };
    let sandbox = Sandbox::new(&options).unwrap();
    Hostile { _dir: dir, data, spill, sandbox }
}

fn request(timeout_ms: u64) -> RunRequest {
    let mut request = RunRequest::new(
        "ds",
        vec![TableFile { table: "t".into(), path: "/data/t.csv".into(), columns: vec![] }],
        "SELECT 1",
    );
    request.timeout_ms = timeout_ms;
    request.memory_limit_bytes = 32 * 1024 * 1024;
    request
}

fn run(h: &Hostile, request: &RunRequest) -> RunResult {
    h.sandbox.run(request, &h.data)
}

fn assert_error(result: &RunResult, expected: ErrorType, message_part: &str) {
    let error = result.error.as_ref().unwrap_or_else(|| panic!("expected {expected}, got {result:?}"));
    assert_eq!(error.error_type, expected, "{result:?}");
    assert!(error.message.contains(message_part), "message {:?} lacks {message_part:?}", error.message);
    assert_ne!(result.status, RunStatus::Success);
}

/// Data at 1024: a string of `len` bytes; `open_and_report` tries to open it under
/// the preopen (fd 3) and exits with the errno (0 means it escaped).
fn open_path(path: &str, oflags: u32, rights: u64) -> String {
    format!(
        r#"(memory (export "memory") 1)
        (data (i32.const 1024) "{path}")
        (func (export "_start")
          (call $proc_exit
            (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const {len})
              (i32.const {oflags}) (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 2048))))"#,
        len = path.len()
    )
}

// WASI errno values.
const EBADF: i32 = 8;
const ENOTCAPABLE: i32 = 76;
const EPERM: i32 = 63;

fn exit_code(result: &RunResult) -> i32 {
    let message = &result.error.as_ref().expect("an error").message;
    let code = message.strip_prefix("the guest exited with code ").unwrap_or_else(|| panic!("not an exit: {message}"));
    code.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn reading_outside_data_is_refused() {
    const FD_READ: u64 = 1 << 1;
    for path in ["../../etc/passwd", "/etc/passwd", "../hostile.wat", "./../hostile.wat"] {
        let h = hostile(&open_path(path, 0, FD_READ));
        let result = run(&h, &request(5_000));
        assert_eq!(result.error_type(), Some(ErrorType::Internal), "{path}: {result:?}");
        let errno = exit_code(&result);
        assert!(errno == ENOTCAPABLE || errno == EPERM, "{path}: opening it gave errno {errno}");
    }
    // The one file the guest may read opens fine (errno 0 is a clean exit without output).
    let h = hostile(&open_path("t.csv", 0, FD_READ));
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "exited without printing a valid result");
}

#[test]
fn only_one_directory_is_preopened() {
    let h = hostile(
        r#"(memory (export "memory") 1)
        (func (export "_start")
          (if (i32.ne (call $fd_prestat_get (i32.const 3) (i32.const 0)) (i32.const 0))
            (then (call $proc_exit (i32.const 101))))
          (call $proc_exit (call $fd_prestat_get (i32.const 4) (i32.const 0))))"#,
    );
    let result = run(&h, &request(5_000));
    assert_eq!(exit_code(&result), EBADF, "fd 4 must not exist: {result:?}");
}

#[test]
fn writing_to_data_is_refused() {
    const O_CREAT: u32 = 1;
    const O_TRUNC: u32 = 8;
    const FD_WRITE: u64 = 1 << 6;
    for (path, oflags) in [("pwned.txt", O_CREAT), ("t.csv", O_TRUNC), ("t.csv", 0)] {
        let h = hostile(&open_path(path, oflags, FD_WRITE));
        let result = run(&h, &request(5_000));
        let errno = exit_code(&result);
        assert!(errno == ENOTCAPABLE || errno == EPERM, "{path}: errno {errno}");
        assert!(!h.data.join("pwned.txt").exists());
        assert_eq!(std::fs::read_to_string(h.data.join("t.csv")).unwrap(), "a\n1\n");
    }
}

#[test]
fn an_endless_loop_times_out_on_time() {
    let h = hostile(r#"(func (export "_start") (loop (br 0)))"#);
    let started = Instant::now();
    let result = run(&h, &request(500));
    let elapsed = started.elapsed();
    assert_eq!(result.status, RunStatus::Timeout);
    assert_error(&result, ErrorType::Timeout, "longer than 500 ms");
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_500), "stopped after {elapsed:?}");
}

#[test]
fn growing_memory_without_end_hits_the_memory_limit() {
    let h = hostile(
        r#"(memory (export "memory") 1)
        (func (export "_start")
          (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable)"#,
    );
    let result = run(&h, &request(5_000));
    assert_error(&result, ErrorType::MemoryLimit, "more than 32 MiB");
    // 1 page, then 16 at a time: the last growth granted ends at 1 + 16 × 31 = 497
    // pages; the next (513 pages) is refused. The peak is exactly what was granted.
    const PAGE: u64 = 64 * 1024;
    assert_eq!(result.stats.peak_memory_bytes, Some(497 * PAGE));
}

#[test]
fn the_peak_is_the_largest_memory_granted_not_the_limit() {
    // Grows to 3 pages and exits: the peak is 3 pages, far under the 32 MiB limit.
    let h = hostile(
        r#"(memory (export "memory") 1)
        (func (export "_start") (drop (memory.grow (i32.const 2))) (call $proc_exit (i32.const 0)))"#,
    );
    let result = run(&h, &request(5_000));
    assert_eq!(result.stats.peak_memory_bytes, Some(3 * 64 * 1024), "{result:?}");
}

/// A module writing 4 KiB to `fd` forever.
fn flood(fd: u32) -> String {
    format!(
        r#"(memory (export "memory") 1)
        (data (i32.const 0) "\10\00\00\00\00\10\00\00")
        (func (export "_start")
          (loop (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0)))"#
    )
}

#[test]
fn flooding_stdout_hits_the_output_limit() {
    let h = hostile(&flood(1));
    let mut req = request(10_000);
    req.max_output_bytes = 1_000;
    let started = Instant::now();
    let result = run(&h, &req);
    assert_error(&result, ErrorType::OutputLimit, "to stdout");
    assert!(started.elapsed() < Duration::from_secs(2), "the flood must stop at the cap, not the deadline");
    assert!(result.stats.output_bytes.unwrap() > 1_000);
}

#[test]
fn flooding_stderr_hits_the_output_limit() {
    let h = hostile(&flood(2));
    assert_error(&run(&h, &request(10_000)), ErrorType::OutputLimit, "to stderr");
}

/// A module printing `text` on stdout and exiting cleanly.
fn prints(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!(
        r#"(memory (export "memory") 1)
        (data (i32.const 0) "\10\00\00\00\{len:02x}\{len_hi:02x}\00\00")
        (data (i32.const 16) "{escaped}")
        (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
        len = text.len() & 0xff,
        len_hi = text.len() >> 8,
    )
}

#[test]
fn a_guest_returning_too_many_rows_is_cut_to_max_rows() {
    let lie = r#"{"status":"success","columns":["n"],"rows":[[1],[2],[3],[4]],"row_count":4,"truncated":false,"exec_time_ms":0,"error":null}"#;
    let h = hostile(&prints(lie));
    let mut req = request(5_000);
    req.max_rows = 2;
    let result = run(&h, &req);
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(result.rows, vec![vec![serde_json::json!(1)], vec![serde_json::json!(2)]]);
    assert_eq!(result.row_count, 2);
    assert!(result.truncated);
}

#[test]
fn garbage_output_is_an_internal_error() {
    let h = hostile(&prints("this is not json\n"));
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "without printing a valid result");
    let h = hostile(&prints("{\"status\":\"success\"}\n{\"status\":\"success\"}\n"));
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "without printing a valid result");
}

#[test]
fn endless_recursion_exhausts_the_stack_and_is_reported() {
    let h = hostile(r#"(func $f (call $f)) (func (export "_start") (call $f))"#);
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "exhausted its stack");
}

#[test]
fn a_trap_is_an_internal_error_naming_the_trap() {
    let h = hostile(r#"(func (export "_start") unreachable)"#);
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "unreachable");
}

#[test]
fn imports_beyond_wasi_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("m.wat");
    std::fs::write(&module, r#"(module (import "env" "open_socket" (func)) (func (export "_start")))"#).unwrap();
    let options = SandboxOptions {
        module: ModuleSource::File(module),
        cache_dir: None,
        profiler: Profiler::None,
        ..SandboxOptions::default()
    };
    let err = Sandbox::new(&options).err().expect("must not load");
    assert!(err.to_string().contains("imports the sandbox does not provide"), "{err}");
}

#[test]
fn limits_out_of_range_are_invalid_requests() {
    let h = hostile(r#"(func (export "_start"))"#);
    let mut req = request(0);
    assert_error(&run(&h, &req), ErrorType::InvalidRequest, "timeout_ms");
    req.timeout_ms = 1_000;
    req.memory_limit_bytes = 1024;
    assert_error(&run(&h, &req), ErrorType::InvalidRequest, "memory_limit_bytes");
}

#[test]
fn a_missing_data_folder_is_a_dataset_error() {
    let h = hostile(r#"(func (export "_start"))"#);
    let result = h.sandbox.run(&request(1_000), Path::new("/nonexistent/data"));
    assert_error(&result, ErrorType::DatasetError, "cannot open the dataset folder");
}

/// A module that waits in `poll_oneoff` on a relative monotonic-clock timeout of
/// `seconds`: one host call, which epoch interruption does not stop.
fn sleeps_in_poll_oneoff(seconds: u64) -> String {
    format!(
        r#"(memory (export "memory") 1)
        (func (export "_start")
          ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic) at 16,
          ;; timeout in ns at 24, precision 0, flags 0 (relative)
          (i32.store (i32.const 16) (i32.const 1))
          (i64.store (i32.const 24) (i64.const {ns}))
          (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))"#,
        ns = seconds * 1_000_000_000
    )
}

#[test]
fn a_guest_blocked_in_poll_oneoff_is_abandoned_at_its_deadline() {
    let h = hostile(&sleeps_in_poll_oneoff(3_600));
    assert_eq!(h.sandbox.stuck_runs(), 0);
    for timeout_ms in [300, 800] {
        let started = Instant::now();
        let result = run(&h, &request(timeout_ms));
        let elapsed = started.elapsed();
        assert_eq!(result.status, RunStatus::Timeout, "{result:?}");
        assert_error(&result, ErrorType::Timeout, &format!("longer than {timeout_ms} ms: the guest was still blocked"));
        let deadline = Duration::from_millis(timeout_ms) + runner_host::sandbox::limits::HOST_CALL_GRACE;
        assert!(elapsed >= deadline && elapsed < deadline + Duration::from_millis(500), "{elapsed:?}");
    }
    // The two threads still sleep; they are counted until they end.
    assert_eq!(h.sandbox.stuck_runs(), 2);
}

#[test]
fn a_short_wait_in_poll_oneoff_is_not_a_timeout() {
    // Sleeps 1 s and returns (then exits cleanly without a result): within its 5 s.
    let h = hostile(&sleeps_in_poll_oneoff(1));
    let result = run(&h, &request(5_000));
    assert_error(&result, ErrorType::Internal, "exited without printing a valid result");
    assert_eq!(h.sandbox.stuck_runs(), 0);
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn a_guest_reading_a_fifo_in_its_folder_is_abandoned_and_its_thread_counted_until_it_ends() {
    // The FIFO is not a dataset file (those are checked): the guest opens it itself
    // and blocks in the host's open(2) until a writer comes.
    const FD_READ: u64 = 1 << 1;
    let h = hostile(&format!(
        r#"(memory (export "memory") 1)
        (data (i32.const 1024) "pipe")
        (func (export "_start")
          (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 4)
            (i32.const 0) (i64.const {FD_READ}) (i64.const 0) (i32.const 0) (i32.const 2048)))
          ;; iovec at 0: 16 bytes at 64
          (i32.store (i32.const 0) (i32.const 64))
          (i32.store (i32.const 4) (i32.const 16))
          (drop (call $fd_read (i32.load (i32.const 2048)) (i32.const 0) (i32.const 1) (i32.const 8))))"#
    ));
    let fifo = h.data.join("pipe");
    mkfifo(&fifo);
    let started = Instant::now();
    let result = run(&h, &request(500));
    assert_error(&result, ErrorType::Timeout, "still blocked in a host call");
    assert!(started.elapsed() < Duration::from_millis(500 + 1_000 + 500), "{:?}", started.elapsed());
    assert_eq!(h.sandbox.stuck_runs(), 1);

    // A writer unblocks the abandoned thread (open, then read sees end of file): it
    // ends, and is no longer counted.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    let waited = Instant::now();
    while h.sandbox.stuck_runs() > 0 && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(h.sandbox.stuck_runs(), 0);
}

#[test]
fn a_fifo_as_a_dataset_file_is_refused_before_the_guest_starts() {
    let h = hostile(r#"(func (export "_start") (loop (br 0)))"#);
    std::fs::remove_file(h.data.join("t.csv")).unwrap();
    mkfifo(&h.data.join("t.csv"));
    let started = Instant::now();
    let result = run(&h, &request(5_000));
    assert_error(&result, ErrorType::DatasetError, "the dataset file /data/t.csv is a FIFO, not a regular file");
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
}

#[test]
fn dataset_files_linked_out_of_the_folder_are_refused() {
    let h = hostile(r#"(func (export "_start") (loop (br 0)))"#);
    std::fs::remove_file(h.data.join("t.csv")).unwrap();
    for target in ["/dev/zero", "/etc/passwd", "/proc/self/environ", "../hostile.wat"] {
        let _ = std::fs::remove_file(h.data.join("t.csv"));
        std::os::unix::fs::symlink(target, h.data.join("t.csv")).unwrap();
        let started = Instant::now();
        let result = run(&h, &request(5_000));
        assert_error(
            &result,
            ErrorType::DatasetError,
            "the dataset file /data/t.csv resolves outside the dataset folder",
        );
        assert!(started.elapsed() < Duration::from_millis(500), "{target}: {:?}", started.elapsed());
    }
}

#[test]
fn a_dataset_folder_linked_elsewhere_is_refused() {
    let h = hostile(r#"(func (export "_start") (loop (br 0)))"#);
    let root = h.data.parent().unwrap().join("datasets");
    std::fs::create_dir(&root).unwrap();
    for (name, target) in [("etc", "/etc"), ("self", "/proc/self"), ("other", h.data.to_str().unwrap())] {
        std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        for file in ["passwd", "environ", "t.csv"] {
            let mut req = request(5_000);
            req.files[0].path = format!("/data/{name}/{file}");
            let result = h.sandbox.run_mounted(&root, req);
            assert_error(&result, ErrorType::DatasetError, "reached through a symbolic link");
        }
        // Run directly on the link (as `exec --data-dir` would): refused too.
        let mut req = request(5_000);
        req.files[0].path = "/data/passwd".into();
        let result = h.sandbox.run(&req, &root.join(name));
        assert_error(&result, ErrorType::DatasetError, "reached through a symbolic link");
    }
}

#[test]
fn growth_past_4_gib_is_the_memory_limit() {
    // memory.grow past what a 32-bit memory can address fails before the limiter is
    // asked; it still counts as hitting the limit.
    let h = hostile(
        r#"(memory (export "memory") 1)
        (func (export "_start")
          (if (i32.eq (memory.grow (i32.const 65536)) (i32.const -1)) (then unreachable)))"#,
    );
    let mut req = request(5_000);
    req.memory_limit_bytes = 4 * 1024 * 1024 * 1024;
    assert_error(&run(&h, &req), ErrorType::MemoryLimit, "more than 4096 MiB");
}

#[test]
fn an_allocation_too_large_for_wasm32_is_the_memory_limit() {
    // What Rust's allocator prints before aborting when it cannot get 2 GiB: the
    // guest never asked to grow its memory, so only its last words tell.
    let h = hostile(
        r#"(memory (export "memory") 1)
        (data (i32.const 0) "\10\00\00\00\2d\00\00\00")
        (data (i32.const 16) "memory allocation of 2147483647 bytes failed\n")
        (func (export "_start") (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))) unreachable)"#,
    );
    assert_error(&run(&h, &request(5_000)), ErrorType::MemoryLimit, "more than 32 MiB");
    // The same words from a guest that exits cleanly are not a memory error.
    let h = hostile(
        r#"(memory (export "memory") 1)
        (data (i32.const 0) "\10\00\00\00\2d\00\00\00")
        (data (i32.const 16) "memory allocation of 2147483647 bytes failed\n")
        (func (export "_start") (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    );
    assert_error(&run(&h, &request(5_000)), ErrorType::Internal, "exited without printing a valid result");
}

/// What is left in the spill root: the names of its entries.
fn left_in(spill: &Path) -> Vec<String> {
    match std::fs::read_dir(spill) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    }
}

fn spilling(timeout_ms: u64, spill_limit_bytes: u64) -> RunRequest {
    let mut request = request(timeout_ms);
    request.spill_limit_bytes = spill_limit_bytes;
    request
}

/// Opens `f` for writing in the scratch directory (fd 4), then runs `then` with
/// the new fd in `$fd`.
fn in_scratch_file(then: &str) -> String {
    format!(
        r#"(memory (export "memory") 1)
        (data (i32.const 1024) "f")
        (func (export "_start") (local $fd i32)
          (if (i32.ne (call $path_open (i32.const 4) (i32.const 0) (i32.const 1024) (i32.const 1)
                (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 2048)) (i32.const 0))
            (then (call $proc_exit (i32.const 101))))
          (local.set $fd (i32.load (i32.const 2048)))
          {then})"#
    )
}

#[test]
fn writing_past_the_scratch_cap_stops_the_guest_and_leaves_nothing() {
    const CAP: u64 = 1024 * 1024;
    // 4 KiB writes for ever: the host counts them and stops the guest at the cap.
    let h = hostile(&in_scratch_file(
        r#"(i32.store (i32.const 0) (i32.const 4096))
          (i32.store (i32.const 4) (i32.const 4096))
          (loop (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))"#,
    ));
    let started = Instant::now();
    let result = run(&h, &spilling(10_000, CAP));
    assert_error(&result, ErrorType::SpillLimit, "scratch disk allows (1 MiB");
    assert!(started.elapsed() < Duration::from_secs(3), "stopped at the cap, not at the deadline");
    assert_eq!(result.stats.spilled_bytes, Some(CAP), "every byte up to the cap was written, none past it");
    assert_eq!(left_in(&h.spill), Vec::<String>::new(), "the run's scratch directory is removed");

    // Growing a file without writing (a sparse file) is charged all the same.
    let h = hostile(&in_scratch_file(
        "(call $proc_exit (call $fd_filestat_set_size (local.get $fd) (i64.const 10737418240)))",
    ));
    assert_error(&run(&h, &spilling(10_000, CAP)), ErrorType::SpillLimit, "was stopped");
    assert_eq!(left_in(&h.spill), Vec::<String>::new());
}

#[test]
fn the_standard_streams_cannot_be_closed_or_replaced_by_a_file_nor_folders_made() {
    const ENOTSUP: i32 = 58;
    // Were stdout closed, or a file renumbered onto it, writes to fd 1 would go to a
    // file uncounted; a folder takes disk the byte count does not see.
    for body in [
        "(call $proc_exit (call $fd_close (i32.const 1)))",
        "(call $proc_exit (call $fd_renumber (local.get $fd) (i32.const 1)))",
        "(call $proc_exit (call $path_create_directory (i32.const 4) (i32.const 1024) (i32.const 1)))",
    ] {
        let h = hostile(&in_scratch_file(body));
        let result = run(&h, &spilling(5_000, 1024 * 1024));
        assert_eq!(exit_code(&result), ENOTSUP, "{body}: {result:?}");
    }
}

#[test]
fn a_run_sees_only_its_own_scratch_directory() {
    const FD_READ: u64 = 1 << 1;
    const FD_WRITE: u64 = 1 << 6;
    const O_CREAT: u32 = 1;
    for (path, oflags, rights) in [
        ("../csv-analyst-scratch-other/secret", 0, FD_READ),
        ("../csv-analyst-scratch-other/mine", O_CREAT, FD_WRITE),
        ("../../data/t.csv", O_CREAT, FD_WRITE),
        ("/tmp/x", O_CREAT, FD_WRITE),
    ] {
        // The same open as `open_path`, from the scratch directory (fd 4).
        let module =
            open_path(path, oflags, rights).replace("(call $path_open (i32.const 3)", "(call $path_open (i32.const 4)");
        let h = hostile(&module);
        // Another, live run's directory, beside where this run's is made.
        let other = h.spill.join("csv-analyst-scratch-other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret"), "theirs").unwrap();
        let held = std::fs::File::open(&other).unwrap();
        held.lock().unwrap();
        let result = run(&h, &spilling(5_000, 1024 * 1024));
        let errno = exit_code(&result);
        assert!(errno == ENOTCAPABLE || errno == EPERM, "{path}: errno {errno}");
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1, "{path}: nothing made in the other run's directory");
        assert_eq!(left_in(&h.spill), ["csv-analyst-scratch-other"], "{path}: only the live run's directory is left");
        assert_eq!(std::fs::read_to_string(h.data.join("t.csv")).unwrap(), "a\n1\n");
    }
    // Without spilling there is no second directory at all (see
    // `only_one_directory_is_preopened`); with it, exactly two.
    let h = hostile(
        r#"(memory (export "memory") 1)
        (func (export "_start")
          (if (i32.ne (call $fd_prestat_get (i32.const 4) (i32.const 0)) (i32.const 0))
            (then (call $proc_exit (i32.const 101))))
          (call $proc_exit (call $fd_prestat_get (i32.const 5) (i32.const 0))))"#,
    );
    assert_eq!(exit_code(&run(&h, &spilling(5_000, 1024 * 1024))), EBADF, "fd 5 must not exist");
}
