//! `dataset-generator`: writes the datasets and registry.json.
//!
//! `cargo run -p dataset-generator` rewrites `datasets/` (byte-identical on every
//! machine); `--scale N --out DIR` writes N-times larger data elsewhere for benchmarks.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "dataset-generator",
    version,
    about = "Write csv-analyst's datasets and registry.json, deterministically"
)]
struct Cli {
    /// The folder to write registry.json and the CSV folders into.
    #[arg(long, env = "DATASETS_DIR", default_value = "datasets", value_name = "DIR")]
    out: PathBuf,
    /// Multiply the row counts (inventory stays at 500 products). Write scaled data
    /// outside the repository.
    #[arg(long, default_value_t = 1, value_name = "N")]
    scale: u32,
    /// Only these datasets (comma-separated): support, ecommerce, sensors.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ids: Vec<&str> = if cli.only.is_empty() {
        dataset_generator::DATASETS.to_vec()
    } else {
        cli.only.iter().map(String::as_str).collect()
    };
    let registry = dataset_generator::generate_only(&cli.out, cli.scale, &ids)?;
    for dataset in &registry.datasets {
        for file in &dataset.files {
            println!("{:<32} {:>10} rows", file.path, file.row_count.unwrap_or(0));
        }
        println!("{:<32} {}", dataset.id, dataset.version_hash.as_deref().unwrap_or(""));
    }
    Ok(())
}
