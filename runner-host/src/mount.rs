//! What the guest sees of the disk: one directory, read-only, at `/data`.
//!
//! Requests name their files as `/data/<path relative to the datasets folder>`
//! (`/data/support/tickets.csv`), the layout of the runner image. Before a run the
//! host narrows the mount to the deepest folder that holds all of the dataset's
//! files (`datasets/support` → `/data`), so a query over one dataset cannot even
//! list another's files, and rewrites the paths to match (`/data/tickets.csv`).

use std::path::{Component, Path, PathBuf};

use protocol::registry::Dataset;
use protocol::{DATA_MOUNT, RunRequest, TableFile};

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
}
