//! Storage from a node description: builds each config given (default: the
//! standalone TOML and JSON and the cloud config in `examples/configs/`),
//! writes an atom, publishes it and reads it back.
//!
//! Relative paths in the files are taken relative to a temp directory here,
//! so the example leaves nothing behind; `protobase node --config FILE`
//! takes them relative to the file.
//!
//! ```text
//! cargo run --example from_config --features cloud [-- examples/configs/standalone.toml ...]
//! ```

use std::path::PathBuf;

use protobase::config::{NodeConfig, Source, Syntax};
use protobase::{AtomFormat, StorageBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
        files = ["standalone.toml", "standalone.json", "cloud.toml"]
            .iter()
            .map(|f| dir.join(f))
            .collect();
    }
    for file in files {
        let tmp = tempfile::tempdir()?;
        let text = std::fs::read_to_string(&file)?;
        let syntax = match file.extension().and_then(|e| e.to_str()) {
            Some("json") => Syntax::Json,
            _ => Syntax::Toml,
        };
        let config = NodeConfig::parse(
            &text,
            syntax,
            Source::from(file.as_path()),
            tmp.path(),
            std::env::vars(),
        )?;
        println!(
            "{}: {} node {:?}",
            file.display(),
            config.variant(),
            config.node_id()
        );
        // StorageBuilder::from_config gives a builder to customise further.
        let storage = StorageBuilder::from_config(&config)
            .await?
            .buffer_size(256 << 10)
            .build()
            .await?;
        let ptr = storage
            .push_atom(
                &serde_json::json!({"from": file.display().to_string()}),
                AtomFormat::Json,
            )
            .await?;
        let root = storage.set_root(ptr).await?;
        let back: serde_json::Value = storage.get_atom(root.pointer).await?;
        println!("  published root #{} -> {back}", root.sequence);
        storage.close().await?;
    }
    println!("ok");
    Ok(())
}
