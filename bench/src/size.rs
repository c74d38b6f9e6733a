//! Each Worker's wasm and JS bundle, raw and gzip-compressed (the platform limits the
//! compressed size: 3 MB on the free plan, 10 MB paid).

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::io::Write;

pub fn measure() -> anyhow::Result<Value> {
    let mut out = Vec::new();
    // The inline-write Worker is the benchmark's foil; its size is shown beside the others.
    for (worker, folder) in [
        ("producer", "producer"),
        ("consumer", "consumer"),
        ("inline (bench)", "bench/inline"),
    ] {
        for file in ["index_bg.wasm", "index.js"] {
            let path = e2e::root().join(folder).join("build").join(file);
            let bytes = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/build.sh)", path.display()))?;
            let mut gz = GzEncoder::new(Vec::new(), Compression::best());
            gz.write_all(&bytes)?;
            let gz = gz.finish()?;
            out.push(json!({ "worker": worker, "file": file, "rawBytes": bytes.len(), "gzipBytes": gz.len() }));
        }
    }
    Ok(Value::Array(out))
}
