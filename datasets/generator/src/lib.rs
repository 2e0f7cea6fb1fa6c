//! Writes csv-analyst's three datasets and their `registry.json`.
//!
//! Everything is derived from fixed seeds and a fixed anchor date ([`ANCHOR`]), never
//! from the clock, so every checkout has byte-identical CSVs and the same
//! `version_hash` per dataset. `--scale N` writes N times the rows (for benchmarks),
//! to a folder outside the repository.
//!
//! A dataset's `version_hash` is [`protocol::registry::version_hash`] of its files.

mod civil;
mod ecommerce;
mod rng;
mod sensors;
mod support;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use protocol::registry::{ColumnSchema, ColumnSpec, Dataset, DatasetFile, Registry};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use civil::{DAY, HOUR, date, days_from_civil, timestamp};
pub use rng::Rng;

/// The generated period ends here: 2026-01-01 00:00:00.
pub const ANCHOR: i64 = 20_454 * DAY;

/// The datasets, by id.
pub const DATASETS: [&str; 3] = ["support", "ecommerce", "sensors"];

/// Writes all datasets and `registry.json` under `out`, `scale` times the base size.
pub fn generate(out: &Path, scale: u32) -> anyhow::Result<Registry> {
    generate_only(out, scale, &DATASETS)
}

/// Writes the datasets named in `ids` (and a registry listing only them).
pub fn generate_only(out: &Path, scale: u32, ids: &[&str]) -> anyhow::Result<Registry> {
    anyhow::ensure!(scale >= 1, "scale must be at least 1");
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut datasets = Vec::new();
    for id in ids {
        datasets.push(match *id {
            "support" => support::write(out, scale)?,
            "ecommerce" => ecommerce::write(out, scale)?,
            "sensors" => sensors::write(out, scale)?,
            other => anyhow::bail!("unknown dataset {other:?}; datasets: {}", DATASETS.join(", ")),
        });
    }
    let registry = Registry { version: Some(Value::from("1")), datasets };
    let mut text = serde_json::to_string_pretty(&registry)?;
    text.push('\n');
    let path = out.join(protocol::registry::REGISTRY_FILE);
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(registry)
}

/// A column: name, SQL type, description.
pub(crate) type Column = (&'static str, &'static str, &'static str);

/// One CSV file being written with the `csv` crate (fields that need quoting are
/// quoted): rows are counted and the bytes hashed as they go.
pub(crate) struct CsvFile {
    relative: String,
    path: PathBuf,
    writer: csv::Writer<Hashing<BufWriter<File>>>,
    rows: u64,
}

/// A writer that hashes what it writes.
pub(crate) struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl CsvFile {
    pub fn create(out: &Path, relative: &str, columns: &[Column]) -> anyhow::Result<CsvFile> {
        let path = out.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let sink = Hashing { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new() };
        let writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(sink);
        let mut csv = CsvFile { relative: relative.to_string(), path, writer, rows: 0 };
        csv.writer.write_record(columns.iter().map(|c| c.0))?;
        Ok(csv)
    }

    /// Writes one row.
    pub fn row(&mut self, fields: &[&str]) -> anyhow::Result<()> {
        self.writer.write_record(fields)?;
        self.rows += 1;
        Ok(())
    }

    /// Finishes the file: its registry entry and its sha256.
    pub fn finish(self, description: &str, columns: &[Column]) -> anyhow::Result<(DatasetFile, String)> {
        let sink =
            self.writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))?;
        let Hashing { mut inner, hasher } = sink;
        inner.flush().with_context(|| format!("cannot write {}", self.path.display()))?;
        let digest = format!("{:x}", hasher.finalize());
        let schema = ColumnSchema(
            columns
                .iter()
                .map(|(name, ty, desc)| {
                    let spec = ColumnSpec { column_type: Some(ty.to_string()), description: desc.to_string() };
                    (name.to_string(), spec)
                })
                .collect(),
        );
        let name = self.relative.rsplit('/').next().unwrap_or(&self.relative).to_string();
        let file = DatasetFile {
            name,
            path: self.relative,
            description: description.to_string(),
            row_count: Some(self.rows),
            schema: Some(schema),
        };
        Ok((file, digest))
    }
}

/// A dataset's registry entry, with its version hash computed from its files.
pub(crate) fn dataset(
    id: &str,
    name: &str,
    description: &str,
    files: Vec<(DatasetFile, String)>,
    prompts: &[&str],
) -> Dataset {
    let version_hash = protocol::registry::version_hash(files.iter().map(|(f, d)| (f.path.as_str(), d.as_str())));
    Dataset {
        id: id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        version_hash: Some(version_hash),
        files: files.into_iter().map(|(file, _)| file).collect(),
        prompts: prompts.iter().map(|p| p.to_string()).collect(),
    }
}

/// A float with `decimals` digits after the point.
pub(crate) fn fixed(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// Rounds to cents, as money is stored.
pub(crate) fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_datasets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The committed datasets are exactly what the generator writes: nobody edited a
    /// CSV by hand, and the generator is deterministic.
    #[test]
    fn committed_datasets_match_the_generator_byte_for_byte() {
        let out = tempfile::tempdir().unwrap();
        let registry = generate(out.path(), 1).unwrap();
        let committed = committed_datasets();
        let mut paths = vec![protocol::registry::REGISTRY_FILE.to_string()];
        paths.extend(registry.datasets.iter().flat_map(|d| d.files.iter().map(|f| f.path.clone())));
        for path in paths {
            let fresh = fs::read(out.path().join(&path)).unwrap();
            let stored = fs::read(committed.join(&path))
                .unwrap_or_else(|e| panic!("datasets/{path} is missing ({e}); run `cargo run -p dataset-generator`"));
            assert!(
                fresh == stored,
                "datasets/{path} differs from the generator's output; run `cargo run -p dataset-generator`"
            );
        }
    }

    #[test]
    fn datasets_have_the_documented_shape() {
        let out = tempfile::tempdir().unwrap();
        let registry = generate(out.path(), 1).unwrap();
        let rows =
            |id: &str, table: &str| registry.dataset(id).unwrap().file_for_table(table).unwrap().row_count.unwrap();
        assert_eq!(rows("support", "tickets"), 6_000);
        assert_eq!(rows("ecommerce", "orders"), 4_000);
        assert_eq!(rows("ecommerce", "inventory"), 500);
        assert!((7_000..10_000).contains(&rows("ecommerce", "order_items")));
        assert_eq!(rows("sensors", "sensors"), 30 * 360);
        for ds in &registry.datasets {
            assert!(ds.version_hash.as_deref().unwrap().starts_with("sha256:"));
            assert!(!ds.prompts.is_empty());
        }
        // Reloading the written registry gives the same catalogue.
        let reloaded = Registry::load(out.path()).unwrap();
        assert_eq!(reloaded, registry);
    }

    #[test]
    fn scale_multiplies_rows() {
        let out = tempfile::tempdir().unwrap();
        let registry = generate(out.path(), 2).unwrap();
        let tickets = registry.dataset("support").unwrap().file_for_table("tickets").unwrap();
        assert_eq!(tickets.row_count, Some(12_000));
        let base = tempfile::tempdir().unwrap();
        let base_registry = generate(base.path(), 1).unwrap();
        assert_ne!(
            registry.dataset("support").unwrap().version_hash,
            base_registry.dataset("support").unwrap().version_hash
        );
    }
}
