//! Where the guest module comes from, and the compilation cache that keeps a
//! Cranelift compile of it (minutes for the DataFusion guest) to once per build.
//!
//! A module is one of:
//! - the guest embedded in this binary at build time (the default),
//! - a `.wasm` or `.wat` file (tests use hand-written hostile modules), or
//! - a precompiled `.cwasm` artifact from `runner-host precompile`, loaded with
//!   `Module::deserialize_file` in milliseconds (what container images ship).
//!
//! Compiled modules larger than [`CACHE_MIN_BYTES`] are stored in the cache
//! directory, keyed by the sha256 of the module and of the engine's compatibility
//! hash, so only the first process after a build pays for Cranelift. Processes that
//! start together wait on a file lock for the one that compiles instead of all
//! compiling.
//!
//! A cached artifact is native code loaded with `unsafe`, so the cache is trusted
//! only as far as it is private:
//! - the directory is created `0700`, and an existing one is used only when it
//!   belongs to this process's user and nobody else may write to it (otherwise the
//!   module is compiled in memory, with a warning);
//! - next to each artifact `<key>.cwasm` the process that compiled it records the
//!   artifact's sha256 in `<key>.sha256` (mode `0600`); an artifact is loaded only
//!   when both files belong to this user, are writable by nobody else, and the
//!   artifact's bytes match the recorded digest. Anything else is recompiled.
//!
//! `--module` files are loaded as given: they must be as trusted as the binary.

use std::fmt;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Modules smaller than this compile in milliseconds: not worth a cache entry.
pub const CACHE_MIN_BYTES: usize = 1024 * 1024;
/// Compiled modules kept in the cache; older ones (earlier builds of the guest)
/// are removed when a new one is written.
pub const CACHE_KEEP: usize = 3;

/// The guest built by build.rs, when the `embedded-guest` feature is on.
#[cfg(feature = "embedded-guest")]
pub mod embedded {
    pub const WASM: &[u8] = include_bytes!(env!("RUNNER_GUEST_WASM_PATH"));
    pub const SHA256: &str = env!("RUNNER_GUEST_SHA256");
}

/// Where to load the guest module from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// The guest embedded in this binary.
    Embedded,
    /// A `.wasm`, `.wat` or precompiled `.cwasm` file.
    File(PathBuf),
}

impl ModuleSource {
    /// `path` if given, else the embedded guest.
    pub fn from_option(path: Option<PathBuf>) -> Self {
        path.map_or(ModuleSource::Embedded, ModuleSource::File)
    }
}

impl fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleSource::Embedded => f.write_str("the embedded guest"),
            ModuleSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How a module was obtained, for logs and readiness reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Deserialized from a precompiled artifact.
    Precompiled(PathBuf),
    /// Found in the compilation cache.
    CacheHit(PathBuf),
    /// Compiled now, and stored in the cache.
    CacheMiss(PathBuf),
    /// Compiled now, not cached (small module, or no usable cache directory).
    Compiled,
}

impl LoadedFrom {
    /// How the module was loaded, without host paths (for readiness reports that
    /// clients can read).
    pub fn summary(&self) -> &'static str {
        match self {
            LoadedFrom::Precompiled(_) => "precompiled artifact",
            LoadedFrom::CacheHit(_) => "compilation cache hit",
            LoadedFrom::CacheMiss(_) => "compiled and cached",
            LoadedFrom::Compiled => "compiled (not cached)",
        }
    }
}

impl fmt::Display for LoadedFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadedFrom::Precompiled(p) => write!(f, "precompiled artifact {}", p.display()),
            LoadedFrom::CacheHit(p) => write!(f, "compilation cache hit {}", p.display()),
            LoadedFrom::CacheMiss(p) => write!(f, "compiled and cached at {}", p.display()),
            LoadedFrom::Compiled => f.write_str("compiled (not cached)"),
        }
    }
}

/// A loaded module and how long it took.
pub struct LoadedModule {
    pub module: Module,
    pub from: LoadedFrom,
    pub elapsed: Duration,
}

/// A module that could not be loaded, with what was being loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load {source_name}: {message}")]
pub struct ModuleError {
    pub source_name: String,
    pub message: String,
}

