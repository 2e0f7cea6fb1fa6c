//! What the guest sees of the disk: one directory, read-only, at `/data`.
//!
//! Requests name their files as `/data/<path relative to the datasets folder>`
//! (`/data/support/tickets.csv`), the layout of the runner image. Before a run the
//! host narrows the mount to the deepest folder that holds all of the dataset's
//! files (`datasets/support` → `/data`), so a query over one dataset cannot even
//! list another's files, and rewrites the paths to match (`/data/tickets.csv`).
//!
//! Then it checks the disk once, before the guest starts ([`verify`]):
//! - the dataset's folder is reached without symbolic links from the datasets
//!   folder, is not a link itself, and is preopened by its resolved path, so no link
//!   is followed when the guest's `/data` is opened (a folder linked to `/etc` or
//!   `/proc/self` would otherwise be served as a dataset);
//! - every file of the request resolves, links included, to a regular file inside
//!   that folder, and the guest is given the resolved path. A FIFO, a device or a
//!   directory is not a dataset file: reading one can block for ever or never end.
//!
//! [`open_regular_file`] applies the same rule to the host's own reads (the
//! orchestrator hashes dataset files at start-up).

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use protocol::registry::Dataset;
use protocol::{DATA_MOUNT, RunRequest, TableFile};

/// Why the disk does not hold what a request names. Messages name paths as the
/// guest sees them (`/data/...`), never the host's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountError {
    #[error("cannot open the dataset folder: {0}")]
    Folder(String),
    #[error("the dataset folder is reached through a symbolic link; dataset folders must be real directories")]
    FolderIsLink,
    #[error("the dataset file {path} cannot be opened: {why}")]
    File { path: String, why: String },
    #[error("the dataset file {path} resolves outside the dataset folder")]
    FileOutside { path: String },
    #[error("the dataset file {path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "the dataset's files are not the ones the service described: it expects version_hash {expected}, \
         the files here hash to {found} (the runner's datasets differ from the service's: deploy the runner \
         image built with the service's, or mount the same uploads volume)"
    )]
    VersionMismatch { expected: String, found: String },
}

/// A directory to preopen at `/data` and the request, with paths under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// The host directory the guest sees as `/data`.
    pub host_dir: PathBuf,
    pub request: RunRequest,
}

/// The dataset's tables, with paths under `/data` as the runner image lays them out.
pub fn table_files(dataset: &Dataset) -> Vec<TableFile> {
    dataset
        .files
        .iter()
        .map(|file| TableFile {
            table: file.table_name(),
            // The registry was validated on load: the path is relative and clean.
            path: format!("{DATA_MOUNT}/{}", file.relative_path().unwrap_or_default().display()),
            columns: file.column_decls(),
        })
        .collect()
}

/// Narrows the mount for `request`, whose paths are `/data/...` relative to `root`.
/// Fails with a message when a path leaves `/data` or contains `..`.
pub fn narrow(root: &Path, mut request: RunRequest) -> Result<Mount, String> {
    let mut relative = Vec::with_capacity(request.files.len());
    for file in &request.files {
        relative.push(relative_to_mount(&file.path)?);
    }
    let common = common_dir(&relative);
    for (file, rel) in request.files.iter_mut().zip(&relative) {
        let inner = rel.strip_prefix(&common).unwrap_or(rel);
        file.path = format!("{DATA_MOUNT}/{}", inner.display());
    }
    Ok(Mount { host_dir: root.join(common), request })
}

fn relative_to_mount(path: &str) -> Result<PathBuf, String> {
    let rest = path
        .strip_prefix(DATA_MOUNT)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| format!("file path {path:?} is not under {DATA_MOUNT}/"))?;
    let mut clean = PathBuf::new();
    for component in Path::new(rest).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return Err(format!("file path {path:?} must not leave {DATA_MOUNT}")),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(format!("file path {path:?} names no file"));
    }
    Ok(clean)
}

