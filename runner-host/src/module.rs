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
//! directory, keyed by the module's sha256 and the engine's compatibility hash, so
//! only the first process after a build pays for Cranelift. Processes that start
//! together wait on a file lock for the one that compiles instead of all compiling.
//!
//! Loading a precompiled artifact runs native code from it: the cache directory and
//! `--module` files must be as trusted as the binary itself. The cache directory is
//! created private to its user.

use std::fmt;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
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
#[derive(Debug)]
pub struct ModuleError {
    pub source_name: String,
    pub message: String,
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load {}: {}", self.source_name, self.message)
    }
}

impl std::error::Error for ModuleError {}

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
    let mut magic = [0u8; 4];
    let read_magic = File::open(path).and_then(|mut f| f.read(&mut magic));
    read_magic.map_err(|e| format!("cannot read the file: {e}"))?;
    if magic == *b"\x7fELF" {
        // SAFETY: `--module` files are trusted like the binary (see the module docs);
        // wasmtime checks the artifact's format, version and engine settings.
        let module = unsafe { Module::deserialize_file(engine, path) }
            .map_err(|e| format!("not a precompiled module for this runner-host: {e}"))?;
        return Ok((module, LoadedFrom::Precompiled(path.to_path_buf())));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let digest = hex(&Sha256::digest(&bytes));
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
    if let Err(e) = create_private_dir(dir) {
        eprintln!("runner-host: warning: compilation cache {} is unusable ({e}); compiling in memory", dir.display());
        return Ok((compile()?, LoadedFrom::Compiled));
    }
    let key = cache_key(engine, sha256);
    let artifact = dir.join(format!("{key}.cwasm"));
    if let Some(module) = deserialize_if_valid(engine, &artifact) {
        return Ok((module, LoadedFrom::CacheHit(artifact)));
    }

    // One process compiles; the others wait here and then find the artifact.
    let lock =
        File::create(dir.join(format!("{key}.lock"))).map_err(|e| format!("cannot create the cache lock: {e}"))?;
    lock.lock().map_err(|e| format!("cannot take the cache lock: {e}"))?;
    if let Some(module) = deserialize_if_valid(engine, &artifact) {
        return Ok((module, LoadedFrom::CacheHit(artifact)));
    }
    let compiled = engine.precompile_module(bytes).map_err(|e| format!("invalid module: {e:#}"))?;
    let temp = dir.join(format!("{key}.cwasm.{}.tmp", std::process::id()));
    let written = File::create(&temp)
        .and_then(|mut f| f.write_all(&compiled).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&temp, &artifact));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        eprintln!("runner-host: warning: cannot write {} ({e}); continuing without the cache", artifact.display());
        // SAFETY: `compiled` was produced by this engine a moment ago.
        let module = unsafe { Module::deserialize(engine, &compiled) }.map_err(|e| e.to_string())?;
        return Ok((module, LoadedFrom::Compiled));
    }
    drop(lock);
    prune(dir, CACHE_KEEP);
    // Deserialize from the file so the code is mmapped from it, as on later starts.
    let module = deserialize_if_valid(engine, &artifact)
        .ok_or_else(|| format!("the artifact just written to {} does not load", artifact.display()))?;
    Ok((module, LoadedFrom::CacheMiss(artifact)))
}

/// Removes all but the `keep` most recently written artifacts (and their locks).
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
        let _ = fs::remove_file(old.with_extension("lock"));
    }
}

fn deserialize_if_valid(engine: &Engine, artifact: &Path) -> Option<Module> {
    if !artifact.is_file() {
        return None;
    }
    // SAFETY: the cache directory is private to this user and written only by this
    // code; wasmtime checks the artifact's header against the engine's settings.
    match unsafe { Module::deserialize_file(engine, artifact) } {
        Ok(module) => Some(module),
        Err(e) => {
            eprintln!("runner-host: warning: discarding cache entry {} ({e})", artifact.display());
            let _ = fs::remove_file(artifact);
            None
        }
    }
}

/// The module's digest and a digest of everything in the engine's configuration
/// that compiled code depends on.
fn cache_key(engine: &Engine, sha256: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("guest-{}-{:016x}", &sha256[..sha256.len().min(32)], hasher.finish())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_artifacts_and_drops_their_locks() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let artifact = dir.path().join(format!("guest-{name}.cwasm"));
            fs::write(&artifact, b"x").unwrap();
            fs::write(artifact.with_extension("lock"), b"").unwrap();
            let age = std::time::SystemTime::now() - std::time::Duration::from_secs(100 - i as u64 * 10);
            File::options().write(true).open(&artifact).unwrap().set_modified(age).unwrap();
        }
        fs::write(dir.path().join("unrelated.txt"), b"keep me").unwrap();
        prune(dir.path(), 2);
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec!["guest-c.cwasm", "guest-c.lock", "guest-d.cwasm", "guest-d.lock", "unrelated.txt"]);
    }

    #[test]
    fn cache_keys_depend_on_the_module_and_the_engine() {
        let engine = Engine::new(&crate::sandbox::engine_config()).unwrap();
        let a = cache_key(&engine, &"a".repeat(64));
        assert_eq!(a, cache_key(&engine, &"a".repeat(64)));
        assert_ne!(a, cache_key(&engine, &"b".repeat(64)));
        let mut other = crate::sandbox::engine_config();
        other.cranelift_opt_level(wasmtime::OptLevel::None);
        assert_ne!(a, cache_key(&Engine::new(&other).unwrap(), &"a".repeat(64)), "engine settings are part of the key");
    }
}
