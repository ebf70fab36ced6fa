//! Compiles `proto/rollover/v1/*.proto` with pure-Rust tooling (protox, no protoc),
//! generates the tonic/prost code, and writes the file descriptor set for reflection.

use std::{env, fs, path::PathBuf};

const FILES: [&str; 4] = ["common", "planner", "executor", "agent"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(FILES.map(|f| format!("rollover/v1/{f}.proto")))?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("rollover_v1_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    // Decode errors are INVALID_ARGUMENT, not tonic-prost's INTERNAL (see codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