/// The deepest directory containing every path (each path's parent, for files).
fn common_dir(paths: &[PathBuf]) -> PathBuf {
    let mut parents = paths.iter().map(|p| p.parent().unwrap_or(Path::new("")));
    let Some(first) = parents.next() else {
        return PathBuf::new();
    };
    let mut common: Vec<Component<'_>> = first.components().collect();
    for parent in parents {
        let shared = common.iter().zip(parent.components()).take_while(|(a, b)| *a == b).count();
        common.truncate(shared);
    }
    common.iter().collect()
}

/// The folder to preopen and the request to run, as checked on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The dataset folder's resolved path (no symbolic link in it).
    pub host_dir: PathBuf,
    /// The request, with each file's path resolved under `/data`.
    pub request: RunRequest,
}

/// Checks `mount` against the disk: its folder must lie under `root` with no
/// symbolic link on the way (the datasets folder itself may be one), then see
/// [`verify`].
pub fn verify_mount(root: &Path, mount: Mount) -> Result<Verified, MountError> {
    let root_resolved = root.canonicalize().map_err(|e| MountError::Folder(io_reason(&e)))?;
    // `narrow` made `host_dir` as `root` joined with a clean relative path.
    let relative = mount.host_dir.strip_prefix(root).unwrap_or(Path::new(""));
    let resolved = mount.host_dir.canonicalize().map_err(|e| MountError::Folder(io_reason(&e)))?;
    if resolved != root_resolved.join(relative) {
        return Err(MountError::FolderIsLink);
    }
    verify(&mount.host_dir, mount.request)
}

/// Checks `data_dir` and the request's files before a run:
/// - `data_dir` is a directory, not a symbolic link to one; the result holds its
///   resolved path, for the preopen;
/// - each file resolves, links included, to a regular file inside it; its path in
///   the result is the resolved one.
pub fn verify(data_dir: &Path, mut request: RunRequest) -> Result<Verified, MountError> {
    let link = fs::symlink_metadata(data_dir).map_err(|e| MountError::Folder(io_reason(&e)))?;
    if link.file_type().is_symlink() {
        return Err(MountError::FolderIsLink);
    }
    if !link.is_dir() {
        return Err(MountError::Folder("it is not a directory".into()));
    }
    let dir = data_dir.canonicalize().map_err(|e| MountError::Folder(io_reason(&e)))?;
    for file in &mut request.files {
        let relative =
            relative_to_mount(&file.path).map_err(|why| MountError::File { path: file.path.clone(), why })?;
        let open_error = |e: io::Error| MountError::File { path: file.path.clone(), why: io_reason(&e) };
        let resolved = dir.join(&relative).canonicalize().map_err(open_error)?;
        let Ok(inner) = resolved.strip_prefix(&dir) else {
            return Err(MountError::FileOutside { path: file.path.clone() });
        };
        let metadata = fs::metadata(&resolved).map_err(open_error)?;
        if !metadata.is_file() {
            return Err(MountError::NotRegular { path: file.path.clone(), kind: kind_of(&metadata.file_type()) });
        }
        file.path = format!("{DATA_MOUNT}/{}", inner.display());
    }
    Ok(Verified { host_dir: dir, request })
}

/// The SHA-256 (hex) and size of `relative` under `root`, read whole as
/// [`open_regular_file`] opens it: the digest `protocol::registry::version_hash`
/// takes for each file.
pub fn file_sha256(root: &Path, relative: &Path) -> io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let mut reader = open_regular_file(root, relative)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut reader, &mut hasher)?;
    Ok((format!("{:x}", hasher.finalize()), size))
}