/// The default cache directory: `$RUNNER_CACHE_DIR` is read by the CLIs; this is
/// `$XDG_CACHE_HOME/csv-analyst` or `$HOME/.cache/csv-analyst`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("csv-analyst"))
}

/// Loads `source` for `engine`, through the cache in `cache_dir` when given.
pub fn load(engine: &Engine, source: &ModuleSource, cache_dir: Option<&Path>) -> Result<LoadedModule, ModuleError> {
    let started = Instant::now();
    let fail = |message: String| ModuleError { source_name: source.to_string(), message };
    let (module, from) = match source {
        ModuleSource::Embedded => embedded_module(engine, cache_dir).map_err(fail)?,
        ModuleSource::File(path) => file_module(engine, path, cache_dir).map_err(fail)?,
    };
    Ok(LoadedModule { module, from, elapsed: started.elapsed() })
}

/// The module's wasm (or wat) bytes, for compiling elsewhere than a sandbox.
pub fn wasm_bytes(source: &ModuleSource) -> Result<std::borrow::Cow<'static, [u8]>, String> {
    match source {
        #[cfg(feature = "embedded-guest")]
        ModuleSource::Embedded => Ok(std::borrow::Cow::Borrowed(embedded::WASM)),
        #[cfg(not(feature = "embedded-guest"))]
        ModuleSource::Embedded => {
            Err("this runner-host was built without the embedded guest; pass --module PATH".into())
        }
        ModuleSource::File(path) => {
            let bytes = fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
            if bytes.starts_with(b"\x7fELF") {
                return Err("already a precompiled artifact; pass the .wasm module".into());
            }
            Ok(std::borrow::Cow::Owned(bytes))
        }
    }
}

#[cfg(feature = "embedded-guest")]
fn embedded_module(engine: &Engine, cache_dir: Option<&Path>) -> Result<(Module, LoadedFrom), String> {
    compile_cached(engine, embedded::WASM, embedded::SHA256, cache_dir)
}

#[cfg(not(feature = "embedded-guest"))]
fn embedded_module(_engine: &Engine, _cache_dir: Option<&Path>) -> Result<(Module, LoadedFrom), String> {
    Err("this runner-host was built without the embedded guest; pass --module PATH".to_string())
}

fn file_module(engine: &Engine, path: &Path, cache_dir: Option<&Path>) -> Result<(Module, LoadedFrom), String> {
    let mut magic = Vec::with_capacity(4);
    let read_magic = File::open(path).and_then(|f| f.take(4).read_to_end(&mut magic));
    read_magic.map_err(|e| format!("cannot read the file: {e}"))?;
    if magic == b"\x7fELF" {
        // SAFETY: `--module` files are trusted like the binary (see the module docs);
        // wasmtime checks the artifact's format, version and engine settings.
        let module = unsafe { Module::deserialize_file(engine, path) }
            .map_err(|e| format!("not a precompiled module for this runner-host: {e}"))?;
        return Ok((module, LoadedFrom::Precompiled(path.to_path_buf())));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    compile_cached(engine, &bytes, &digest, cache_dir)
}

/// Compiles `bytes` (wasm or wat), or loads the cached compilation.
fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<(Module, LoadedFrom), String> {
    let compile = || Module::new(engine, bytes).map_err(|e| format!("invalid module: {e:#}"));
    let Some(dir) = cache_dir.filter(|_| bytes.len() >= CACHE_MIN_BYTES) else {
        return Ok((compile()?, LoadedFrom::Compiled));
    };
    if let Err(e) = private_dir(dir) {
        eprintln!("runner-host: warning: compilation cache {} is not used: {e}; compiling in memory", dir.display());
        return Ok((compile()?, LoadedFrom::Compiled));
    }
    let entry = CacheEntry::new(dir, &cache_key(engine, sha256));
    if let Ok(module) = entry.load(engine) {
        return Ok((module, LoadedFrom::CacheHit(entry.artifact)));
    }

    // One process compiles; the others wait here and then find the artifact.
    let lock = private_file_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("{}.lock", entry.key)))
        .map_err(|e| format!("cannot create the cache lock: {e}"))?;
    lock.lock().map_err(|e| format!("cannot take the cache lock: {e}"))?;
    match entry.load(engine) {
        Ok(module) => return Ok((module, LoadedFrom::CacheHit(entry.artifact))),
        Err(Discarded::Missing) => {}
        Err(Discarded::Invalid(reason)) => {
            eprintln!("runner-host: warning: recompiling cache entry {} ({reason})", entry.artifact.display());
        }
    }
    let compiled = engine.precompile_module(bytes).map_err(|e| format!("invalid module: {e:#}"))?;
    if let Err(e) = entry.store(&compiled) {
        eprintln!(
            "runner-host: warning: cannot write {} ({e}); continuing without the cache",
            entry.artifact.display()
        );
        // SAFETY: `compiled` was produced by this engine a moment ago.
        let module = unsafe { Module::deserialize(engine, &compiled) }.map_err(|e| e.to_string())?;
        return Ok((module, LoadedFrom::Compiled));
    }
    drop(lock);
    prune(dir, CACHE_KEEP);
    // Deserialize from the file so the code is mmapped from it, as on later starts.
    let module = entry
        .load(engine)
        .map_err(|why| format!("the artifact just written to {} does not load: {why}", entry.artifact.display()))?;
    Ok((module, LoadedFrom::CacheMiss(entry.artifact)))
}

