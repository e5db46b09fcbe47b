//! Compiles proto/learnhub/**.proto with protox (pure Rust), so no system protoc is needed.
use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "learnhub/common/v1/db_stats.proto",
    "learnhub/catalog/v1/catalog.proto",
    "learnhub/enrollment/v1/enrollment.proto",
    "learnhub/cache/v1/cache.proto",
    "learnhub/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build's emit_rerun_if_changed is a no-op with compile_fds: say it ourselves.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    // compile_fds does not write the descriptor set; reflection needs it.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("learnhub_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