/// Checks that the request's files, under `root`, hash to its `expected_version`
/// (nothing to check without one). Reads every file whole ([`file_sha256`]).
pub fn check_version(root: &Path, request: &RunRequest) -> Result<(), MountError> {
    let Some(expected) = &request.expected_version else { return Ok(()) };
    let manifest_dir = Path::new(&expected.manifest_dir);
    let mut names = Vec::with_capacity(request.files.len());
    let mut digests = Vec::with_capacity(request.files.len());
    for file in &request.files {
        let relative =
            relative_to_mount(&file.path).map_err(|why| MountError::File { path: file.path.clone(), why })?;
        let name = relative.strip_prefix(manifest_dir).map_err(|_| MountError::File {
            path: file.path.clone(),
            why: format!("it is not in the manifest's folder {DATA_MOUNT}/{}", expected.manifest_dir),
        })?;
        let (digest, _) = file_sha256(root, &relative)
            .map_err(|e| MountError::File { path: file.path.clone(), why: io_reason(&e) })?;
        names.push(name.display().to_string());
        digests.push(digest);
    }
    let found =
        protocol::registry::version_hash(names.iter().map(String::as_str).zip(digests.iter().map(String::as_str)));
    if found != expected.version_hash {
        return Err(MountError::VersionMismatch { expected: expected.version_hash.clone(), found });
    }
    Ok(())
}

/// Checks `dataset`'s folder and files under the datasets folder `root` as a run
/// would ([`narrow`], then [`verify_mount`]), for a service to check its registry
/// once at load.
pub fn check_dataset(root: &Path, dataset: &Dataset) -> Result<(), MountError> {
    let request = RunRequest::new(dataset.id.clone(), table_files(dataset), "");
    let mount = narrow(root, request).map_err(MountError::Folder)?;
    verify_mount(root, mount).map(|_| ())
}

/// Opens `relative` under `root` for reading, only if it resolves (links
/// included) to a regular file inside `root`. The file is opened without blocking
/// (a FIFO would block `open` itself) and checked again once open, so nothing
/// swapped in between is read.
pub fn open_regular_file(root: &Path, relative: &Path) -> io::Result<File> {
    let root = root.canonicalize()?;
    let resolved = root.join(relative).canonicalize()?;
    if !resolved.starts_with(&root) {
        return Err(io::Error::other("it resolves outside the datasets folder"));
    }
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(&resolved)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other(format!("it is {}, not a regular file", kind_of(&metadata.file_type()))));
    }
    Ok(file)
}

/// What an I/O error says, without the path (which may be the host's).
fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "it does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    }
}

