//! Builds runner-guest for wasm32-wasip1 and hands it to the crate to embed.
//!
//! The guest is always built with the `guest` profile (release settings) in its own
//! target directory, `<target>/guest`, whatever profile or target the host is built
//! for: building DataFusion for wasm takes the better part of half an hour cold, so it
//! must happen once, not once per host profile. Cargo's own incremental checks make
//! later builds a no-op.
//!
//! Set `RUNNER_GUEST_WASM=/path/to/runner-guest.wasm` to embed a guest built
//! elsewhere (container builds do this).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const GUEST_TARGET: &str = "wasm32-wasip1";
const GUEST_PROFILE: &str = "guest";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUNNER_GUEST_WASM");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    if env::var_os("CARGO_FEATURE_EMBEDDED_GUEST").is_none() {
        return;
    }
    let wasm = match env::var_os("RUNNER_GUEST_WASM").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => build_guest(),
    };
    let bytes = fs::read(&wasm).unwrap_or_else(|e| panic!("cannot read the guest module {}: {e}", wasm.display()));
    let digest = format!("{:x}", Sha256::digest(&bytes));
    println!("cargo:rerun-if-changed={}", wasm.display());
    println!("cargo:rustc-env=RUNNER_GUEST_WASM_PATH={}", wasm.display());
    println!("cargo:rustc-env=RUNNER_GUEST_SHA256={digest}");
}

fn build_guest() -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("runner-host sits in the workspace").to_path_buf();
    for input in [
        "runner-guest/src",
        "runner-guest/Cargo.toml",
        "csv-decoder/src",
        "csv-decoder/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "sql-bounds/src",
        "sql-bounds/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    let target_dir = target_root(&workspace).join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--package", "runner-guest", "--target", GUEST_TARGET, "--profile", GUEST_PROFILE])
        .arg("--target-dir")
        .arg(&target_dir)
        // Cargo reads a build script's stdout for directives: keep cargo's own chatter off it.
        .stdout(std::io::stderr());
    // The nested cargo must see what a plain `cargo build -p runner-guest ...` in a
    // shell sees, or cargo decides the guest's dependencies are stale and rebuilds
    // DataFusion (half an hour). So drop what cargo set for this build script: the
    // host's flags, target, wrappers (clippy-driver), cfgs, features and links
    // metadata. The guest's own flags live in .cargo/config.toml.
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_build_script_env(name) {
            command.env_remove(name);
        }
    }
    let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build the guest: {e}"));
    if !status.success() {
        panic!(
            "building runner-guest for {GUEST_TARGET} failed ({status}). It needs `rustup target add {GUEST_TARGET}`, \
             clang and Debian's wasi-libc (see README.md, Prerequisites)"
        );
    }
    target_dir.join(GUEST_TARGET).join(GUEST_PROFILE).join("runner-guest.wasm")
}

/// Variables cargo sets for a build script (or for the host build) that would leak
/// into the nested guest build.
fn is_build_script_env(name: &str) -> bool {
    const KEEP: [&str; 8] = [
        "CARGO_HOME",
        "CARGO_MAKEFLAGS",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
        "CARGO_BUILD_JOBS",
    ];
    const DROP: [&str; 14] = [
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_LINKER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ];
    if name.starts_with("CARGO_") {
        return !KEEP.iter().any(|keep| name.starts_with(keep));
    }
    name.starts_with("DEP_") || DROP.contains(&name)
}

/// The host build's target directory: the ancestor of OUT_DIR that cargo marked
/// with CACHEDIR.TAG (this finds `target/` whether or not `--target` is given).
fn target_root(workspace: &Path) -> PathBuf {
    // CARGO_TARGET_DIR when set (CI keeps it outside the clone and creates it before
    // cargo does, so it has no CACHEDIR.TAG); otherwise the folder cargo tagged.
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return workspace.join(dir);
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
}