/// One compiled module in the cache: `<key>.cwasm` and the sha256 of its bytes,
/// recorded in `<key>.sha256` by the process that compiled it.
struct CacheEntry {
    key: String,
    artifact: PathBuf,
    digest: PathBuf,
}

/// Why a cache entry was not loaded.
#[derive(Debug, thiserror::Error)]
enum Discarded {
    #[error("there is no artifact")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

impl CacheEntry {
    fn new(dir: &Path, key: &str) -> CacheEntry {
        CacheEntry {
            key: key.to_string(),
            artifact: dir.join(format!("{key}.cwasm")),
            digest: dir.join(format!("{key}.sha256")),
        }
    }

    /// The artifact, once checked against its recorded digest.
    fn load(&self, engine: &Engine) -> Result<Module, Discarded> {
        if fs::symlink_metadata(&self.artifact).is_err() {
            return Err(Discarded::Missing);
        }
        self.verify().map_err(Discarded::Invalid)?;
        // SAFETY: the artifact lies in a directory only this user may write, belongs
        // to this user, and its bytes are the ones this code wrote after compiling
        // them (their sha256 matches the digest recorded then); wasmtime also checks
        // its header against the engine's settings.
        unsafe { Module::deserialize_file(engine, &self.artifact) }
            .map_err(|e| Discarded::Invalid(format!("wasmtime refuses it: {e}")))
    }

    fn verify(&self) -> Result<(), String> {
        let mut recorded = String::new();
        open_private(&self.digest)
            .and_then(|mut f| f.read_to_string(&mut recorded))
            .map_err(|e| format!("its recorded digest {} is unusable: {e}", self.digest.display()))?;
        let mut hasher = Sha256::new();
        open_private(&self.artifact)
            .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
            .map_err(|e| format!("the artifact is unusable: {e}"))?;
        let actual = format!("{:x}", hasher.finalize());
        if actual != recorded.trim() {
            return Err(format!("its sha256 {actual} is not the {} recorded when it was compiled", recorded.trim()));
        }
        Ok(())
    }

    /// Writes the digest, then the artifact, each atomically and private to this user.
    fn store(&self, compiled: &[u8]) -> std::io::Result<()> {
        let digest = format!("{:x}\n", Sha256::digest(compiled));
        write_private(&self.digest, digest.as_bytes())?;
        write_private(&self.artifact, compiled)
    }
}

/// Opens a cache file for reading: a regular file (not a link), owned by this
/// process's user and writable by nobody else.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    #[cfg(unix)]
    check_private(&metadata)?;
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file and a rename, mode `0600`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    let _ = fs::remove_file(&temp);
    let written = private_file_options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

fn private_file_options() -> fs::OpenOptions {
    let mut options = File::options();
    #[cfg(unix)]
    options.mode(0o600);
    options
}

/// Removes all but the `keep` most recently written artifacts (and their digests
/// and locks).
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.0));
    for (_, old) in artifacts.into_iter().skip(keep) {
        let _ = fs::remove_file(&old);
        let _ = fs::remove_file(old.with_extension("sha256"));
        let _ = fs::remove_file(old.with_extension("lock"));
    }
}