fn kind_of(file_type: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() { "a directory" } else { "not a regular file" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(paths: &[&str]) -> RunRequest {
        let files = paths
            .iter()
            .enumerate()
            .map(|(i, p)| TableFile { table: format!("t{i}"), path: p.to_string(), columns: vec![] })
            .collect();
        RunRequest::new("ds", files, "SELECT 1")
    }

    #[test]
    fn mount_narrows_to_the_dataset_folder() {
        let m =
            narrow(Path::new("/srv/datasets"), request(&["/data/ecommerce/orders.csv", "/data/ecommerce/items.csv"]))
                .unwrap();
        assert_eq!(m.host_dir, PathBuf::from("/srv/datasets/ecommerce"));
        assert_eq!(m.request.files[0].path, "/data/orders.csv");
        assert_eq!(m.request.files[1].path, "/data/items.csv");
    }

    #[test]
    fn mount_keeps_the_common_ancestor_of_nested_files() {
        let m = narrow(Path::new("/d"), request(&["/data/a/x/1.csv", "/data/a/y/2.csv"])).unwrap();
        assert_eq!(m.host_dir, PathBuf::from("/d/a"));
        assert_eq!(m.request.files[0].path, "/data/x/1.csv");
        let m = narrow(Path::new("/d"), request(&["/data/top.csv"])).unwrap();
        assert_eq!(m.host_dir, PathBuf::from("/d"));
        assert_eq!(m.request.files[0].path, "/data/top.csv");
    }

    #[test]
    fn mount_refuses_paths_leaving_data() {
        for bad in ["/etc/passwd", "/data/../etc/passwd", "/data/a/../../x.csv", "/database/x.csv", "/data/"] {
            assert!(narrow(Path::new("/d"), request(&[bad])).is_err(), "{bad}");
        }
    }

    /// A datasets folder `root` with `root/ds/t.csv`.
    fn datasets() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("datasets");
        fs::create_dir_all(root.join("ds")).unwrap();
        fs::write(root.join("ds/t.csv"), "a\n1\n").unwrap();
        (dir, root)
    }

    fn mkfifo(path: &Path) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    }

    #[test]
    fn a_real_folder_and_regular_files_pass_with_resolved_paths() {
        let (_dir, root) = datasets();
        std::os::unix::fs::symlink("t.csv", root.join("ds/alias.csv")).unwrap();
        let mount = narrow(&root, request(&["/data/ds/t.csv", "/data/ds/alias.csv"])).unwrap();
        let verified = verify_mount(&root, mount).unwrap();
        assert_eq!(verified.host_dir, root.join("ds").canonicalize().unwrap());
        let paths: Vec<&str> = verified.request.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/data/t.csv", "/data/t.csv"], "a link is resolved to its file");
    }

    #[test]
    fn the_datasets_folder_itself_may_be_a_link() {
        let (dir, root) = datasets();
        let link = dir.path().join("link-to-datasets");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let mount = narrow(&link, request(&["/data/ds/t.csv"])).unwrap();
        assert_eq!(verify_mount(&link, mount).unwrap().host_dir, root.join("ds").canonicalize().unwrap());
    }

    #[test]
    fn a_dataset_folder_reached_through_a_link_is_refused() {
        let (dir, root) = datasets();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/proc/self", root.join("self")).unwrap();
        std::os::unix::fs::symlink("ds", root.join("same")).unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        fs::write(dir.path().join("elsewhere/t.csv"), "a\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join("ds/nested")).unwrap();
        for path in ["/data/etc/passwd", "/data/self/environ", "/data/same/t.csv", "/data/ds/nested/t.csv"] {
            let mount = narrow(&root, request(&[path])).unwrap();
            assert_eq!(verify_mount(&root, mount), Err(MountError::FolderIsLink), "{path}");
        }
        assert_eq!(verify(&root.join("etc"), request(&["/data/passwd"])), Err(MountError::FolderIsLink));
    }

    #[test]
    fn files_must_be_regular_and_inside_the_folder() {
        let (dir, root) = datasets();
        let ds = root.join("ds");
        std::os::unix::fs::symlink("/dev/zero", ds.join("zero.csv")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ds.join("passwd.csv")).unwrap();
        fs::write(dir.path().join("outside.csv"), "a\n").unwrap();
        std::os::unix::fs::symlink("../../outside.csv", ds.join("up.csv")).unwrap();
        mkfifo(&ds.join("fifo.csv"));
        std::os::unix::fs::symlink("fifo.csv", ds.join("to-fifo.csv")).unwrap();
        fs::create_dir(ds.join("dir.csv")).unwrap();
        let cases = [
            ("/data/zero.csv", MountError::FileOutside { path: "/data/zero.csv".into() }),
            ("/data/passwd.csv", MountError::FileOutside { path: "/data/passwd.csv".into() }),
            ("/data/up.csv", MountError::FileOutside { path: "/data/up.csv".into() }),
            ("/data/fifo.csv", MountError::NotRegular { path: "/data/fifo.csv".into(), kind: "a FIFO" }),
            ("/data/to-fifo.csv", MountError::NotRegular { path: "/data/to-fifo.csv".into(), kind: "a FIFO" }),
            ("/data/dir.csv", MountError::NotRegular { path: "/data/dir.csv".into(), kind: "a directory" }),
            (
                "/data/missing.csv",
                MountError::File { path: "/data/missing.csv".into(), why: "it does not exist".into() },
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(verify(&ds, request(&["/data/t.csv", path])), Err(expected), "{path}");
        }
        let message = verify(&ds, request(&["/data/fifo.csv"])).unwrap_err().to_string();
        assert_eq!(message, "the dataset file /data/fifo.csv is a FIFO, not a regular file");
        assert!(!message.contains(dir.path().to_str().unwrap()), "host paths stay out of messages");
    }

    #[test]
    fn open_regular_file_refuses_links_out_fifos_and_devices_at_once() {
        let (dir, root) = datasets();
        std::os::unix::fs::symlink("/dev/zero", root.join("ds/zero.csv")).unwrap();
        mkfifo(&root.join("ds/fifo.csv"));
        std::os::unix::fs::symlink("t.csv", root.join("ds/alias.csv")).unwrap();
        let started = std::time::Instant::now();
        let zero = open_regular_file(&root, Path::new("ds/zero.csv")).unwrap_err();
        assert_eq!(zero.to_string(), "it resolves outside the datasets folder");
        let fifo = open_regular_file(&root, Path::new("ds/fifo.csv")).unwrap_err();
        assert_eq!(fifo.to_string(), "it is a FIFO, not a regular file");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "nothing blocks");
        assert!(open_regular_file(&root, Path::new("ds/t.csv")).is_ok());
        assert!(open_regular_file(&root, Path::new("ds/alias.csv")).is_ok());
        assert!(open_regular_file(&root, Path::new("ds")).is_err());
        drop(dir);
    }

    #[test]
    fn a_registry_dataset_is_checked_as_a_run_would_check_it() {
        let (_dir, root) = datasets();
        let dataset = |path: &str| -> Dataset {
            serde_json::from_value(serde_json::json!({"id": "ds", "files": [{"name": "t.csv", "path": path}]})).unwrap()
        };
        assert_eq!(check_dataset(&root, &dataset("ds/t.csv")), Ok(()));
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        assert_eq!(check_dataset(&root, &dataset("etc/passwd")), Err(MountError::FolderIsLink));
        std::os::unix::fs::symlink("/dev/zero", root.join("ds/zero.csv")).unwrap();
        assert_eq!(
            check_dataset(&root, &dataset("ds/zero.csv")),
            Err(MountError::FileOutside { path: "/data/zero.csv".into() })
        );
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn files_are_checked_against_the_version_their_manifest_records() {
        let (_dir, root) = datasets();
        fs::write(root.join("ds/u.csv"), "b\n2\n").unwrap();
        let hash = |names: [&str; 2]| {
            let digests = [sha256(b"a\n1\n"), sha256(b"b\n2\n")];
            protocol::registry::version_hash(names.into_iter().zip(digests.iter().map(String::as_str)))
        };
        let expecting = |version_hash: String, manifest_dir: &str| {
            let mut request = request(&["/data/ds/t.csv", "/data/ds/u.csv"]);
            request.expected_version =
                Some(protocol::ExpectedVersion { version_hash, manifest_dir: manifest_dir.into() });
            request
        };
        assert_eq!(check_version(&root, &request(&["/data/ds/t.csv"])), Ok(()), "nothing to check");
        // A curated dataset: the manifest is the datasets folder's, names are paths in it.
        assert_eq!(check_version(&root, &expecting(hash(["ds/t.csv", "ds/u.csv"]), "")), Ok(()));
        // An upload: the manifest is in the dataset's folder.
        assert_eq!(check_version(&root, &expecting(hash(["t.csv", "u.csv"]), "ds")), Ok(()));

        let recorded = hash(["t.csv", "u.csv"]);
        fs::write(root.join("ds/u.csv"), "b\n3\n").unwrap();
        let Err(MountError::VersionMismatch { expected, found }) =
            check_version(&root, &expecting(recorded.clone(), "ds"))
        else {
            panic!("a changed file must be refused");
        };
        assert_eq!(expected, recorded);
        assert!(found.starts_with("sha256:") && found != recorded, "{found}");
        let message = check_version(&root, &expecting(recorded.clone(), "ds")).unwrap_err().to_string();
        assert!(message.contains("not the ones the service described"), "{message}");

        let outside = check_version(&root, &expecting(recorded.clone(), "other")).unwrap_err();
        assert!(matches!(outside, MountError::File { ref why, .. } if why.contains("manifest's folder")), "{outside}");
        std::os::unix::fs::symlink("/dev/zero", root.join("ds/u.csv.zero")).unwrap();
        fs::remove_file(root.join("ds/u.csv")).unwrap();
        std::os::unix::fs::symlink("u.csv.zero", root.join("ds/u.csv")).unwrap();
        let zero = check_version(&root, &expecting(recorded, "ds")).unwrap_err();
        assert!(
            matches!(zero, MountError::File { ref why, .. } if why.contains("outside")),
            "never reads /dev/zero: {zero}"
        );
    }
}