/// The cache key: the sha256 of the module's digest and of everything in the
/// engine's configuration that compiled code depends on. (sha256 rather than
/// `DefaultHasher`, whose algorithm may change between Rust releases.)
fn cache_key(engine: &Engine, module_sha256: &str) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(module_sha256.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("guest-{:x}", hasher.0.finalize())
}

/// A [`Hasher`] that feeds whatever a [`Hash`] impl writes into a sha256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// Creates the cache directory private to this user (`0700`), or checks that an
/// existing one is: owned by this process's user and writable by nobody else.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let metadata = fs::metadata(dir)?;
    if !metadata.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    #[cfg(unix)]
    check_private(&metadata)?;
    Ok(())
}

/// Owned by this process's (effective) user, writable by no one else.
#[cfg(unix)]
fn check_private(metadata: &fs::Metadata) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    if metadata.uid() != user {
        return Err(std::io::Error::other(format!(
            "it belongs to uid {}, not to this process's user (uid {user})",
            metadata.uid()
        )));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "it is writable by other users (mode {mode:o}); make it private (chmod go-w)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_artifacts_and_drops_their_digests_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let artifact = dir.path().join(format!("guest-{name}.cwasm"));
            fs::write(&artifact, b"x").unwrap();
            fs::write(artifact.with_extension("sha256"), b"").unwrap();
            fs::write(artifact.with_extension("lock"), b"").unwrap();
            let age = std::time::SystemTime::now() - std::time::Duration::from_secs(100 - i as u64 * 10);
            File::options().write(true).open(&artifact).unwrap().set_modified(age).unwrap();
        }
        fs::write(dir.path().join("unrelated.txt"), b"keep me").unwrap();
        prune(dir.path(), 2);
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "guest-c.cwasm",
                "guest-c.lock",
                "guest-c.sha256",
                "guest-d.cwasm",
                "guest-d.lock",
                "guest-d.sha256",
                "unrelated.txt"
            ]
        );
    }

    #[test]
    fn cache_keys_depend_on_the_module_and_the_engine() {
        let engine = Engine::new(&crate::sandbox::engine_config()).unwrap();
        let a = cache_key(&engine, &"a".repeat(64));
        assert_eq!(a, cache_key(&engine, &"a".repeat(64)));
        assert_eq!(a.len(), "guest-".len() + 64, "{a}");
        assert_ne!(a, cache_key(&engine, &"b".repeat(64)));
        let mut other = crate::sandbox::engine_config();
        other.cranelift_opt_level(wasmtime::OptLevel::None);
        assert_ne!(a, cache_key(&Engine::new(&other).unwrap(), &"a".repeat(64)), "engine settings are part of the key");
    }

    /// A module big enough to be cached (a data segment past [`CACHE_MIN_BYTES`])
    /// whose `answer` export returns `answer`.
    fn big_module(dir: &Path, answer: i32) -> PathBuf {
        let data = "x".repeat(CACHE_MIN_BYTES + 1024);
        let wat = format!(
            r#"(module (memory 17) (data (i32.const 0) "{data}")
                 (func (export "answer") (result i32) i32.const {answer}))"#
        );
        let path = dir.join(format!("big-{answer}.wat"));
        fs::write(&path, wat).unwrap();
        path
    }

    fn answer(engine: &Engine, module: &Module) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
        instance.get_typed_func::<(), i32>(&mut store, "answer").unwrap().call(&mut store, ()).unwrap()
    }

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        Engine::new(&config).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_cache_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("a/cache");
        let source = ModuleSource::File(big_module(dir.path(), 42));
        let engine = engine();
        let first = load(&engine, &source, Some(&cache)).unwrap();
        let LoadedFrom::CacheMiss(artifact) = &first.from else { panic!("{}", first.from) };
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(artifact), 0o600);
        assert_eq!(mode(&artifact.with_extension("sha256")), 0o600);
        let recorded = fs::read_to_string(artifact.with_extension("sha256")).unwrap();
        assert_eq!(recorded.trim(), format!("{:x}", Sha256::digest(fs::read(artifact).unwrap())));
        let second = load(&engine, &source, Some(&cache)).unwrap();
        assert_eq!(second.from, LoadedFrom::CacheHit(artifact.clone()));
        assert_eq!(answer(&engine, &second.module), 42);
    }

    #[test]
    fn a_cache_directory_others_may_write_to_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let source = ModuleSource::File(big_module(dir.path(), 42));
        let engine = engine();
        for bad_mode in [0o777, 0o770, 0o702] {
            let cache = dir.path().join(format!("cache-{bad_mode:o}"));
            fs::create_dir(&cache).unwrap();
            fs::set_permissions(&cache, fs::Permissions::from_mode(bad_mode)).unwrap();
            let loaded = load(&engine, &source, Some(&cache)).unwrap();
            assert_eq!(loaded.from, LoadedFrom::Compiled, "mode {bad_mode:o}");
            assert_eq!(fs::read_dir(&cache).unwrap().count(), 0, "nothing is written to a shared cache");
            let why = private_dir(&cache).unwrap_err().to_string();
            assert!(why.contains(&format!("writable by other users (mode {bad_mode:o})")), "{why}");
        }
    }

    #[test]
    fn a_cache_directory_of_another_user_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        // SAFETY: geteuid has no preconditions.
        let user = unsafe { libc::geteuid() };
        let other = if user == 65534 { 65533 } else { 65534 };
        if std::os::unix::fs::chown(&cache, Some(other), None).is_err() {
            // Only root can give a file away; elsewhere the check is the same code
            // path as the mode check above.
            assert_ne!(user, 0, "root must be able to chown");
            return;
        }
        let why = private_dir(&cache).unwrap_err().to_string();
        assert_eq!(why, format!("it belongs to uid {other}, not to this process's user (uid {user})"));
        let source = ModuleSource::File(big_module(dir.path(), 42));
        assert_eq!(load(&engine(), &source, Some(&cache)).unwrap().from, LoadedFrom::Compiled);
    }

    #[test]
    fn a_planted_artifact_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let source = ModuleSource::File(big_module(dir.path(), 42));
        let engine = engine();
        let LoadedFrom::CacheMiss(artifact) = load(&engine, &source, Some(&cache)).unwrap().from else {
            panic!("the first load compiles")
        };
        // A valid artifact of another module, for this very engine, under the key.
        let forged = engine.precompile_module(br#"(module (func (export "answer") (result i32) i32.const 7))"#);
        let forged = forged.unwrap();
        let digest = artifact.with_extension("sha256");
        let recorded = fs::read(&digest).unwrap();

        // Planted over the artifact: its digest does not match; recompiled.
        fs::write(&artifact, &forged).unwrap();
        let loaded = load(&engine, &source, Some(&cache)).unwrap();
        assert_eq!(loaded.from, LoadedFrom::CacheMiss(artifact.clone()));
        assert_eq!(answer(&engine, &loaded.module), 42);

        // Planted without a digest: recompiled.
        fs::write(&artifact, &forged).unwrap();
        fs::remove_file(&digest).unwrap();
        let loaded = load(&engine, &source, Some(&cache)).unwrap();
        assert_eq!(loaded.from, LoadedFrom::CacheMiss(artifact.clone()));
        assert_eq!(answer(&engine, &loaded.module), 42);

        // Planted as a link to a file elsewhere (whose digest would match): refused.
        let elsewhere = dir.path().join("elsewhere.cwasm");
        fs::write(&elsewhere, &forged).unwrap();
        fs::remove_file(&artifact).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &artifact).unwrap();
        fs::write(&digest, format!("{:x}\n", Sha256::digest(&forged))).unwrap();
        let loaded = load(&engine, &source, Some(&cache)).unwrap();
        assert_eq!(loaded.from, LoadedFrom::CacheMiss(artifact.clone()));
        assert_eq!(answer(&engine, &loaded.module), 42);
        assert!(!fs::symlink_metadata(&artifact).unwrap().file_type().is_symlink());

        // Group-writable artifact (someone else could have changed it): refused.
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o664)).unwrap();
        let loaded = load(&engine, &source, Some(&cache)).unwrap();
        assert_eq!(loaded.from, LoadedFrom::CacheMiss(artifact.clone()));
        assert_eq!(fs::read(&digest).unwrap(), recorded, "the same module compiles to the same artifact");
    }
}
